"""The hand-written render message (`transport.messages`) against Celery's own `send_task`.

darkroom writes render messages itself so a job's state and its message land in one
Redis script. If a Celery or kombu upgrade changes the protocol-2 envelope, this test
fails here, not in production: both messages are sent to a real Redis and the raw list
entries are compared field by field.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import redis

from jobs.settings import Settings
from transport.embedded import EmbeddedRedis
from transport.messages import RENDER_TASK, priority_list, render_message
from workers.app import create_app

pytestmark = pytest.mark.integration

# Values that differ per send by design: ids, the sending process, and `reply_to`, which
# Celery fills with its app's oid although render results are never sent back.
PER_SEND = {
    "id",
    "root_id",
    "correlation_id",
    "delivery_tag",
    "origin",
    "argsrepr",
    "kwargsrepr",
    "reply_to",
}


def _sent_by_celery(redis_server: EmbeddedRedis, client: redis.Redis, queue: str) -> Any:
    app = create_app(Settings(redis_url=redis_server.url))
    app.send_task(
        RENDER_TASK,
        kwargs={"job": {"id": "J"}},
        task_id="J",
        queue=queue,
        priority=3,
        ignore_result=True,
    )
    raw = client.lpop(priority_list(queue, 3))
    assert raw is not None, "Celery did not put the message on the priority-3 list"
    return json.loads(raw)


def _diff(ours: dict[str, Any], theirs: dict[str, Any], where: str) -> list[str]:
    problems = []
    for key in sorted(set(ours) | set(theirs)):
        if key not in theirs:
            problems.append(f"{where}.{key}: darkroom sends it, Celery no longer does")
        elif key not in ours:
            problems.append(f"{where}.{key}: Celery sends it, darkroom does not")
        elif key not in PER_SEND and ours[key] != theirs[key]:
            problems.append(f"{where}.{key}: darkroom {ours[key]!r} != Celery {theirs[key]!r}")
    return problems


def test_render_message_matches_celery_send_task_field_by_field(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    theirs = _sent_by_celery(redis_server, redis_client, "cpu.final")
    ours = json.loads(render_message("J", {"id": "J"}, "cpu.final", 3))

    problems = _diff(
        {k: v for k, v in ours.items() if k not in {"headers", "properties", "body"}},
        {k: v for k, v in theirs.items() if k not in {"headers", "properties", "body"}},
        "message",
    )
    problems += _diff(ours["headers"], theirs["headers"], "headers")
    ours_props = {k: v for k, v in ours["properties"].items() if k != "delivery_info"}
    theirs_props = {k: v for k, v in theirs["properties"].items() if k != "delivery_info"}
    problems += _diff(ours_props, theirs_props, "properties")
    problems += _diff(
        ours["properties"]["delivery_info"], theirs["properties"]["delivery_info"], "delivery_info"
    )
    assert not problems, "\n".join(problems)

    # The body is the protocol-2 triple (args, kwargs, embed): same shape, same content.
    ours_body = json.loads(base64.b64decode(ours["body"]))
    theirs_body = json.loads(base64.b64decode(theirs["body"]))
    assert ours_body == theirs_body
    assert ours["headers"]["id"] == ours["properties"]["correlation_id"] == "J"
