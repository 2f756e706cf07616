"""Hosts for partition tests: Linux network namespaces made (and removed) by the test.

`Hosts` makes one namespace for Redis and one per worker, each worker joined to the Redis
namespace by its own veth pair on a private /24 that exists only inside these
namespaces; the root namespace gets no address and no route. `cut(host)` takes that
host's link down (a partition: the worker lives, its TCP connections hang or fail) and
`heal(host)` brings it back. The test process reaches Redis through its unix socket,
which network namespaces do not separate. Needs root (CAP_NET_ADMIN).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass, field


class NamespacesUnavailable(RuntimeError):
    """`ip netns` is missing or not permitted here."""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass
class Hosts:
    """A Redis namespace and `workers` worker namespaces, linked by veth pairs."""

    workers: int = 2
    tag: str = field(default_factory=lambda: f"dr{os.getpid() % 100000}")
    made: list[str] = field(default_factory=list)

    @property
    def redis_ns(self) -> str:
        return f"{self.tag}-redis"

    def worker_ns(self, index: int) -> str:
        return f"{self.tag}-w{index}"

    def redis_address(self, index: int) -> str:
        """Redis's address as worker `index` sees it."""
        return f"10.213.{index + 1}.1"

    def _worker_link(self, index: int) -> str:
        return f"{self.tag}w{index}"[-15:]

    def create(self) -> Hosts:
        """Make the namespaces and links. Raises `NamespacesUnavailable`."""
        try:
            self._add(self.redis_ns)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise NamespacesUnavailable(f"ip netns add is not permitted here: {exc}") from None
        _ip("-n", self.redis_ns, "link", "set", "lo", "up")
        for index in range(self.workers):
            ns, here, there = (
                self.worker_ns(index),
                f"{self.tag}r{index}"[-15:],
                self._worker_link(index),
            )
            self._add(ns)
            _ip("link", "add", here, "netns", self.redis_ns, "type", "veth", "peer", "name",
                there, "netns", ns)  # fmt: skip
            _ip("-n", self.redis_ns, "addr", "add", f"{self.redis_address(index)}/24", "dev", here)
            _ip("-n", ns, "addr", "add", f"10.213.{index + 1}.2/24", "dev", there)
            _ip("-n", self.redis_ns, "link", "set", here, "up")
            _ip("-n", ns, "link", "set", there, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        return self

    def _add(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self.made.append(ns)

    def exec_prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def cut(self, index: int) -> None:
        """Partition worker `index` from Redis: its link goes down, its process lives on."""
        _ip("-n", self.worker_ns(index), "link", "set", self._worker_link(index), "down")

    def heal(self, index: int) -> None:
        _ip("-n", self.worker_ns(index), "link", "set", self._worker_link(index), "up")

    def remove(self) -> None:
        """Delete every namespace this made (their veths go with them)."""
        for ns in reversed(self.made):
            with contextlib.suppress(subprocess.CalledProcessError, OSError):
                _ip("netns", "del", ns)
        self.made.clear()
