"""`darkroom models`: publish, list, show, pull, promote, roll back, verify and gc models;
export a model's transformer to ONNX and build TensorRT engines from it (`export-onnx`,
`build-engine`, which import torch only when run).

A CLI module only: the model store itself is `model_store`; this wires it to click.

Commands that live in heavier packages (the lead attaches `make-tiny` from
`pipelines`) are registered with `register_lazy`, so `darkroom models list` never
imports torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import click

from darkroom.cli import LazyGroup
from jobs.errors import DarkroomError
from jobs.settings import load_settings
from model_store import Manifest, ModelStore, parse_variant

# command name -> ("module:attribute" of a click command, one-line help)
LAZY_COMMANDS: dict[str, tuple[str, str]] = {}


def register_lazy(name: str, target: str, help: str) -> None:
    """Add `darkroom models NAME`, imported from `target` ("module:attr") only when run."""
    LAZY_COMMANDS[name] = (target, help)


class ModelsGroup(LazyGroup):
    """`darkroom models`: a lazy group whose errors print as one line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DarkroomError as exc:
            raise click.ClickException(str(exc)) from None


def _store(ctx: click.Context) -> ModelStore:
    options = ctx.obj or {}
    settings = load_settings(model_store=options.get("store"), model_cache=options.get("cache"))
    return ModelStore.from_settings(settings)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def _summary(manifest: Manifest) -> str:
    variants = "; ".join(v.describe() for v in manifest.variants)
    return (
        f"{manifest.ref}: {len(manifest.files)} files, {_size(manifest.total_bytes)}, "
        f"{manifest.pipeline_class}; variants: {variants}"
    )


@click.group(cls=ModelsGroup, lazy=LAZY_COMMANDS)
@click.option("--store", help="folder or s3://bucket/prefix; default: settings (<home>/models)")
@click.option("--cache", type=click.Path(path_type=Path), help="this machine's model cache")
@click.pass_context
def models(ctx: click.Context, store: str | None, cache: Path | None) -> None:
    """Publish, list, promote and verify models."""
    ctx.obj = {"store": store, "cache": cache}


@models.command()
@click.argument("src")
@click.option("--name", required=True, help="model name, e.g. flux-kontext")
@click.option("--version", "version", required=True, help="immutable version, e.g. 2025-06")
@click.option(
    "--variant",
    "variants",
    multiple=True,
    help="NAME[:kind=K][:tiers=a10,a100][:memory_gb=20][:compile=true][:files=a,b][:opt=v]",
)
@click.option("--license", "license_", help="license id; default: the model card's")
@click.option("--pipeline-class", help="default: _class_name of model_index.json")
@click.option("--component", "components", multiple=True, help="ROLE=REF, e.g. tiny_decoder=taef1")
@click.option("--alias", help="also point this alias at the new version, e.g. stable")
@click.pass_context
def publish(
    ctx: click.Context,
    src: str,
    name: str,
    version: str,
    variants: tuple[str, ...],
    license_: str | None,
    pipeline_class: str | None,
    components: tuple[str, ...],
    alias: str | None,
) -> None:
    """Publish a model folder or hub id as NAME@VERSION.

    SRC is a folder (diffusers layout: model_index.json and component folders) or a
    hub id (owner/name), downloaded first. Without --variant, variants are derived
    from the size of the weights (see model_store.variants).
    """
    specs = [parse_variant(v) for v in variants]  # syntax errors before any hashing
    roles = dict(_pair(c) for c in components)
    store = _store(ctx)
    manifest = store.publish(
        src,
        name,
        version,
        variants=specs or None,
        pipeline_class=pipeline_class,
        license=license_,
        components=roles,
    )
    click.echo(f"published {_summary(manifest)} to {store.uri}")
    if alias:
        store.promote(manifest.ref, alias)
        click.echo(f"{name}@{alias} -> {version}")


def _pair(text: str) -> tuple[str, str]:
    role, sep, ref = text.partition("=")
    if not sep or not role or not ref:
        raise click.BadParameter(f"{text!r} is not ROLE=REF", param_hint="--component")
    return role.strip(), ref.strip()


@models.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="print manifests as JSON lines")
@click.pass_context
def list_models(ctx: click.Context, as_json: bool) -> None:
    """List published versions and their aliases."""
    store = _store(ctx)
    manifests = store.list()
    if not manifests:
        click.echo(f"no models in {store.uri}; publish one with `darkroom models publish`")
        return
    books = {name: store.aliases(name) for name in {m.name for m in manifests}}
    for manifest in manifests:
        aliases = books[manifest.name].pointing_at(manifest.version)
        if as_json:
            click.echo(json.dumps({**manifest.model_dump(mode="json"), "aliases": aliases}))
        else:
            tags = f" [{', '.join(aliases)}]" if aliases else ""
            click.echo(_summary(manifest) + tags)


@models.command()
@click.argument("ref")
@click.pass_context
def show(ctx: click.Context, ref: str) -> None:
    """Print the manifest of REF (name, name@version or name@alias)."""
    manifest = _store(ctx).resolve(ref)
    click.echo(manifest.to_json().decode())


@models.command()
@click.argument("ref")
@click.pass_context
def pull(ctx: click.Context, ref: str) -> None:
    """Pull REF into this machine's cache, verified.

    Use it to warm a worker's cache before it takes jobs.
    """
    local = _store(ctx).pull(ref)
    how = f"downloaded {_size(local.copied_bytes)}" if local.copied_bytes else "already cached"
    click.echo(f"{local.manifest.ref} at {local.path} ({how})")


@models.command()
@click.argument("ref")
@click.option("--alias", default="stable", show_default=True)
@click.pass_context
def promote(ctx: click.Context, ref: str, alias: str) -> None:
    """Point NAME@ALIAS at the version REF resolves to."""
    store = _store(ctx)
    manifest = store.resolve(ref)
    store.promote(manifest.ref, alias)
    click.echo(f"{manifest.name}@{alias} -> {manifest.version}")


@models.command()
@click.argument("name")
@click.option("--alias", default="stable", show_default=True)
@click.pass_context
def rollback(ctx: click.Context, name: str, alias: str) -> None:
    """Point NAME@ALIAS back at the version it pointed at before."""
    previous = _store(ctx).rollback(name, alias)
    click.echo(f"{name}@{alias} -> {previous}")


@models.command()
@click.argument("ref", required=False)
@click.pass_context
def verify(ctx: click.Context, ref: str | None) -> None:
    """Re-hash REF (default: all) in the store and the cache.

    Exits 1 if a file is missing or does not match its sha256, or a component is
    not published.
    """
    store = _store(ctx)
    refs = [ref] if ref else [m.ref for m in store.list()]
    failed = False
    for one in refs:
        problems = store.verify(one)
        failed = failed or bool(problems)
        click.echo(f"{one}: ok" if not problems else f"{one}: {len(problems)} problem(s)")
        for problem in problems:
            click.echo(f"  {problem}")
    if failed:
        ctx.exit(1)


@models.command()
@click.option("--grace-hours", default=6.0, show_default=True, help="age of a dead publish")
@click.option("--cache-only", is_flag=True, help="leave the store alone (read-only credentials)")
@click.pass_context
def gc(ctx: click.Context, grace_hours: float, cache_only: bool) -> None:
    """Trim the cache to its cap and delete unreferenced store files.

    Evicts least recently used cached copies (never one being pulled or in use),
    removes abandoned downloads, and deletes store files no manifest lists.
    """
    report = _store(ctx).gc(store_grace_s=grace_hours * 3600, store=not cache_only)
    evicted = ", ".join(report.evicted) or "none"
    freed = _size(report.freed_bytes)
    click.echo(f"cache: evicted {evicted} ({freed} freed); now {_size(report.cache_bytes)}")
    click.echo(f"cache: {report.temp_removed} abandoned download(s) removed")
    click.echo(f"store: {len(report.store_removed)} unreferenced file(s) deleted")
    for key in report.store_removed:
        click.echo(f"  {key}")


SIDES = click.IntRange(16, 2048)  # 2048: the largest max_side a generative job may ask for


def _tiers(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


@models.command("export-onnx")
@click.argument("ref")
@click.option("--version", "version", required=True, help="version to publish, e.g. 2025-06-onnx")
@click.option("--name", help="model name to publish under; default: REF's")
@click.option("--variant-name", default="onnx", show_default=True, help="name of the new variant")
@click.option("--tiers", default="cpu", show_default=True, help="tiers that run it (comma list)")
@click.option("--min-psnr", default=40.0, show_default=True, help="refuse below this score (dB)")
@click.option(
    "--side",
    default=128,
    show_default=True,
    type=click.IntRange(32, 2048),
    help="width of the scoring edit (px, rounded down to 16)",
)
@click.option("--steps", default=4, show_default=True, type=click.IntRange(1, 50), help="its steps")
@click.pass_context
def export_onnx(
    ctx: click.Context,
    ref: str,
    version: str,
    name: str | None,
    variant_name: str,
    tiers: str,
    min_psnr: float,
    side: int,
    steps: int,
) -> None:
    """Export REF's FLUX transformer to ONNX and publish it as an onnx variant.

    The new version holds REF's files plus the ONNX graph and weights; the onnx variant
    is scored against the torch model (PSNR and max abs diff of the same seeded edit)
    and refused below --min-psnr. It comes first, so the tiers it names run it.
    """
    from pipelines.generative.parity import ParityCase
    from pipelines.generative.publish_exported import Target, publish_onnx

    store = _store(ctx)
    target = Target(version, name, variant_name, _tiers(tiers), min_psnr, ParityCase(side, steps))
    manifest = publish_onnx(store, ref, target)
    click.echo(f"published {_summary(manifest)} to {store.uri}")
    click.echo(f"score: {manifest.variants[0].options['score']}")


@models.command("build-engine")
@click.argument("ref")
@click.option("--variant", "onnx_variant", required=True, help="the onnx variant of REF to build")
@click.option("--version", "version", help="version to publish; default: <REF's version>-trt")
@click.option("--name", help="model name to publish under; default: REF's")
@click.option("--variant-name", default="trt", show_default=True, help="name of the new variant")
@click.option("--tiers", default="a10,a100", show_default=True, help="tiers that run it")
@click.option(
    "--opt-side", default=512, show_default=True, type=SIDES, help="image side tuned for (px)"
)
@click.option(
    "--max-side", default=1024, show_default=True, type=SIDES, help="largest image side (px)"
)
@click.option(
    "--fp16/--fp32",
    default=False,
    show_default=True,
    help="let TensorRT 10 pick fp16 kernels (TensorRT 11 builds the graph's own precision)",
)
@click.option("--min-psnr", default=30.0, show_default=True, help="refuse below this score (dB)")
@click.pass_context
def build_engine(
    ctx: click.Context,
    ref: str,
    onnx_variant: str,
    version: str | None,
    name: str | None,
    variant_name: str,
    tiers: str,
    opt_side: int,
    max_side: int,
    fp16: bool,
    min_psnr: float,
) -> None:
    """Build a TensorRT engine from an onnx variant of REF and publish it as a tensorrt variant.

    Needs the tensorrt package and a CUDA GPU (the engine is built for this machine's
    card and TensorRT version); elsewhere it refuses and exits 1.
    """
    if opt_side > max_side:
        raise click.BadParameter(
            f"{opt_side} is over --max-side {max_side}", param_hint="--opt-side"
        )
    store = _store(ctx)
    manifest = store.resolve(ref)
    kinds = {v.name: v.kind for v in manifest.variants}
    if kinds.get(onnx_variant) != "onnx":
        onnx = [n for n, k in kinds.items() if k == "onnx"]
        raise click.ClickException(
            f"{manifest.ref} has no onnx variant {onnx_variant!r} (its onnx variants: "
            f"{', '.join(onnx) or 'none'}); publish one with `darkroom models export-onnx`"
        )
    if importlib.util.find_spec("tensorrt") is None:
        raise click.ClickException(
            "cannot build a TensorRT engine here: the tensorrt package is not installed "
            "(it needs CUDA); run this on a GPU machine with tensorrt-cu12 installed"
        )
    from pipelines.generative.publish_exported import Target, publish_engine
    from pipelines.generative.tensorrt_engine import TokenProfile, missing_tensorrt

    reason = missing_tensorrt()
    if reason:
        raise click.ClickException(f"cannot build a TensorRT engine here: {reason}")
    target = Target(
        version or f"{manifest.version}-trt", name, variant_name, _tiers(tiers), min_psnr
    )
    profile = TokenProfile.for_sides(opt_side, max_side)
    published = publish_engine(store, manifest.ref, onnx_variant, target, profile, fp16=fp16)
    click.echo(f"published {_summary(published)} to {store.uri}")
    click.echo(f"score: {published.variants[0].options['score']}")


# Commands implemented below model_store in the layering (they need torch) are attached here,
# in the composition root, and imported only when run.
register_lazy(
    "publish-selfie",
    "pipelines.portrait.selfie_wheel:publish_selfie_command",
    "publish MediaPipe's selfie-segmentation model from its wheel (remove_background)",
)
register_lazy(
    "make-tiny",
    "pipelines.generative.tiny:make_tiny_command",
    "build tiny random-weight models of every supported pipeline (tests, CI, demo)",
)
register_lazy(
    "import-upscalerjs",
    "pipelines.upscale.cli:import_upscalerjs_command",
    "convert an UpscalerJS ESRGAN npm package (super-resolution) and publish it (upscale)",
)
