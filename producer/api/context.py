"""What every route shares: settings, options, Redis clients, the stores and limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from transport.keyspace import Keyspace
from transport.store import JobStore

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

    from jobs.settings import Settings
    from producer.api.edit_models import EditModels
    from producer.api.events import JobEvents
    from producer.api.limits import Limits
    from producer.api.outputs import Outputs
    from producer.api_keys import KeyRing
    from transport.intake import Intake


@dataclass(frozen=True)
class ApiOptions:
    """The API's own knobs (`darkroom api` flags); everything else is `Settings`."""

    max_json_bytes: int = 1 * 2**20
    multipart_overhead_bytes: int = 64 * 2**10  # form fields and part headers
    preview_wait_s: float = 10.0  # how long `?wait=preview` holds a request
    max_wait_s: float = 60.0  # the most `Prefer: wait=N` is granted
    inline_max_bytes: int = 2 * 2**20  # larger results are linked, not inlined
    progress_poll_s: float = 0.25  # event streams read progress this often
    stream_max_s: float = 3600.0  # an event stream ends after this, finished or not
    idempotency_ttl_s: int = 24 * 3600
    public_url: str | None = None  # base of /v1/outputs links; None: the request's
    fetch_inputs: bool = True  # run the intake runner (tests without a network turn it off)
    streams_per_key: int = 20  # open event streams one key may hold, per API process


@dataclass
class ApiContext:
    settings: Settings
    options: ApiOptions
    redis: Redis
    aredis: AsyncRedis
    keys: Keyspace
    store: JobStore
    ring: KeyRing
    limits: Limits
    events: JobEvents
    outputs: Outputs
    edit_models: EditModels
    intake: Intake

    def base_url(self, request: Request) -> str:
        return self.options.public_url or str(request.base_url)


def api_context(request: Request) -> ApiContext:
    """The context `create_app` put on the app (a FastAPI dependency)."""
    ctx: ApiContext = request.app.state.api
    return ctx
