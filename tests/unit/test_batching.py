"""The micro-batcher alone: who joins a batch, who runs it, what each caller gets back."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from pipelines.batching import MicroBatcher

FOREVER_S = 60.0  # a window no test waits out: a batch closes when it is full


def callers(
    batcher: MicroBatcher, calls: list[tuple[str, int]], run: Callable[[list[int]], Any]
) -> list[Any]:
    """`batcher.submit(key, item, run)` for each (key, item), each on its own thread;
    what each returned or raised."""
    outcomes: list[Any] = [None] * len(calls)

    def one(n: int) -> None:
        key, item = calls[n]
        try:
            outcomes[n] = batcher.submit(key, item, run)
        except BaseException as exc:
            outcomes[n] = exc

    threads = [threading.Thread(target=one, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes


def test_callers_of_one_key_run_as_one_batch_and_get_their_own_results() -> None:
    runs: list[list[int]] = []

    def square(items: list[int]) -> list[int]:
        runs.append(sorted(items))
        return [item * item for item in items]

    batcher = MicroBatcher(FOREVER_S, max_size=4)
    outcomes = callers(batcher, [("a", n) for n in range(4)], square)
    assert outcomes == [0, 1, 4, 9]
    assert runs == [[0, 1, 2, 3]]
    assert (batcher.stats.batches, batcher.stats.items, batcher.stats.largest) == (1, 4, 4)


def test_batches_are_per_key_and_never_larger_than_max_size() -> None:
    runs: list[list[int]] = []
    lock = threading.Lock()

    def record(items: list[int]) -> list[int]:
        with lock:
            runs.append(sorted(items))
        return [-item for item in items]

    batcher = MicroBatcher(FOREVER_S, max_size=2)
    calls = [("a", 1), ("b", 2), ("a", 3), ("b", 4)]
    assert callers(batcher, calls, record) == [-1, -2, -3, -4]
    assert sorted(runs) == [[1, 3], [2, 4]]


def test_a_lone_caller_runs_alone_once_the_window_ends() -> None:
    batcher = MicroBatcher(0.01, max_size=8)
    assert batcher.submit("a", 3, lambda items: [len(items)]) == 1
    assert batcher.submit("a", 3, lambda items: [len(items)]) == 1  # the next batch


def test_an_exception_in_the_batch_reaches_every_caller() -> None:
    def broken(items: list[int]) -> list[int]:
        raise RuntimeError("the card fell over")

    batcher = MicroBatcher(FOREVER_S, max_size=3)
    outcomes = callers(batcher, [("a", n) for n in range(3)], broken)
    assert all(isinstance(o, RuntimeError) and str(o) == "the card fell over" for o in outcomes)
    assert len({id(o) for o in outcomes}) == 3, "each thread raises its own exception object"


def test_an_exception_returned_for_one_item_reaches_its_caller_only() -> None:
    def picky(items: list[int]) -> list[int | BaseException]:
        return [ValueError(f"{i} is odd") if i % 2 else i for i in items]

    batcher = MicroBatcher(FOREVER_S, max_size=3)
    outcomes = callers(batcher, [("a", n) for n in range(3)], picky)
    assert outcomes[0] == 0 and outcomes[2] == 2
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "1 is odd"


def test_a_batch_function_that_loses_results_fails_loudly() -> None:
    batcher = MicroBatcher(FOREVER_S, max_size=2)
    outcomes = callers(batcher, [("a", 1), ("a", 2)], lambda items: items[:1])
    assert all(isinstance(o, RuntimeError) and "2 gave 1" in str(o) for o in outcomes)


@pytest.mark.parametrize(("window_s", "max_size"), [(-1.0, 2), (0.01, 0)])
def test_nonsense_settings_are_refused(window_s: float, max_size: int) -> None:
    with pytest.raises(ValueError, match="window_s >= 0 and max_size >= 1"):
        MicroBatcher(window_s, max_size)
