"""Lanes on one card (issue 13): previews behind a running final, three worker layouts
measured side by side in one run, on this CPU, with a tiny random-weight Kontext-class
model whose transformer is widened until a denoising step at the final's size takes
tens of milliseconds.

(a) `darkroom worker --lane both --split-lanes`: a solo preview worker and a prefork
    final worker, each with its own copy of the model;
(b) `darkroom worker --lane both`: one model-owning process, the step scheduler runs a
    waiting preview between two denoising steps of the final (`workers.steps`);
(c) a plain Celery worker on `-Q a10.preview,a10.final`, one solo slot (the peer).

For each: preview submit->result latency (job records: queued_at -> succeeded_at) idle
and while finals of 30 steps run with previews arriving at ~4/s; the finals' duration
(running_at -> succeeded_at) alone and under the preview stream; the RSS growth of the
worker's processes from ready to warm (its models loaded). Everything binds 127.0.0.1
and is stopped by PID.

`python -m bench.lanes [--previews 30] [--rate 4] [--finals 4]`; `--plain-worker NAME`
runs the peer worker (c) in this process (the bench starts it).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from bench.harness import Lab, lab, percentile, table
from bench.queue import write_image
from jobs.schema import Job, Lane, OutputSpec, Recipe, Step
from jobs.settings import Settings
from jobs.tiers import queue_name
from transport.keyspace import Keyspace
from transport.store import JobRecord, JobStore, Submission
from workers.affinity import resident_bytes_of
from workers.cli import worker_argv
from workers.heartbeat import live_workers

TIER = "a10"
MODEL = "kontext-wide"
FINAL_STEPS = 30
PARAMS: dict[str, Any] = {
    "prompt": "make the sky red",
    "model": f"{MODEL}@stable",
    "steps": FINAL_STEPS,
    "preview_steps": 2,
    "max_side": 256,
    "preview_side": 64,
}
# The widened transformer: 4 heads x 64 (inner width 256), one double and one single
# block: ~40-60 ms a step at 256 px on this 2-core CPU (measured before settling).
WIDTH = {"num_attention_heads": 4, "attention_head_dim": 64, "num_layers": 1}
IDLE_PREVIEWS = 10
ALONE_FINALS = 2
SETTLE_S = 120.0  # bound on any wait for jobs to finish


# -- the model ------------------------------------------------------------------------


def publish_wide_kontext(tmp: Path) -> dict[str, str]:
    """Build the widened Kontext-class model and its tiny preview decoder, publish them
    to a model store under `tmp`; the environment a worker needs to pull them."""
    from diffusers import FluxKontextPipeline, FluxTransformer2DModel

    from model_store import ModelStore
    from pipelines.generative import tiny, tiny_parts

    tiny_parts.seeded()
    head = WIDTH["attention_head_dim"]
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=tiny_parts.FLUX_LATENT_CHANNELS * 4,
        num_single_layers=1,
        joint_attention_dim=tiny_parts.TEXT_DIM,
        pooled_projection_dim=tiny_parts.TEXT_DIM,
        axes_dims_rope=[head // 4, head * 3 // 8, head * 3 // 8],
        guidance_embeds=True,
        **WIDTH,
    )
    pipe: Any = FluxKontextPipeline(
        transformer=transformer, vae=tiny_parts.flux_vae(), **tiny._flux_text()
    )
    pipe.save_pretrained(tmp / "built" / MODEL)
    tiny.taef1().save_pretrained(tmp / "built" / "taef1")
    settings = Settings(model_store=str(tmp / "store"), model_cache=tmp / "publish-cache")
    store = ModelStore.from_settings(settings)
    store.publish(tmp / "built" / "taef1", "taef1", "tiny", variants=tiny.tiny_variants(store))
    manifest = store.publish(
        tmp / "built" / MODEL,
        MODEL,
        "bench",
        variants=tiny.tiny_variants(store),
        components={"tiny_decoder": "taef1@tiny"},
    )
    store.promote(manifest.ref, "stable")
    return {
        "DARKROOM_MODEL_STORE": settings.model_store_uri(),
        "DARKROOM_MODEL_BUDGET_GB": "8",
    }


def weight_mb(tmp: Path) -> float:
    folder = tmp / "built" / MODEL
    return sum(f.stat().st_size for f in folder.rglob("*.safetensors")) / 1e6


# -- the workers ----------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    key: str
    title: str
    beating: tuple[str, ...]
    """Heartbeat names (prefixes) that must beat before the layout serves."""

    def argv(self) -> list[str]:
        if self.key == "split":
            return worker_argv(TIER, "both", name="lanes-a", loglevel="warning", split_lanes=True)
        if self.key == "both":
            return worker_argv(TIER, "both", name="lanes-b", loglevel="warning")
        return [sys.executable, "-m", "bench.lanes", "--plain-worker", "lanes-c"]


LAYOUTS = (
    Layout("split", "(a) --split-lanes", ("lanes-a-preview", "lanes-a-final")),
    Layout("both", "(b) --lane both", ("lanes-b-both",)),
    Layout("plain", "(c) plain -Q p,f -c1", ("lanes-c",)),
)


def start(here: Lab, layout: Layout, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return here.start(layout.argv(), layout.key, layout.beating, **env)


def plain_worker(name: str) -> None:
    """The peer (c): one Celery worker consuming both lanes' queues, preview first in
    `-Q` order, one solo slot, darkroom's task and hooks; runs until stopped."""
    from jobs.settings import load_settings
    from jobs.tiers import tier_named
    from workers.app import create_app, install_worker_hooks

    settings = load_settings()
    tier = tier_named(TIER, settings.tiers())
    queues = [queue_name(tier, Lane.PREVIEW), queue_name(tier, Lane.FINAL)]
    app = create_app(settings)
    app.conf.darkroom_tier = tier
    app.conf.darkroom_queues = queues
    app.conf.darkroom_slots = 1
    app.conf.darkroom_incarnation = uuid.uuid4().hex[:12]
    hostname = f"{name}@{socket.gethostname()}"
    install_worker_hooks(app, settings, hostname)
    app.worker_main(
        ["worker", "-Q", ",".join(queues), "-c", "1", "-P", "solo", "-n", hostname,
         "--loglevel", "warning", "--without-gossip", "--without-mingle"]
    )  # fmt: skip


def tree_rss_kb(root: int) -> dict[int, int]:
    """VmRSS (kB) of `root` and every process under it, by PID."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return {pid: kb for pid in tree if (kb := _vm_rss_kb(pid)) is not None}


def _vm_rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return 0


# -- jobs -----------------------------------------------------------------------------


def edit(image: str, lane: Lane, key: str) -> Job:
    recipe = Recipe(steps=[Step(op="kontext_edit", params=PARAMS)])
    return Job(
        input=image,
        recipe=recipe,
        mode=lane,
        seed=7,
        output=OutputSpec(format="png", key=key),
    )


def submit(store: JobStore, jobs: Sequence[Job]) -> None:
    store.enqueue(Submission(j, queue_name(TIER, j.mode)) for j in jobs)


def settle(store: JobStore, jobs: Sequence[Job]) -> list[JobRecord]:
    """Wait (bounded) until every job has finished; their records; raises unless all
    succeeded."""
    ids = [j.id for j in jobs]
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        if all(s is not None and s.terminal for s in store.states(ids)):
            break
        time.sleep(0.02)
    records = [r for r in store.get_many(ids) if r is not None]
    bad = [r for r in records if r.succeeded_at is None]
    if bad or len(records) < len(ids):
        first = bad[0] if bad else "a record is missing"
        raise RuntimeError(f"{len(bad)} of {len(ids)} jobs did not succeed in time: {first}")
    return records


def _span(record: JobRecord, final: bool) -> tuple[float, float]:
    """(running or queued at, succeeded at): a final's run, a preview's whole stay."""
    start = record.running_at if final else record.queued_at
    return start or 0.0, record.succeeded_at or 0.0


def latency_ms(record: JobRecord) -> float:
    return ((record.succeeded_at or 0) - (record.queued_at or 0)) * 1000


def duration_s(record: JobRecord) -> float:
    return (record.succeeded_at or 0) - (record.running_at or 0)


@dataclass
class Figures:
    """One layout's measurements (ms unless named otherwise)."""

    idle: list[float] = field(default_factory=list)
    idle_work: list[float] = field(default_factory=list)
    """Idle previews' running_at -> succeeded_at."""
    behind: list[float] = field(default_factory=list)
    """Previews submitted while a final was running: submit -> result."""
    lone: list[float] = field(default_factory=list)
    """Of those, the ones submitted when no other preview was queued or running."""
    others: list[float] = field(default_factory=list)
    alone_s: list[float] = field(default_factory=list)
    loaded_s: list[float] = field(default_factory=list)
    previews_in_final: list[int] = field(default_factory=list)
    load: list[float] = field(default_factory=list)
    """The host's 1-minute load average at the start and end (other work shares it)."""
    rss_kb: dict[int, tuple[int, int]] = field(default_factory=dict)
    """pid -> (RSS when ready, RSS after warm-up)."""
    model_bytes: int = 0
    """Measured bytes of the resident models in all the layout's worker processes."""

    @property
    def step_ms(self) -> float:
        return median(self.alone_s) * 1000 / FINAL_STEPS

    @property
    def work_ms(self) -> float:
        return median(self.idle)

    @property
    def rss_growth_mb(self) -> float:
        return sum(after - before for before, after in self.rss_kb.values()) / 1024


def measure(here: Lab, layout: Layout, env: dict[str, str], image: str, args: Any) -> Figures:
    store, got = JobStore(here.client), Figures(load=[os.getloadavg()[0]])
    proc = start(here, layout, env)
    time.sleep(1.0)  # let the pool children settle before the first reading
    before = tree_rss_kb(proc.pid)
    # 1. warm-up: every process of the layout loads the model (and runs it once)
    warm = [edit(image, Lane.PREVIEW, f"{layout.key}/warm-p"),
            edit(image, Lane.FINAL, f"{layout.key}/warm-f")]  # fmt: skip
    submit(store, warm)
    settle(store, warm)
    got.model_bytes = sum(
        resident_bytes_of(here.client, Keyspace(), name)
        for name in live_workers(here.client, Keyspace())
        if name.startswith(layout.beating)
    )
    after = tree_rss_kb(proc.pid)
    got.rss_kb = {pid: (before.get(pid, 0), kb) for pid, kb in after.items()}
    # 2. idle previews, one at a time
    for i in range(IDLE_PREVIEWS):
        job = edit(image, Lane.PREVIEW, f"{layout.key}/idle-{i}")
        submit(store, [job])
        record = settle(store, [job])[0]
        got.idle.append(latency_ms(record))
        got.idle_work.append(((record.succeeded_at or 0) - (record.running_at or 0)) * 1000)
    # 3. finals alone, one at a time, before and after 4. (the host's load drifts)
    alone(store, got, image, f"{layout.key}/alone-before")
    # 4. finals back to back under a stream of previews
    stream(store, got, image, layout.key, args)
    alone(store, got, image, f"{layout.key}/alone-after")
    got.load.append(os.getloadavg()[0])
    here.stop(proc)
    here.procs.remove(proc)
    return got


def alone(store: JobStore, got: Figures, image: str, key: str) -> None:
    for i in range(ALONE_FINALS):
        job = edit(image, Lane.FINAL, f"{key}-{i}")
        submit(store, [job])
        got.alone_s.append(duration_s(settle(store, [job])[0]))


def stream(store: JobStore, got: Figures, image: str, key: str, args: Any) -> None:
    finals = [edit(image, Lane.FINAL, f"{key}/final-{i}") for i in range(args.finals)]
    submit(store, finals)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        first = store.get(finals[0].id)
        if first is not None and first.running_at:
            break
        time.sleep(0.005)
    time.sleep(0.1)  # into the first final's steps
    previews = []
    started = time.perf_counter()
    for i in range(args.previews):
        job = edit(image, Lane.PREVIEW, f"{key}/stream-{i}")
        submit(store, [job])
        previews.append(job)
        time.sleep(max(0.0, started + (i + 1) / args.rate - time.perf_counter()))
    final_records = settle(store, finals)
    preview_records = settle(store, previews)
    for record in preview_records:
        at = record.queued_at or 0
        if not any(_span(f, True)[0] <= at < _span(f, True)[1] for f in final_records):
            got.others.append(latency_ms(record))
            continue
        got.behind.append(latency_ms(record))
        if not any(p is not record and _span(p, False)[0] - 0.001 <= at < _span(p, False)[1]
                   for p in preview_records):  # fmt: skip
            got.lone.append(latency_ms(record))
    for final in final_records:
        got.loaded_s.append(duration_s(final))
        got.previews_in_final.append(
            sum(
                1
                for p in preview_records
                if (final.running_at or 0) <= (p.running_at or 0) < (final.succeeded_at or 0)
            )
        )


# -- the table ------------------------------------------------------------------------


def _ms(values: Sequence[float], q: float) -> str:
    return f"{percentile(values, q):.0f}" if values else "-"


def report(figures: dict[str, Figures], weights_mb: float, args: Any) -> str:
    a, b = figures["split"], figures["both"]
    cols = list(figures.values())
    rows: list[list[object]] = [
        ["one final step (final alone / 30)", *[f"{f.step_ms:.1f}" for f in cols], "~50 ms"],
        ["preview idle submit->result p50", *[_ms(f.idle, 50) for f in cols], "reference"],
        ["preview idle submit->result p99", *[_ms(f.idle, 99) for f in cols], ""],
        ["preview idle running->result p50", *[_ms(f.idle_work, 50) for f in cols], ""],
        ["previews behind a final (n)", *[len(f.behind) for f in cols], ""],
        ["preview behind final p50", *[_ms(f.behind, 50) for f in cols], ""],
        ["preview behind final p99", *[_ms(f.behind, 99) for f in cols], ""],
        ["  of those, with no other preview in flight (n)", *[len(f.lone) for f in cols], ""],
        ["  their p50", *[_ms(f.lone, 50) for f in cols], ""],
        ["  their p99", *[_ms(f.lone, 99) for f in cols], "p99 <= bound"],
        ["bound: step + preview work + 10 ms", *[f"{_bound(f):.0f}" for f in cols],
         "p99 <= bound"],
        ["p99 / (step + preview work)",
         *[f"{percentile(f.behind, 99) / (f.step_ms + f.work_ms):.2f}" if f.behind else "-"
           for f in cols], ""],
        ["p99 within bound?", *[_verdict(percentile(f.behind, 99) <= _bound(f)) if f.behind
                                else "-" for f in cols], ""],
        ["final alone, median (s)", *[f"{median(f.alone_s):.2f}" for f in cols], ""],
        ["final under preview stream, median (s)", *[f"{median(f.loaded_s):.2f}" for f in cols],
         ""],
        ["previews run per final (mean)",
         *[f"{sum(f.previews_in_final) / len(f.previews_in_final):.1f}" for f in cols], ""],
        ["final loss, raw", *[f"{_loss(f):+.1%}" for f in cols], "<= 5 % at 4/s"],
        ["final loss net of previews' own work", *[f"{_net_loss(f):+.1%}" for f in cols],
         "(preemption overhead)"],
        ["resident model tensors, measured (MB)", *[f"{f.model_bytes / 1e6:.1f}" for f in cols],
         "(b) <= (a) / 2"],
        ["RSS growth ready->warm, all procs (MB)", *[f"{f.rss_growth_mb:.0f}" for f in cols],
         "(torch + diffusers + model)"],
        ["  per process (MB)", *[_per_process(f) for f in cols], ""],
        ["host load avg, start/end (2 cores)",
         *[" / ".join(f"{x:.1f}" for x in f.load) for f in cols], ""],
    ]  # fmt: skip
    titles = {layout.key: layout.title for layout in LAYOUTS}
    header = ["metric (ms unless named)", *[titles[key] for key in figures], "target"]
    memory = b.model_bytes / a.model_bytes if a.model_bytes else float("nan")
    rss = b.rss_growth_mb / a.rss_growth_mb if a.rss_growth_mb else float("nan")
    verdicts = [
        f"final loss (b) {_loss(b):+.1%} raw, {_net_loss(b):+.1%} net at {args.rate:g} previews/s"
        f" -> {_verdict(_loss(b) <= 0.05)} (raw), {_verdict(_net_loss(b) <= 0.05)} (net)",
        f"resident model memory (b)/(a) = {memory:.2f} -> {_verdict(memory <= 0.5)} (halved);"
        f" process RSS growth (b)/(a) = {rss:.2f}; model weights on disk {weights_mb:.1f} MB",
    ]
    return "\n".join([table(rows, header), "", *verdicts])


def _bound(f: Figures) -> float:
    return f.step_ms + f.work_ms + 10


def _loss(f: Figures) -> float:
    return median(f.loaded_s) / median(f.alone_s) - 1


def _net_loss(f: Figures) -> float:
    """The finals' slowdown beyond the previews' own work run inside them (idle
    running->result per preview): what stepping aside itself costs."""
    alone = median(f.alone_s)
    extra = [
        loaded - alone - n * median(f.idle_work) / 1000
        for loaded, n in zip(f.loaded_s, f.previews_in_final, strict=True)
    ]
    return median(extra) / alone


def _per_process(f: Figures) -> str:
    grown = sorted(((after - before) / 1024 for before, after in f.rss_kb.values()), reverse=True)
    return " + ".join(f"{g:.0f}" for g in grown if g >= 5) or "0"


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--previews", type=int, default=60)
    parser.add_argument("--rate", type=float, default=4.0, help="previews per second")
    parser.add_argument("--finals", type=int, default=4, help="finals back to back")
    parser.add_argument("--only", choices=[lay.key for lay in LAYOUTS], action="append")
    parser.add_argument("--plain-worker", metavar="NAME", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_worker:
        plain_worker(args.plain_worker)
        return
    figures: dict[str, Figures] = {}
    with lab() as here:
        started = time.perf_counter()
        env = publish_wide_kontext(here.tmp)
        env["DARKROOM_MODEL_CACHE"] = str(here.tmp / "model-cache")
        # Each worker process runs torch on every core (workers.runtime); two processes
        # on 2 cores with OpenMP's spinning waits ran a final 30x slower under (a). Passive
        # waits in every layout keep this a comparison of schedulers, not of spin-locks.
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        image = write_image(here.tmp / "photo.png", PARAMS["max_side"])
        print(f"model built and published in {time.perf_counter() - started:.1f} s", flush=True)
        for layout in LAYOUTS:
            if args.only and layout.key not in args.only:
                continue
            started = time.perf_counter()
            figures[layout.key] = measure(here, layout, env, image, args)
            print(f"{layout.title}: {time.perf_counter() - started:.0f} s", flush=True)
        weights = weight_mb(here.tmp)
    if {"split", "both"} <= figures.keys():
        print()
        print(report(figures, weights, args))
    else:
        for key, got in figures.items():
            print(key, got)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
