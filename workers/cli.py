"""`darkroom worker`: run Celery workers for one tier and its lanes.

`--lane both` runs one model-owning Celery worker (a supervised child process): one
resident copy of each model, a final consumer (`--concurrency` slots) and a preview
consumer (`DARKROOM_PREVIEW_SLOTS`) on a threads pool, and a step scheduler that runs a
waiting preview between two steps of a final (`workers.steps`). `--split-lanes` runs
the lanes as two workers instead (a solo preview consumer and a prefork final one): two
copies of each model, each lane its own blast radius; for a host with a preview card
of its own, or CPU workers with several final slots.
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
    help="final-lane slots (previews have their own: DARKROOM_PREVIEW_SLOTS with --lane both)",
)
@click.option("--gpu", type=int, default=None, help="pin to this GPU index (CUDA_VISIBLE_DEVICES)")
@click.option(
    "--pool",
    type=click.Choice(["prefork", "threads", "solo"]),
    default=None,
    help="Celery pool; default: solo for preview, prefork for final, threads for both",
)
@click.option(
    "--split-lanes",
    is_flag=True,
    help="with --lane both: one process per lane (two copies of each model) instead of one",
)
@click.option("--serve-both", is_flag=True, hidden=True, help="the model-owning child")
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
    split_lanes: bool,
    serve_both: bool,
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
    # torch's OpenMP threads spin while they wait for work (OMP_WAIT_POLICY=ACTIVE): two
    # worker processes on one host (lanes, prefork children, tiers) then burn each
    # other's cores. Measured with bench.affinity (2 workers on 2 cores, 80 tiny jobs):
    # 303 s spinning, 4.8 s passive. A value the operator set wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
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
    if settings.preview_batch_ms is None:
        # bench.preview_batch on this 2-core CPU: batching previews gained nothing
        # (bursts of 2: 23 -> 17 previews/s); on a card one call of N beats N calls.
        settings = settings.model_copy(update={"preview_batch_ms": 5.0 if card else 0.0})
    if lane == "both" and not split_lanes and pool not in (None, "threads"):
        raise click.ClickException(
            f"--lane both runs one model-owning process on a threads pool (its jobs share "
            f"the models between steps); --pool {pool} needs --split-lanes"
        )
    if lane == "both" and not serve_both:
        from workers.supervise import supervise

        if split_lanes:
            lanes = [
                worker_argv(chosen.name, lane, slots, name=f"{name}-{lane}" if name else None,
                            loglevel=loglevel, gpu=gpu)
                for lane, slots in (("preview", 1), ("final", concurrency))
            ]  # fmt: skip
        else:
            child = f"{name}-both" if name else None
            lanes = [
                worker_argv(chosen.name, "both", concurrency, name=child, loglevel=loglevel,
                            gpu=gpu, serve_both=True)
            ]  # fmt: skip
        sys.exit(supervise(lanes, settings.shutdown_grace()))
    where = f"GPU {card.index} ({card.name}, {card.memory_gb:.0f} GB)" if card else "CPU"
    click.echo(f"darkroom worker: tier {chosen.name}, lane {lane}, on {where}", err=True)
    run_celery_worker(
        settings, chosen.name, None if lane == "both" else Lane(lane), concurrency, pool, name,
        loglevel,
    )  # fmt: skip


def run_celery_worker(
    settings: object,
    tier_name: str,
    lane: Lane | None,
    concurrency: int,
    pool: str | None,
    name: str | None,
    loglevel: str,
) -> None:
    from jobs.settings import Settings
    from jobs.tiers import tier_named
    from transport.direct import direct_queue
    from workers.app import create_app, install_worker_hooks, serve_both_lanes

    assert isinstance(settings, Settings)
    tier = tier_named(tier_name, settings.tiers())
    queue = queue_name(tier, lane or Lane.FINAL)
    app = create_app(settings)
    app.conf.darkroom_tier = tier
    app.conf.darkroom_queues = [queue]
    app.conf.darkroom_slots = concurrency
    lane_name = lane.value if lane else "both"
    hostname = f"{name or f'{tier.name}-{lane_name}-{os.getpid()}'}@{socket.gethostname()}"
    if lane is None:
        # one process, one copy of each model: the final queue on Celery's consumer,
        # the preview queue on a second one, all on threads sharing the step scheduler
        preview_queue = queue_name(tier, Lane.PREVIEW)
        app.conf.darkroom_queues = [preview_queue, queue]
        previews = [direct_queue(preview_queue, hostname), preview_queue]
        serve_both_lanes(app, previews, settings.preview_slots, concurrency)
        # Celery's banner lists its own consumer's queues only
        click.echo(
            f"darkroom worker {hostname}: previews from {', '.join(previews)} "
            f"({settings.preview_slots} slots), finals from the queues below "
            f"({concurrency} slots), one step scheduler",
            err=True,
        )
        pool, concurrency = "threads", concurrency + settings.preview_slots
    elif lane is Lane.PREVIEW:
        # solo runs the task in the consumer itself: measured 30 % lower submit-to-start
        # than threads (p50 1.6 vs 2.6 ms); previews are short, so it still answers
        # control commands (drain) between jobs.
        pool, concurrency = pool or "solo", 1
        app.conf.darkroom_slots = 1
    if tier.hosted:
        import workers.hosted  # noqa: F401  (the provider client, imported once before the fork)
    # This start of the worker: a restart under the same name is told apart by it.
    app.conf.darkroom_incarnation = uuid.uuid4().hex[:12]
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
    split_lanes: bool = False,
    serve_both: bool = False,
) -> list[str]:
    """The command line that starts `darkroom worker` with this Python (`serve_both`:
    the model-owning process of `--lane both` itself, not its supervisor)."""
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
    if split_lanes:
        argv.append("--split-lanes")
    if serve_both:
        argv.append("--serve-both")
    return argv
