"""Request parsing that needs no server: waits, key shapes, fingerprints, limits."""

from __future__ import annotations

import pytest

from jobs.errors import SchemaError
from producer.api.context import ApiOptions
from producer.api.errors import ApiError
from producer.api.limits import RateDecision
from producer.api.requests import loads, wait_of
from producer.api.submit import fingerprint
from producer.api_keys import KeyLimits, split_key

OPTIONS = ApiOptions(preview_wait_s=10, max_wait_s=60)


def test_wait_preview_holds_for_the_preview_budget_and_defaults_the_mode() -> None:
    wait = wait_of("preview", None, OPTIONS)
    assert wait.seconds == 10 and wait.preview and not wait.prefer


def test_prefer_wait_is_honoured_up_to_the_cap() -> None:
    assert wait_of(None, "wait=5", OPTIONS).seconds == 5
    assert wait_of(None, "respond-async, wait=600", OPTIONS).seconds == 60
    assert wait_of(None, "wait=5", OPTIONS).prefer
    assert wait_of(None, None, OPTIONS).seconds == 0
    assert wait_of(None, "handling=lenient", OPTIONS).seconds == 0


@pytest.mark.parametrize("bad", ["soon", "-1", "61", "nan"])
def test_a_bad_wait_is_a_422(bad: str) -> None:
    with pytest.raises(ApiError) as caught:
        wait_of(bad, None, OPTIONS)
    assert caught.value.status == 422


def test_json_with_nan_or_infinity_is_refused() -> None:
    assert loads(b'{"a": 1}', "body") == {"a": 1}
    for text in (b'{"a": NaN}', b'{"a": Infinity}', b"{", b"[" * 50_000):
        with pytest.raises(ApiError):
            loads(text, "body")


def test_fingerprints_tell_bodies_kinds_and_uploads_apart() -> None:
    body = {"input": "https://x/a.jpg", "ops": [{"op": "sharpen"}]}
    same = fingerprint("job", dict(reversed(list(body.items()))))
    assert fingerprint("job", body) == same
    assert fingerprint("batch", body) != same
    assert fingerprint("job", body, b"image-1") != fingerprint("job", body, b"image-2")


def test_only_well_formed_keys_are_looked_up() -> None:
    assert split_key("drk_0123456789ab_" + "s" * 43) == "0123456789ab"
    for bad in (
        "",
        "drk_",
        "sk_0123456789ab_" + "s" * 43,
        "drk_XYZ_" + "s" * 43,
        "drk_0123456789ab_x",
    ):
        assert split_key(bad) is None


def test_key_limits_are_checked_when_issued() -> None:
    with pytest.raises(SchemaError):
        KeyLimits(ops=frozenset({"teleport"})).check()
    with pytest.raises(SchemaError):
        KeyLimits(rate_per_min=0).check()
    assert KeyLimits(ops=frozenset({"sharpen"})).check().ops == {"sharpen"}


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    assert RateDecision(False, 0.2).retry_after_header == "1"
    assert RateDecision(False, 11.5).retry_after_header == "12"
