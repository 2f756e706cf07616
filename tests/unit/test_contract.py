"""The job contract: schema, versioning, catalogue validation and routing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs import Job, Lane, OutputSpec, Recipe, SchemaError, Step, route
from jobs.errors import ConfigError
from jobs.ops import CATALOGUE, Needs, OpSpec, Params, get_op, register
from jobs.settings import Settings, load_tiers
from jobs.states import TRANSITIONS, JobState
from jobs.tiers import DEFAULT_TIERS, Tier, next_larger, queue_name
from transport.messages import priority_list, priority_lists


def recipe(*steps: dict[str, object]) -> Recipe:
    return Recipe(steps=[Step.model_validate(s) for s in steps])


def test_job_round_trips_through_json_with_schema_version() -> None:
    job = Job(
        input="file:///photos/a.jpg",
        recipe=recipe({"denoise": {"strength": 5}}),
        mode=Lane.PREVIEW,
        priority=2,
        output=OutputSpec(format="png", key="a"),
    )
    data = json.loads(job.to_json())
    assert data["schema"] == 1
    assert Job.from_json(job.to_json()) == job


def test_unknown_future_fields_are_tolerated() -> None:
    job = Job(input="s3://b/k.jpg", recipe=recipe({"op": "auto_levels"}))
    data = json.loads(job.to_json())
    data["schema"] = 2
    data["some_future_field"] = {"x": 1}
    data["output"]["future_option"] = True
    assert Job.from_json(data).id == job.id


def test_old_messages_missing_optional_fields_still_decode() -> None:
    minimal = {"input": "file:///a.jpg", "recipe": {"steps": [{"op": "sharpen"}]}}
    job = Job.from_json(minimal)
    assert job.mode is Lane.FINAL and job.priority == 5 and job.output.format == "webp"


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ({"input": "ftp://x/a.jpg", "recipe": {"steps": [{"op": "sharpen"}]}}, "input must start"),
        ({"input": "file:///a.jpg", "recipe": {"steps": []}}, "recipe.steps"),
        ({"input": "file:///a.jpg", "recipe": {"steps": [{"op": "blur"}]}}, "unknown op 'blur'"),
        (
            {
                "input": "file:///a.jpg",
                "recipe": {"steps": [{"op": "exposure", "params": {"ev": 9}}]},
            },
            "ev",
        ),
        (
            {
                "input": "file:///a.jpg",
                "recipe": {"steps": [{"op": "denoise", "params": {"strenght": 3}}]},
            },
            "strenght",
        ),
        (
            {"input": "file:///a.jpg", "recipe": {"steps": [{"op": "sharpen"}]}, "priority": 12},
            "priority",
        ),
        (
            {
                "input": "file:///a.jpg",
                "recipe": {"steps": [{"op": "sharpen"}]},
                "output": {"key": "../escape"},
            },
            "key",
        ),
    ],
)
def test_bad_jobs_fail_with_one_readable_schema_error(
    bad: dict[str, object], fragment: str
) -> None:
    with pytest.raises(SchemaError, match=fragment):
        Job.from_json(bad)


def test_not_json_is_a_schema_error() -> None:
    with pytest.raises(SchemaError):
        Job.from_json(b"\x80not json")


def test_step_shorthand_and_typed_params() -> None:
    step = Step.model_validate({"resize": {"max_side": 512}})
    assert step.op == "resize"
    assert step.typed_params().max_side == 512  # type: ignore[attr-defined]


def test_catalogue_is_importable_without_torch_or_celery() -> None:
    import subprocess
    import sys

    code = (
        "import sys, jobs, transport.store, jobs.ops; "
        "assert not {'torch', 'diffusers', 'celery'} & set(sys.modules), sys.modules.keys()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert {
        "resize",
        "crop",
        "convert",
        "auto_levels",
        "white_balance",
        "exposure",
        "denoise",
        "sharpen",
        "dust_scratch_removal",
        "restore_faded_color",
    } <= set(CATALOGUE)


def test_recipe_digest_ignores_name_but_not_params() -> None:
    a = Recipe(name="a", steps=[Step(op="denoise", params={"strength": 5})])
    b = Recipe(name="b", steps=[Step(op="denoise", params={"strength": 5})])
    c = Recipe(name="a", steps=[Step(op="denoise", params={"strength": 6})])
    assert a.digest() == b.digest() != c.digest()


class _BigParams(Params):
    pass


@pytest.fixture
def gpu_op() -> object:
    name = "test_big_model_op"
    if name not in CATALOGUE:
        register(
            OpSpec(
                name,
                _BigParams,
                Needs(cpu=False, vram_gb={"bf16": 40, "fp8": 20}),
                "test-only op needing a big card",
                family="none",
            )
        )
    yield name


def test_routing_picks_the_smallest_tier_that_runs_every_step(gpu_op: str) -> None:
    assert route(recipe({"op": "denoise"})).name == "cpu"
    assert route(recipe({"op": "denoise"}, {"op": gpu_op})).name == "a10"  # fp8 at 20 GB
    big_only = (
        DEFAULT_TIERS[0],
        Tier(name="small", vram_gb=16, precisions=("bf16",)),
        Tier(name="huge", vram_gb=80, precisions=("bf16",)),
    )
    assert route(recipe({"op": gpu_op}), big_only).name == "huge"
    with pytest.raises(SchemaError, match="no tier can run"):
        route(recipe({"op": gpu_op}), DEFAULT_TIERS[:2])


def test_queue_names_and_priority_lists() -> None:
    assert queue_name("a10", Lane.PREVIEW) == "a10.preview"
    assert priority_list("cpu.final", 0) == "cpu.final"
    assert priority_list("cpu.final", 7) == "cpu.final:7"
    assert len(priority_lists("cpu.final")) == 10
    with pytest.raises(ValueError):
        priority_list("cpu.final", 10)


def test_next_larger_tier() -> None:
    names = [t.name for t in DEFAULT_TIERS]
    assert names == ["cpu", "edge", "a10", "a100", "hosted"]
    assert next_larger(DEFAULT_TIERS[2]).name == "a100"  # type: ignore[union-attr]
    assert next_larger(DEFAULT_TIERS[3]) is None


def test_finished_jobs_never_transition_again() -> None:
    assert TRANSITIONS[JobState.SUCCEEDED] == frozenset()
    assert JobState.RUNNING in TRANSITIONS[JobState.RUNNING]  # redelivery after a crash


def test_tiers_file_and_settings_checks(tmp_path: Path) -> None:
    path = tmp_path / "tiers.yaml"
    path.write_text(
        "tiers:\n  - {name: cpu, vram_gb: 0}\n  - {name: big, vram_gb: 48, "
        "precisions: [bf16], cards: [L40S]}\n"
    )
    tiers = load_tiers(path)
    assert [t.name for t in tiers] == ["cpu", "big"]
    assert Settings(tiers_file=path).tiers() == tiers
    with pytest.raises(ConfigError, match="visibility_timeout"):
        Settings(visibility_timeout_s=60, render_time_limit_s=600).check()


def test_get_op_lists_known_ops_on_a_typo() -> None:
    with pytest.raises(SchemaError, match=r"known ops: .*denoise"):
        get_op("denoize")
