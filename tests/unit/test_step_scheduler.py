"""The step scheduler's rules, with real threads (no timing is asserted)."""

from __future__ import annotations

import threading
import time

from jobs.schema import Lane
from workers.steps import StepScheduler


def _until(predicate: object) -> None:
    for _ in range(2000):  # bounded: 20 s at most
        if callable(predicate) and predicate():
            return
        time.sleep(0.01)
    raise AssertionError("condition never held")


def test_a_preview_between_its_own_steps_does_not_lock_the_card() -> None:
    # A final steps aside, one preview overtakes it (K=1), a second preview waits; the
    # running preview's own denoising loop calls between_steps(), as every render does.
    scheduler = StepScheduler(max_overtakes=1)
    inside_final, inside_preview, finished = threading.Event(), threading.Event(), []

    def final() -> None:
        with scheduler.holding(Lane.FINAL):
            inside_final.set()
            _until(lambda: scheduler.previews_waiting)
            scheduler.between_steps()
            finished.append("final")  # resumed, still holding the card

    def first_preview() -> None:
        with scheduler.holding(Lane.PREVIEW):
            inside_preview.set()
            _until(lambda: scheduler.previews_waiting)
            scheduler.between_steps()
            finished.append("preview 1")

    def second_preview() -> None:
        with scheduler.holding(Lane.PREVIEW):
            finished.append("preview 2")

    threads = [threading.Thread(target=final, daemon=True)]
    threads[0].start()
    inside_final.wait(20)
    threads.append(threading.Thread(target=first_preview, daemon=True))
    threads[1].start()
    inside_preview.wait(20)
    threads.append(threading.Thread(target=second_preview, daemon=True))
    threads[2].start()
    for thread in threads:
        thread.join(20)

    assert sorted(finished) == ["final", "preview 1", "preview 2"]
    # the final ran its next step before the second preview (one overtake per step)
    assert finished.index("final") < finished.index("preview 2")
