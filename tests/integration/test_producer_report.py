"""`submit --wait`, and the manifest and contact sheet, local and in a real S3 server."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path

import pytest
import redis
from PIL import Image

from jobs.settings import Settings
from testbed.s3 import SeaweedS3
from tests.fixtures.cli import (
    Env,
    make_photos,
    messages,
    play_worker,
    store_of,
    take,
)

pytestmark = pytest.mark.integration


PHOTOS = ["day1/IMG_1.jpg", "day1/IMG_2.jpg", "day2/IMG_1.jpg", "cover.png"]
OPS = ["--op", "denoise:strength=8", "--op", "resize:max_side=64"]


class Links(HTMLParser):
    """Every image source and link target of a page, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.hrefs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img" and values.get("src"):
            self.images.append(str(values["src"]))
        if tag == "a" and values.get("href"):
            self.hrefs.append(str(values["href"]))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Links:
    links = Links()
    links.feed(html)
    return links


def fake_workers(
    url: str, settings: Settings, fail: dict[str, str], expect: int
) -> threading.Thread:
    """A thread that plays a worker for `expect` jobs (bounded to 30 s), failing by key."""

    def run() -> None:
        client = redis.Redis.from_url(url)
        store = store_of(client, settings)
        done, deadline = 0, time.monotonic() + 30
        while done < expect and time.monotonic() < deadline:
            for job in take(client, "cpu.final"):
                play_worker(store, job, fail=fail.get(job.output.key or ""), settings=settings)
                done += 1
            time.sleep(0.05)
        client.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_wait_shows_the_outcome_writes_reports_and_exits_1_on_a_failure(
    cli_env: Env, tmp_path: Path
) -> None:
    shoot = make_photos(tmp_path / "shoot", PHOTOS)
    worker = fake_workers(cli_env.redis_url, cli_env.settings, {"day1/IMG_2": "input_invalid"}, 4)
    result = cli_env.run("submit", str(shoot), *OPS, "--wait", "--timeout", "30", "--no-progress")
    worker.join(5)
    assert result.exit_code == 1, result.output
    assert "3 succeeded, 1 failed, 0 canceled of 4 (100 % finished)" in result.output
    assert "1 of 4 jobs did not succeed" in result.stderr
    out = cli_env.out.resolve()
    batch = result.output.split("batch ", 1)[1].split(":", 1)[0]
    manifest = out / f"{batch}.manifest.jsonl"
    assert f"manifest: {manifest.as_uri()}" in result.output
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert sorted(r["state"] for r in rows) == ["failed", "succeeded", "succeeded", "succeeded"]
    (failed,) = [r for r in rows if r["state"] == "failed"]
    assert failed["source"].endswith("day1/IMG_2.jpg") and failed["error_code"] == "input_invalid"
    assert all(r["attempts"] == 1 and "run_s" in r["timings"] for r in rows)
    assert (out / "day2" / "IMG_1.webp").is_file()


def test_wait_exits_0_when_all_succeeded(cli_env: Env, tmp_path: Path) -> None:
    shoot = make_photos(tmp_path / "shoot", PHOTOS[:2])
    worker = fake_workers(cli_env.redis_url, cli_env.settings, {}, 2)
    result = cli_env.run("submit", str(shoot), *OPS, "--wait", "--timeout", "30")
    worker.join(5)
    assert result.exit_code == 0, result.output
    assert "2 succeeded, 0 failed" in result.output and "contact sheet: file://" in result.output


def test_wait_gives_up_after_the_timeout_with_exit_3(cli_env: Env, tmp_path: Path) -> None:
    shoot = make_photos(tmp_path / "shoot", PHOTOS[:2])
    began = time.monotonic()
    result = cli_env.run("submit", str(shoot), *OPS, "--wait", "--timeout", "0.5", "--no-progress")
    assert result.exit_code == 3, result.output
    assert time.monotonic() - began < 10
    assert "timed out with 2 jobs unfinished" in result.stderr


def test_report_later_links_every_image_relatively(
    cli_env: Env, redis_client: redis.Redis, tmp_path: Path
) -> None:
    shoot = make_photos(tmp_path / "shoot", PHOTOS, size=(900, 600))
    submitted = cli_env.run("submit", str(shoot), *OPS, "--no-progress")
    batch = submitted.output.split("batch ", 1)[1].split(":", 1)[0]
    store = store_of(redis_client, cli_env.settings)
    for job in take(redis_client, "cpu.final"):
        play_worker(store, job, fail="face_not_found" if job.output.key == "cover" else None)
    result = cli_env.run("status", "--batch", batch, "--report", "--no-progress")
    assert result.exit_code == 0, result.output
    out = cli_env.out.resolve()
    assert len((out / f"{batch}.manifest.jsonl").read_text().splitlines()) == 4
    page = parse((out / f"{batch}.contact.html").read_text())
    # 4 originals + 3 outputs; the failed job shows its error instead of an output
    assert len(page.images) == 7
    assert "face_not_found" in "".join(page.text) and "the test said face_not_found" in "".join(
        page.text
    )
    for link in page.images + page.hrefs:
        assert "://" not in link, link
        assert (out / link).resolve().is_file(), link
    for thumb in page.images:
        with Image.open(out / thumb) as image:
            assert image.format == "JPEG" and max(image.size) <= 320
    assert f"{batch}.manifest.jsonl" in page.hrefs
    assert "../shoot/day1/IMG_1.jpg" in page.hrefs


@pytest.fixture
def s3_env(cli_env: Env, s3_server: SeaweedS3) -> Env:
    cli_env.extra = {
        "DARKROOM_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "DARKROOM_S3_ACCESS_KEY_ID": s3_server.access_key,
        "DARKROOM_S3_SECRET_ACCESS_KEY": s3_server.secret_key,
    }
    return cli_env


def test_s3_sources_outputs_and_presigned_contact_sheet(
    s3_env: Env, s3_server: SeaweedS3, s3_bucket: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    client = s3_server.client()
    local = make_photos(tmp_path / "upload", PHOTOS[:3])
    for name in PHOTOS[:3]:
        client.upload_file(str(local / name), s3_bucket, f"shoot/{name}")
    client.put_object(Bucket=s3_bucket, Key="shoot/notes.txt", Body=b"not an image")
    out = f"s3://{s3_bucket}/edited"
    submitted = s3_env.run("submit", f"s3://{s3_bucket}/shoot", *OPS, "--out", out, "--no-progress")
    assert submitted.exit_code == 0, submitted.output
    jobs = sorted((m["job"] for m in messages(redis_client, "cpu.final")), key=lambda j: j["input"])
    assert [j["input"] for j in jobs] == [f"s3://{s3_bucket}/shoot/{n}" for n in sorted(PHOTOS[:3])]
    assert [j["output"]["key"] for j in jobs] == ["day1/IMG_1", "day1/IMG_2", "day2/IMG_1"]
    assert jobs[0]["output"]["uri"] == f"{out}/"
    settings = s3_server.settings(redis_url=s3_env.redis_url)
    store = store_of(redis_client, settings)
    for job in take(redis_client, "cpu.final"):
        play_worker(store, job, settings=settings)
    batch = submitted.output.split("batch ", 1)[1].split(":", 1)[0]
    report = s3_env.run("status", "--batch", batch, "--report")
    assert report.exit_code == 0, report.output
    assert f"contact sheet: {out}/{batch}.contact.html" in report.output
    open_url = report.output.split("open it (presigned, expires): ", 1)[1].split()[0]
    with urllib.request.urlopen(open_url, timeout=5) as response:
        assert b"darkroom batch" in response.read()
    html = client.get_object(Bucket=s3_bucket, Key=f"edited/{batch}.contact.html")["Body"].read()
    page = parse(html.decode())
    assert len(page.images) == 6 and "presigned" in "".join(page.text)
    for link in page.images + page.hrefs:
        assert link.startswith(s3_server.endpoint_url) and "X-Amz-Signature" in link
        with urllib.request.urlopen(link, timeout=5) as response:
            body = response.read()
        if link in page.images:
            assert Image.open(BytesIO(body)).format == "JPEG"
    manifest = client.get_object(Bucket=s3_bucket, Key=f"edited/{batch}.manifest.jsonl")
    assert len(manifest["Body"].read().decode().splitlines()) == 3
