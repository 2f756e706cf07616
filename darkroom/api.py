"""`darkroom api`: serve the HTTP API with uvicorn, and deliver webhooks beside it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from transport.keyspace import Keyspace

if TYPE_CHECKING:
    from collections.abc import Callable

    from redis import Redis

    from jobs.settings import Settings


def webhook_deliverer(settings: Settings, redis: Redis, keys: Keyspace) -> Callable[[], None]:
    """Start `workers.webhooks`' deliverer as a thread; returns its stop.

    Wired here, in the composition root: the API library (`producer.api`) never imports
    `workers`; it runs the services it is handed.
    """
    from workers import webhooks

    thread, stop = webhooks.start_thread(settings, redis, keys)

    def halt() -> None:
        stop.set()
        thread.join(timeout=5)

    return halt


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--public-url", default=None, help="base URL of /v1/outputs links [default: request's]"
)
@click.option("--preview-wait", type=click.FloatRange(0, 600), default=10.0, show_default=True)
@click.option(
    "--stream-max",
    type=click.FloatRange(0.1),
    default=3600.0,
    show_default=True,
    help="seconds an event stream stays open",
)
@click.option(
    "--streams-per-key",
    type=click.IntRange(1),
    default=20,
    show_default=True,
    help="event streams one API key may hold open (429 beyond)",
)
@click.option("--webhooks/--no-webhooks", default=True, show_default=True, help="deliver webhooks")
@click.option("--log-level", default="info", show_default=True)
def api(
    host: str,
    port: int,
    public_url: str | None,
    preview_wait: float,
    stream_max: float,
    streams_per_key: int,
    webhooks: bool,
    log_level: str,
) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json)."""
    import uvicorn

    from jobs.errors import DarkroomError
    from jobs.settings import load_settings
    from producer.api import ApiOptions, create_app

    try:
        settings = load_settings()
    except DarkroomError as exc:
        raise click.ClickException(str(exc)) from None
    options = ApiOptions(
        public_url=public_url,
        preview_wait_s=preview_wait,
        stream_max_s=stream_max,
        streams_per_key=streams_per_key,
    )
    services = [webhook_deliverer] if webhooks else []
    app = create_app(settings, options, services=services)
    click.echo(f"darkroom api on http://{host}:{port} (OpenAPI: /openapi.json)", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


if __name__ == "__main__":
    api()
