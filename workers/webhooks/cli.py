"""`darkroom webhooks serve | pending`."""

from __future__ import annotations

import signal
import threading
import time

import click

from transport.keyspace import Keyspace
from workers.webhooks.deliverer import Deliverer


@click.group()
def webhooks() -> None:
    """Deliver job webhooks."""


@webhooks.command()
@click.option("--max-seconds", type=click.FloatRange(min=0), help="stop after S seconds")
@click.option("--drain", is_flag=True, help="stop once no delivery is queued")
def serve(max_seconds: float | None, drain: bool) -> None:
    """Send due webhook deliveries until stopped (SIGTERM / Ctrl-C)."""
    from jobs.settings import load_settings
    from transport.embedded import connect

    settings = load_settings()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    deliverer = Deliverer(settings, connect(settings), Keyspace(settings.key_prefix))
    click.echo("darkroom webhooks: delivering", err=True)
    attempts = deliverer.run(stop, max_s=max_seconds, drain=drain)
    click.echo(f"darkroom webhooks: stopped after {attempts} attempts", err=True)


@webhooks.command()
def pending() -> None:
    """How many deliveries are queued, and when the next is due."""
    from jobs.settings import load_settings
    from transport.embedded import connect

    settings = load_settings()
    redis, keys = connect(settings), Keyspace(settings.key_prefix)
    count = redis.zcard(keys.webhook_due())
    first = redis.zrange(keys.webhook_due(), 0, 0, withscores=True)
    when = f", next due in {max(0.0, float(first[0][1]) - time.time()):.1f} s" if first else ""
    click.echo(f"{count} deliveries pending{when}")
