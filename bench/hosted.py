"""The hosted tier's own costs, measured side by side against the LOCAL STAND-IN for the
Gemini API (`testbed.genai_standin`; not Google's service, so the provider's real render
time and network are not in these figures).

    python -m bench.hosted [--jobs 16] [--latency 0.5]

1. darkroom's overhead per hosted job: submit -> succeeded of `gemini_edit` through a real
   Redis and a hosted worker, with a stand-in answering at once, next to a `resize` job
   through a cpu worker (PNG round trips, the HTTP call, the spend ledger);
2. hosted worker throughput with a provider that takes `--latency` s per image: one slot
   vs eight (the worker mostly waits on the provider, so slots are cheap);
3. the overflow decision at submit: `producer.overflow.place` vs plain routing, per call.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from PIL import Image

from bench.harness import Lab, lab, percentile, table
from jobs import Job, Lane, OutputSpec, Recipe, Step, queue_name, route
from jobs.settings import Settings
from producer.overflow import place
from samples.photos import load_photo
from testbed.genai_standin import GeminiStandIn, start_standin
from transport.estimates import WaitEstimate, publish
from transport.keyspace import Keyspace
from transport.store import JobStore, Submission

GEMINI = Recipe(steps=[Step(op="gemini_edit", params={"prompt": "make it autumn"})])
RESIZE = Recipe(steps=[Step(op="resize", params={"max_side": 256})])
KONTEXT = Recipe(steps=[Step(op="kontext_edit", params={"prompt": "make it autumn"})])


def photo(tmp: Path) -> str:
    path = tmp / "astronaut.png"
    load_photo("astronaut").resize((512, 512), Image.Resampling.LANCZOS).save(path)
    return path.resolve().as_uri()


def latencies(
    here: Lab, src: str, recipe: Recipe, count: int, tag: str, warm: int = 1
) -> tuple[list[float], float]:
    """Seconds from submit to succeeded per job, one job at a time; and the wall time of
    `count` jobs submitted together. `warm` jobs run first, untimed (every worker slot
    builds its client on its first job)."""
    store = JobStore(here.client)
    queue = queue_name(route(recipe), Lane.FINAL)

    def job(i: int, kind: str) -> Job:
        return Job(
            input=src, recipe=recipe, tenant="bench", output=OutputSpec(key=f"{tag}-{kind}{i}")
        )

    def wait(ids: list[str]) -> None:
        while not all(s and s.terminal for s in store.states(ids)):
            time.sleep(0.002)

    warmup = [job(i, "warm") for i in range(warm)]
    store.enqueue(Submission(j, queue) for j in warmup)
    wait([j.id for j in warmup])
    each = []
    for i in range(count):
        one = job(i, "one")
        started = time.perf_counter()
        store.enqueue([Submission(one, queue)])
        wait([one.id])
        each.append(time.perf_counter() - started)
    together = [job(i, "all") for i in range(count)]
    started = time.perf_counter()
    store.enqueue(Submission(j, queue) for j in together)
    wait([j.id for j in together])
    return each, time.perf_counter() - started


def hosted_env(standin: GeminiStandIn) -> dict[str, str]:
    return {
        "DARKROOM_HOSTED_API_KEY": standin.api_key,
        "DARKROOM_HOSTED_BASE_URL": standin.url,
        "DARKROOM_HOSTED_DAILY_CAP_USD": "1000",
        "DARKROOM_HOSTED_TENANT_DAILY_CAP_USD": "1000",
    }


def overhead(jobs: int) -> None:
    standin = start_standin()
    try:
        with lab() as here:
            src = photo(here.tmp)
            here.worker("final", tier="cpu", name="bench-cpu")
            here.worker("final", tier="hosted", name="bench-hosted", **hosted_env(standin))
            local, _ = latencies(here, src, RESIZE, jobs, "resize")
            hosted, _ = latencies(here, src, GEMINI, jobs, "gemini")
    finally:
        standin.stop()
    provider = percentile(standin.served_s, 50)
    rows = [
        [name, f"{percentile(v, 50) * 1000:.0f}", f"{percentile(v, 95) * 1000:.0f}"]
        for name, v in (("resize on cpu", local), ("gemini_edit on hosted", hosted))
    ]
    print(f"\n1. submit -> succeeded, one job at a time, {jobs} jobs, 512x512, stand-in at once")
    print(table(rows, ["job", "p50 ms", "p95 ms"]))
    extra = (percentile(hosted, 50) - percentile(local, 50) - provider) * 1000
    print(
        f"   the stand-in's own answer took {provider * 1000:.0f} ms at p50; beyond it and "
        f"a local resize job, the hosted path adds {extra:.0f} ms at p50"
    )


def throughput(jobs: int, latency_s: float) -> None:
    rows = []
    for slots in (1, 8):
        standin = start_standin(latency_s=latency_s)
        try:
            with lab() as here:
                src = photo(here.tmp)
                env = hosted_env(standin)
                here.worker("final", concurrency=slots, tier="hosted", name="bench-h", **env)
                _, wall = latencies(here, src, GEMINI, jobs, f"c{slots}", warm=slots)
        finally:
            standin.stop()
        rows.append([str(slots), f"{wall:.1f}", f"{jobs / wall:.2f}"])
    print(f"\n2. {jobs} gemini_edit jobs at once, stand-in takes {latency_s:g} s per image")
    print(table(rows, ["worker slots", "wall s", "jobs/s"]))
    print(f"   ratio 8 slots / 1 slot: {float(rows[0][1]) / float(rows[1][1]):.1f}x")


def decision(calls: int = 2000) -> None:
    with lab() as here:
        redis, keys = here.client, Keyspace()
        publish(redis, keys, [WaitEstimate("a10.final", 900, 600, time.time())])
        settings = Settings(hosted_api_key="k")
        started = time.perf_counter()
        for _ in range(calls):
            queue_name(route(KONTEXT, settings.tiers()), Lane.FINAL)
        routed = (time.perf_counter() - started) / calls
        started = time.perf_counter()
        for _ in range(calls):
            place(KONTEXT, Lane.FINAL, settings=settings, redis=redis, keys=keys,
                  tenant="bench", tenant_opted_in=True)  # fmt: skip
        placed = (time.perf_counter() - started) / calls
    rows = [["route only", f"{routed * 1e6:.0f}"], ["place (spill check)", f"{placed * 1e6:.0f}"]]
    print(f"\n3. the decision at submit, mean of {calls} calls (estimate over target: spills)")
    print(table(rows, ["call", "us per call"]))
    print(f"   ratio: {placed / routed:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.5)
    args = parser.parse_args()
    overhead(args.jobs)
    throughput(args.jobs, args.latency)
    decision()


if __name__ == "__main__":
    main()
