"""The API with S3 outputs (a real SeaweedFS): uploads and results under the tenant's
prefix, encrypted at rest, read back through presigned links that expire."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from PIL import Image

from testbed.s3 import SeaweedS3
from testbed.workers import WorkerFactory
from tests.integration.test_api_e2e import png, upload, wait_state
from tests.integration.test_api_server import ApiServer, new_key, start_api
from transport.embedded import EmbeddedRedis

pytestmark = pytest.mark.integration

PRESIGN_EXPIRES_S = 3
BUCKET = "api-outputs"


@pytest.fixture(scope="module")
def s3_stack(
    redis_server: EmbeddedRedis, s3_server: SeaweedS3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    tmp = tmp_path_factory.mktemp("api-s3")
    client = s3_server.client()
    client.create_bucket(Bucket=BUCKET)
    s3_env = {
        "DARKROOM_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "DARKROOM_S3_ACCESS_KEY_ID": s3_server.access_key,
        "DARKROOM_S3_SECRET_ACCESS_KEY": s3_server.secret_key,
    }
    workers = WorkerFactory(
        redis_server.url,
        {
            "DARKROOM_REDIS_URL": redis_server.url,
            "DARKROOM_HOME": str(tmp / "home"),
            "DARKROOM_HEARTBEAT_INTERVAL_S": "0.5",
            "DARKROOM_HEARTBEAT_TTL_S": "2",
            **s3_env,
        },
        tmp,
    )
    api = start_api(
        redis_server.url,
        tmp,
        DARKROOM_OUTPUT=f"s3://{BUCKET}/saas",
        DARKROOM_PRESIGN_EXPIRES_S=str(PRESIGN_EXPIRES_S),
        **s3_env,
    )
    try:
        workers.start(lane="final", name="s3-final")
        yield api
    finally:
        api.stop()
        workers.stop_all()


def test_results_on_s3_are_encrypted_and_linked_by_expiring_presigned_urls(
    s3_stack: ApiServer, s3_server: SeaweedS3
) -> None:
    key = new_key(s3_stack.env["DARKROOM_REDIS_URL"], "cloud")
    with s3_stack.client(key) as api:
        created = upload(api, {"ops": [{"op": "resize", "params": {"max_side": 48}}]}, png())
        assert created.status_code == 202, created.text
        view = wait_state(api, created.json()["id"])
    assert view["state"] == "succeeded", view
    link = view["output"]["url"]
    assert "X-Amz-Signature=" in link and f"/{BUCKET}/saas/tenants/cloud/outputs/" in link
    assert view["output"]["expires_at"] <= time.time() + PRESIGN_EXPIRES_S + 1
    got = httpx.get(link)
    assert got.status_code == 200
    assert Image.open(io.BytesIO(got.content)).size == (48, 48)
    listed = s3_server.client().list_objects_v2(Bucket=BUCKET, Prefix="saas/tenants/cloud/")
    stored = [item["Key"] for item in listed.get("Contents", [])]
    assert any("/uploads/" in k for k in stored) and any("/outputs/" in k for k in stored)
    for object_key in stored:
        head = s3_server.client().head_object(Bucket=BUCKET, Key=object_key)
        assert head.get("ServerSideEncryption") == "AES256", object_key
    time.sleep(PRESIGN_EXPIRES_S + 1.5)
    assert httpx.get(link).status_code == 403  # the link expired


def test_a_tenant_may_reference_its_own_uploads_but_not_anothers(s3_stack: ApiServer) -> None:
    owner = new_key(s3_stack.env["DARKROOM_REDIS_URL"], "owner")
    thief = new_key(s3_stack.env["DARKROOM_REDIS_URL"], "thief")
    with s3_stack.client(owner) as api:
        first = upload(api, {"ops": [{"op": "sharpen"}]}, png(40))
        first_view = wait_state(api, first.json()["id"])
    client = redis.Redis.from_url(s3_stack.env["DARKROOM_REDIS_URL"])
    redis_job = json.loads(client.hget(f"darkroom:job:{first_view['id']}", "job") or b"{}")
    client.close()
    uploaded = redis_job["input"]
    assert uploaded.startswith(f"s3://{BUCKET}/saas/tenants/owner/uploads/")
    body = {"input": uploaded, "ops": [{"op": "auto_levels"}]}
    with s3_stack.client(thief) as api:
        refused = api.post("/v1/jobs", json=body)
        assert refused.status_code == 403 and "tenants/thief/" in refused.json()["error"]["message"]
    with s3_stack.client(owner) as api:
        again = api.post("/v1/jobs", json=body)
        assert again.status_code == 202
        assert wait_state(api, again.json()["id"])["state"] == "succeeded"


def test_a_keys_caps_apply_to_its_s3_inputs_before_any_worker_sees_them(
    s3_stack: ApiServer, s3_server: SeaweedS3
) -> None:
    folder = "saas/tenants/capped/uploads"
    s3_server.client().put_object(Bucket=BUCKET, Key=f"{folder}/big.png", Body=png(600))
    s3_server.client().put_object(Bucket=BUCKET, Key=f"{folder}/small.png", Body=png(200))
    key = new_key(s3_stack.env["DARKROOM_REDIS_URL"], "capped", max_image_pixels=100_000)
    with s3_stack.client(key) as api:
        ids = [
            api.post(
                "/v1/jobs",
                json={"input": f"s3://{BUCKET}/{folder}/{name}", "ops": [{"op": "sharpen"}]},
            ).json()["id"]
            for name in ("big.png", "small.png")
        ]
        big, small = (wait_state(api, job_id) for job_id in ids)
    assert big["state"] == "failed" and big["error"]["code"] == "input_too_large", big
    assert "0.36 megapixels" in big["error"]["message"] or "600x600" in big["error"]["message"]
    assert big["attempts"] == 0  # refused at intake: no render slot was taken
    assert small["state"] == "succeeded", small
