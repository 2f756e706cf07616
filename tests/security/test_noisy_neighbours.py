"""The noisy-neighbour and leak cases (issue 11, items 11-15) against a real `darkroom api`,
a real cpu worker and redis-server, inside a loopback-only network namespace.

`cases/` holds the field cases from `../shared/cases/security/` (two adapted, see their
headers): `run.sh` builds the fake network (extra addresses on `lo`, a small DNS server,
an HTTPS host 1.2.3.4 with a throwaway CA, slow and webhook endpoints), starts the
services, runs every case once, and stops everything by PID. Each test reads its case's
verdict from that one run. Needs `unshare -n` (root, or user namespaces), `ip`,
`openssl`, `redis-server` and `curl`; skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CASES_DIR = Path(__file__).with_name("cases")
CASES = (
    "case_deep_params_500.py",
    "case_info_leaks.py",
    "case_key_caps_bypass.py",
    "case_webhook_hol.py",
    "case_worker_tarpit.py",
    "case_sse_pool_exhaustion.py",
)
RUN_LIMIT_S = 900


def _missing() -> str | None:
    """Why the harness cannot run here, or None."""
    for tool in ("unshare", "ip", "openssl", "redis-server", "redis-cli", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`unshare -n` is not permitted here: {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every case's output from one run of the harness, by case name."""
    reason = _missing()
    if reason is not None:
        pytest.skip(f"the security cases need a private network namespace: {reason}")
    run_dir = tmp_path_factory.mktemp("security")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")},
        "T": str(run_dir / "run"),
        "V": str(Path(sys.executable).parent),
        "CASES": " ".join(CASES),
    }
    done = subprocess.run(
        ["unshare", "-n", "bash", str(CASES_DIR / "run.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT_S,
    )
    (run_dir / "harness.out").write_text(done.stdout + done.stderr)
    return _by_case(done.stdout)


def _by_case(output: str) -> dict[str, str]:
    sections = re.split(r"^== ", output, flags=re.MULTILINE)
    found = {}
    for section in sections:
        name, _, body = section.partition("\n")
        if name.startswith("case "):
            found[name.removeprefix("case ").strip()] = body
    return found


def _verdict(harness: dict[str, str], case: str) -> str:
    out = harness.get(case)
    assert out is not None, f"{case} did not run"
    assert "Traceback" not in out, out
    assert "VULNERABLE" not in out, out
    assert "not reproduced" in out, out
    return out


def test_a_slow_input_url_never_holds_a_render_slot(harness: dict[str, str]) -> None:
    out = _verdict(harness, "case_worker_tarpit.py")
    assert "B: succeeded" in out


def test_an_event_stream_burst_breaks_no_stream_and_no_other_request(
    harness: dict[str, str],
) -> None:
    out = _verdict(harness, "case_sse_pool_exhaustion.py")
    assert "0 streams broken, 0 of the other tenant's requests failed" in out
    assert "'Too many connections': 0" in out


def test_a_slow_webhook_receiver_delays_only_itself(harness: dict[str, str]) -> None:
    out = _verdict(harness, "case_webhook_hol.py")
    assert "webhook delivered" in out


def test_a_keys_caps_apply_to_url_inputs_and_to_the_output_size(harness: dict[str, str]) -> None:
    out = _verdict(harness, "case_key_caps_bypass.py")
    assert "https:// 2000x2000: 200 failed" in out and "input_too_large" in out
    assert "/edit 2000x2000: 200 failed" in out
    assert "resize 1000x1000: 413" in out and "output_too_large" in out


def test_deeply_nested_params_are_a_422(harness: dict[str, str]) -> None:
    out = _verdict(harness, "case_deep_params_500.py")
    assert [line.split()[1] for line in out.splitlines()[:3]] == ["422", "422", "422"]


def test_no_local_storage_path_reaches_a_tenant(harness: dict[str, str]) -> None:
    out = _verdict(harness, "case_info_leaks.py")
    assert "file://" not in out and "webhook data.output: /v1/outputs/tenants/a/" in out
