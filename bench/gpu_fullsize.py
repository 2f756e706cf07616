"""Full-size denoisers and preview decoders on a CUDA GPU, with random weights.

Builds the FLUX.1 Kontext transformer (12B) and the SDXL UNet (2.6B) at their real
shapes directly on the GPU in bf16, and reports per-step latency at 1024^2 and 512^2
for bf16 eager, bf16 + torch.compile and fp8 (torchao float8, on SM 8.9+ cards), each
with its peak memory; then the decode time of TAESD / TAEF1 against the full FLUX VAE
at 512^2. Weights are random: the timings are the architecture's, not a checkpoint's.

Never run in CI. `python -m bench.gpu_fullsize` exits cleanly without CUDA;
`--smoke` runs the same code with toy-sized models on whatever device there is.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

KONTEXT = {
    "in_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
    "axes_dims_rope": (16, 56, 56),
}
SDXL_UNET = {
    "sample_size": 128,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
FLUX_VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "latent_channels": 16,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}
# --smoke: the same classes, shrunk until they run anywhere in seconds.
SMOKE = {
    "kontext": {
        **KONTEXT,
        "num_layers": 1,
        "num_single_layers": 1,
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "joint_attention_dim": 32,
        "pooled_projection_dim": 32,
        "axes_dims_rope": (4, 4, 8),
    },
    "sdxl": {
        **SDXL_UNET,
        "block_out_channels": (32, 64, 64),
        "transformer_layers_per_block": 1,
        "attention_head_dim": 8,
        "cross_attention_dim": 32,
        "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": 80,
        "norm_num_groups": 8,
    },
    "vae": {**FLUX_VAE, "block_out_channels": (8, 8, 8, 8), "norm_num_groups": 4},
}
TEXT_TOKENS = {"kontext": 512, "sdxl": 77}


@dataclass
class Row:
    model: str
    side: int
    mode: str
    ms_per_step: float | None
    peak_gb: float | None
    note: str = ""


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build parameters straight in `dtype`: a 12B model in fp32 first would need 48 GB."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build(factory: Callable[[], Any], device: str, dtype: torch.dtype) -> Any:
    torch.manual_seed(0)
    with torch.device(device), default_dtype(dtype):
        return factory().eval().requires_grad_(False)


def kontext_inputs(cfg: dict[str, Any], side: int, device: str, dtype: torch.dtype) -> dict:
    # Kontext attends over the noisy latents and the input image's latents: 2 x (side/16)^2.
    grid = side // 16
    tokens = 2 * grid * grid
    text = TEXT_TOKENS["kontext"]
    ids = torch.zeros(tokens, 3, device=device)
    ids[:, 1] = torch.arange(tokens, device=device) // grid % grid
    ids[:, 2] = torch.arange(tokens, device=device) % grid
    return {
        "hidden_states": torch.randn(1, tokens, cfg["in_channels"], device=device, dtype=dtype),
        "encoder_hidden_states": torch.randn(
            1, text, cfg["joint_attention_dim"], device=device, dtype=dtype
        ),
        "pooled_projections": torch.randn(
            1, cfg["pooled_projection_dim"], device=device, dtype=dtype
        ),
        "timestep": torch.tensor([0.5], device=device, dtype=dtype),
        "guidance": torch.tensor([2.5], device=device, dtype=dtype),
        "img_ids": ids,
        "txt_ids": torch.zeros(text, 3, device=device),
        "return_dict": False,
    }


def sdxl_inputs(cfg: dict[str, Any], side: int, device: str, dtype: torch.dtype) -> dict:
    # Classifier-free guidance runs the UNet on a batch of two.
    time_dims = cfg["projection_class_embeddings_input_dim"] - 6 * cfg["addition_time_embed_dim"]
    return {
        "sample": torch.randn(2, 4, side // 8, side // 8, device=device, dtype=dtype),
        "timestep": torch.tensor(500, device=device),
        "encoder_hidden_states": torch.randn(
            2, TEXT_TOKENS["sdxl"], cfg["cross_attention_dim"], device=device, dtype=dtype
        ),
        "added_cond_kwargs": {
            "text_embeds": torch.randn(2, time_dims, device=device, dtype=dtype),
            "time_ids": torch.tensor(
                [[side, side, 0, 0, side, side]] * 2, device=device, dtype=dtype
            ),
        },
        "return_dict": False,
    }


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(call: Callable[[], Any], device: str, warmup: int, repeat: int) -> float:
    """Median milliseconds of `call` after `warmup` calls."""
    with torch.inference_mode():
        for _ in range(warmup):
            call()
        samples = []
        for _ in range(repeat):
            synchronize(device)
            started = time.perf_counter()
            call()
            synchronize(device)
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def peak_gb(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def fp8_supported(device: str) -> bool:
    return device == "cuda" and torch.cuda.get_device_capability() >= (8, 9)


def quantize_fp8(model: torch.nn.Module) -> None:
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, quantize_

    quantize_(model, Float8DynamicActivationFloat8WeightConfig())


def bench_denoiser(
    name: str,
    model: Any,
    inputs: Callable[[int], dict],
    sides: Sequence[int],
    device: str,
    compile_too: bool,
    repeat: int,
) -> list[Row]:
    rows = []
    modes: list[tuple[str, Callable[[], Any]]] = [("bf16 eager", lambda: model)]
    if compile_too:
        modes.append(("bf16 compile", lambda: torch.compile(model)))
    for mode, prepare in modes:
        started = time.perf_counter()
        runner = prepare()
        for side in sides:
            args = inputs(side)
            reset_peak(device)
            ms = timed(lambda: runner(**args), device, warmup=2, repeat=repeat)  # noqa: B023
            note = (
                f"incl. compile {time.perf_counter() - started:.0f} s" if "compile" in mode else ""
            )
            rows.append(
                Row(name, side, mode, ms, peak_gb(device), note if side == sides[0] else "")
            )
    if not fp8_supported(device):
        rows.append(Row(name, sides[0], "fp8", None, None, "needs a CUDA GPU of SM 8.9+"))
        return rows
    quantize_fp8(model)  # in place: the last mode measured
    for mode, runner in [("fp8 eager", model), ("fp8 compile", torch.compile(model))][
        : 2 if compile_too else 1
    ]:
        for side in sides:
            args = inputs(side)
            reset_peak(device)
            ms = timed(lambda: runner(**args), device, warmup=2, repeat=repeat)  # noqa: B023
            rows.append(Row(name, side, mode, ms, peak_gb(device)))
    return rows


def bench_decoders(side: int, device: str, dtype: torch.dtype, smoke: bool) -> list[Row]:
    from diffusers import AutoencoderKL, AutoencoderTiny

    tiny_cfg: dict[str, Any] = (
        {"encoder_block_out_channels": (8,) * 4, "decoder_block_out_channels": (8,) * 4}
        if smoke
        else {}
    )
    decoders = {
        "TAESD": (build(lambda: AutoencoderTiny(**tiny_cfg), device, dtype), 4),
        "TAEF1": (
            build(lambda: AutoencoderTiny(latent_channels=16, **tiny_cfg), device, dtype),
            16,
        ),
        "FLUX VAE (full)": (
            build(lambda: AutoencoderKL(**(SMOKE["vae"] if smoke else FLUX_VAE)), device, dtype),
            16,
        ),
    }
    rows = []
    for name, (decoder, channels) in decoders.items():
        latents = torch.randn(1, channels, side // 8, side // 8, device=device, dtype=dtype)
        reset_peak(device)
        ms = timed(lambda: decoder.decode(latents), device, warmup=2, repeat=5)  # noqa: B023
        rows.append(Row(name, side, "decode", ms, peak_gb(device)))
    return rows


def print_rows(rows: Sequence[Row]) -> None:
    print(f"{'model':18} {'side':>5} {'mode':14} {'ms/step':>9} {'peak GB':>8}  note")
    for r in rows:
        ms = f"{r.ms_per_step:9.1f}" if r.ms_per_step is not None else f"{'-':>9}"
        peak = f"{r.peak_gb:8.1f}" if r.peak_gb is not None else f"{'-':>8}"
        print(f"{r.model:18} {r.side:5d} {r.mode:14} {ms} {peak}  {r.note}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="toy-sized models, any device")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile modes")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not args.smoke:
        print("no CUDA device: this benchmark needs a GPU (try --smoke for a dry run)")
        return 0
    from diffusers import FluxTransformer2DModel, UNet2DConditionModel

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16
    sides = (128, 64) if args.smoke else (1024, 512)
    kontext_cfg = SMOKE["kontext"] if args.smoke else KONTEXT
    sdxl_cfg = SMOKE["sdxl"] if args.smoke else SDXL_UNET
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu (smoke)"
    print(f"device: {name}, torch {torch.__version__}, bf16, random weights\n")

    rows: list[Row] = []
    compile_too = not args.no_compile
    for label, cls, cfg, make_inputs in (
        ("FLUX.1 Kontext", FluxTransformer2DModel, kontext_cfg, kontext_inputs),
        ("SDXL UNet", UNet2DConditionModel, sdxl_cfg, sdxl_inputs),
    ):
        model = build(lambda: cls(**cfg), device, dtype)  # noqa: B023
        params = sum(p.numel() for p in model.parameters())
        print(f"built {label}: {params / 1e6:,.1f} M parameters")
        inputs = lambda side: make_inputs(cfg, side, device, dtype)  # noqa: B023, E731
        rows += bench_denoiser(label, model, inputs, sides, device, compile_too, args.repeat)
        del model
        torch._dynamo.reset()
        reset_peak(device)
    rows += bench_decoders(sides[1], device, dtype, args.smoke)
    print()
    print_rows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
