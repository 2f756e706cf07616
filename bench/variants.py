"""Super-resolution per model x scale x variant, side by side on the same inputs.

For each model (UpscalerJS slim / medium / thick, converted from `.npm/`) and scale, every
variant (fp32 and bf16 torch, onnxruntime fp32 and static int8) upscales the same
bicubic-downscaled centre crops of four scikit-image photos (astronaut, coffee, chelsea,
rocket). Reported: PSNR-Y / SSIM-Y (border shaved) against the originals and the same for
bicubic, the loss against fp32, ms per input megapixel (best of the photos after a
warm-up) and the peak RSS of the process that ran the variant (one process each).
`--tiles` adds the 4096x4096-output run: peak RSS and the seam against a whole-image run.

    python -m bench.variants                          # slim + thick x4, all variants
    python -m bench.variants --models slim,medium,thick --scales 2,3,4,8 --side 256
    python -m bench.variants --tiles thick            # 1024^2 -> 4096^2 (minutes on CPU)
    python -m bench.variants --preview                # the preview lane's candidates
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / ".npm"
VARIANT_NAMES = ("fp32", "bf16", "onnx", "onnx-int8")


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss across
    exec, so a child would report its parent's peak (measured: every child the same)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare(size: str, scale: int, work: Path, onnx: bool = True) -> Path:
    """Convert the package's model and build its ONNX files into `work`."""
    from pipelines.upscale.publish import add_onnx, convert
    from pipelines.upscale.tfjs import UpscalerPackage

    tgz = PACKAGES / f"upscalerjs-esrgan-{size}-1.0.0.tgz"
    if not tgz.exists():
        raise SystemExit(f"{tgz} is missing: run `make upscalerjs` (needs npm)")
    folder = work / f"{size}-x{scale}"
    convert(UpscalerPackage.open(tgz), scale, folder)
    if onnx:
        add_onnx(folder)
    return folder


def measure(folder: Path, name: str, side: int, threads: int) -> dict[str, Any]:
    """One variant on the photos, in this process: quality, speed, peak RSS."""
    import numpy as np
    import torch

    from pipelines.upscale.pipeline import read_config
    from pipelines.upscale.publish import VARIANTS, held_in, run_all, variant_list
    from pipelines.upscale.quality import gain
    from pipelines.upscale.variants import load_runner

    torch.set_num_threads(threads)
    config = read_config(folder)
    variant = variant_list(folder, [name], 0)[0]
    assert name in VARIANTS
    runner = load_runner(folder, variant, config, "cpu")
    pairs = held_in(config.scale, side)
    run_all(runner, config.scale, pairs[:1])  # warm-up: first-call allocations, ORT setup
    times, outputs = [], []
    for pair in pairs:
        started = time.perf_counter()
        outputs += run_all(runner, config.scale, [pair])
        times.append((time.perf_counter() - started) / (pair[0].shape[0] * pair[0].shape[1] / 1e6))
    scored = gain([(lr, sr, hr) for (lr, hr), sr in zip(pairs, outputs, strict=True)], config.scale)
    np.save(folder / f"out-{name}.npy", np.stack(outputs))
    return {
        "psnr": scored.psnr,
        "psnr_bicubic": scored.psnr_bicubic,
        "ssim": scored.ssim,
        "ssim_bicubic": scored.ssim_bicubic,
        "ms_per_mp": min(times) * 1000,
        "peak_rss_mb": peak_rss_mb(),
    }


def tiles_run(folder: Path, name: str, side: int, threads: int) -> dict[str, Any]:
    """`side`^2 input upscaled in tiles (128 px, 16 overlap): peak RSS and time."""
    import numpy as np
    import torch
    from PIL import Image
    from skimage import data

    from pipelines.upscale.pipeline import UpscalePipeline
    from pipelines.upscale.publish import variant_list

    torch.set_num_threads(threads)
    pipeline = UpscalePipeline.from_folder(folder, variant_list(folder, [name], 0)[0])
    image = Image.fromarray(data.astronaut()).resize((side, side), Image.Resampling.BICUBIC)
    started = time.perf_counter()
    out = pipeline.upscale(np.asarray(image), tile=128, overlap=16)
    return {
        "output": f"{out.shape[1]}x{out.shape[0]}",
        "seconds": time.perf_counter() - started,
        "peak_rss_mb": peak_rss_mb(),
    }


def preview_report(args: argparse.Namespace) -> None:
    """The preview lane's candidates on a 1024x768 photo: latency of the op's model call."""
    import statistics

    import torch
    from PIL import Image
    from skimage import data

    from bench.harness import table
    from pipelines.upscale import preview_input
    from pipelines.upscale.pipeline import UpscalePipeline
    from pipelines.upscale.publish import variant_list

    torch.set_num_threads(args.threads)
    photo = Image.fromarray(data.astronaut()).resize((1024, 768))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        slim, thick = prepare("slim", 4, Path(tmp)), prepare("thick", 4, Path(tmp))
        candidates = [
            ("slim fp32 (RDN, upsampler folded), whole image", slim, "fp32", preview_input(photo)),
            ("slim onnx-int8, whole image", slim, "onnx-int8", preview_input(photo)),
            ("thick fp32, 64x64 centre", thick, "fp32", photo.crop((480, 352, 544, 416))),
            ("thick onnx-int8, 64x64 centre", thick, "onnx-int8", photo.crop((480, 352, 544, 416))),
        ]
        for label, folder, name, image in candidates:
            pipeline = UpscalePipeline.from_folder(folder, variant_list(folder, [name], 0)[0])
            pipeline(image)  # warm-up
            times = []
            for _ in range(5):
                started = time.perf_counter()
                pipeline(image)
                times.append((time.perf_counter() - started) * 1000)
            size = f"{image.width}x{image.height} -> {image.width * 4}x{image.height * 4}"
            rows.append([label, size, f"{statistics.median(times):.0f}", f"{max(times):.0f}"])
    print(f"\npreview candidates, x4 of a 1024x768 photo, {args.threads} threads")
    print(table(rows, ["candidate", "input -> draft", "median ms", "max ms"]))


def in_child(*args: str, mode: str = "--child") -> dict[str, Any]:
    """Run `--child ...` (or `mode`) in a fresh process so each peak RSS is its own."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.variants", mode, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def compare(folder: Path, names: list[str]) -> dict[str, tuple[float, int]]:
    """Each variant's PSNR (dB) and max abs diff against fp32's outputs."""
    import numpy as np

    reference = np.load(folder / "out-fp32.npy").astype(int)
    out = {}
    for name in names:
        path = folder / f"out-{name}.npy"
        if path.exists():
            mine = np.load(path).astype(int)
            mse = float(np.mean((mine - reference) ** 2))
            psnr = 99.0 if mse == 0 else 10 * np.log10(255**2 / mse)
            out[name] = (psnr, int(np.abs(mine - reference).max()))
    return out


def report(args: argparse.Namespace) -> None:
    from bench.harness import table

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.models.split(","):
            for scale in (int(s) for s in args.scales.split(",")):
                folder = prepare(size, scale, Path(tmp))
                names = args.variants.split(",")
                results = {
                    n: in_child(str(folder), n, str(args.side), str(args.threads)) for n in names
                }
                base = results.get("fp32", {})
                against = compare(folder, names) if "ms_per_mp" in base else {}
                for name, r in results.items():
                    if "error" in r:
                        rows.append([size, f"x{scale}", name, r["error"][:60], *[""] * 8])
                        continue
                    vs = against.get(name, (float("nan"), -1))
                    rows.append(
                        [
                            size,
                            f"x{scale}",
                            name,
                            f"{r['psnr']:.2f}",
                            f"{r['psnr'] - r['psnr_bicubic']:+.2f}",
                            f"{r['ssim']:.4f}",
                            f"{r['ssim_bicubic']:.4f}",
                            f"{r['psnr'] - base.get('psnr', r['psnr']):+.2f}",
                            f"{vs[0]:.1f} / {vs[1]}",
                            f"{r['ms_per_mp']:,.0f}",
                            f"{base.get('ms_per_mp', r['ms_per_mp']) / r['ms_per_mp']:.2f}x",
                            f"{r['peak_rss_mb']:.0f}",
                        ]
                    )
                print(f"done {size} x{scale}", flush=True)
    header = [
        "model", "scale", "variant", "PSNR-Y", "vs bicubic", "SSIM-Y", "SSIM bic",
        "vs fp32 dB", "PSNR/maxdiff vs fp32", "ms/input MP", "speed vs fp32", "peak RSS MB",
    ]  # fmt: skip
    print(f"\n{args.side}px crops of astronaut/coffee/chelsea/rocket, {args.threads} threads")
    print(table(rows, header))


def tiles_report(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = prepare(args.tiles, 4, Path(tmp), onnx=args.tile_variant.startswith("onnx"))
        result = in_child(
            str(folder), args.tile_variant, "1024", str(args.threads), mode="--tiles-child"
        )
    print(f"\n{args.tiles} x4 {args.tile_variant}, 1024^2 input in 128 px tiles (16 px overlap):")
    print(json.dumps(result))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        folder, name, side, threads = argv[1:5]
        print(json.dumps(measure(Path(folder), name, int(side), int(threads))))
        return 0
    if argv[:1] == ["--tiles-child"]:
        folder, name, side, threads = argv[1:5]
        print(json.dumps(tiles_run(Path(folder), name, int(side), int(threads))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.variants")
    parser.add_argument("--models", default="slim,thick")
    parser.add_argument("--scales", default="4")
    parser.add_argument("--variants", default=",".join(VARIANT_NAMES))
    parser.add_argument("--side", type=int, default=128, help="HR crop side per photo")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiles", help="model for the 4096^2-output run (e.g. thick, slim)")
    parser.add_argument("--tile-variant", default="fp32")
    parser.add_argument("--preview", action="store_true", help="the preview lane's candidates")
    args = parser.parse_args(argv)
    if args.preview:
        preview_report(args)
    elif args.tiles:
        tiles_report(args)
    else:
        report(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
