"""Extra images sent to the HTTP API, run by a real Celery worker on tiny models.

A SaaS user uploads several photos in one multipart request (`image` plus `extra_image`
parts); the API stores them and the worker, playing an a10 card on this CPU, reads
them as the job's extra inputs. Random weights draw no faces, so a `multi_identity`
final never passes the identity gate: the job records that both people's references
were read (a similarity row per person), and the default `on_mismatch=fail` fails with
the gate's code.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image

from jobs.settings import Settings
from producer.api import ApiOptions, create_app
from producer.api_keys import KeyLimits, KeyRing
from testbed.workers import WorkerFactory
from transport.embedded import EmbeddedRedis
from transport.store import JobStore

pytestmark = [pytest.mark.integration, pytest.mark.gen, pytest.mark.slow]

PEOPLE = {
    "prompt": "two friends at a cafe",
    "max_side": 96,
    "steps": 2,
    "reference_side": 64,
    "aspect_ratio": "3:2",
    "max_rerenders": 0,
}
QWEN = {"prompt": "put the hat from picture 2 on", "max_side": 96, "steps": 2}


@pytest.fixture
def client(redis_server: EmbeddedRedis, tmp_path: Path) -> Iterator[TestClient]:
    # the worker fixture writes under tmp_path/out too: one output location for both
    settings = Settings(redis_url=redis_server.url, output=str(tmp_path / "out"), home=tmp_path)
    with TestClient(create_app(settings, ApiOptions()), raise_server_exceptions=False) as c:
        yield c


def png(image: Image.Image, side: int = 160) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").resize((side, side)).save(buffer, "PNG")
    return buffer.getvalue()


def submit(
    client: TestClient, headers: dict[str, str], op: str, params: dict[str, Any], *images: bytes
) -> str:
    files = [("image", ("0.png", images[0], "image/png"))]
    files += [("extra_image", (f"{n}.png", im, "image/png")) for n, im in enumerate(images[1:])]
    options = {"ops": [{"op": op, "params": params}], "seed": 21, "output": {"format": "png"}}
    answer = client.post(
        "/v1/jobs", headers=headers, files=files, data={"job": json.dumps(options)}
    )
    assert answer.status_code == 202, answer.text
    job_id: str = answer.json()["id"]
    return job_id


def finished(client: TestClient, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 240
    while True:
        view: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if view["state"] in ("succeeded", "failed", "canceled") or time.monotonic() > deadline:
            return view
        time.sleep(0.1)


def output(client: TestClient, headers: dict[str, str], view: dict[str, Any]) -> Image.Image:
    answer = client.get(view["output"]["url"], headers=headers)
    assert answer.status_code == 200
    return Image.open(io.BytesIO(answer.content))


def test_uploaded_extra_images_reach_the_worker(
    client: TestClient,
    workers: WorkerFactory,
    redis_client: redis.Redis,
    model_env: dict[str, str],
    astronaut: Image.Image,
    grace_hopper: Image.Image,
    coffee: Image.Image,
) -> None:
    issued = KeyRing(redis_client).create("studio", KeyLimits(concurrency=10))
    headers = {"Authorization": f"Bearer {issued.key}"}
    workers.start(tier="a10", lane="final", name="extras-a10", **model_env)
    her, him, cup = png(astronaut), png(grace_hopper), png(coffee)
    best = submit(client, headers, "multi_identity", {**PEOPLE, "on_mismatch": "best"}, her, him)
    strict = submit(client, headers, "multi_identity", PEOPLE, her, him)
    alone = submit(client, headers, "qwen_edit", QWEN, cup)
    referenced = submit(client, headers, "qwen_edit", QWEN, cup, her)

    # multi_identity: both uploads were read as people (a similarity row each); no face
    # in a random-weight render, so `best` keeps it unverified and the default fails
    view = finished(client, headers, best)
    assert view["state"] == "succeeded", view
    info = view["info"]  # what the tenant sees through the API, as the worker recorded it
    record = JobStore(redis_client).get(best)
    assert record is not None and record.result is not None
    assert info == record.result["info"]
    assert info["multi_identity.people"] == 2
    [match] = info["multi_identity.identity_matches"]
    assert len(match["similarity"]) == 2 and match["assignment"] == [None, None]
    assert info["multi_identity.identity_passed"] is False
    assert output(client, headers, view).size == (96, 64)
    failed = finished(client, headers, strict)
    assert failed["state"] == "failed" and failed["error"]["code"] == "face_not_found"

    # qwen_edit (a Plus model): the same seed with a reference image gives another image
    plain, with_ref = finished(client, headers, alone), finished(client, headers, referenced)
    assert plain["state"] == with_ref["state"] == "succeeded", (plain, with_ref)
    a, b = output(client, headers, plain), output(client, headers, with_ref)
    assert a.size == b.size == (96, 96)
    assert a.tobytes() != b.tobytes()
