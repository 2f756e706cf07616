"""`darkroom worker --lane both`: one supervisor, one child process per lane.

Each lane is its own blast radius: a lane whose process dies (a poison preview that
crashes its solo worker, say) is started again alone, with backoff, while the other lane
keeps rendering. SIGTERM / SIGINT is forwarded to every lane (a Celery warm shutdown:
each finishes the render in hand) and the supervisor waits up to `grace_s` (the render
time limit by default) for them; lanes still running then are SIGKILLed with every
process under them, so no child outlives the supervisor. It never raises: it exits 0
after a clean stop, else with the worst child's status.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
POLL_S = 0.2


@dataclass
class LaneProcess:
    """One lane's `darkroom worker` child and how often it has been started again."""

    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    due: float = 0.0
    done: bool = False
    codes: list[int] = field(default_factory=list)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, cwd=Path.cwd())

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()


def descendants(pid: int) -> list[int]:
    """Every process under `pid` (Linux /proc), deepest last."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            for child in (task / "children").read_text().split():
                found += [int(child), *descendants(int(child))]
    return found


def supervise(lanes: Sequence[list[str]], grace_s: float) -> int:
    """Run each argv as a lane until SIGTERM/SIGINT; returns the exit status."""
    children = [LaneProcess(list(argv)) for argv in lanes]
    stopping: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        stopping.append(signum)
        for child in children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    for child in children:
        child.start()
    while not stopping and not all(c.done for c in children):
        for child in children:
            _tend(child)
        time.sleep(POLL_S)
    return _stop(children, grace_s)


def _tend(child: LaneProcess) -> None:
    """Start a lane again after it died (not after a clean stop, e.g. a drain)."""
    if child.done:
        return
    code = child.exited()
    if code is None:
        return
    now = time.monotonic()
    if code == 0:
        child.done = True
        return
    if child.due == 0.0:
        delay = RESTART_BACKOFF_S[min(child.restarts, len(RESTART_BACKOFF_S) - 1)]
        log.warning("lane %s exited with %s; restarting in %.0f s", child.argv, code, delay)
        child.codes.append(code)
        child.due = now + delay
    elif now >= child.due:
        child.restarts += 1
        child.due = 0.0
        child.start()


def _stop(children: Sequence[LaneProcess], grace_s: float) -> int:
    """Wait for every lane to finish its render, up to `grace_s`; then kill what is left."""
    deadline = time.monotonic() + grace_s
    for child in children:
        if child.proc is None:
            continue
        try:
            child.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            log.error("lane %s still running after %.0f s: killing it", child.argv, grace_s)
            for pid in [child.proc.pid, *descendants(child.proc.pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            child.proc.wait()
    codes = [c.proc.returncode for c in children if c.proc is not None]
    return max((abs(code) for code in codes), default=0)
