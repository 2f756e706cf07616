"""Webhook attempts in flight, per receiver URL and per tenant, under their limits."""

from __future__ import annotations

import threading
from collections import Counter


class Senders:
    """Counts open attempts; `take` refuses one over `per_receiver` (for one receiver URL)
    or `per_tenant` (for one tenant's jobs). Thread-safe."""

    def __init__(self, per_receiver: int, per_tenant: int) -> None:
        self.per_receiver = per_receiver
        self.per_tenant = per_tenant
        self._lock = threading.Lock()
        self._receivers: Counter[str] = Counter()
        self._tenants: Counter[str] = Counter()

    def take(self, tenant: str, receiver: str) -> bool:
        with self._lock:
            if self._receivers[receiver] >= self.per_receiver:
                return False
            if self._tenants[tenant] >= self.per_tenant:
                return False
            self._receivers[receiver] += 1
            self._tenants[tenant] += 1
            return True

    def give(self, tenant: str, receiver: str) -> None:
        with self._lock:
            self._receivers[receiver] -= 1
            self._tenants[tenant] -= 1
            self._receivers += Counter()  # drops the zeros
            self._tenants += Counter()

    def total(self) -> int:
        with self._lock:
            return sum(self._tenants.values())

    def busy(self) -> bool:
        return self.total() > 0
