"""Tiny random-weight versions of every supported edit model, for tests, demos and benches.

`make_tiny(out_dir)` builds them offline (fixed seeds: the same bytes every time) and
saves each in diffusers format; `publish_tiny(store, out_dir)` publishes them as
`<name>@tiny` with the alias `stable`, linking the tiny preview decoders through the
manifests' `components`. They exercise exactly the loading code real weights go
through. `darkroom models make-tiny --out DIR [--publish]` runs both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from diffusers import (
    DDIMScheduler,
    EulerAncestralDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxFillPipeline,
    FluxKontextPipeline,
    QwenImageEditPipeline,
    QwenImageEditPlusPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionInstructPix2PixPipeline,
)

from model_store import Manifest, ModelStore, VariantSpec
from pipelines.generative import tiny_parts as parts
from pipelines.identity import tiny as identity
from pipelines.multi_identity import tiny as multi_identity

TINY_VERSION = "tiny"
ALIAS = "stable"
SD_BETAS: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
}


def _flux_text() -> dict[str, Any]:
    clip, t5 = parts.clip_tokenizer(), parts.t5_tokenizer()
    return {
        "tokenizer": clip,
        "text_encoder": parts.clip_text_encoder(len(clip)),
        "tokenizer_2": t5,
        "text_encoder_2": parts.t5_encoder(len(t5)),
        "scheduler": FlowMatchEulerDiscreteScheduler(),
    }


def _sd_parts() -> dict[str, Any]:
    clip = parts.clip_tokenizer()
    return {
        "tokenizer": clip,
        "text_encoder": parts.clip_text_encoder(len(clip)),
        "vae": parts.sd_vae(),
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def _qwen_parts() -> dict[str, Any]:
    tokenizer = parts.qwen_tokenizer()
    return {
        "transformer": parts.qwen_transformer(),
        "vae": parts.qwen_vae(),
        "scheduler": FlowMatchEulerDiscreteScheduler(),
        "text_encoder": parts.qwen_vl_encoder(tokenizer),
        "tokenizer": tokenizer,
        "processor": parts.qwen_processor(tokenizer),
    }


def kontext() -> FluxKontextPipeline:
    latent_tokens = parts.FLUX_LATENT_CHANNELS * 4
    return FluxKontextPipeline(
        transformer=parts.flux_transformer(latent_tokens), vae=parts.flux_vae(), **_flux_text()
    )


def flux_fill() -> FluxFillPipeline:
    # Tokens carry the noisy latents, the masked image's latents and the 8x8 mask, each 2x2-packed.
    latent_tokens = parts.FLUX_LATENT_CHANNELS * 4
    mask_tokens = 8 * 8 * 4
    transformer = parts.flux_transformer(2 * latent_tokens + mask_tokens, latent_tokens)
    return FluxFillPipeline(transformer=transformer, vae=parts.flux_vae(), **_flux_text())


def ip2p() -> StableDiffusionInstructPix2PixPipeline:
    return StableDiffusionInstructPix2PixPipeline(
        unet=parts.sd_unet(in_channels=8),
        scheduler=EulerAncestralDiscreteScheduler(**SD_BETAS),
        **_sd_parts(),
    )


def sd_inpaint() -> StableDiffusionInpaintPipeline:
    scheduler = DDIMScheduler(**SD_BETAS, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionInpaintPipeline(
        unet=parts.sd_unet(in_channels=9), scheduler=scheduler, **_sd_parts()
    )


def qwen_edit() -> QwenImageEditPipeline:
    return QwenImageEditPipeline(**_qwen_parts())


def qwen_edit_plus() -> QwenImageEditPlusPipeline:
    return QwenImageEditPlusPipeline(**_qwen_parts())


def taesd() -> Any:
    return parts.tiny_autoencoder(parts.SD_LATENT_CHANNELS)


def taef1() -> Any:
    return parts.tiny_autoencoder(
        parts.FLUX_LATENT_CHANNELS, scaling_factor=parts.FLUX_SCALING, shift_factor=parts.FLUX_SHIFT
    )


# name -> builder; decoders first, since the models below link them.
BUILDERS: dict[str, Callable[[], Any]] = {
    "taesd": taesd,
    "taef1": taef1,
    "kontext": kontext,
    "qwen-edit": qwen_edit,
    "qwen-edit-plus": qwen_edit_plus,
    "ip2p": ip2p,
    "sd-inpaint": sd_inpaint,
    "flux-fill": flux_fill,
    "taesdxl": identity.taesdxl,
    "arcface-antelopev2": identity.arcface,
    "instantid-sdxl": identity.instantid_sdxl,
    "umo-uno-lora": multi_identity.uno_lora,
    "umo-uno": multi_identity.uno,
}
TINY_DECODERS: dict[str, str] = {
    "kontext": "taef1",
    "flux-fill": "taef1",
    "ip2p": "taesd",
    "sd-inpaint": "taesd",
    "instantid-sdxl": "taesdxl",
    "umo-uno": "taef1",
}
TINY_COMPONENTS: dict[str, dict[str, str]] = {
    "instantid-sdxl": {"face_encoder": f"arcface-antelopev2@{TINY_VERSION}"},
    "umo-uno": {"lora": f"umo-uno-lora@{TINY_VERSION}"},
}
"""Further components a model links, besides its preview decoder."""
TINY_QUANTIZE: dict[str, list[str]] = {"instantid-sdxl": ["controlnet"]}
"""What a model's int8 variant quantizes where not its denoiser (a UNet with the face
adapter cannot be quantized)."""


def make_tiny(out_dir: Path) -> dict[str, Path]:
    """Build and save every tiny model under `out_dir`; name -> its folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    built: dict[str, Path] = {}
    for name, build in BUILDERS.items():
        folder = out_dir / name
        build().save_pretrained(folder)
        built[name] = folder
    return built


def tiny_variants(store: ModelStore, quantize: list[str] | None = None) -> list[VariantSpec]:
    """fp32 on every tier (a CPU machine plays any tier in tests), and an int8
    weight-only variant to pick by name (of the denoiser, or of `quantize`)."""
    tiers = [t.name for t in store.tiers]
    options: dict[str, Any] = {"quantize": quantize} if quantize else {}
    return [
        VariantSpec(name="fp32", kind="fp32", tiers=tiers),
        VariantSpec(name="int8", kind="int8_weight_only", tiers=tiers, options=options),
    ]


def publish_tiny(store: ModelStore, out_dir: Path) -> dict[str, Manifest]:
    """Publish the models `make_tiny` saved in `out_dir` as `<name>@tiny`, alias `stable`."""
    published: dict[str, Manifest] = {}
    for name in BUILDERS:
        decoder = TINY_DECODERS.get(name)
        components = {"tiny_decoder": f"{decoder}@{TINY_VERSION}"} if decoder else {}
        components.update(TINY_COMPONENTS.get(name, {}))
        manifest = store.publish(
            out_dir / name,
            name,
            TINY_VERSION,
            variants=tiny_variants(store, TINY_QUANTIZE.get(name)),
            components=components,
        )
        store.promote(manifest.ref, ALIAS)
        published[name] = manifest
    return published


@click.command("make-tiny")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--publish", is_flag=True, help="also publish them to the configured model store")
def make_tiny_command(out_dir: Path, publish: bool) -> None:
    """Build tiny random-weight edit models (offline), and optionally publish them."""
    started = time.perf_counter()
    built = make_tiny(out_dir)
    for name, folder in built.items():
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        click.echo(f"{name:16} {size / 1e6:6.2f} MB  {folder}")
    click.echo(f"built {len(built)} models in {time.perf_counter() - started:.1f} s")
    if publish:
        from jobs.settings import load_settings

        store = ModelStore.from_settings(load_settings())
        for manifest in publish_tiny(store, out_dir).values():
            click.echo(f"published {manifest.ref} ({ALIAS}) to {store.uri}")
