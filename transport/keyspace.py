"""Names of darkroom's own Redis keys (the queues' keys belong to kombu)."""

from dataclasses import dataclass

WEBHOOK_SECRET_FIELD = "webhook_secret"
"""Field of an API key's hash (`Keyspace.api_key`) holding its webhook signing secret:
`producer.api_keys` writes it, `workers.webhooks` reads it."""


@dataclass(frozen=True)
class Keyspace:
    prefix: str = "darkroom"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def running(self) -> str:
        """Set of the ids of jobs in state `running` (the registry the sweep reads)."""
        return f"{self.prefix}:running"

    def lease(self, job_id: str) -> str:
        """Id of the attempt running a job; expires unless that attempt renews it."""
        return f"{self.prefix}:lease:{job_id}"

    def dead_letter(self) -> str:
        """List of JSON entries for messages whose job could not run (its record gone)."""
        return f"{self.prefix}:dead-letter"

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

    def resident(self, hostname: str) -> str:
        """Hash pid -> JSON list of the model refs resident in that process of a worker."""
        return f"{self.prefix}:resident:{hostname}"

    def direct_queues(self) -> str:
        """Set of the direct queues jobs were forwarded to (`transport.direct`)."""
        return f"{self.prefix}:direct-queues"

    def schedule(self, name: str) -> str:
        """Prefix of a schedule's ledger keys (`:seen`, `:last`, `:lock`)."""
        return f"{self.prefix}:schedule:{name}"

    def idempotency(self, tenant: str, key: str) -> str:
        return f"{self.prefix}:idem:{tenant}:{key}"

    # -- the HTTP API and webhooks ---------------------------------------------------

    def api_key(self, key_id: str) -> str:
        """Hash of one API key: tenant, sha256 of the key, limits, webhook secret."""
        return f"{self.prefix}:apikey:{key_id}"

    def api_keys(self) -> str:
        """Set of every API key id, revoked ones included."""
        return f"{self.prefix}:apikeys"

    def rate(self, key_id: str) -> str:
        """GCRA state (the theoretical arrival time) of one API key's rate limit."""
        return f"{self.prefix}:rate:{key_id}"

    def tenant_active(self, tenant: str) -> str:
        """ZSET of a tenant's unfinished job ids (score: submit time), for its concurrency cap."""
        return f"{self.prefix}:tenant:{tenant}:active"

    def intake(self, tenant: str) -> str:
        """ZSET of a tenant's accepted jobs not yet on a queue (input to fetch, or waiting
        for a concurrency slot) -> when each is due (or its claimer's lease ends)."""
        return f"{self.prefix}:intake:{tenant}"

    def intake_tenants(self) -> str:
        """Set of tenants with jobs in intake."""
        return f"{self.prefix}:intake-tenants"

    def job_events(self) -> str:
        """Pub/sub channel: `<job id> <state>` each time a job reaches a terminal state."""
        return f"{self.prefix}:job-events"

    def webhook_due(self) -> str:
        """ZSET delivery id -> when it is due (or when its sender's lease runs out)."""
        return f"{self.prefix}:webhooks:due"

    def webhook_deliveries(self) -> str:
        """Hash delivery id -> the delivery as JSON (job id, event, attempt)."""
        return f"{self.prefix}:webhooks:deliveries"

    def webhook_wake(self) -> str:
        """List a deliverer blocks on; a new delivery pushes one item to wake it."""
        return f"{self.prefix}:webhooks:wake"

    # -- the hosted tier -------------------------------------------------------------

    def hosted_spend(self, day: str, tenant: str) -> str:
        """Micro-USD spent on the hosted provider on UTC `day` (YYYY-MM-DD) by `tenant`."""
        return f"{self.prefix}:hosted:spend:{day}:{tenant}"

    def hosted_spend_total(self, day: str) -> str:
        """Micro-USD spent on the hosted provider on UTC `day`, all tenants together."""
        return f"{self.prefix}:hosted:spend:{day}"

    def wait_estimates(self) -> str:
        """Hash queue -> JSON of the autoscaler's latest wait estimate and the queue's target."""
        return f"{self.prefix}:wait-estimates"
