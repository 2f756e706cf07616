"""`darkroom models`: publish, list, show, pull, promote, roll back, verify and gc models.

Commands that live in heavier packages (the lead attaches `make-tiny` from
`pipelines`) are registered with `register_lazy`, so `darkroom models list` never
imports torch.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import click

from jobs.errors import DarkroomError
from jobs.settings import load_settings
from model_store import Manifest, ModelStore, parse_variant

# command name -> ("module:attribute" of a click command, one-line help)
LAZY_COMMANDS: dict[str, tuple[str, str]] = {}


def register_lazy(name: str, target: str, help: str) -> None:
    """Add `darkroom models NAME`, imported from `target` ("module:attr") only when run."""
    LAZY_COMMANDS[name] = (target, help)


class ModelsGroup(click.Group):
    """A group whose errors print as one line, with lazily imported extra commands."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands or name not in LAZY_COMMANDS:
            return super().get_command(ctx, name)
        module_name, attr = LAZY_COMMANDS[name][0].split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: Any) -> None:
        rows = [
            (name, LAZY_COMMANDS[name][1] if name in LAZY_COMMANDS else self._help(ctx, name))
            for name in self.list_commands(ctx)
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def _help(self, ctx: click.Context, name: str) -> str:
        command = self.commands[name]
        return command.get_short_help_str(limit=70)

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


@click.group(cls=ModelsGroup)
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


# Commands implemented below model_store in the layering (they need torch) are attached here,
# in the composition root, and imported only when run.
register_lazy(
    "publish-selfie",
    "darkroom.selfie:publish_selfie_command",
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
