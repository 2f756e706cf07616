"""The hosted backend against the LOCAL STAND-IN for the Gemini API and a real Redis.

The `google-genai` client is pointed at the stand-in through `HttpOptions.base_url`; it
sends the same HTTP requests it would send to Google. The spend ledger and the overflow
decision run against a real Redis, the estimates published by the real autoscaler loop.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
import redis
from PIL import Image
from skimage import data

from jobs import Lane, Recipe, Step
from jobs.errors import JobTimeout, ModelUnavailable, QuotaExceeded, RefusedByProvider
from jobs.settings import Settings
from pipelines.hosted import GeminiImageEditor
from producer.overflow import place
from testbed.genai_standin import GeminiStandIn
from transport.keyspace import Keyspace
from transport.spend import Caps, SpendLedger
from transport.store import JobStore, Submission
from workers.autoscale.drivers import DryRunDriver
from workers.autoscale.loop import Autoscaler
from workers.autoscale.observer import Observer
from workers.autoscale.pools import parse_pools
from workers.autoscale.waits import WaitBoard

pytestmark = pytest.mark.integration

KEYS = Keyspace()


def photo() -> Image.Image:
    return Image.fromarray(data.astronaut()).resize((64, 48))


def editor(
    standin: GeminiStandIn, timeout_s: float = 2.0, key: str | None = None
) -> GeminiImageEditor:
    return GeminiImageEditor.connect(key or standin.api_key, standin.url, timeout_s)


def test_an_edit_sends_the_image_and_instruction_and_returns_the_image_made(
    gemini_standin: GeminiStandIn,
) -> None:
    source, reference = photo(), Image.new("RGB", (20, 20), (0, 90, 0))
    made = editor(gemini_standin).edit(source, "make it autumn", [reference], seed=11)
    # the stand-in inverts the first image: the answer was made from what we sent (as JPEG
    # quality 95, so within a few levels of the exact inverse, and far from the source)
    got, expected = np.asarray(made.image, np.float64), 255.0 - np.asarray(source)
    assert made.image.size == source.size
    assert np.abs(got - expected).mean() < 3 < np.abs(got - np.asarray(source)).mean()
    assert made.output_tokens == 1290 and made.input_tokens > 2 * 258
    (seen,) = gemini_standin.seen
    assert (seen.model, seen.prompt, seen.images) == ("gemini-2.5-flash-image", "make it autumn", 2)
    assert seen.mime_types == ("image/jpeg", "image/jpeg")
    assert seen.api_key == gemini_standin.api_key


@pytest.mark.parametrize(
    "marker, error, retryable, says",
    [
        ("quota", QuotaExceeded, True, "429 RESOURCE_EXHAUSTED"),
        ("safety", RefusedByProvider, False, "blocked the request (SAFETY)"),
        ("image-safety", RefusedByProvider, False, "IMAGE_SAFETY"),
        ("text", RefusedByProvider, False, "I can't make that edit"),
        ("slow", JobTimeout, True, "did not answer within 1 s"),
        ("unavailable-once", ModelUnavailable, True, "503 UNAVAILABLE"),
    ],
)
def test_provider_answers_become_job_errors_with_darkroom_codes(
    gemini_standin: GeminiStandIn, marker: str, error: type, retryable: bool, says: str
) -> None:
    with pytest.raises(error) as caught:
        editor(gemini_standin, timeout_s=1.0).edit(photo(), f"edit it [standin:{marker}]")
    assert caught.value.retryable is retryable
    assert says in caught.value.message
    if marker == "quota":
        assert caught.value.retry_after_s == gemini_standin.retry_delay_s


def test_a_wrong_key_is_refused_as_credentials_not_retried(gemini_standin: GeminiStandIn) -> None:
    with pytest.raises(ModelUnavailable, match="credentials were refused") as caught:
        editor(gemini_standin, key="not-the-key").edit(photo(), "make it autumn")
    assert not caught.value.retryable


# -- spend caps ---------------------------------------------------------------------------


def test_the_tenant_cap_stops_reservations_and_other_tenants_keep_theirs(
    redis_client: redis.Redis,
) -> None:
    ledger = SpendLedger(redis_client, KEYS, Caps(tenant_usd=0.10, total_usd=0.25))
    assert ledger.reserve("acme", 0.04) is None
    assert ledger.reserve("acme", 0.04) is None
    refused = ledger.reserve("acme", 0.04)
    assert refused is not None and refused.cap == "tenant"
    assert "tenant acme's hosted spend cap of USD 0.10" in refused.describe("acme")
    # settling to the real cost gives back the difference, and makes room again
    ledger.settle("acme", 0.04, 0.01)
    assert ledger.reserve("acme", 0.04) is None
    assert ledger.spent("acme") == pytest.approx((0.09, 0.09))
    # the deployment-wide cap binds across tenants
    assert ledger.reserve("globex", 0.08) is None
    assert ledger.reserve("initech", 0.08) is None
    total = ledger.reserve("umbrella", 0.04)
    assert total is not None and total.cap == "total"


def test_caps_count_per_utc_day(redis_client: redis.Redis) -> None:
    ledger = SpendLedger(redis_client, KEYS, Caps(tenant_usd=0.05, total_usd=1.0))
    today = time.time()
    assert ledger.reserve("acme", 0.04, now=today) is None
    assert ledger.reserve("acme", 0.04, now=today) is not None
    assert ledger.reserve("acme", 0.04, now=today + 86_400) is None  # tomorrow
    assert redis_client.ttl(KEYS.hosted_spend(time.strftime("%Y-%m-%d", time.gmtime()), "acme")) > 0


# -- the overflow decision, from the autoscaler's published estimates ---------------------

POOLS: dict[str, Any] = {
    "interval_s": 15,
    "pools": [
        {"queue": "a10.final", "max_replicas": 2, "drain_time_s": 60, "service_time_s": 6},
        {"queue": "a10.preview", "min_replicas": 1, "max_replicas": 2, "target_wait_s": 0.2,
         "service_time_s": 0.5},
    ],
}  # fmt: skip
KONTEXT = Recipe(steps=[Step(op="kontext_edit", params={"prompt": "make it autumn"})])


def backlog(redis_client: redis.Redis, queue: str, count: int) -> None:
    """`count` jobs waiting on `queue` with no worker to take them."""
    from jobs.schema import Job

    store = JobStore(redis_client)
    jobs = [Job(input="file:///nowhere/x.png", recipe=KONTEXT) for _ in range(count)]
    store.enqueue(Submission(job, queue) for job in jobs)


def estimate_now(redis_client: redis.Redis) -> None:
    """One tick of the real autoscaler loop, publishing its wait estimates."""
    Autoscaler(
        parse_pools(POOLS),
        Observer(redis_client, KEYS).sample,
        DryRunDriver(),
        publish_waits=WaitBoard(redis_client, KEYS),
    ).step()


def placed(redis_client: redis.Redis, settings: Settings, **overrides: Any) -> Any:
    args: dict[str, Any] = {
        "settings": settings, "redis": redis_client, "keys": KEYS, "tenant": "acme",
        "tenant_opted_in": True,
    }  # fmt: skip
    lane = overrides.pop("lane", Lane.FINAL)
    return place(KONTEXT, lane, **(args | overrides))


HOSTED_ON = Settings(hosted_api_key="k", hosted_tenant_daily_cap_usd=0.05)


def test_a_final_job_spills_only_when_the_estimate_is_over_target(
    redis_client: redis.Redis,
) -> None:
    # no estimate published: no spill
    assert placed(redis_client, HOSTED_ON).queue == "a10.final"
    # 5 queued x 6 s on one (woken) replica = 30 s, under the 60 s target: stays
    backlog(redis_client, "a10.final", 5)
    estimate_now(redis_client)
    assert placed(redis_client, HOSTED_ON).queue == "a10.final"
    # 15 queued = 90 s: over target, spills, and says why
    backlog(redis_client, "a10.final", 10)
    estimate_now(redis_client)
    over = placed(redis_client, HOSTED_ON)
    assert over.queue == "hosted.final" and over.spilled
    assert "estimated wait 90 s over its 60 s target" in over.reason


def test_spill_needs_the_key_flag_the_deployment_a_fresh_estimate_and_a_final_lane(
    redis_client: redis.Redis,
) -> None:
    backlog(redis_client, "a10.final", 15)
    backlog(redis_client, "a10.preview", 15)
    estimate_now(redis_client)
    assert placed(redis_client, HOSTED_ON).queue == "hosted.final"
    assert placed(redis_client, HOSTED_ON, tenant_opted_in=False).queue == "a10.final"
    assert placed(redis_client, Settings()).queue == "a10.final"  # no credentials
    stale = placed(redis_client, HOSTED_ON, now=time.time() + 120)
    assert stale.queue == "a10.final" and "no fresh wait estimate" in stale.reason
    # previews never spill unless the request asks
    assert placed(redis_client, HOSTED_ON, lane=Lane.PREVIEW).queue == "a10.preview"
    asked = placed(redis_client, HOSTED_ON, lane=Lane.PREVIEW, spill_preview=True)
    assert asked.queue == "hosted.preview"


def test_the_spend_cap_stops_the_spill(redis_client: redis.Redis) -> None:
    backlog(redis_client, "a10.final", 15)
    estimate_now(redis_client)
    ledger = SpendLedger(redis_client, KEYS, Caps(0.05, HOSTED_ON.hosted_daily_cap_usd))
    assert placed(redis_client, HOSTED_ON).spilled
    assert ledger.reserve("acme", 0.039) is None  # one image's worth spent today
    capped = placed(redis_client, HOSTED_ON)
    assert capped.queue == "a10.final" and "spend cap" in capped.reason
    assert placed(redis_client, HOSTED_ON, tenant="globex").spilled  # another tenant's own cap


def test_the_hosted_flag_is_stored_with_the_key(redis_client: redis.Redis) -> None:
    from producer.api_keys import KeyLimits, KeyRing

    ring = KeyRing(redis_client, KEYS)
    opted = ring.create("acme", KeyLimits(hosted=True))
    plain = ring.create("acme")
    stored = ring.authenticate(opted.key)
    assert stored is not None and stored.limits.hosted and stored.allows_op("gemini_edit")
    unflagged = ring.authenticate(plain.key)
    assert unflagged is not None and not unflagged.allows_op("gemini_edit")
    assert stored.describe()["limits"]["hosted"] is True


def test_a_hosted_worker_will_not_start_without_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from workers.cli import worker

    monkeypatch.delenv("DARKROOM_HOSTED_API_KEY", raising=False)
    result = CliRunner().invoke(worker, ["--tier", "hosted", "--lane", "final"])
    assert result.exit_code != 0
    assert "DARKROOM_HOSTED_API_KEY" in result.output
