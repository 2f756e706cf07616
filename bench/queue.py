"""Queue benchmarks (issue: the render-farm backbone), measured side by side in one run.

1. preview dispatch overhead: submit-to-start of no-op preview jobs, against raw Redis
   LPUSH -> BRPOP between two processes (the floor);
2. preview isolation: the same with a 10,000-job final backlog and a busy final worker;
3. throughput efficiency: a 1 MP classic recipe over 200 images through the queue with 2
   worker processes, against the same render code in-process on 2 processes;
4. batch submission rate for 20,000 jobs.

`python -m bench.queue [--quick]` (quick: smaller counts, for a smoke run).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.harness import Lab, lab, percentile, table
from jobs.schema import Job, Lane, OutputSpec, Recipe, Step
from jobs.settings import Settings
from jobs.tiers import queue_name
from transport.store import JobStore, Submission

NOOP = Recipe(steps=[Step(op="convert", params={"mode": "rgb"})])
BUSY = Recipe(steps=[Step(op="sharpen", params={"amount": 1.0})])
THROUGHPUT = Recipe(
    steps=[
        Step(op="white_balance"),
        Step(op="auto_levels"),
        Step(op="restore_faded_color"),
        Step(op="sharpen", params={"amount": 0.8}),
    ]
)

_CONSUMER = """
import sys, time, redis
r = redis.Redis.from_url(sys.argv[1])
for _ in range(int(sys.argv[2])):
    _, sent = r.brpop(["floor"])
    r.lpush("floor:got", f"{sent.decode()} {time.time()!r}")
"""


def write_image(path: Path, side: int) -> str:
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, side, dtype=np.float32)
    pixels = np.stack(
        [np.add.outer(base, base) / 2, np.tile(base, (side, 1)), rng.uniform(0, 255, (side, side))],
        axis=-1,
    )
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path)
    return path.resolve().as_uri()


def floor(here: Lab, n: int) -> list[float]:
    consumer = subprocess.Popen([sys.executable, "-c", _CONSUMER, here.server.url, str(n)])
    client = here.client
    client.ping()
    time.sleep(0.5)
    samples = []
    for _ in range(n):
        client.lpush("floor", repr(time.time()))
        reply: Any = client.brpop(["floor:got"], timeout=5)
        sent, received = (float(x) for x in reply[1].decode().split())
        samples.append((received - sent) * 1000)
        time.sleep(0.002)
    consumer.wait(timeout=10)
    return samples


def dispatch(store: JobStore, image: str, n: int) -> list[float]:
    """Submit preview no-op jobs one at a time; submit-to-start in ms from job records."""
    samples = []
    queue = queue_name("cpu", Lane.PREVIEW)
    for i in range(n):
        job = Job(
            input=image,
            recipe=NOOP,
            mode=Lane.PREVIEW,
            priority=0,
            output=OutputSpec(format="png", key=f"preview/{i}"),
        )
        store.enqueue([Submission(job, queue)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            record = store.get(job.id)
            if record and record.running_at:
                samples.append((record.running_at - (record.queued_at or 0)) * 1000)
                break
            time.sleep(0.002)
        else:
            raise TimeoutError(f"preview job {job.id} never started")
        while (r := store.get(job.id)) is not None and not r.state.terminal:
            time.sleep(0.002)
    return samples


def backlog(store: JobStore, image: str, n: int) -> None:
    queue = queue_name("cpu", Lane.FINAL)
    jobs = (
        Job(input=image, recipe=BUSY, priority=5, output=OutputSpec(key=f"final/{i}"))
        for i in range(n)
    )
    store.enqueue(Submission(job, queue) for job in jobs)


def _render_in_process(out_dir: str, job_json: str) -> float:
    from workers.render import Hooks, render

    return render(Job.from_json(job_json), Settings(output=out_dir), Hooks()).timings["total_s"]


def throughput(here: Lab, image: str, n: int) -> tuple[float, float]:
    jobs = [
        Job(input=image, recipe=THROUGHPUT, output=OutputSpec(key=f"tp/{i}", quality=85))
        for i in range(n)
    ]
    # in-process: the same render code on a pool of 2 processes, warmed first
    with ProcessPoolExecutor(2) as pool:
        render_one = partial(_render_in_process, str(here.tmp / "in-process"))
        list(pool.map(render_one, [jobs[0].to_json()] * 2))
        started = time.perf_counter()
        list(pool.map(render_one, [j.to_json() for j in jobs]))
        in_process = n / (time.perf_counter() - started)
    # through the queue: one final worker with 2 prefork processes, warmed first
    store = JobStore(here.client)
    worker = here.worker("final", concurrency=2, name="bench-throughput")
    warm = [
        Job(input=image, recipe=THROUGHPUT, output=OutputSpec(key=f"warm/{i}")) for i in range(2)
    ]
    _run_all(store, warm)
    started = time.perf_counter()
    _run_all(store, jobs)
    queued = n / (time.perf_counter() - started)
    here.stop(worker)
    return in_process, queued


def _run_all(store: JobStore, jobs: list[Job]) -> None:
    store.enqueue(Submission(j, queue_name("cpu", Lane.FINAL)) for j in jobs)
    ids = [j.id for j in jobs]
    while True:
        states = store.states(ids)
        if all(s is not None and s.terminal for s in states):
            failed = [i for i, s in zip(ids, states, strict=True) if s and s.value != "succeeded"]
            if failed:
                raise RuntimeError(
                    f"{len(failed)} jobs did not succeed, e.g. {store.get(failed[0])}"
                )
            return
        time.sleep(0.01)


def submission(store: JobStore, image: str, n: int) -> float:
    recipe = Recipe(steps=[Step(op="denoise"), Step(op="auto_levels")])
    started = time.perf_counter()
    jobs = (
        Job(input=image, recipe=recipe, batch="bench-submit", output=OutputSpec(key=str(i)))
        for i in range(n)
    )
    report = store.enqueue(Submission(j, "cpu.final", f"img{i}") for i, j in enumerate(jobs))
    rate = n / (time.perf_counter() - started)
    assert report.new == n, report
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_dispatch, n_backlog, n_images, n_submit = (
        (100, 2000, 40, 5000) if args.quick else (400, 10_000, 200, 20_000)
    )
    rows: list[list[object]] = []
    with lab() as here:
        tiny = write_image(here.tmp / "tiny.png", 16)
        small = write_image(here.tmp / "small.png", 256)
        photo = write_image(here.tmp / "photo.jpg", 1024)
        store = JobStore(here.client)

        raw = floor(here, n_dispatch)
        preview = here.worker("preview", name="bench-preview")
        idle = dispatch(store, tiny, n_dispatch)
        backlog(store, small, n_backlog)
        final = here.worker("final", concurrency=1, name="bench-final")
        time.sleep(1.0)
        busy = dispatch(store, tiny, n_dispatch)
        left = sum(here.client.llen(k) for k in here.client.keys("cpu.final*"))
        here.stop(final)
        here.stop(preview)
        here.client.flushall()

        rows += [
            [
                "raw LPUSH->BRPOP (floor)",
                f"{percentile(raw, 50):.2f}",
                f"{percentile(raw, 99):.2f}",
                "",
            ],
            [
                "preview submit->start, idle",
                f"{percentile(idle, 50):.2f}",
                f"{percentile(idle, 99):.2f}",
                "p99 <= 5 ms",
            ],
            [
                f"preview, {n_backlog} final backlog ({left} left)",
                f"{percentile(busy, 50):.2f}",
                f"{percentile(busy, 99):.2f}",
                f"p99 {percentile(busy, 99) / percentile(idle, 99):.2f}x idle (<= 1.2x)",
            ],
        ]
        in_process, queued = throughput(here, photo, n_images)
        here.client.flushall()
        rate = submission(JobStore(here.client), tiny, n_submit)

    print(table(rows, ["dispatch (ms)", "p50", "p99", "target"]))
    print()
    print(
        table(
            [
                [f"{n_images} x 1 MP recipe, in-process, 2 procs", f"{in_process:.1f} img/s", ""],
                [
                    "same through the queue, 1 worker x 2 procs",
                    f"{queued:.1f} img/s",
                    f"{queued / in_process:.0%} of in-process (>= 90%)",
                ],
                [
                    f"submit {n_submit} jobs (state + message)",
                    f"{rate:,.0f} jobs/s",
                    ">= 5,000 jobs/s",
                ],
            ],
            ["throughput", "rate", "target"],
        )
    )


if __name__ == "__main__":
    main()
