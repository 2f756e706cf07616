"""Names of darkroom's own Redis keys (the queues' keys belong to kombu)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "darkroom"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def batch(self, name: str) -> str:
        """Hash of counters per state, plus `total`."""
        return f"{self.prefix}:batch:{name}"

    def batch_jobs(self, name: str) -> str:
        """Hash job id -> source, the batch's membership."""
        return f"{self.prefix}:batch:{name}:jobs"

    def batches(self) -> str:
        return f"{self.prefix}:batches"

    def worker(self, hostname: str) -> str:
        """Heartbeat of a live worker; expires when it stops beating."""
        return f"{self.prefix}:worker:{hostname}"

    def workers(self) -> str:
        return f"{self.prefix}:workers"

    def schedule(self, name: str) -> str:
        """Prefix of a schedule's ledger keys (`:seen`, `:last`, `:lock`)."""
        return f"{self.prefix}:schedule:{name}"

    def idempotency(self, tenant: str, key: str) -> str:
        return f"{self.prefix}:idem:{tenant}:{key}"
