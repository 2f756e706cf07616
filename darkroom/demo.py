"""`darkroom demo` (`make demo`): the restoration job end to end on this machine.

Starts a Redis (the configured one, else a private embedded one) and a CPU worker as a
separate process, writes a set of damaged real photos, submits them with the restoration
recipe through the same `darkroom submit` a user runs, waits with a progress bar, and
leaves outputs, a results manifest and a before/after contact sheet under `--out`.
Everything it started, it stops, by PID.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import redis
import yaml

from darkroom.samples import RESTORE_RECIPE, make_sample_set
from jobs.broker import EmbeddedRedis, start_redis
from jobs.keys import Keys
from jobs.settings import load_settings
from workers.heartbeat import stop_process_group, wait_until_beating

BATCH = "demo-restore"


@click.command()
@click.option("--out", default="./out", show_default=True, help="where everything is written")
@click.option("--concurrency", "-c", default=2, show_default=True, help="final-lane slots")
def demo(out: str, concurrency: int) -> None:
    """Restore a bundled set of damaged real photos end to end."""
    settings = load_settings()
    root = Path(out).resolve()
    samples = make_sample_set(root / "samples")
    recipe = root / "restore.yaml"
    recipe.write_text(yaml.safe_dump(RESTORE_RECIPE, sort_keys=False))
    click.echo(f"1/4 wrote {len(samples)} damaged photos to {root / 'samples'}")

    server: EmbeddedRedis | None = None
    if settings.redis_url:
        url = settings.redis_url
    else:
        server = start_redis(settings.home / "demo-redis", persistent=False)
        url = server.url
    env = {**os.environ, "DARKROOM_REDIS_URL": url, "PYTHONUNBUFFERED": "1"}
    worker_log = root / "worker.log"
    worker = None
    try:
        click.echo(f"2/4 Redis at {url}; starting a CPU worker (log: {worker_log})")
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "darkroom",
                "worker",
                "--tier",
                "cpu",
                "--lane",
                "both",
                "--concurrency",
                str(concurrency),
                "--name",
                "demo",
            ],
            env=env,
            stdout=worker_log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until_beating(
                redis.Redis.from_url(url), Keys(), "demo-final", proc=worker, timeout_s=90
            )
        except (RuntimeError, TimeoutError) as exc:
            raise click.ClickException(f"{exc}; see {worker_log}") from None
        command = [
            sys.executable,
            "-m",
            "darkroom",
            "submit",
            str(root / "samples"),
            "--recipe",
            str(recipe),
            "--out",
            str(root / "restored"),
            "--batch",
            BATCH,
            "--wait",
            "--timeout",
            "600",
        ]
        click.echo("3/4 darkroom submit " + " ".join(command[4:]))
        code = subprocess.call(command, env=env)
    finally:
        if worker is not None:
            stop_process_group(worker, timeout_s=60)
        if server is not None:
            server.stop()
    click.echo("4/4 stopped the worker" + (" and Redis" if server else ""))
    click.echo(f"\nRestored photos:  {root / 'restored'}")
    click.echo(f"Contact sheet:    {root / 'restored' / (BATCH + '.contact.html')}")
    click.echo(f"Results manifest: {root / 'restored' / (BATCH + '.manifest.jsonl')}")
    sys.exit(code)
