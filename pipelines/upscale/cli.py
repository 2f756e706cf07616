"""`darkroom models import-upscalerjs PACKAGE.tgz|DIR --scale N`: convert and publish."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from pipelines.upscale.publish import DEFAULT_VARIANTS, VARIANTS, import_package
from pipelines.upscale.tfjs import UpscalerPackage


@click.command("import-upscalerjs")
@click.argument("package", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--scale",
    "scales",
    type=click.Choice(["2", "3", "4", "8"]),
    multiple=True,
    help="scale(s) to import; default: every scale the package ships",
)
@click.option(
    "--variants",
    default=",".join(DEFAULT_VARIANTS),
    show_default=True,
    help=f"comma list of {', '.join(VARIANTS)}",
)
def import_upscalerjs_command(package: Path, scales: tuple[str, ...], variants: str) -> None:
    """Convert an UpscalerJS ESRGAN package (npm pack .tgz or its folder) and publish it.

    Each scale becomes `esrgan-<slim|medium|thick>-x<N>@<package version>` (alias
    stable) with fp32 safetensors, ONNX and int8 ONNX files, each variant scored
    against fp32; a variant losing more than 0.3 dB is refused.
    """
    from jobs.settings import load_settings
    from model_store import ModelStore

    store = ModelStore.from_settings(load_settings())
    chosen = [int(s) for s in scales] or UpscalerPackage.open(package).scales()
    names = [v.strip() for v in variants.split(",") if v.strip()]
    for scale in chosen:
        with tempfile.TemporaryDirectory() as work:
            manifest, refused = import_package(store, package, scale, Path(work), names)
        click.echo(f"published {manifest.ref} (alias stable) to {store.uri}")
        for variant in manifest.variants:
            click.echo(f"  {variant.describe()}: {variant.options.get('score')}")
        for name, why in refused.items():
            click.echo(f"  refused {name}: {why}")
