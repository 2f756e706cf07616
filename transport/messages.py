"""Queue layout on Redis and the render message, as kombu's Redis transport stores it.

darkroom writes render messages itself (Celery task protocol 2, JSON body) so that a
job's state and its message go to Redis in one atomic script, pipelined by the
thousand. Workers are plain Celery workers; `tests/integration` proves they consume
these messages. The constants here are the ones the worker's Celery app is built with.
"""

from __future__ import annotations

import base64
import json
import os
import socket

RENDER_TASK = "darkroom.render"
SEP = ":"
PRIORITY_STEPS = tuple(range(10))
UNACKED_HASH = "unacked"
UNACKED_INDEX = "unacked_index"
_ORIGIN = f"{os.getpid()}@{socket.gethostname()}"


def priority_list(queue: str, priority: int) -> str:
    """The Redis list holding `queue`'s messages of one priority (0 is the bare name).

    Raises:
        ValueError: `priority` is not 0-9.
    """
    if priority not in PRIORITY_STEPS:
        raise ValueError(f"priority must be 0-9, not {priority}")
    return f"{queue}{SEP}{priority}" if priority else queue


def priority_lists(queue: str) -> list[str]:
    """Every priority sub-list of `queue`, highest priority first."""
    return [priority_list(queue, p) for p in PRIORITY_STEPS]


def render_message(job_id: str, job: dict[str, object], queue: str, priority: int) -> str:
    """The JSON that kombu's Redis transport keeps in a list for one render task."""
    body = json.dumps(
        [[], {"job": job}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    )
    headers: dict[str, object] = {
        "lang": "py",
        "task": RENDER_TASK,
        "id": job_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": job_id,
        "parent_id": None,
        "argsrepr": "()",
        "kwargsrepr": f"{{'job': {job_id!r}}}",
        "origin": _ORIGIN,
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    properties = {
        "correlation_id": job_id,
        "reply_to": None,
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": priority,
        "body_encoding": "base64",
        # Unique per send: kombu keys its unacked hash by this tag.
        "delivery_tag": os.urandom(16).hex(),
    }
    return json.dumps(
        {
            "body": base64.b64encode(body.encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": properties,
        }
    )


def message_id(raw: bytes | str | None) -> str | None:
    """The task (job) id of a message as it sits on a queue list, or None when `raw` is
    missing or not a Celery message."""
    if raw is None:
        return None
    try:
        job_id = json.loads(raw)["headers"]["id"]
    except (ValueError, KeyError, TypeError):
        return None
    return job_id if isinstance(job_id, str) else None


def decode_unacked(raw: bytes | str) -> tuple[str | None, str | None]:
    """(task id, routing key) of an entry of kombu's unacked hash, or Nones."""
    try:
        message, _exchange, routing_key = json.loads(raw)
        return message["headers"]["id"], routing_key
    except (ValueError, KeyError, TypeError):
        return None, None
