"""A new user's `darkroom submit`: a folder of phone files, told what is skipped and why,
warned when nothing will render the jobs, job options on the command line, and typos in
`DARKROOM_*` variables reported. Real Redis, a real worker process where jobs run."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from PIL import Image

import producer.cli
from testbed.workers import WorkerFactory
from tests.fixtures.cli import Env, messages, new_env
from transport.embedded import EmbeddedRedis

pytestmark = pytest.mark.integration

CASES = Path(__file__).parent.parent / "cases" / "images"


@pytest.fixture
def cli_env(redis_server: EmbeddedRedis, redis_client: redis.Redis, tmp_path: Path) -> Env:
    return new_env(redis_server, tmp_path)


def encoded(fmt: str, colour: tuple[int, int, int], **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, fmt, **options)
    return buffer.getvalue()


def phone_folder(root: Path) -> Path:
    """What a phone export looks like: mixed formats, upper-case names, a stray note."""
    pytest.importorskip("pillow_heif")
    from storage.formats import register_decoders

    register_decoders()
    root.mkdir(parents=True)
    (root / "IMG_0001.AVIF").write_bytes(encoded("AVIF", (200, 40, 40)))
    (root / "IMG_0002.HEIC").write_bytes(encoded("HEIF", (40, 200, 40)))
    (root / "IMG_0003.JPG").write_bytes(encoded("JPEG", (40, 40, 200)))
    shutil.copy(CASES / "03-folder-scan-skips.MPO", root / "IMG_0004.MPO")
    shutil.copy(CASES / "08-gif-refused.gif", root / "IMG_0005.GIF")
    (root / "IMG_0006.PNG").write_bytes(encoded("PNG", (90, 90, 90)))
    (root / "export-notes.txt").write_text("exported from the phone on Monday\n")
    (root / "receipt").write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n")
    return root


def test_a_folder_of_mixed_phone_files_is_fully_processed_and_the_rest_listed(
    cli_env: Env, workers: WorkerFactory, tmp_path: Path
) -> None:
    folder = phone_folder(tmp_path / "phone")
    workers.start(lane="final")

    result = cli_env.run(
        "submit",
        str(folder),
        "--op",
        "resize:max_side=48",
        "--wait",
        "--timeout",
        "120",
        "--no-progress",
    )

    assert result.exit_code == 0, result.output
    assert "6 succeeded, 0 failed, 0 canceled of 6 (100 % finished)" in result.output
    assert "skipped 2 files that are not images (1 text file, 1 PDF document)" in result.output
    assert f"{folder}/export-notes.txt: text file" in result.output
    out = cli_env.out.resolve()
    for n in range(1, 7):
        assert (out / f"IMG_000{n}.webp").is_file(), n
    with Image.open(out / "IMG_0005.webp") as gif:
        assert getattr(gif, "n_frames", 1) == 3  # the animation kept every frame
    batch = result.output.split("batch ", 1)[1].split(":", 1)[0]
    rows = [json.loads(line) for line in (out / f"{batch}.manifest.jsonl").read_text().splitlines()]
    skipped = {Path(r["source"]).name: r["error"] for r in rows if r["state"] == "skipped"}
    assert skipped == {"export-notes.txt": "text file", "receipt": "PDF document"}
    assert sum(r["state"] == "succeeded" for r in rows) == 6


def test_submit_warns_when_no_worker_serves_the_queue_and_again_while_waiting(
    cli_env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(producer.cli, "NO_WORKER_RECHECK_S", 0.3)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(encoded("PNG", (10, 20, 30)))

    result = cli_env.run(
        "submit",
        str(tmp_path / "in"),
        "--op",
        "kontext_edit:prompt=add a hat",
        "--wait",
        "--timeout",
        "1.5",
        "--no-progress",
    )

    assert result.exit_code == 3, result.output  # nothing rendered it
    warning = "no live worker serves a10.final (tier a10)"
    assert warning in result.stderr
    assert "darkroom worker --tier a10 --lane final" in result.stderr
    assert result.stderr.count(warning) >= 2  # once at submit, again while waiting


def test_no_warning_when_a_live_worker_serves_the_queue(
    cli_env: Env, workers: WorkerFactory, tmp_path: Path
) -> None:
    workers.start(lane="final")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(encoded("PNG", (10, 20, 30)))

    result = cli_env.run("submit", str(tmp_path / "in"), "--op", "auto_levels", "--no-progress")

    assert result.exit_code == 0, result.output
    assert "no live worker" not in result.stderr


def test_seed_and_the_other_job_options_reach_every_job(
    cli_env: Env, redis_client: redis.Redis, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(encoded("PNG", (10, 20, 30)))
    args = ["submit", str(tmp_path / "in"), "--op", "auto_levels", "--no-progress"]

    result = cli_env.run(
        *args,
        "--seed",
        "42",
        "--tenant",
        "acme",
        "--metadata",
        "strip",
        "--format",
        "tiff",
        "--cancel-after",
        "600",
    )
    again = cli_env.run(
        *args,
        "--seed",
        "43",
        "--tenant",
        "acme",
        "--metadata",
        "strip",
        "--format",
        "tiff",
        "--cancel-after",
        "600",
    )

    assert result.exit_code == 0 and again.exit_code == 0, result.output + again.output
    first, second = messages(redis_client, "cpu.final")
    jobs = sorted([first["job"], second["job"]], key=lambda j: j["seed"])
    assert [j["seed"] for j in jobs] == [42, 43]  # another seed is another job
    assert jobs[0]["tenant"] == "acme" and jobs[0]["cancel_after"] > 0
    assert jobs[0]["output"]["metadata"] == "strip" and jobs[0]["output"]["format"] == "tiff"


def test_a_webhook_must_be_https(cli_env: Env, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(encoded("PNG", (10, 20, 30)))
    args = ["submit", str(tmp_path / "in"), "--op", "auto_levels", "--no-progress"]

    refused = cli_env.run(*args, "--webhook", "ftp://hooks.example/done")
    taken = cli_env.run(*args, "--webhook", "https://hooks.example/done")

    assert refused.exit_code == 2 and "give an https:// URL" in refused.stderr
    assert taken.exit_code == 0, taken.output


def test_a_typo_in_a_darkroom_variable_is_reported_at_start_up(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DARKROOM_REDIS_URL": redis_server.url,
        "DARKROOM_HOME": str(tmp_path / "home"),
        "DARKROOM_OUTPT": str(tmp_path / "out"),  # the typo
    }
    darkroom = Path(sys.executable).parent / "darkroom"

    done = subprocess.run(
        [str(darkroom), "queues"], env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert "DARKROOM_OUTPT is not a darkroom setting" in done.stderr
    assert "did you mean DARKROOM_OUTPUT?" in done.stderr
