"""`make bench`: run the benchmarks one after another, each in its own process.

    python -m bench                 # every CPU benchmark
    python -m bench queue ops       # just these
    python -m bench --quick         # smaller counts where a benchmark has them

Each prints its own side-by-side table. `gpu_fullsize` runs only when named (it needs CUDA).
"""

from __future__ import annotations

import subprocess
import sys
import time

CPU = {
    "queue": "dispatch, preview isolation, throughput, submission (the backbone targets)",
    "ops": "classic op latency at 1 MP",
    "preview": "one-call wait=preview latency through the API, split by Redis timestamps",
    "portrait": "face analysis, skin_smooth, remove_background, portrait_retouch",
    "models": "cold load vs warm call; resident cache under a mixed stream",
    "affinity": "model-aware claiming vs LRU alone: reloads and latency, 2 workers x 3 models",
    "lanes": "one card, two lanes: split processes vs the step scheduler vs a plain worker",
    "preview_batch": "micro-batched vs single previews, bursts of 1, 2 and 4",
    "identity": "identity_portrait per stage at tiny size",
    "multi_identity": "multi_identity per stage at tiny size, two people",
    "autoscale_sim": "autoscaler vs static pools on a synthetic day",
    "faults": "SIGKILL, Redis restart and S3 outage under load",
    "hosted": "hosted tier overhead and throughput against the Gemini stand-in",
    "variants": "super-resolution quality / speed / memory per model x scale x variant",
}
QUICK = {"queue": ["--quick"]}


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    names = [a for a in argv if not a.startswith("-")] or list(CPU)
    failed = []
    for name in names:
        print(f"\n== bench.{name}: {CPU.get(name, '')}", flush=True)
        started = time.perf_counter()
        extra = QUICK.get(name, []) if quick else []
        code = subprocess.call([sys.executable, "-m", f"bench.{name}", *extra])
        print(f"-- bench.{name} took {time.perf_counter() - started:.0f} s (exit {code})")
        if code:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
