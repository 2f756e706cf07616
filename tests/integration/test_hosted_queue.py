"""The hosted tier's contract through a real Redis and a real `darkroom worker --tier hosted`,
whose `google-genai` client talks to the LOCAL STAND-IN for the Gemini API.

Jobs that name `gemini_edit`, and GPU edits spilled to the hosted queue, come back as
stored outputs with the backend recorded; the provider's refusals fail their own job with
a darkroom code while the worker goes on; its quota answer is retried after the delay it
names; the daily spend cap fails an explicit hosted job and sends a spilled one back to
its GPU queue. Through the API, a job spills only when the published estimate says so.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image, ImageOps
from skimage import data

from jobs import Job, OutputSpec, Recipe, Step
from jobs.settings import Settings
from jobs.states import ErrorCode, JobState
from producer.api import ApiOptions, create_app
from producer.api_keys import KeyLimits, KeyRing
from testbed.genai_standin import GeminiStandIn
from testbed.workers import WorkerFactory, run_jobs, wait_until
from transport.depths import queue_depths
from transport.estimates import WaitEstimate, publish
from transport.keyspace import Keyspace
from transport.store import JobRecord, JobStore, Submission

pytestmark = pytest.mark.integration

BACKEND = "gemini-api:gemini-2.5-flash-image"


def photo(tmp_path: Path) -> tuple[str, Image.Image]:
    image = Image.fromarray(data.astronaut()).resize((48, 48))
    path = tmp_path / "astronaut.png"
    image.save(path)
    return path.resolve().as_uri(), image


def job(src: str, op: str, prompt: str, key: str, tenant: str = "acme", **params: Any) -> Job:
    step = Step(op=op, params={"prompt": prompt, **params})
    return Job(
        input=src,
        recipe=Recipe(steps=[step]),
        tenant=tenant,
        seed=5,
        output=OutputSpec(format="png", key=key),
    )


def inverted(tmp_path: Path, key: str, source: Image.Image) -> bool:
    """Whether the output is the stand-in's answer to `source`: its inverse, within the
    few levels the JPEG sent to the provider costs."""
    got = np.asarray(Image.open(tmp_path / "out" / f"{key}.png").convert("RGB"), np.float64)
    return bool(np.abs(got - np.asarray(ImageOps.invert(source), np.float64)).mean() < 3)


def finished(store: JobStore, jobs: list[Job], queue: str, timeout: float = 60) -> list[JobRecord]:
    store.enqueue(Submission(j, queue) for j in jobs)
    ids = [j.id for j in jobs]
    assert wait_until(lambda: all(s and s.terminal for s in store.states(ids)), timeout)
    return [r for r in store.get_many(ids) if r is not None]


def test_hosted_jobs_render_through_the_provider_and_its_refusals_fail_only_their_job(
    workers: WorkerFactory,
    redis_client: redis.Redis,
    gemini_standin: GeminiStandIn,
    hosted_env: dict[str, str],
    tmp_path: Path,
) -> None:
    src, image = photo(tmp_path)
    cutout = image.convert("RGBA")
    alpha = Image.new("L", cutout.size, 0)
    alpha.paste(255, (8, 8, 40, 40))  # a transparent frame around an opaque subject
    cutout.putalpha(alpha)
    cutout.save(tmp_path / "cutout.png")
    workers.start(
        tier="hosted", lane="final", name="hosted-final", DARKROOM_RETRY_BUDGET_S="2", **hosted_env
    )
    store = JobStore(redis_client)
    jobs = [
        job(src, "gemini_edit", "make it autumn", "ok"),
        job(src, "gemini_edit", "make it gory [standin:safety]", "blocked"),
        job(src, "gemini_edit", "make it autumn [standin:quota-once]", "quota-once"),
        job(src, "gemini_edit", "make it autumn [standin:text]", "no-image"),
        job(src, "gemini_edit", "make it autumn [standin:slow]", "slow"),
        Job(
            input=src,
            recipe=Recipe(
                steps=[
                    Step(op="auto_levels"),
                    Step(op="gemini_edit", params={"prompt": "make it autumn"}),
                ]
            ),
            output=OutputSpec(format="png", key="levels-then-gemini"),
        ),
        job((tmp_path / "cutout.png").resolve().as_uri(), "gemini_edit", "autumn", "cutout"),
    ]
    ok, blocked, quota, no_image, slow, mixed, cut = run_jobs(store, jobs, timeout=90)

    # the stored output is the provider's answer to the image we sent
    assert ok.state is JobState.SUCCEEDED, ok
    assert inverted(tmp_path, "ok", image)
    assert ok.result is not None and ok.result["backend"] == BACKEND
    assert ok.result["info"]["gemini_edit.cost_usd"] > 0.0387  # 1290 image tokens, and input
    # refusals fail with their codes; the quota answer was retried after its delay
    assert (blocked.state, blocked.error_code) == (
        JobState.FAILED,
        ErrorCode.REFUSED_BY_PROVIDER,
    )
    assert "SAFETY" in (blocked.error_message or "")
    assert no_image.error_code is ErrorCode.REFUSED_BY_PROVIDER
    assert quota.state is JobState.SUCCEEDED and quota.retries == 1
    # a provider that never answers in time: `timeout`, after retrying within the budget
    assert (slow.state, slow.error_code) == (JobState.FAILED, ErrorCode.TIMEOUT)
    assert slow.retries >= 1
    # a CPU step runs on the hosted worker itself, before the provider's step
    assert mixed.state is JobState.SUCCEEDED, mixed
    assert mixed.result is not None and mixed.result["steps"] == ["auto_levels", "gemini_edit"]
    assert mixed.result["backend"] == BACKEND
    # a transparent cut-out keeps its transparency: the edit is composited under its alpha
    assert cut.state is JobState.SUCCEEDED, cut
    with Image.open(tmp_path / "out" / "cutout.png") as out:
        assert out.mode == "RGBA"
        assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(alpha))
    # what left the machine: the instruction and the image, with the deployment's key
    prompts = {s.prompt for s in gemini_standin.seen}
    assert "make it autumn" in prompts
    assert {s.api_key for s in gemini_standin.seen} == {gemini_standin.api_key}
    assert all(s.images == 1 for s in gemini_standin.seen)


def test_a_spilled_edit_keeps_its_recipe_and_records_where_it_ran(
    workers: WorkerFactory,
    redis_client: redis.Redis,
    hosted_env: dict[str, str],
    tmp_path: Path,
) -> None:
    src, image = photo(tmp_path)
    workers.start(tier="hosted", lane="final", name="hosted-spill", **hosted_env)
    store = JobStore(redis_client)
    spilled = job(src, "kontext_edit", "make it autumn", "spilled")
    (record,) = finished(store, [spilled], "hosted.final")
    assert record.state is JobState.SUCCEEDED, record
    assert record.result is not None and record.result["backend"] == BACKEND
    assert record.result["info"]["kontext_edit.spilled_from"] == "kontext_edit"
    assert inverted(tmp_path, "spilled", image)
    # the provider's quota sends a spilled job back to its GPU queue, not to a failure
    turned_away = job(src, "kontext_edit", "make it autumn [standin:quota]", "turned-away")
    store.enqueue([Submission(turned_away, "hosted.final")])
    assert wait_until(lambda: queue_depths(redis_client, ["a10.final"])["a10.final"] == 1, 30)
    back = store.get(turned_away.id)
    assert back is not None and back.state is JobState.RETRYING
    assert "429 RESOURCE_EXHAUSTED" in (back.error_message or "")
    assert "retrying on a10.final" in (back.error_message or "")


def test_the_spend_cap_fails_hosted_jobs_and_sends_spilled_ones_back_to_their_gpu_queue(
    workers: WorkerFactory,
    redis_client: redis.Redis,
    hosted_env: dict[str, str],
    tmp_path: Path,
) -> None:
    src, _ = photo(tmp_path)
    # room for one image a day per tenant: USD 0.05 against a USD 0.039 reservation
    workers.start(
        tier="hosted",
        lane="final",
        name="hosted-capped",
        DARKROOM_HOSTED_TENANT_DAILY_CAP_USD="0.05",
        **hosted_env,
    )
    store = JobStore(redis_client)
    (first,) = finished(store, [job(src, "gemini_edit", "make it autumn", "first")], "hosted.final")
    assert first.state is JobState.SUCCEEDED, first
    over = job(src, "gemini_edit", "make it winter", "over")
    spilled = job(src, "kontext_edit", "make it winter", "spilled-back")
    other = job(src, "gemini_edit", "make it winter", "other", tenant="globex")
    store.enqueue(Submission(j, "hosted.final") for j in (over, spilled, other))

    def settled() -> bool:
        states = store.states([over.id, spilled.id, other.id])
        return bool(states[0] and states[0].terminal and states[2] and states[2].terminal) and (
            queue_depths(redis_client, ["a10.final"])["a10.final"] == 1
        )

    assert wait_until(settled, timeout=60)
    refused, back, globex = (store.get(j.id) for j in (over, spilled, other))
    assert refused is not None and refused.error_code is ErrorCode.QUOTA_EXCEEDED
    assert "tenant acme's hosted spend cap of USD 0.05" in (refused.error_message or "")
    # the spilled job is not failed: it waits on its GPU queue again
    assert back is not None and back.state is JobState.RETRYING
    assert "retrying on a10.final" in (back.error_message or "")
    assert globex is not None and globex.state is JobState.SUCCEEDED  # its own cap


# -- through the API: the overflow decision at submit ------------------------------------


def upload(client: TestClient, headers: dict[str, str], options: dict[str, Any]) -> str:
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).resize((40, 40)).save(buffer, "PNG")
    files = {"image": ("photo.png", buffer.getvalue(), "image/png")}
    answer = client.post(
        "/v1/jobs", files=files, data={"job": json.dumps(options)}, headers=headers
    )
    assert answer.status_code == 202, answer.text
    job_id: str = answer.json()["id"]
    return job_id


def test_through_the_api_a_final_edit_spills_only_for_opted_in_keys_over_the_estimate(
    workers: WorkerFactory,
    redis_client: redis.Redis,
    hosted_env: dict[str, str],
    worker_env: dict[str, str],
    tmp_path: Path,
) -> None:
    workers.start(tier="hosted", lane="final", name="hosted-api", **hosted_env)
    settings = Settings(
        redis_url=worker_env["DARKROOM_REDIS_URL"],
        output=worker_env["DARKROOM_OUTPUT"],
        home=tmp_path / "api-home",
        hosted_api_key=hosted_env["DARKROOM_HOSTED_API_KEY"],
    )
    ring = KeyRing(redis_client)
    opted = {"Authorization": f"Bearer {ring.create('acme', KeyLimits(hosted=True)).key}"}
    plain = {"Authorization": f"Bearer {ring.create('initech').key}"}
    kontext = {"ops": [{"op": "kontext_edit", "params": {"prompt": "make it autumn"}}]}

    def estimate(wait_s: float) -> None:
        at = time.time()
        publish(redis_client, Keyspace(), [WaitEstimate("a10.final", wait_s, 600, at, 100, 1)])

    with TestClient(create_app(settings, ApiOptions()), raise_server_exceptions=False) as client:

        def view(job_id: str, headers: dict[str, str]) -> dict[str, Any]:
            answer: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
            return answer

        def placement(job_id: str) -> str:
            return str(redis_client.hget(Keyspace().job(job_id), "placement") or b"", "utf-8")

        # under the target: the GPU queue, whoever asks
        estimate(300)
        stays = upload(client, opted, kontext)
        # over it: the opted-in key's final job spills; a plain key's and a preview do not
        estimate(900)
        spilled = upload(client, opted, kontext)
        unflagged = upload(client, plain, kontext)
        preview = upload(client, opted, {**kontext, "mode": "preview"})
        assert wait_until(lambda: view(spilled, opted)["state"] == "succeeded", 30)
        assert view(spilled, opted)["backend"] == BACKEND
        assert "estimated wait 900 s over its 600 s target" in placement(spilled)
        for job_id, headers in ((stays, opted), (unflagged, plain), (preview, opted)):
            assert view(job_id, headers)["state"] == "queued"
        depths = queue_depths(redis_client, ["a10.final", "a10.preview", "hosted.final"])
        assert depths == {"a10.final": 2, "a10.preview": 1, "hosted.final": 0}
        # naming the hosted op needs the key's flag
        gemini = {"ops": [{"op": "gemini_edit", "params": {"prompt": "make it autumn"}}]}
        refused = client.post("/v1/jobs", json={"input": "s3://b/x.png", **gemini}, headers=plain)
        assert refused.status_code == 403 and "gemini_edit" in refused.text
