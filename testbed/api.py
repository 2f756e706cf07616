"""A real `darkroom api` process (uvicorn) on a free loopback port, stopped by its PID.

`start_api(redis_url, tmp)` starts one and returns once `/healthz` answers; `stop()`
ends its process group. Tests (`tests/integration/test_api_*`) and benchmarks
(`bench.load`, `bench.preview`) both start the API through here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from transport.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ApiServer:
    """One API process in its own session, with the env it was started with."""

    proc: subprocess.Popen[bytes]
    port: int
    env: dict[str, str]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output_dir(self) -> Path:
        return Path(self.env["DARKROOM_OUTPUT"])

    def client(self, key: str | None = None, timeout: float = 30) -> httpx.Client:
        """An HTTP client for this server, sending `key` as a bearer token if given."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def wait_ready(self, timeout: float = 30) -> None:
        """Return once `/healthz` answers 200.

        Raises:
            RuntimeError: the process exited; the message ends with its log.
            TimeoutError: it did not answer within `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"api exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"api not ready in {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM the process group, SIGKILL it after `timeout` seconds."""
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def api_env(redis_url: str, tmp: Path, **extra: str) -> dict[str, str]:
    """The DARKROOM_* environment of an API under `tmp`, plus `extra`."""
    return {
        "DARKROOM_REDIS_URL": redis_url,
        "DARKROOM_OUTPUT": str(tmp / "out"),
        "DARKROOM_HOME": str(tmp / "home"),
        "DARKROOM_FETCH_ALLOW_PRIVATE": "true",  # loopback webhook receivers in tests
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def start_api(
    redis_url: str, tmp: Path, *args: str, ready_timeout: float = 30, **env: str
) -> ApiServer:
    """`python -m darkroom.api ARGS` on a free port; returns once /healthz answers.

    Raises:
        RuntimeError: the process exited before it was ready.
        TimeoutError: it was not ready within `ready_timeout` seconds.
    """
    port = free_port()
    full_env = api_env(redis_url, tmp, **env)
    log = tmp / f"api-{port}.log"
    argv = [sys.executable, "-m", "darkroom.api", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(
        [*argv, *args],
        cwd=ROOT,
        env={**os.environ, **full_env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = ApiServer(proc, port, full_env, log)
    try:
        server.wait_ready(ready_timeout)
    except BaseException:
        server.stop()
        raise
    return server
