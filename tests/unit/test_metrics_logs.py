"""JSON log lines carry the job id of the task that wrote them, and only that one."""

from __future__ import annotations

import io
import json
import logging
import threading

from workers.logs import JsonFormatter, bound_job, configure, json_handler


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_line_is_json_with_the_bound_job_id() -> None:
    stream = io.StringIO()
    log = logging.getLogger("darkroom.test.logs")
    log.handlers, log.propagate = [json_handler(stream)], False
    log.setLevel(logging.INFO)
    log.info("before")
    with bound_job("job-123", task_id="job-123"):
        log.info("decoded %d bytes", 2048, extra={"queue": "cpu.final"})
    log.info("after")
    before, during, after = lines(stream)
    assert "job" not in before and "job" not in after
    assert during["job"] == "job-123"
    assert during["message"] == "decoded 2048 bytes"
    assert during["queue"] == "cpu.final"
    assert during["level"] == "info" and str(during["time"]).endswith("Z")


def test_threads_keep_their_own_job() -> None:
    stream = io.StringIO()
    log = logging.getLogger("darkroom.test.threads")
    log.handlers, log.propagate = [json_handler(stream)], False
    log.setLevel(logging.INFO)
    barrier = threading.Barrier(2)

    def work(job_id: str) -> None:
        with bound_job(job_id):
            barrier.wait()
            log.info("step of %s", job_id)

    threads = [threading.Thread(target=work, args=(j,)) for j in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {(e["job"], e["message"]) for e in lines(stream)} == {
        ("a", "step of a"), ("b", "step of b")
    }  # fmt: skip


def test_exceptions_are_kept_in_the_json_line() -> None:
    record = logging.LogRecord("w", logging.ERROR, __file__, 1, "render failed", None, None)
    try:
        raise RuntimeError("CUDA out of memory")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert "CUDA out of memory" in entry["error"]


def test_configure_replaces_its_own_handler_instead_of_stacking() -> None:
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        configure("debug", io.StringIO())
        configure("info", io.StringIO())
        ours = [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]
        assert len(ours) == 1
        assert root.level == logging.INFO
    finally:
        root.handlers, _ = saved[0], root.setLevel(saved[1])
