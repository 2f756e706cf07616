"""`darkroom submit`: queue a batch, show progress, optionally wait and report.

`status`, `queues` and `cancel` live in `producer.cli_inspect` and are re-exported
here, where `darkroom.cli` looks for them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click
from pydantic import ValidationError
from tqdm import tqdm

from jobs.errors import SchemaError
from jobs.schema import Lane, OutputSpec
from producer.batch import (
    BatchHandle,
    BatchProgress,
    JobOptions,
    check_batch_name,
    derive_batch_name,
    store_for,
    submit_batch,
    wait_for_batch,
)
from producer.cli_common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TIMEOUT,
    Failure,
    one_line_errors,
    settings_and_redis,
)
from producer.cli_inspect import cancel, queues, status, write_batch_reports
from producer.queue_stats import live_workers
from producer.recipes import LoadedRecipe, first_error, load_recipe, recipe_from_ops
from producer.skipped import describe_skipped, write_skipped
from producer.sources import Sources, destination_uri, scan_sources
from transport.redis_config import check_redis
from transport.store import JobStore

if TYPE_CHECKING:
    from redis import Redis

    from jobs.settings import Settings

__all__ = ["cancel", "queues", "status", "submit"]


def _recipe(recipe_file: str | None, ops: Sequence[str]) -> LoadedRecipe:
    if recipe_file and ops:
        raise SchemaError("give either --recipe FILE or --op flags, not both")
    if recipe_file:
        return load_recipe(recipe_file)
    return recipe_from_ops(ops)


def _output_spec(
    loaded: LoadedRecipe, fmt: str | None, quality: int | None, extra: dict[str, object]
) -> OutputSpec:
    fields = {**loaded.output, **{k: v for k, v in extra.items() if v is not None}}
    if fmt:
        fields["format"] = fmt
    if quality is not None:
        fields["quality"] = quality
    try:
        return OutputSpec.model_validate(fields)
    except ValidationError as exc:
        raise SchemaError(f"output settings: {first_error(exc)}") from None


def _basis(sources: Sequence[str]) -> list[str]:
    """The sources as given, made independent of the working directory."""
    return [s if "://" in s else str(Path(s).resolve()) for s in sources]


def _describe(handle: BatchHandle) -> str:
    skipped = ", ".join(f"{state} {n}" for state, n in sorted(handle.report.skipped.items()))
    return (
        f"batch {handle.name}: {handle.submitted} images -> {handle.queue}, outputs in "
        f"{handle.out}\n  new {handle.report.new}, requeued {handle.report.requeued}, "
        f"skipped {handle.skipped}" + (f" (already {skipped})" if skipped else "")
    )


def _check_webhook(url: str | None, settings: Settings) -> None:
    """The deliverer posts to https only (http where private addresses are allowed)."""
    plain_ok = settings.fetch_allow_private and (url or "").startswith("http://")
    if url is not None and not url.startswith("https://") and not plain_ok:
        raise SchemaError(f"--webhook {url}: give an https:// URL")


def no_worker_warning(settings: Settings, redis: Redis, handle: BatchHandle) -> str | None:
    """A warning when no live worker consumes the queue the batch went to, else None."""
    if any(handle.queue in w.get("queues", []) for w in live_workers(settings, redis)):
        return None
    lane = handle.queue.rsplit(".", 1)[-1]
    return (
        f"warning: no live worker serves {handle.queue} (tier {handle.tier}); the jobs wait "
        f"until one starts: darkroom worker --tier {handle.tier} --lane {lane}"
    )


def _warn(message: str | None) -> None:
    if message:
        click.echo(message, err=True)


NO_WORKER_RECHECK_S = 30.0  # how often --wait repeats the warning while nothing serves


def _wait(
    store: JobStore,
    name: str,
    timeout: float | None,
    quiet: bool,
    still_unserved: Callable[[], str | None] = lambda: None,
) -> BatchProgress:
    last_check = [time.monotonic()]
    with tqdm(desc="rendering", unit="img", disable=quiet, leave=True) as bar:

        def update(progress: BatchProgress) -> None:
            now = time.monotonic()
            if not progress.done and now - last_check[0] >= NO_WORKER_RECHECK_S:
                last_check[0] = now
                warning = still_unserved()
                if warning:
                    bar.write(warning, file=sys.stderr)
            bar.total = progress.total
            bar.n = progress.finished
            bar.set_postfix(failed=progress.failed, running=progress.running, refresh=False)
            bar.refresh()

        try:
            return wait_for_batch(store, name, timeout_s=timeout, on_update=update)
        except KeyboardInterrupt:
            raise Failure(
                f"stopped waiting; the batch keeps running: darkroom status --batch {name}",
                EXIT_INTERRUPTED,
            ) from None


@click.command()
@click.argument("sources", nargs=-1, required=True)
@click.option("--recipe", "recipe_file", metavar="FILE", help="recipe file (YAML or JSON)")
@click.option("--op", "ops", multiple=True, metavar="NAME[:k=v,...]", help="a step; repeat")
@click.option(
    "--mode", type=click.Choice([lane.value for lane in Lane]), default="final", show_default=True
)
@click.option(
    "--priority", type=click.IntRange(0, 9), default=5, show_default=True, help="0 runs first"
)
@click.option("--out", help="output folder or s3://bucket/prefix [default: settings.output]")
@click.option("--batch", "batch_name", help="batch name [default: derived, so re-runs resume]")
@click.option("--format", "fmt", type=click.Choice(["webp", "jpeg", "png", "tiff"]))
@click.option("--quality", type=click.IntRange(1, 100))
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), help="seed for generative ops")
@click.option("--webhook", metavar="URL", help="POSTed when each job finishes")
@click.option("--tenant", help="tenant the jobs are billed and limited under")
@click.option(
    "--cancel-after",
    type=click.FloatRange(min=0),
    metavar="S",
    help="cancel jobs not started within S seconds",
)
@click.option(
    "--metadata",
    type=click.Choice(["keep", "strip"]),
    help="keep EXIF/XMP/dpi/profile (default) or strip them (GPS, camera, dates)",
)
@click.option("--bit-depth", type=click.Choice(["8", "16"]), help="PNG/TIFF bits per sample")
@click.option(
    "--frames",
    type=click.Choice(["all", "first"]),
    help="pages/animation frames to render (generative ops need 'first')",
)
@click.option("--wait", is_flag=True, help="wait for the batch, then write its reports")
@click.option("--timeout", type=click.FloatRange(min=0), help="with --wait: give up after S s")
@click.option("--no-progress", is_flag=True, help="no progress bars")
@one_line_errors
def submit(
    sources: tuple[str, ...],
    recipe_file: str | None,
    ops: tuple[str, ...],
    mode: str,
    priority: int,
    out: str | None,
    batch_name: str | None,
    fmt: str | None,
    quality: int | None,
    seed: int | None,
    webhook: str | None,
    tenant: str | None,
    cancel_after: float | None,
    metadata: str | None,
    bit_depth: str | None,
    frames: str | None,
    wait: bool,
    timeout: float | None,
    no_progress: bool,
) -> None:
    """Queue one job per image in SOURCE... (files, folders, globs, s3://, manifests).

    Exit status with --wait: 0 all succeeded, 1 some failed, 3 timed out; 2 bad input.
    """
    # 1. check everything the user gave before touching Redis
    loaded = _recipe(recipe_file, ops)
    choices = {"metadata": metadata, "bit_depth": int(bit_depth) if bit_depth else None}
    spec = _output_spec(loaded, fmt, quality, {**choices, "frames": frames})
    settings, redis = settings_and_redis()
    check_redis(redis, "darkroom submit")
    _check_webhook(webhook, settings)
    found: Sources = scan_sources(sources, settings)
    items = found.items
    out_uri = destination_uri(out or settings.output)
    lane = Lane(mode)
    name = (
        check_batch_name(batch_name)
        if batch_name
        else derive_batch_name(_basis(sources), loaded.recipe, lane, out_uri, spec, seed=seed)
    )
    # 2. submit, chunked and pipelined
    with tqdm(total=len(items), desc="submitting", unit="job", disable=no_progress) as bar:
        handle = submit_batch(
            settings,
            redis,
            items,
            loaded.recipe,
            mode=lane,
            priority=priority,
            out=out_uri,
            batch=name,
            output_spec=spec,
            on_progress=bar.update,
            job_options=JobOptions(
                seed=seed,
                webhook=webhook,
                tenant=tenant,
                cancel_after_s=cancel_after,
            ),
        )
    click.echo(_describe(handle))
    if found.skipped:
        write_skipped(settings, handle.out, handle.name, found.skipped)
        click.echo(describe_skipped(found.skipped))
    _warn(no_worker_warning(settings, redis, handle))
    if not wait:
        click.echo(f"follow it with: darkroom status --batch {handle.name}")
        return
    # 3. wait for the workers, then report
    progress = _wait(
        store_for(settings, redis),
        handle.name,
        timeout,
        no_progress,
        still_unserved=lambda: no_worker_warning(settings, redis, handle),
    )
    _finish(settings, redis, handle, progress, quiet=no_progress)


def _finish(
    settings: Settings, redis: Redis, handle: BatchHandle, progress: BatchProgress, *, quiet: bool
) -> None:
    click.echo(
        f"{progress.succeeded} succeeded, {progress.failed} failed, {progress.canceled} "
        f"canceled of {progress.total} ({progress.percent:.0f} % finished)"
    )
    if not progress.done:
        raise Failure(
            f"timed out with {progress.total - progress.finished} jobs unfinished; they keep "
            f"running: darkroom status --batch {handle.name}",
            EXIT_TIMEOUT,
        )
    paths = write_batch_reports(settings, redis, handle.name, handle.out, quiet=quiet)
    click.echo(paths.describe())
    if not progress.all_succeeded:
        raise Failure(
            f"{progress.failed + progress.canceled} of {progress.total} jobs did not succeed; "
            f"see darkroom status --batch {handle.name}",
            EXIT_FAILED,
        )
