"""A preview's own denoising steps never step aside: its thread's `between_steps()` is a
no-op, even while a final and another preview wait for the card."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from jobs.schema import Lane
from workers.steps import StepScheduler

WAIT_S = 10.0


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.001)


def test_a_preview_between_its_steps_does_not_lock_up_the_card() -> None:
    steps = StepScheduler(max_overtakes=1)
    order: list[str] = []
    final_in, preview_in = threading.Event(), threading.Event()

    def final() -> None:
        with steps.holding(Lane.FINAL):
            final_in.set()
            until(lambda: steps.previews_waiting == 1)
            steps.between_steps()  # the first preview goes ahead: the one overtake
            order.append("final")

    def first_preview() -> None:
        with steps.holding(Lane.PREVIEW):
            preview_in.set()
            until(lambda: steps.previews_waiting == 1)  # the second waits behind the final
            steps.between_steps()  # its own StepHook between two denoising steps
            order.append("first preview")

    def second_preview() -> None:
        with steps.holding(Lane.PREVIEW):
            order.append("second preview")

    threads = [threading.Thread(target=final, daemon=True)]
    threads[0].start()
    final_in.wait(WAIT_S)
    threads.append(threading.Thread(target=first_preview, daemon=True))
    threads[1].start()
    preview_in.wait(WAIT_S)
    threads.append(threading.Thread(target=second_preview, daemon=True))
    threads[2].start()
    for thread in threads:
        thread.join(WAIT_S)

    assert not any(t.is_alive() for t in threads), f"stuck; finished: {order}"
    assert order == ["first preview", "final", "second preview"]
