"""The FastAPI app: routes, one error shape, body caps, and what lives for its lifetime.

`create_app(settings)` builds it; at start-up it connects to Redis (one sync client
for the routes' short calls, run in the thread pool; async clients for waits and event
streams), subscribes to job events, and starts the background `services` it was given
(the `darkroom api` command passes the webhook deliverer; the library never imports
`workers`), and the intake runner that fetches remote inputs before jobs are queued.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

from fastapi import FastAPI

from producer.api import errors
from producer.api.body import BodyLimit
from producer.api.context import ApiContext, ApiOptions
from producer.api.edit_models import EditModels
from producer.api.events import JobEvents, StreamSlots
from producer.api.intake_runner import start_runner
from producer.api.limits import Limits
from producer.api.models import MAX_EXTRA_UPLOADS
from producer.api.openapi import document
from producer.api.outputs import Outputs
from producer.api_keys import KeyRing
from storage.formats import apply_limits
from transport.embedded import connect, redis_url
from transport.intake import Intake
from transport.keyspace import Keyspace
from transport.redis_config import check_redis
from transport.store import JobStore

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

    from jobs.settings import Settings

# A background service: started with the app's settings, Redis and keys; returns its stop.
Service = Callable[["Settings", "Redis", Keyspace], Callable[[], None]]

DESCRIPTION = """\
Submit image edits, wait for previews, stream progress, get webhooks.

Authenticate with `Authorization: Bearer <API key>` (`darkroom keys create`).
Errors are `{"error": {"code", "message", "details"}}`.
"""


def _version() -> str:
    try:
        return importlib.metadata.version("darkroom")
    except importlib.metadata.PackageNotFoundError:
        return "0"


REQUEST_CONNECTIONS = 64
WATCH_CONNECTIONS = 32


def _client(url: str, connections: int) -> AsyncRedis:
    """An asyncio client whose pool waits (up to 10 s) for a free connection when all
    `connections` are busy, instead of failing the request at once."""
    import redis.asyncio

    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url, max_connections=connections, timeout=10, socket_timeout=30, socket_connect_timeout=5
    )
    return redis.asyncio.Redis(connection_pool=pool)


def build_context(settings: Settings, options: ApiOptions) -> ApiContext:
    import redis.asyncio

    keys = Keyspace(settings.key_prefix)
    apply_limits(settings)  # Pillow's bomb limit = max_input_pixels for every upload read
    sync = connect(settings)
    url = redis_url(settings)
    # Two pools: the request path's, and the one waits and event streams read through
    # (bounded; a burst of streams queues for it instead of taking the request path's).
    requests = _client(url, REQUEST_CONNECTIONS)
    watchers = _client(url, WATCH_CONNECTIONS)
    # The subscription blocks on its socket for as long as no job finishes: no timeout.
    listener = redis.asyncio.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
    return ApiContext(
        settings=settings,
        options=options,
        redis=sync,
        aredis=requests,
        keys=keys,
        store=JobStore(sync, keys, ttl_s=settings.job_ttl_s),
        ring=KeyRing(sync, keys),
        limits=Limits(sync, keys, settings.job_ttl_s),
        events=JobEvents(listener, keys, watchers),
        outputs=Outputs(settings),
        edit_models=EditModels(settings),
        intake=Intake(sync, keys, settings.job_ttl_s),
    )


def background_context(ctx: ApiContext) -> ApiContext:
    """`ctx` over a sync Redis client of its own, for the background threads (intake,
    webhooks), so their calls never take the request path's connections."""
    own = connect(ctx.settings)
    ttl = ctx.settings.job_ttl_s
    return replace(
        ctx,
        redis=own,
        store=JobStore(own, ctx.keys, ttl_s=ttl),
        ring=KeyRing(own, ctx.keys),
        limits=Limits(own, ctx.keys, ttl),
        intake=Intake(own, ctx.keys, ttl),
    )


def create_app(
    settings: Settings, options: ApiOptions | None = None, *, services: Sequence[Service] = ()
) -> FastAPI:
    """The API over `settings`' Redis and storage."""
    options = options or ApiOptions()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = build_context(settings, options)
        check_redis(ctx.redis, "darkroom api")  # refuses a Redis that may evict jobs
        app.state.api = ctx
        app.state.streams = StreamSlots(options.streams_per_key)
        await ctx.events.start()
        background = background_context(ctx)
        stops = [start(settings, background.redis, ctx.keys) for start in services]
        if options.fetch_inputs:
            runner, halt = start_runner(background, background.intake)
            ctx.intake.on_stage = runner.wake.set  # a job staged here wakes the runner
            stops.append(halt)
        try:
            yield
        finally:
            for stop in stops:
                stop()
            await ctx.events.stop()
            await ctx.events.redis.aclose()
            await ctx.events.reader.aclose()
            background.redis.close()
            await ctx.aredis.aclose()
            ctx.redis.close()

    app = FastAPI(title="darkroom", version=_version(), description=DESCRIPTION, lifespan=lifespan)
    errors.install(app)
    app.add_middleware(BodyLimit, limit_for=_body_limits(settings, options))
    from producer.api import routes_batches, routes_edit, routes_jobs, routes_outputs

    for module in (routes_jobs, routes_batches, routes_edit, routes_outputs):
        app.include_router(module.router)
    app.openapi = lambda: document(app)  # type: ignore[method-assign]
    return app


def _body_limits(settings: Settings, options: ApiOptions) -> Callable[[str], int]:
    images = 1 + MAX_EXTRA_UPLOADS  # the image and its `extra_image` parts, each under the cap
    upload = images * settings.max_input_bytes + options.multipart_overhead_bytes

    def limit_for(content_type: str) -> int:
        return upload if content_type.lower().startswith("multipart/") else options.max_json_bytes

    return limit_for
