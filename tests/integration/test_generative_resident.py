"""The resident-model cache on tiny real models: loads once, evicts least recently used,
never reloads models that fit together; and the int8 weight-only variant on CPU."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from PIL import Image

import jobs.ops.generative  # noqa: F401
from jobs.errors import OutOfMemory
from jobs.ops import get_op
from jobs.schema import Lane
from jobs.settings import Settings
from pipelines.base import OpContext

pytestmark = [pytest.mark.integration, pytest.mark.gen]

pytest.importorskip("diffusers")

from model_store import VariantSpec  # noqa: E402
from pipelines.generative import OPS  # noqa: E402
from pipelines.generative.tiny import tiny_variants  # noqa: E402
from workers.resident import ResidentModels  # noqa: E402

GB_EACH = 10.0  # what each "big" copy claims to need resident


@pytest.fixture(scope="module")
def big_models(tiny_models: Any) -> list[str]:
    """Three tiny models republished as if each needed 10 GB resident."""
    refs = []
    for name in ("ip2p", "sd-inpaint", "kontext"):
        variant = VariantSpec(name="fp32", kind="fp32", tiers=["a10"], memory_gb=GB_EACH)
        manifest = tiny_models.store.publish(
            tiny_models.folders[name], f"big-{name}", "1", variants=[variant]
        )
        refs.append(manifest.ref)
    return refs


def test_the_second_get_is_a_hit_that_loads_nothing(resident: ResidentModels) -> None:
    first = resident.get("ip2p", Lane.FINAL)
    assert resident.stats.loads == 1 and resident.stats.load_seconds > 0
    again = resident.get("ip2p@stable", Lane.PREVIEW)
    assert again is first
    assert resident.stats.loads == 1 and resident.stats.hits == 1
    assert resident.resident() == ["ip2p@tiny:fp32"]
    assert sorted(resident.resident_refs()) == ["ip2p", "ip2p@stable"]
    assert resident.holds("ip2p") and not resident.holds("kontext")
    # one copy, measured: the torch tensors of the diffusers pipeline and its decoder
    pipe = first.pipe
    expected = sum(
        t.untyped_storage().nbytes()
        for module in [*pipe.components.values(), first.tiny_decoder]
        if hasattr(module, "parameters")
        for t in [*module.parameters(), *module.buffers()]
    )
    assert resident.resident_bytes() == expected > 0


def test_a_model_another_running_job_uses_is_never_evicted_under_it(
    tiny_models: Any, big_models: list[str]
) -> None:
    """Threads of one worker (`--lane both`): the load that needs the room of a model in
    use waits until that job releases it, then evicts it."""
    a, b, _ = big_models
    models = ResidentModels(tiny_models.store, "a10", "cpu", budget_gb=15)
    in_use, done = threading.Event(), threading.Event()

    def running_job() -> None:
        models.get(a)
        in_use.set()
        done.wait(30)
        models.release()  # the job is over

    job = threading.Thread(target=running_job)
    job.start()
    in_use.wait(30)
    loaded: list[object] = []
    loader = threading.Thread(target=lambda: loaded.append(models.get(b)))
    loader.start()
    loader.join(0.5)
    assert loader.is_alive() and models.resident() == [f"{a}:fp32"], "evicted under its job"
    done.set()
    for thread in (job, loader):
        thread.join(30)
    assert loaded and models.resident() == [f"{b}:fp32"] and models.stats.evictions == 1


def test_least_recently_used_goes_first_when_the_budget_is_full(
    tiny_models: Any, big_models: list[str]
) -> None:
    a, b, c = big_models
    models = ResidentModels(tiny_models.store, "a10", "cpu", budget_gb=25)
    models.get(a)
    models.get(b)
    models.get(a)  # b is now the least recently used
    models.get(c)
    assert models.stats.evictions == 1
    assert models.resident() == [f"{c}:fp32", f"{a}:fp32"]
    assert models.used_gb == 2 * GB_EACH
    models.get(b)  # evicts a, the least recently used now
    assert models.resident() == [f"{b}:fp32", f"{c}:fp32"]
    assert models.stats.loads == 4 and models.stats.evictions == 2


def test_alternating_between_models_that_fit_never_reloads(
    tiny_models: Any, big_models: list[str]
) -> None:
    a, b, _ = big_models
    models = ResidentModels(tiny_models.store, "a10", "cpu", budget_gb=25)
    for _ in range(10):
        models.get(a)
        models.get(b)
    assert models.stats.loads == 2 and models.stats.hits == 18 and models.stats.evictions == 0


def test_a_model_bigger_than_the_budget_is_out_of_memory(
    tiny_models: Any, big_models: list[str]
) -> None:
    models = ResidentModels(tiny_models.store, "a10", "cpu", budget_gb=8)
    with pytest.raises(OutOfMemory, match="budget is 8 GB") as caught:
        models.get(big_models[0])
    assert caught.value.retryable  # the worker may spill it to a larger tier
    assert models.stats.loads == 0


def test_the_budget_comes_from_settings_else_host_memory(tiny_models: Any) -> None:
    configured = tiny_models.settings.model_copy(update={"model_budget_gb": 3.5})
    assert ResidentModels.from_settings(configured, "a10").budget_gb == 3.5
    default = ResidentModels.from_settings(Settings(home=tiny_models.settings.home), "cpu")
    assert default.device == "cpu" and default.budget_gb > 1


def test_the_int8_weight_only_variant_loads_and_runs_on_cpu(
    tiny_models: Any, resident: ResidentModels
) -> None:
    names = [v.name for v in tiny_variants(tiny_models.store)]
    assert "int8" in names
    int8 = ResidentModels(
        tiny_models.store, "a10", "cpu", budget_gb=8, preferred={"final": ["int8"]}
    )
    image = Image.new("RGB", (120, 72), (120, 60, 30))
    params = get_op("kontext_edit").validate({"prompt": "p", "max_side": 96, "steps": 2})
    ctx = OpContext(seed=1, models=int8)
    quantized = OPS["kontext_edit"](image, params, ctx)
    assert ctx.info["variant"] == "int8" and quantized.size == (96, 58)
    pipeline = int8.get("kontext")
    weight = pipeline.pipe.transformer.transformer_blocks[0].ff.net[2].weight
    assert "Int8" in type(weight).__name__
    full = OPS["kontext_edit"](image, params, OpContext(seed=1, models=resident))
    # Same model, same seed: int8 weights change the numbers, not the picture's size.
    assert full.size == quantized.size
    assert not np.array_equal(np.asarray(full), np.asarray(quantized))
    int8.clear()


def test_what_will_be_resident_after_a_load_leaves_out_what_it_evicts(
    tiny_models: Any, big_models: list[str]
) -> None:
    """What a worker advertises when it starts a job it must load for (model-aware
    claiming): the job's models, and those of the resident ones that stay."""
    a, b, c = big_models
    models = ResidentModels(tiny_models.store, "a10", "cpu", budget_gb=25)  # room for two
    models.get(a)
    models.get(b)
    assert models.refs_after_loading([a]) == [a, b]  # resident already: nothing leaves
    assert models.refs_after_loading([c]) == [c, b]  # a, least recently used, would go
    assert models.resident() == [f"{b}:fp32", f"{a}:fp32"], "predicting loads nothing"
    models.get(c)
    assert models.resident_refs() == [c, b]
