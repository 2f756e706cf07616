"""`darkroom worker --probe` and `--drain`: what deploy/ (k8s probes, preStop) and
docker-compose.yml (healthcheck) call inside a worker's container.

Both find "this pod's workers" as the live heartbeats whose hostname ends in
`@<this host>` (a worker's name is `<name>@<host>`; a container's host name is its pod's),
narrowed to `--name` when given.

- probe: exit 0 while at least one of them beats and consumes (`ready`); 1 otherwise.
- drain: SIGTERM each (a Celery warm shutdown: it stops taking jobs and finishes the one
  in hand), then wait until they stop beating, up to `timeout_s`; exit 0 when all have.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from typing import TYPE_CHECKING, Any

import click

from jobs.settings import Settings
from transport.embedded import redis_url
from transport.keyspace import Keyspace
from workers.heartbeat import live_workers

if TYPE_CHECKING:
    from redis import Redis


def local_workers(redis: Redis, keys: Keyspace, name: str | None) -> dict[str, dict[str, Any]]:
    """hostname -> heartbeat of every live worker on this host (named `name*`, if given)."""
    host = socket.gethostname()
    return {
        hostname: beat
        for hostname, beat in live_workers(redis, keys).items()
        if hostname.endswith(f"@{host}") and (name is None or hostname.startswith(name))
    }


def probe(settings: Settings, name: str | None) -> int:
    """Exit status for a readiness/liveness probe: 0 ready, 1 not (reason on stderr)."""
    try:
        beats = local_workers(connect_quickly(settings), Keyspace(settings.key_prefix), name)
    except Exception as exc:  # the probe's answer is its exit status, never a traceback
        click.echo(f"not ready: cannot read heartbeats from Redis ({exc})", err=True)
        return 1
    ready = sorted(h for h, beat in beats.items() if beat.get("ready", True))
    if not ready:
        click.echo(f"not ready: no worker on {socket.gethostname()} is consuming", err=True)
        return 1
    click.echo(f"ready: {', '.join(ready)}")
    return 0


def drain(settings: Settings, name: str | None, timeout_s: float) -> int:
    """SIGTERM this host's workers and wait for them to finish their jobs and stop."""
    redis, keys = connect_quickly(settings), Keyspace(settings.key_prefix)
    try:
        beats = local_workers(redis, keys, name)
    except Exception as exc:  # a preStop hook answers with its status, not a traceback
        click.echo(f"cannot drain: cannot read heartbeats from Redis ({exc})", err=True)
        return 1
    for hostname, beat in beats.items():
        with contextlib.suppress(ProcessLookupError, PermissionError, TypeError):
            os.kill(int(beat["pid"]), signal.SIGTERM)
            click.echo(f"draining {hostname} (pid {beat['pid']})")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = set(beats) & set(local_workers(redis, keys, name))
        if not left:
            click.echo("drained")
            return 0
        time.sleep(0.5)
    click.echo(f"still running after {timeout_s:.0f} s: {', '.join(sorted(left))}", err=True)
    return 1


def connect_quickly(settings: Settings) -> Redis:
    """A client that gives up within seconds: a probe has a 5 s timeout."""
    import redis

    return redis.Redis.from_url(redis_url(settings), socket_timeout=2, socket_connect_timeout=2)
