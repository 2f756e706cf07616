"""The demo's super-resolution part: small archive crops upscaled x4 by the real model.

The crops are bicubic reductions (1/4) of regions of the bundled photos, so the original
is at hand: the contact sheet puts bicubic x4, the AI x4 and the original side by side
and prints each crop's measured PSNR-Y gain over bicubic. Needs the UpscalerJS package
in `.npm/` (`make demo` fetches it); without it the demo says so and skips this part.
"""

from __future__ import annotations

import base64
import html
import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from jobs.settings import Settings
from samples.photos import load_photo

SCALE = 4
PACKAGE = Path(".npm") / "upscalerjs-esrgan-thick-1.0.0.tgz"
# photo -> (left, top) of a 192 px region; crops of faces, fur, texture and type
CROPS = {"astronaut": (160, 60), "chelsea": (120, 60), "coffee": (220, 120), "rocket": (250, 170)}
SIDE = 192


def publish_model(settings: Settings) -> str | None:
    """Publish thick x4 (fp32) from the npm package; None when the package is missing.
    Publishing the same release again is a no-op."""
    if not PACKAGE.exists():
        return None
    from model_store import ModelStore
    from pipelines.upscale.publish import import_package

    with tempfile.TemporaryDirectory() as work:
        manifest, _ = import_package(
            ModelStore.from_settings(settings), PACKAGE, SCALE, Path(work), ("fp32",)
        )
    return manifest.ref


def make_crops(out_dir: Path) -> dict[str, Path]:
    """Write the 48 px archive crops (PNG) and their 192 px originals (`.orig.png`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    originals = out_dir.parent / f"{out_dir.name}-originals"
    originals.mkdir(exist_ok=True)
    paths = {}
    for name, (left, top) in CROPS.items():
        region = load_photo(name).convert("RGB").crop((left, top, left + SIDE, top + SIDE))
        region.save(originals / f"{name}.png")
        small = region.resize((SIDE // SCALE, SIDE // SCALE), Image.Resampling.BICUBIC)
        paths[name] = out_dir / f"{name}.png"
        small.save(paths[name])
    return paths


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def write_sheet(crops: dict[str, Path], results: Path, dest: Path) -> tuple[Path, float] | None:
    """bicubic | AI | original per crop with PSNR-Y; the sheet's path and the mean gain
    (dB), or None when no output was written."""
    from pipelines.upscale.quality import bicubic, psnr_y

    rows, gains = [], []
    for name, path in crops.items():
        out = results / f"{name}.png"
        if not out.exists():
            continue
        lr = np.asarray(Image.open(path).convert("RGB"))
        ai = np.asarray(Image.open(out).convert("RGB"))
        hr = np.asarray(
            Image.open(path.parent.parent / f"{path.parent.name}-originals" / path.name)
        )
        bic = bicubic(lr, SIDE, SIDE)
        p_ai, p_bic = psnr_y(ai, hr, SCALE), psnr_y(bic, hr, SCALE)
        gains.append(p_ai - p_bic)
        cells = "".join(
            f'<td><img src="{_data_uri(Image.fromarray(a))}" width="{SIDE}">'
            f"<br>{html.escape(t)}</td>"
            for a, t in (
                (bic, f"bicubic {p_bic:.2f} dB"),
                (ai, f"AI {p_ai:.2f} dB"),
                (hr, "original"),
            )
        )
        rows.append(f"<tr><th>{html.escape(name)}<br>{p_ai - p_bic:+.2f} dB</th>{cells}</tr>")
    if not rows:
        return None
    mean = float(np.mean(gains))
    dest.write_text(
        "<!doctype html><meta charset=utf-8><title>upscale x4: bicubic vs AI</title>"
        f"<h1>x4 super-resolution (ISR RRDN, thick): {mean:+.2f} dB PSNR-Y over bicubic</h1>"
        "<p>48 px archive crops; PSNR-Y against the original, 4 px border shaved.</p>"
        f"<table>{''.join(rows)}</table>"
    )
    return dest, mean
