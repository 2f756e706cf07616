"""`upscale` through a real Redis and a real cpu worker.

Tiny random models of the real architectures (published under the real names) prove the
op's behaviour: sizes, alpha, the preview lane's model, and bad input failing its own
job. With the real weights (`make upscalerjs`), thick x4 must beat bicubic by >= 0.8 dB
PSNR-Y on the four scikit-image photos.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from PIL import Image
from skimage import data

from jobs import Job, Lane, OutputSpec, Recipe, Step
from jobs.states import ErrorCode, JobState
from testbed.workers import WorkerFactory, run_jobs, wait_until
from tests.fixtures.upscale import UpscaleStore
from transport.store import JobStore, Submission

pytestmark = [pytest.mark.integration, pytest.mark.gen]


def save(image: Image.Image, path: Path) -> str:
    image.save(path)
    return path.resolve().as_uri()


def upscale_job(src: str, key: str, mode: Lane = Lane.FINAL, **params: Any) -> Job:
    return Job(
        input=src,
        recipe=Recipe(steps=[Step(op="upscale", params=params)]),
        mode=mode,
        output=OutputSpec(format="png", key=key),
    )


@pytest.mark.slow  # ~70 s on 2 shared cores: a worker start, first torch import, 7 jobs
def test_final_preview_alpha_and_bad_input_on_a_cpu_worker(
    workers: WorkerFactory,
    redis_client: redis.Redis,
    tiny_upscale_store: UpscaleStore,
    tmp_path: Path,
) -> None:
    workers.start(tier="cpu", lane="both", **tiny_upscale_store.env(tmp_path / "cache"))
    store = JobStore(redis_client)
    photo = Image.fromarray(data.chelsea())
    small = save(photo.resize((40, 30)), tmp_path / "small.png")
    rgba = photo.resize((24, 20)).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((24, 20)))
    jobs = {
        "final": upscale_job(small, "final", scale=4, tile=16, overlap=4),
        "alpha": upscale_job(save(rgba, tmp_path / "a.png"), "alpha", scale=2),
        "preview": upscale_job(save(photo, tmp_path / "big.png"), "preview", Lane.PREVIEW, scale=4),
        "too_large": upscale_job(
            save(Image.new("RGB", (2049, 2049)), tmp_path / "huge.png"), "huge", scale=4
        ),
        "missing": upscale_job(small, "missing", scale=4, model="medium"),
    }
    # A message from an older or hostile producer: scale 5 never passes the boundary.
    bad = Recipe.model_construct(steps=[Step.model_construct(op="upscale", params={"scale": 5})])
    scale5 = Job(input=small, recipe=bad, output=OutputSpec(format="png", key="scale5"))
    store.enqueue([Submission(scale5, "cpu.final")])
    records = {r.id: r for r in run_jobs(store, list(jobs.values()), timeout=180)}
    assert wait_until(lambda: (s := store.get(scale5.id)) is not None and s.state.terminal, 30)
    after = run_jobs(store, [upscale_job(small, "after", scale=2)], timeout=60)[0]
    out = tmp_path / "out"

    final = records[jobs["final"].id]
    assert final.state is JobState.SUCCEEDED, final
    assert Image.open(out / "final.png").size == (160, 120)
    assert final.result and final.result["info"]["upscale.model"] == "esrgan-thick-x4@tiny"
    assert final.result["info"]["upscale.tiles"] == 6
    with Image.open(out / "alpha.png") as image:
        assert image.mode == "RGBA" and image.size == (48, 40)
        alpha = np.asarray(image.getchannel("A"), float)
    assert alpha[:8].mean() < 40 and alpha[-8:].mean() > 215  # the top-down gradient survived
    preview = records[jobs["preview"].id]
    assert preview.state is JobState.SUCCEEDED, preview
    assert preview.result and preview.result["info"]["upscale.model"] == "esrgan-slim-x4@tiny"
    width, height = Image.open(out / "preview.png").size
    assert width * height <= 16 * 256 * 256 and abs(width / height - 451 / 300) < 0.02

    failures = {
        "too_large": (ErrorCode.INPUT_TOO_LARGE, "8196x8196 (67 MP), over the 67 MP limit"),
        "missing": (ErrorCode.MODEL_UNAVAILABLE, "esrgan-medium-x4 is not in the model store"),
    }
    for name, (code, words) in failures.items():
        record = records[jobs[name].id]
        assert record.state is JobState.FAILED and record.error_code == code.value, record
        assert record.error_message and words in record.error_message
    record5 = store.get(scale5.id)
    assert record5 is not None and record5.state is JobState.FAILED
    assert record5.error_code == ErrorCode.INPUT_INVALID.value
    assert record5.error_message and "scale" in record5.error_message
    assert after.state is JobState.SUCCEEDED  # the worker lived on


@pytest.fixture(scope="session")
def real_upscale_store(
    upscalerjs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> UpscaleStore:
    """thick x4 and slim x4, converted from the npm packages, fp32 variants only."""
    import torch

    from jobs.settings import Settings
    from model_store import ModelStore
    from pipelines.upscale.publish import import_package

    torch.set_num_threads(1)  # scoring in this process: spinning threads cost 20x on shared cores
    root = Path(tmp_path_factory.mktemp("real-upscale"))
    settings = Settings(home=root / "home", model_store=str(root / "store"), model_cache=root / "c")
    store = ModelStore.from_settings(settings)
    for size in ("thick", "slim"):
        import_package(store, upscalerjs[size], 4, root / size, ("fp32",))
    return UpscaleStore(settings, root)


@pytest.mark.slow
def test_thick_x4_beats_bicubic_through_the_queue(
    workers: WorkerFactory,
    redis_client: redis.Redis,
    real_upscale_store: UpscaleStore,
    tmp_path: Path,
) -> None:
    from pipelines.upscale.quality import degrade, gain, photos

    workers.start(tier="cpu", lane="final", **real_upscale_store.env(tmp_path / "cache"))
    pairs = {name: degrade(hr, 4) for name, hr in photos(256).items()}
    jobs = [
        upscale_job(save(Image.fromarray(lr), tmp_path / f"{name}.png"), name, scale=4)
        for name, (lr, _) in pairs.items()
    ]
    records = run_jobs(JobStore(redis_client), jobs, timeout=300)
    assert all(r.state is JobState.SUCCEEDED for r in records), records
    triples = [
        (lr, np.asarray(Image.open(tmp_path / "out" / f"{name}.png")), hr)
        for name, (lr, hr) in pairs.items()
    ]
    measured = gain(triples, 4)
    assert measured.psnr_gain >= 0.8, measured
    assert measured.ssim > measured.ssim_bicubic, measured
