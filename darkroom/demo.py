"""`darkroom demo` (`make demo`): darkroom's main jobs end to end on this machine.

Starts a Redis (the configured one, else a private embedded one) and a CPU worker as a
separate process; writes damaged real photos and submits them with the restoration
recipe, then portraits with `portrait_retouch`, each through the same `darkroom submit`
a user runs, with progress bars; leaves outputs, results manifests and before/after
contact sheets under `--out`. Everything it started, it stops, by PID.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import click
import redis
import yaml

from darkroom import upscale_demo
from jobs.settings import Settings, load_settings
from pipelines.portrait.selfie_wheel import publish_selfie
from samples.photos import make_portrait_set, make_sample_set
from samples.recipes import RESTORE_RECIPE, recipe_path
from transport.embedded import EmbeddedRedis, start_redis
from transport.keyspace import Keyspace
from workers.cli import worker_argv
from workers.heartbeat import stop_process_group, wait_until_beating


@click.command()
@click.option("--out", default="./out", show_default=True, help="where everything is written")
@click.option("--concurrency", "-c", default=2, show_default=True, help="final-lane slots")
def demo(out: str, concurrency: int) -> None:
    """Restore damaged photos and retouch portraits, end to end."""
    settings = load_settings()
    root = Path(out).resolve()
    root.mkdir(parents=True, exist_ok=True)
    restore = root / "restore.yaml"
    restore.write_text(yaml.safe_dump(RESTORE_RECIPE, sort_keys=False))
    batches = [
        ("demo-restore", make_sample_set(root / "samples"), restore, root / "restored"),
        (
            "demo-portraits",
            make_portrait_set(root / "portraits"),
            recipe_path("portrait_retouch"),
            root / "retouched",
        ),
    ]
    upscale_crops = _upscale_batch(settings, root, batches)
    click.echo(f"1/4 wrote {sum(len(b[1]) for b in batches)} photos under {root}")
    _publish_selfie_model(settings)

    server: EmbeddedRedis | None = None
    if settings.redis_url:
        url = settings.redis_url
    else:
        server = start_redis(settings.home / "demo-redis", persistent=False)
        url = server.url
    env = {**os.environ, "DARKROOM_REDIS_URL": url, "PYTHONUNBUFFERED": "1"}
    worker_log = root / "worker.log"
    worker = None
    codes = []
    try:
        click.echo(f"2/4 Redis at {url}; starting a CPU worker (log: {worker_log})")
        worker = subprocess.Popen(
            worker_argv("cpu", "both", concurrency, name="demo"),
            env=env,
            stdout=worker_log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until_beating(
                redis.Redis.from_url(url), Keyspace(), "demo-both", proc=worker, timeout_s=90
            )
        except (RuntimeError, TimeoutError) as exc:
            raise click.ClickException(f"{exc}; see {worker_log}") from None
        for name, photos, recipe, dest in batches:
            command = [
                sys.executable,
                "-m",
                "darkroom",
                "submit",
                str(photos[0].parent),
                "--recipe",
                str(recipe),
                "--out",
                str(dest),
                "--batch",
                name,
                "--wait",
                "--timeout",
                "600",
            ]
            click.echo("3/4 darkroom submit " + " ".join(command[4:]))
            codes.append(subprocess.call(command, env=env))
    finally:
        if worker is not None:
            stop_process_group(worker, timeout_s=60)
        if server is not None:
            server.stop()
    click.echo("4/4 stopped the worker" + (" and Redis" if server else ""))
    for name, _, _, dest in batches:
        click.echo(f"\n{name}: {dest}")
        click.echo(f"  contact sheet:    {dest / (name + '.contact.html')}")
        click.echo(f"  results manifest: {dest / (name + '.manifest.jsonl')}")
    if upscale_crops:
        _upscale_sheet(upscale_crops, root)
    sys.exit(max(codes, default=1))


def _upscale_batch(
    settings: Settings, root: Path, batches: list[tuple[str, list[Path], Path, Path]]
) -> dict[str, Path] | None:
    """Add the x4 super-resolution batch when the real model can be published."""
    ref = upscale_demo.publish_model(settings)
    if ref is None:
        click.echo(f"    upscale: skipped ({upscale_demo.PACKAGE} missing: `make upscalerjs`)")
        return None
    click.echo(f"    upscale: model {ref}")
    crops = upscale_demo.make_crops(root / "archive-crops")
    recipe = root / "upscale.yaml"
    # PNG: the sheet measures PSNR against the originals, which a lossy format would skew.
    body = {"name": "upscale_x4", "steps": [{"upscale": {"scale": 4}}], "output": {"format": "png"}}
    recipe.write_text(yaml.safe_dump(body))
    batches.append(("demo-upscale", list(crops.values()), recipe, root / "upscaled"))
    return crops


def _upscale_sheet(crops: dict[str, Path], root: Path) -> None:
    written = upscale_demo.write_sheet(crops, root / "upscaled", root / "upscale.contact.html")
    if written is not None:
        click.echo(f"\ndemo-upscale: {written[1]:+.2f} dB PSNR-Y over bicubic (x4, mean)")
        click.echo(f"  bicubic vs AI sheet: {written[0]}")


def _publish_selfie_model(settings: Settings) -> None:
    """remove_background's person model, when the mediapipe wheel is at hand (`make demo`
    downloads it); without it, the op falls back to GrabCut seeded by the face."""
    from model_store import ModelStore

    with tempfile.TemporaryDirectory() as scratch:
        ref = publish_selfie(ModelStore.from_settings(settings), Path(".whl"), Path(scratch))
    click.echo(f"    background removal: {'model ' + ref if ref else 'GrabCut (no model)'}")
