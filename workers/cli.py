"""`darkroom worker`: run Celery workers for one tier and its lanes.

`--lane both` runs two Celery workers as child processes: a dedicated preview consumer
(one slot, solo pool) and the final consumer (`--concurrency` slots, prefork), so a
preview never waits behind a final render.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid

import click

from jobs.errors import ConfigError, DarkroomError
from jobs.schema import Lane
from jobs.settings import load_settings
from jobs.tiers import DEFAULT_TIERS, queue_name

TIER_CHOICES = ["auto", *(t.name for t in DEFAULT_TIERS)]


@click.command()
@click.option(
    "--tier",
    default="auto",
    show_default=True,
    help="tier to serve: auto (from the visible GPU) or a configured tier name",
)
@click.option(
    "--lane", type=click.Choice(["preview", "final", "both"]), default="both", show_default=True
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="final-lane slots (the preview lane always has its own one)",
)
@click.option("--gpu", type=int, default=None, help="pin to this GPU index (CUDA_VISIBLE_DEVICES)")
@click.option(
    "--pool",
    type=click.Choice(["prefork", "threads", "solo"]),
    default=None,
    help="Celery pool; default: solo for preview, prefork for final",
)
@click.option("--name", default=None, help="worker name (default: <tier>-<lane>-<pid>)")
@click.option("--loglevel", default="info", show_default=True)
@click.option(
    "--probe", is_flag=True, help="exit 0 if a worker on this host beats and consumes, else 1"
)
@click.option(
    "--drain",
    is_flag=True,
    help="warm-stop this host's workers (they finish their jobs) and wait for them",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="with --drain: seconds to wait (default: the shutdown grace)",
)
def worker(
    tier: str,
    lane: str,
    concurrency: int,
    gpu: int | None,
    pool: str | None,
    name: str | None,
    loglevel: str,
    probe: bool,
    drain: bool,
    drain_timeout: float | None,
) -> None:
    """Run a worker for a tier and lane (or, with --probe / --drain, check or stop the
    workers of this host: what deploy/'s probes and preStop hook call)."""
    if probe or drain:
        from workers import probe as probes

        settings = load_settings()
        if probe:
            sys.exit(probes.probe(settings, name))
        sys.exit(probes.drain(settings, name, drain_timeout or settings.shutdown_grace()))
    try:
        settings = load_settings()
        from workers.gpu import choose_tier

        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        chosen, card = choose_tier(tier, gpu, settings.tiers(), visible)
        if chosen.hosted and not settings.hosted_enabled:
            raise ConfigError(
                f"tier {chosen.name} sends edits to a hosted provider: set "
                "DARKROOM_HOSTED_API_KEY to enable it on this deployment"
            )
    except DarkroomError as exc:
        raise click.ClickException(str(exc)) from None
    if card is not None:
        # One worker, one card: torch in this process (and its children) sees only it.
        os.environ["CUDA_VISIBLE_DEVICES"] = str(card.index)
    if lane == "both":
        from workers.supervise import supervise

        lanes = [
            worker_argv(chosen.name, lane, slots, name=f"{name}-{lane}" if name else None,
                        loglevel=loglevel, gpu=gpu)
            for lane, slots in (("preview", 1), ("final", concurrency))
        ]  # fmt: skip
        sys.exit(supervise(lanes, settings.shutdown_grace()))
    where = f"GPU {card.index} ({card.name}, {card.memory_gb:.0f} GB)" if card else "CPU"
    click.echo(f"darkroom worker: tier {chosen.name}, lane {lane}, on {where}", err=True)
    run_celery_worker(settings, chosen.name, Lane(lane), concurrency, pool, name, loglevel)


def run_celery_worker(
    settings: object,
    tier_name: str,
    lane: Lane,
    concurrency: int,
    pool: str | None,
    name: str | None,
    loglevel: str,
) -> None:
    from jobs.settings import Settings
    from jobs.tiers import tier_named
    from transport.direct import direct_queue
    from workers.app import create_app, install_worker_hooks

    assert isinstance(settings, Settings)
    tier = tier_named(tier_name, settings.tiers())
    queue = queue_name(tier, lane)
    app = create_app(settings)
    app.conf.darkroom_tier = tier
    app.conf.darkroom_queues = [queue]
    if lane is Lane.PREVIEW:
        # solo runs the task in the consumer itself: measured 30 % lower submit-to-start
        # than threads (p50 1.6 vs 2.6 ms); previews are short, so it still answers
        # control commands (drain) between jobs.
        pool, concurrency = pool or "solo", 1
    app.conf.darkroom_slots = concurrency
    if tier.hosted:
        import workers.hosted  # noqa: F401  (the provider client, imported once before the fork)
    # This start of the worker: a restart under the same name is told apart by it.
    app.conf.darkroom_incarnation = uuid.uuid4().hex[:12]
    hostname = f"{name or f'{tier.name}-{lane.value}-{os.getpid()}'}@{socket.gethostname()}"
    try:
        install_worker_hooks(app, settings, hostname)
    except DarkroomError as exc:
        raise click.ClickException(str(exc)) from None
    app.worker_main(
        [
            "worker",
            "-Q",
            f"{direct_queue(queue, hostname)},{queue}",  # forwarded jobs first: workers.affinity
            "-c",
            str(concurrency),
            "-P",
            pool or "prefork",
            "-n",
            hostname,
            "--loglevel",
            loglevel,
            "--without-gossip",
            "--without-mingle",
        ]
    )


def worker_argv(
    tier: str,
    lane: str,
    concurrency: int = 1,
    *,
    name: str | None = None,
    loglevel: str = "info",
    gpu: int | None = None,
) -> list[str]:
    """The command line that starts `darkroom worker` with this Python."""
    argv = [
        sys.executable,
        "-m",
        "darkroom",
        "worker",
        "--tier",
        tier,
        "--lane",
        lane,
        "--concurrency",
        str(concurrency),
        "--loglevel",
        loglevel,
    ]
    if name:
        argv += ["--name", name]
    if gpu is not None:
        argv += ["--gpu", str(gpu)]
    return argv
