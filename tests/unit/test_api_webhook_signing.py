"""Webhook signatures: HMAC-SHA256 over `timestamp.body`, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac

from workers.webhooks import WebhookPolicy, sign, verify

SECRET = "whsec_test"
BODY = b'{"id":"d1","type":"job.succeeded"}'


def test_a_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    header = sign(SECRET, 1_700_000_000, BODY)
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_verify_accepts_the_signature_and_refuses_any_change() -> None:
    header = sign(SECRET, 1_700_000_000, BODY)
    assert verify(SECRET, header, BODY, now=1_700_000_010)
    assert not verify("whsec_other", header, BODY, now=1_700_000_010)
    assert not verify(SECRET, header, BODY + b" ", now=1_700_000_010)
    assert not verify(
        SECRET, header.replace("t=1700000000", "t=1700000001"), BODY, now=1_700_000_010
    )
    assert not verify(SECRET, "garbage", BODY)


def test_an_old_signature_is_refused_as_a_replay() -> None:
    header = sign(SECRET, 1_700_000_000, BODY)
    assert not verify(SECRET, header, BODY, tolerance_s=300, now=1_700_000_301)


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = WebhookPolicy(base_delay_s=1, max_delay_s=10)
    delays = [policy.delay(n) for n in range(1, 7)]
    assert 1 <= delays[0] <= 1.1 and 2 <= delays[1] <= 2.2 and 4 <= delays[2] <= 4.4
    assert all(10 <= d <= 11 for d in delays[4:])
