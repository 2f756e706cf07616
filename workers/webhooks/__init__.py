"""Job webhooks: queued durably in Redis, signed, retried with backoff, never redirected.

When a job reaches a terminal state the worker calls `job_finished`: it publishes
`<job id> <state>` on `Keyspace.job_events()` (what the API's waiters and event streams
wake on) and, if the job names a webhook, queues a delivery:

- `Keyspace.webhook_deliveries()` hash: delivery id -> `{"id", "job", "event", "attempt"}`;
- `Keyspace.webhook_due()` ZSET: delivery id -> when it is due. A deliverer claims a due
  delivery by pushing its score to a lease deadline, so one that dies mid-send leaves
  it to come due again (at-least-once: receivers dedupe on `Darkroom-Delivery`);
- `Keyspace.webhook_wake()` list: one item wakes an idle deliverer at once.

A `Deliverer` (`darkroom webhooks serve`, or a thread in the API process) POSTs the
payload as JSON with `Darkroom-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>" under the API key's webhook secret>`. 2xx is delivered; 408, 429, 5xx,
timeouts and connection errors are retried with exponential backoff; anything else
(a redirect included: they are never followed) fails the delivery. Addresses are vetted
as `storage.fetch` vets inputs: only public ones, unless `settings.fetch_allow_private`
(tests), which also allows plain http. Each attempt is recorded on the job's hash as
the `webhook` JSON field.
"""

from transport.notices import queue_webhook as enqueue
from workers.webhooks.cli import webhooks
from workers.webhooks.deliverer import Attempt, Deliverer, WebhookPolicy, start_thread
from workers.webhooks.queue import job_finished
from workers.webhooks.sending import post, webhook_target
from workers.webhooks.signing import SIGNATURE_HEADER, sign, verify

__all__ = [
    "SIGNATURE_HEADER",
    "Attempt",
    "Deliverer",
    "WebhookPolicy",
    "enqueue",
    "job_finished",
    "post",
    "sign",
    "start_thread",
    "verify",
    "webhook_target",
    "webhooks",
]
