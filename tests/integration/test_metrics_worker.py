"""A real prefork Celery worker with `workers.metrics.install`: children's counts reach
the exporter through the multiprocess folder, and a restart starts from zero."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from jobs.schema import Job, Recipe, Step
from transport.embedded import EmbeddedRedis, free_port
from transport.keyspace import Keyspace
from transport.store import JobStore, Submission

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

# A stand-in render task with darkroom's message format and state transitions; the
# point here is the metrics plumbing, not rendering.
APP = textwrap.dedent(
    """
    import time
    from celery import Celery
    from transport.embedded import connect
    from transport.keyspace import Keyspace
    from transport.messages import PRIORITY_STEPS, RENDER_TASK, SEP
    from jobs.settings import load_settings
    from jobs.states import JobState
    from transport.store import JobStore
    from workers import metrics

    settings = load_settings()
    app = Celery("metrics_app", broker=settings.redis_url)
    app.conf.update(
        broker_transport_options={"sep": SEP, "priority_steps": list(PRIORITY_STEPS),
                                  "queue_order_strategy": "priority"},
        task_serializer="json", accept_content=["json"], task_acks_late=True,
        worker_prefetch_multiplier=1, worker_hijack_root_logger=False,
    )
    metrics.install(app, settings)

    @app.task(name=RENDER_TASK, bind=True)
    def render(self, job):
        store = JobStore(connect(settings), Keyspace(settings.key_prefix))
        store.transition(job["id"], JobState.RUNNING, attempt=True)
        time.sleep(0.05)
        if job["input"].endswith("bad.png"):
            store.transition(job["id"], JobState.FAILED, error_code="input_invalid",
                             error_message="not an image")
        else:
            store.transition(job["id"], JobState.SUCCEEDED)
    """
)


def start_worker(tmp: Path, redis_url: str, port: int) -> subprocess.Popen[bytes]:
    (tmp / "metrics_app.py").write_text(APP)
    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp}{os.pathsep}{ROOT}",
        "DARKROOM_REDIS_URL": redis_url,
        "DARKROOM_METRICS_DIR": str(tmp / "prom"),
        "DARKROOM_METRICS_PORT": str(port),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-m", "celery", "-A", "metrics_app", "worker", "-Q", "cpu.final",
               "-P", "prefork", "-c", "2", "--without-gossip", "--without-mingle",
               "--without-heartbeat", "-l", "warning"]  # fmt: skip
    log = open(tmp / "worker.log", "ab")  # noqa: SIM115 (the child keeps it open)
    return subprocess.Popen(
        command, cwd=tmp, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=log
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def scrape(port: int, timeout: float = 20.0) -> dict[tuple[str, tuple[str, ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    deadline = time.monotonic() + timeout
    while True:
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            text = urllib.request.urlopen(url, timeout=5).read().decode()
            break
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    return {
        (s.name, tuple(f"{k}={v}" for k, v in sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def worker_env(
    tmp_path: Path, redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> Iterator[tuple[Path, int, list[subprocess.Popen[bytes]]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield tmp_path, free_port(), started
    for proc in started:
        stop(proc)


def test_counts_from_prefork_children_reach_the_exporter_and_reset_on_restart(
    worker_env: tuple[Path, int, list[subprocess.Popen[bytes]]],
    redis_server: EmbeddedRedis,
    redis_client: redis.Redis,
) -> None:
    tmp, port, started = worker_env
    store = JobStore(redis_client, Keyspace("darkroom"))
    recipe = Recipe(steps=[Step(op="auto_levels"), Step(op="resize", params={"max_side": 64})])
    names = ["a.png", "b.png", "c.png", "d.png", "bad.png"]
    jobs = [Job(input=f"file:///scans/{n}", recipe=recipe, priority=8) for n in names]
    store.enqueue([Submission(job=j, queue="cpu.final") for j in jobs])
    started.append(start_worker(tmp, redis_server.url, port))

    deadline = time.monotonic() + 30
    while not all(s and s.terminal for s in store.states([j.id for j in jobs])):
        assert time.monotonic() < deadline, (tmp / "worker.log").read_text()[-2000:]
        time.sleep(0.1)
    time.sleep(0.3)  # postrun writes the counters just after the last transition
    seen = scrape(port)

    def value(name: str, **labels: str) -> float:
        return seen[(name, tuple(f"{k}={v}" for k, v in sorted(labels.items())))]

    cpu = {"tier": "cpu", "lane": "final"}
    assert value("darkroom_jobs_total", state="succeeded", **cpu) == 4
    assert value("darkroom_jobs_total", state="failed", **cpu) == 1
    assert value("darkroom_job_failures_total", code="input_invalid", **cpu) == 1
    assert value("darkroom_steps_total", op="resize", state="succeeded", **cpu) == 4
    assert value("darkroom_job_wait_seconds_count", **cpu) == 5
    assert value("darkroom_job_run_seconds_count", **cpu) == 5
    assert value("darkroom_queue_depth", queue="cpu.final", **cpu) == 0
    # the tasks ran in the children, not in the exporter's process
    pids = {p.stem.rsplit("_", 1)[-1] for p in (tmp / "prom").glob("counter_*.db")}
    assert pids and str(started[0].pid) not in pids

    stop(started.pop())
    started.append(start_worker(tmp, redis_server.url, port))
    fresh = scrape(port)
    assert not any(name == "darkroom_jobs_total" for name, _ in fresh)
