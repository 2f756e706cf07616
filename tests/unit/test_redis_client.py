"""How long darkroom's Redis client rides out an outage: ~33 s by default (what the
outage tests' shortened windows stand for), shorter when `DARKROOM_REDIS_RETRY_S` says so."""

from __future__ import annotations

import pytest
from redis.backoff import ExponentialBackoff

from jobs.settings import Settings
from transport.embedded import BACKOFF_BASE_S, BACKOFF_CAP_S, connect, retries_within

URL = "redis://127.0.0.1:1/0"  # never reached: building a client connects to nothing


def waited(retries: int) -> float:
    backoff = ExponentialBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S)
    return sum(backoff.compute(failures) for failures in range(1, retries + 1))


@pytest.mark.parametrize("seconds", [0, 0.5, 3, 5, 33, 120])
def test_the_retries_wait_at_least_the_window_and_one_backoff_at_most_more(
    seconds: float,
) -> None:
    retries = retries_within(seconds)
    assert waited(retries) >= seconds
    assert retries == 0 or waited(retries - 1) < seconds


def test_the_default_client_retries_as_it_always_did() -> None:
    client = connect(Settings(redis_url=URL))
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["retry"].get_retries() == 20  # ~33 s of backoff
    assert kwargs["socket_timeout"] == 30


def test_the_settings_shorten_the_client_s_patience() -> None:
    client = connect(Settings(redis_url=URL, redis_retry_s=3, redis_socket_timeout_s=3))
    kwargs = client.connection_pool.connection_kwargs
    assert waited(kwargs["retry"].get_retries()) == pytest.approx(3.1)
    assert kwargs["socket_timeout"] == 3
