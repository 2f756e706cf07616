"""Property-based requests over the live OpenAPI document: no input makes the API fail.

`st run` (schemathesis) reads `/openapi.json` from a real `darkroom api` process and
sends a bounded number of generated requests, valid and invalid, to every operation
with a valid API key, then follows the documented links (create a job, then read,
stream and cancel it). Every answer must be a documented status with a documented
content type and body schema, and never a 5xx.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_api_server import ApiServer, new_key, start_api
from transport.embedded import EmbeddedRedis

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ~20 s: a few thousand requests

EXAMPLES_PER_OPERATION = 10
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    )
)


@pytest.fixture(scope="module")
def fuzzed_api(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    # No workers: jobs stay queued, so event streams are cut short to keep the run bounded.
    args = ("--no-webhooks", "--preview-wait", "0.2", "--stream-max", "0.3")
    server = start_api(redis_server.url, tmp, *args)
    yield server
    server.stop()


def test_no_generated_request_makes_the_api_fail(fuzzed_api: ApiServer, tmp_path: Path) -> None:
    key = new_key(fuzzed_api.env["DARKROOM_REDIS_URL"], "fuzz")
    command = [
        str(Path(sys.executable).parent / "st"),
        "run",
        f"{fuzzed_api.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {key}",
        "--checks",
        CHECKS,
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        "20240601",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--request-timeout",
        "10",
        "--workers",
        "1",
        "--suppress-health-check",
        "all",
        "--no-color",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, report + "\nAPI log:\n" + fuzzed_api.log_tail()
    assert "passed" in run.stdout and "failed" not in run.stdout.split("SUMMARY")[-1]
    assert "Traceback" not in fuzzed_api.log_tail()  # no unexpected error was even logged
