"""Model-aware claiming vs the resident cache alone (LRU), side by side in one run.

Two workers of one queue (`edge.final`, one slot each) take a stream of jobs that use
three models at random (copies of the tiny InstructPix2Pix model, each published as
needing 10 GB resident). Each worker has room for one model, then for two. The same
stream runs with `DARKROOM_MODEL_AFFINITY=0` (every worker loads what it takes) and `=1`
(a job cold here goes to the live worker where its model is warm). Printed per run:
reloads per 100 jobs (jobs whose render loaded its model first), jobs forwarded, job
latency p50 / p95 (queued -> succeeded, from the job records, the whole stream submitted
at once) and the makespan.

Tiny models load in ~0.1-0.3 s on CPU: the reload counts carry over to real weights
(tens of seconds per load), the latencies do not.

`python -m bench.affinity [--jobs 80] [--seed 0] [--backlog 1]`
"""

from __future__ import annotations

import argparse
import random
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from bench.harness import Lab, lab, percentile, table
from jobs.schema import Job, OutputSpec, Recipe, Step
from jobs.settings import Settings
from transport.direct import direct_queue
from transport.store import JobRecord, JobStore, Submission

QUEUE = "edge.final"  # where ip2p_edit routes
MODELS = ("m-a", "m-b", "m-c")
WARM_UP = "m-warm"
GB_EACH = 10.0
SIZE = {"max_side": 96, "steps": 4}
TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Run:
    room: int
    affinity: bool
    records: list[JobRecord]
    makespan_s: float

    @property
    def reloads_per_100(self) -> float:
        loads = sum(
            bool(r.result and r.result["timings"]["model_load_s"] > 0) for r in self.records
        )
        return 100 * loads / len(self.records)

    def latency_s(self, q: float) -> float:
        return percentile([(r.succeeded_at or 0) - (r.queued_at or 0) for r in self.records], q)


def publish_models(root: Path) -> dict[str, str]:
    """Build the tiny ip2p model and its preview decoder, publish the copies; worker env."""
    from model_store import ModelStore, VariantSpec
    from pipelines.generative.tiny import BUILDERS, TINY_VERSION, tiny_variants

    settings = Settings(home=root, model_store=str(root / "store"), model_cache=root / "cache")
    store = ModelStore.from_settings(settings)
    for name in ("taesd", "ip2p"):
        BUILDERS[name]().save_pretrained(root / "built" / name)
    store.publish(root / "built" / "taesd", "taesd", TINY_VERSION, variants=tiny_variants(store))
    for name in (*MODELS, WARM_UP):
        variant = VariantSpec(name="fp32", kind="fp32", tiers=["edge"], memory_gb=GB_EACH)
        manifest = store.publish(root / "built" / "ip2p", name, "1", variants=[variant],
                                 components={"tiny_decoder": f"taesd@{TINY_VERSION}"})  # fmt: skip
        store.promote(manifest.ref, "stable")
    return {"DARKROOM_MODEL_STORE": settings.model_store_uri()}


def job(image: str, model: str) -> Job:
    params = {"prompt": "a pencil sketch", "model": f"{model}@stable", **SIZE}
    recipe = Recipe(steps=[Step(op="ip2p_edit", params=params)])
    return Job(input=image, recipe=recipe, seed=1, output=OutputSpec(format="png"))


def finish(store: JobStore, ids: list[str]) -> list[JobRecord]:
    deadline = time.monotonic() + TIMEOUT_S
    while not all(s is not None and s.terminal for s in store.states(ids)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs still unfinished after {TIMEOUT_S:.0f} s")
        time.sleep(0.05)
    records = [r for r in store.get_many(ids) if r is not None]
    failed = [r for r in records if r.state.value != "succeeded"]
    if failed:
        raise RuntimeError(f"{len(failed)} jobs did not succeed, e.g. {failed[0]}")
    return records


def run(here: Lab, env: dict[str, str], image: str, stream: list[str], room: int, on: bool) -> Run:
    """One pass of `stream` through two fresh workers with room for `room` models each."""
    store = JobStore(here.client)
    budget = {"DARKROOM_MODEL_BUDGET_GB": str(GB_EACH * room + GB_EACH / 2)}
    flag = {"DARKROOM_MODEL_AFFINITY": "1" if on else "0"}
    names = [f"r{room}-{'on' if on else 'off'}-{n}" for n in range(2)]
    procs = [
        here.worker("final", name=name, tier="edge", **env, **budget, **flag) for name in names
    ]
    # Warm up each worker on its own (torch's first import is ~10 s) with a fourth model.
    warm = [job(image, WARM_UP) for _ in names]
    store.enqueue(
        Submission(j, direct_queue(QUEUE, f"{name}@{socket.gethostname()}"))
        for j, name in zip(warm, names, strict=True)
    )
    finish(store, [j.id for j in warm])
    jobs = [job(image, model) for model in stream]
    started = time.perf_counter()
    store.enqueue(Submission(j, QUEUE) for j in jobs)
    records = finish(store, [j.id for j in jobs])
    makespan = time.perf_counter() - started
    for proc in procs:
        here.stop(proc)
    return Run(room, on, records, makespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backlog", type=int, default=1, help="DARKROOM_AFFINITY_BACKLOG")
    args = parser.parse_args()
    stream = random.Random(args.seed).choices(MODELS, k=max(1, min(args.jobs, 1000)))
    runs = []
    with lab() as here:
        env = {
            **publish_models(here.tmp / "models"),
            "DARKROOM_AFFINITY_BACKLOG": str(args.backlog),
        }
        image = here.tmp / "photo.png"
        Image.new("RGB", (120, 80), (90, 140, 200)).save(image)
        for room in (1, 2):
            for on in (False, True):
                runs.append(run(here, env, image.resolve().as_uri(), stream, room, on))
    rows = [
        [
            f"{r.room} model(s)",
            "on" if r.affinity else "off (LRU only)",
            f"{r.reloads_per_100:.1f}",
            sum(bool(x.forwarded_to) for x in r.records),
            f"{r.latency_s(50):.2f}",
            f"{r.latency_s(95):.2f}",
            f"{r.makespan_s:.1f}",
        ]
        for r in runs
    ]
    print(f"{len(stream)} jobs, 3 models at random (seed {args.seed}), 2 workers x 1 slot, "
          f"affinity backlog {args.backlog}")  # fmt: skip
    header = ["room/worker", "affinity", "reloads/100", "forwarded", "p50 s", "p95 s", "total s"]
    print(table(rows, header))


if __name__ == "__main__":
    main()
