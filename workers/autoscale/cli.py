"""`darkroom autoscale`: size worker pools from queue depth, once or in a loop."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from jobs.errors import DarkroomError
from workers.autoscale.controller import Decision
from workers.autoscale.drivers import ComposeDriver, Driver, DryRunDriver, KubernetesDriver

DEFAULT_POOLS = Path("deploy/autoscale/pools.yaml")


def make_driver(name: str, compose_file: Path | None, project: str | None) -> Driver:
    if name == "k8s":
        return KubernetesDriver()
    if name == "compose":
        return ComposeDriver(compose_file, project)
    return DryRunDriver()


def format_decisions(decisions: list[Decision]) -> str:
    """A table a person reads: queue, current, desired, and why."""
    lines = [f"{'queue':<16} {'now':>4} {'want':>5}  reason"]
    for d in decisions:
        arrow = f"{d.desired:>5}" if d.changes else f"{'=':>5}"
        lines.append(f"{d.queue:<16} {d.current:>4} {arrow}  {d.reason}")
    return "\n".join(lines)


@click.command()
@click.option(
    "--pools",
    "pools_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_POOLS,
    show_default=True,
    help="pool configuration (YAML)",
)
@click.option(
    "--driver",
    type=click.Choice(["k8s", "compose", "dry-run"]),
    default="dry-run",
    show_default=True,
    help="how replicas are changed",
)
@click.option("--once/--loop", default=True, show_default=True)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.01),
    default=None,
    help="seconds between ticks (default: the pool file's interval_s)",
)
@click.option(
    "--iterations",
    type=click.IntRange(min=1),
    default=None,
    help="stop the loop after this many ticks",
)
@click.option("--compose-file", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--project", "-p", default=None, help="docker compose project name")
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="serve desired/current replica gauges on this port",
)
@click.option(
    "--metrics-addr",
    default="127.0.0.1",
    show_default=True,
    help="address the gauges bind (0.0.0.0 in a container)",
)
def autoscale(
    pools_file: Path,
    driver: str,
    once: bool,
    interval: float | None,
    iterations: int | None,
    compose_file: Path | None,
    project: str | None,
    metrics_port: int | None,
    metrics_addr: str,
) -> None:
    """Size worker pools from queue depth, in-flight jobs and measured service time."""
    from jobs.settings import load_settings
    from transport.embedded import connect
    from transport.keyspace import Keyspace
    from workers.autoscale.gauges import ReplicaGauges
    from workers.autoscale.loop import Autoscaler
    from workers.autoscale.observer import Observer
    from workers.autoscale.pools import load_pools
    from workers.autoscale.waits import WaitBoard

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = load_settings()
        config = load_pools(pools_file)
        redis, keys = connect(settings), Keyspace(settings.key_prefix)
        observer = Observer(redis, keys)
        gauges = ReplicaGauges()
        scaler = Autoscaler(
            config,
            observer.sample,
            make_driver(driver, compose_file, project),
            gauges=gauges,
            poller=observer.poll,
            publish_waits=WaitBoard(redis, keys),
        )
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, addr=metrics_addr, registry=gauges.registry)
        if once:
            click.echo(format_decisions(scaler.step()))
            return
        scaler.run(interval, iterations, on_step=lambda d: click.echo(format_decisions(d)))
    except DarkroomError as exc:
        raise click.ClickException(str(exc)) from None
