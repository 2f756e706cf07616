"""The step scheduler's rules, with real threads: who holds the card, in which order.

Each test drives threads step by step and waits for the scheduler's own counters (a
preview is *waiting*) before letting a final reach its next boundary, so the order it
asserts does not depend on timing.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import pytest

from jobs.schema import Lane
from workers.steps import StepScheduler


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the scheduler never got there"
        time.sleep(0.001)


class Card:
    """A scheduler and a log of who did what while holding it."""

    def __init__(self, max_overtakes: int = 4) -> None:
        self.scheduler = StepScheduler(max_overtakes)
        self.log: list[str] = []
        self.inside: set[str] = set()
        self.overlaps: list[set[str]] = []
        self._lock = threading.Lock()

    def work(self, who: str) -> None:
        with self._lock:
            self.log.append(who)
            self.inside.add(who)
            if len({n[0] for n in self.inside}) > 1:  # p... and f... at once
                self.overlaps.append(set(self.inside))
        time.sleep(0.005)
        with self._lock:
            self.inside.discard(who)

    def final(self, name: str, steps: int, gates: list[threading.Event]) -> threading.Thread:
        """A final of `steps` steps; before step n > 0 it waits for gates[n - 1]."""

        def run() -> None:
            with self.scheduler.holding(Lane.FINAL):
                for n in range(steps):
                    if n:
                        gates[n - 1].wait(10)
                        self.scheduler.between_steps()
                    self.work(f"{name}{n}")

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def preview(self, name: str, resident: bool = True) -> threading.Thread:
        def run() -> None:
            with self.scheduler.holding(Lane.PREVIEW, resident=resident):
                self.work(name)

        thread = threading.Thread(target=run)
        thread.start()
        return thread


def test_a_waiting_preview_runs_between_two_steps_of_a_final() -> None:
    card = Card()
    gates = [threading.Event() for _ in range(2)]
    final = card.final("f", 3, gates)
    wait_for(lambda: card.log == ["f0"])
    preview = card.preview("p")
    wait_for(lambda: card.scheduler.previews_waiting == 1)  # it waits for the step to end
    assert card.log == ["f0"]
    for gate in gates:
        gate.set()
    for thread in (final, preview):
        thread.join(10)
    assert card.log == ["f0", "p", "f1", "f2"]
    assert card.overlaps == [], "a preview and a final step never share the card"
    assert card.scheduler.stats.yields == 1 and card.scheduler.stats.overtakes == 1


def test_no_more_than_max_overtakes_previews_run_ahead_of_a_final_per_step() -> None:
    card = Card(max_overtakes=2)
    gates = [threading.Event() for _ in range(3)]
    final = card.final("f", 4, gates)
    wait_for(lambda: card.log == ["f0"])
    previews = [card.preview(f"p{n}") for n in range(5)]
    wait_for(lambda: card.scheduler.previews_waiting == 5)
    for gate in gates:
        gate.set()
    for thread in [final, *previews]:
        thread.join(10)
    finals = [i for i, who in enumerate(card.log) if who.startswith("f")]
    runs = [b - a - 1 for a, b in itertools.pairwise(finals)]
    assert runs[:2] == [2, 2], card.log  # two previews, a step, two previews, a step
    assert sum(runs) + len(card.log) - finals[-1] - 1 == 5  # every preview ran once
    assert card.overlaps == []


def test_previews_share_the_card_with_each_other() -> None:
    scheduler = StepScheduler()
    inside = threading.Barrier(2, timeout=10)

    def preview() -> None:
        with scheduler.holding(Lane.PREVIEW):
            inside.wait()  # both are in at once, or this times out

    threads = [threading.Thread(target=preview) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not inside.broken


def test_a_preview_that_must_load_its_model_does_not_overtake() -> None:
    card = Card()
    gates = [threading.Event() for _ in range(2)]
    final = card.final("f", 3, gates)
    wait_for(lambda: card.log == ["f0"])
    cold = card.preview("p", resident=False)  # admitted like a final: no preemption
    wait_for(lambda: "p" in card.log)  # finals (and cold previews) share the card
    for gate in gates:
        gate.set()
    for thread in (final, cold):
        thread.join(10)
    assert card.scheduler.stats.yields == 0 and card.scheduler.stats.overtakes == 0


def test_a_preview_that_demotes_itself_lets_the_waiting_final_go_on() -> None:
    scheduler = StepScheduler()
    loading = threading.Event()
    resumed = threading.Event()
    gate = threading.Event()

    def final() -> None:
        with scheduler.holding(Lane.FINAL):
            gate.wait(10)
            scheduler.between_steps()  # a preview waits: step aside
            resumed.set()

    def preview() -> None:
        with scheduler.holding(Lane.PREVIEW):
            scheduler.demote()  # its model is not resident: it loads, like a final
            loading.set()
            resumed.wait(10)  # the final's next step runs while this one loads

    f = threading.Thread(target=final)
    f.start()
    wait_for(lambda: scheduler._finals_running == 1)
    p = threading.Thread(target=preview)
    p.start()
    wait_for(lambda: scheduler.previews_waiting == 1)
    gate.set()
    for thread in (f, p):
        thread.join(10)
    assert loading.is_set() and resumed.is_set()


def test_max_overtakes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_overtakes"):
        StepScheduler(0)


def test_a_preview_between_its_own_steps_does_not_lock_up_the_card() -> None:
    """A preview's render calls `between_steps()` too; on its thread that is a no-op,
    even while a final (out of overtakes) and another preview wait."""
    steps = StepScheduler(max_overtakes=1)
    order: list[str] = []
    final_in, preview_in = threading.Event(), threading.Event()

    def final() -> None:
        with steps.holding(Lane.FINAL):
            final_in.set()
            wait_for(lambda: steps.previews_waiting == 1)
            steps.between_steps()  # the first preview goes ahead: the one overtake
            order.append("final")

    def first_preview() -> None:
        with steps.holding(Lane.PREVIEW):
            preview_in.set()
            wait_for(lambda: steps.previews_waiting == 1)  # the second waits behind the final
            steps.between_steps()  # its own StepHook between two denoising steps
            order.append("first preview")

    def second_preview() -> None:
        with steps.holding(Lane.PREVIEW):
            order.append("second preview")

    threads = [threading.Thread(target=final, daemon=True)]
    threads[0].start()
    final_in.wait(10)
    threads.append(threading.Thread(target=first_preview, daemon=True))
    threads[1].start()
    preview_in.wait(10)
    threads.append(threading.Thread(target=second_preview, daemon=True))
    threads[2].start()
    for thread in threads:
        thread.join(10)
    assert not any(t.is_alive() for t in threads), f"stuck; finished: {order}"
    assert order == ["first preview", "final", "second preview"]
