"""The hosted tier's pure logic: routing, spill eligibility, wait estimates, error mapping."""

from __future__ import annotations

from typing import Any

import pytest

from jobs import DEFAULT_TIERS, Recipe, Step, route
from jobs.errors import InputInvalid, JobTimeout, ModelUnavailable, QuotaExceeded, SchemaError
from jobs.settings import Settings
from jobs.tiers import next_larger, tier_named
from pipelines.hosted.answers import from_status, retry_delay_s
from producer.api_keys import ApiKey, KeyLimits
from producer.overflow import enabled, spillable
from transport.estimates import WaitEstimate
from workers.autoscale.controller import QueueSample
from workers.autoscale.pools import Pool
from workers.autoscale.waits import estimated_wait_s

EDIT = {"prompt": "make it autumn"}


def recipe(*steps: tuple[str, dict[str, Any]]) -> Recipe:
    return Recipe(steps=[Step(op=op, params=params) for op, params in steps])


def test_only_a_hosted_op_routes_to_the_hosted_tier() -> None:
    assert route(recipe(("gemini_edit", EDIT))).name == "hosted"
    assert route(recipe(("denoise", {}), ("gemini_edit", EDIT))).name == "hosted"
    # a CPU recipe stays on cpu even though the hosted tier could run it too
    assert route(recipe(("denoise", {}))).name == "cpu"
    assert route(recipe(("kontext_edit", EDIT))).name == "a10"


def test_out_of_memory_never_spills_to_the_hosted_tier() -> None:
    assert next_larger(tier_named("a100")) is None
    assert next_larger(tier_named("cpu")) == tier_named("edge")


def test_a_hosted_recipe_is_refused_where_the_deployment_has_no_credentials() -> None:
    hosted = tier_named("hosted")
    with pytest.raises(SchemaError, match="DARKROOM_HOSTED_API_KEY"):
        enabled(hosted, Settings())
    assert enabled(hosted, Settings(hosted_api_key="k")) is hosted
    assert enabled(tier_named("a10"), Settings()).name == "a10"


def test_only_instruction_edits_spill() -> None:
    assert spillable(recipe(("kontext_edit", EDIT)))
    assert spillable(recipe(("auto_levels", {}), ("qwen_edit", EDIT)))
    assert not spillable(recipe(("inpaint", {**EDIT, "box": [0, 0, 8, 8]})))
    assert not spillable(recipe(("kontext_edit", EDIT), ("inpaint", {**EDIT, "box": [0, 0, 8, 8]})))
    assert not spillable(recipe(("denoise", {})))  # nothing to spill: it is a CPU job


def test_keys_send_images_out_only_when_they_opted_in() -> None:
    plain = ApiKey("0" * 12, "acme")
    opted = ApiKey("1" * 12, "acme", KeyLimits(hosted=True))
    assert not plain.allows_op("gemini_edit") and plain.allows_op("kontext_edit")
    assert opted.allows_op("gemini_edit")
    listed = ApiKey("2" * 12, "acme", KeyLimits(ops=frozenset({"kontext_edit"}), hosted=True))
    assert not listed.allows_op("gemini_edit")  # an op list still limits it


def final_pool(**overrides: Any) -> Pool:
    fields = {"queue": "a10.final", "max_replicas": 4, "drain_time_s": 600, "service_time_s": 6}
    return Pool.model_validate(fields | overrides)


def test_wait_is_the_backlog_over_the_live_slots() -> None:
    pool = final_pool()
    assert estimated_wait_s(pool, QueueSample("a10.final", depth=200, workers=2)) == 600
    # a measured service time beats the prior; a pool at zero counts one replica
    assert estimated_wait_s(pool, QueueSample("a10.final", 10, service_time_s=3.0)) == 30
    assert (
        estimated_wait_s(final_pool(concurrency=2), QueueSample("a10.final", 40, workers=1)) == 120
    )
    at_target = WaitEstimate("a10.final", wait_s=600, target_s=600, at=0)
    assert not at_target.over_target
    assert WaitEstimate("a10.final", wait_s=601, target_s=600, at=0).over_target


@pytest.mark.parametrize(
    "code, status, error, retryable",
    [
        (429, "RESOURCE_EXHAUSTED", QuotaExceeded, True),
        (503, "UNAVAILABLE", ModelUnavailable, True),
        (500, "INTERNAL", ModelUnavailable, True),
        (504, "DEADLINE_EXCEEDED", JobTimeout, True),
        (403, "PERMISSION_DENIED", ModelUnavailable, False),
        (404, "NOT_FOUND", ModelUnavailable, False),
        (400, "INVALID_ARGUMENT", InputInvalid, False),
    ],
)
def test_provider_errors_map_to_darkroom_codes(
    code: int, status: str, error: type, retryable: bool
) -> None:
    mapped = from_status(code, status, "said", {"error": {"code": code, "status": status}})
    assert type(mapped) is error and mapped.retryable is retryable
    assert f"{code} {status}" in mapped.message


def test_a_rejected_key_is_a_configuration_problem_not_bad_input() -> None:
    body = {"error": {"details": [{"reason": "API_KEY_INVALID"}]}}
    mapped = from_status(400, "INVALID_ARGUMENT", "API key not valid.", body)
    assert isinstance(mapped, ModelUnavailable) and not mapped.retryable
    assert "credentials" in mapped.message


def test_the_provider_retry_delay_is_read_from_its_retry_info() -> None:
    info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "21s"}
    body = {"error": {"details": [{"@type": "x.QuotaFailure"}, info]}}
    assert retry_delay_s(body) == 21.0
    assert from_status(429, "RESOURCE_EXHAUSTED", "q", body).retry_after_s == 21.0
    assert retry_delay_s({"error": {}}) is None and retry_delay_s("not json") is None


def test_the_default_tiers_end_with_the_hosted_one() -> None:
    assert [t.name for t in DEFAULT_TIERS if t.hosted] == ["hosted"]
