"""Direct queues: one per worker, for jobs forwarded to the worker whose model is warm.

Every worker consumes, besides its shared queue `<tier>.<lane>`, its own direct queue
`<tier>.<lane>.at.<hostname>` (first, so a forwarded job runs before the shared backlog).
`forward` moves a job there in one script: it marks the job's hash `forwarded_to` (a job
is forwarded at most once, so nothing ping-pongs), registers the direct queue and pushes
the message, unless the job left `queued`, was forwarded before, or the target already
has `room` jobs waiting. The forwarded message keeps the shared queue as its routing key,
so a message restored from kombu's unacked hash goes back to the shared queue.

A direct queue whose worker stopped beating is returned by the sweep (`return_direct`):
its messages go to the front of their shared queue, oldest first. `transport.lost`
counts the registered direct queues as places a message can be.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from transport.keyspace import Keyspace
from transport.messages import (
    PRIORITY_STEPS,
    message_id,
    priority_list,
    priority_lists,
    render_message,
)

if TYPE_CHECKING:
    from redis import Redis

AT = ".at."
"""Between a shared queue's name and a worker's hostname in its direct queue's name."""

# KEYS: job hash, registry set, list to push to, then the direct queue's priority lists.
# ARGV: room, target hostname, message, direct queue name, forwarding hostname.
_FORWARD = """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
if redis.call('HEXISTS', KEYS[1], 'forwarded_to') == 1 then return 0 end
local waiting = 0
for i = 4, #KEYS do waiting = waiting + redis.call('LLEN', KEYS[i]) end
if waiting >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'forwarded_to', ARGV[2], 'forwarded_from', ARGV[5])
redis.call('SADD', KEYS[2], ARGV[4])
redis.call('LPUSH', KEYS[3], ARGV[3])
return 1
"""

# KEYS: registry set, then N direct priority lists, then the N shared ones (same order).
# ARGV: direct queue name. Moves newest first onto the right end: the oldest ends up
# rightmost, where BRPOP takes first. Unregisters the queue once it is empty.
_RETURN = """
local n = (#KEYS - 1) / 2
local moved = {}
for i = 2, n + 1 do
  local item = redis.call('LPOP', KEYS[i])
  while item do
    redis.call('RPUSH', KEYS[i + n], item)
    moved[#moved + 1] = item
    item = redis.call('LPOP', KEYS[i])
  end
end
redis.call('SREM', KEYS[1], ARGV[1])
return moved
"""


def direct_queue(queue: str, hostname: str) -> str:
    """The direct queue of worker `hostname` serving shared `queue` (`<tier>.<lane>`)."""
    return f"{queue}{AT}{hostname}"


def split_direct(name: str) -> tuple[str, str]:
    """(shared queue, hostname) of a direct queue's name.

    Raises:
        ValueError: `name` is not a direct queue's name.
    """
    queue, at, hostname = name.partition(AT)
    if not at or not queue or not hostname:
        raise ValueError(f"{name!r} is not a direct queue (<tier>.<lane>{AT}<hostname>)")
    return queue, hostname


def direct_queues(redis: Redis, keys: Keyspace) -> list[str]:
    """Every direct queue a job was forwarded to and that was not returned since."""
    return sorted(_text(n) for n in redis.smembers(keys.direct_queues()))


def waiting(redis: Redis, queue: str, hostname: str) -> int:
    """Messages waiting in `hostname`'s direct queue of `queue`, all priorities."""
    pipe = redis.pipeline(transaction=False)
    for key in priority_lists(direct_queue(queue, hostname)):
        pipe.llen(key)
    return sum(int(n) for n in pipe.execute())


def forward(
    redis: Redis,
    keys: Keyspace,
    payload: dict[str, object],
    *,
    queue: str,
    priority: int,
    target: str,
    source: str,
    room: int,
) -> bool:
    """Send job `payload` (its JSON dict, with an `id`) to `target`'s direct queue of
    `queue`; False (nothing written) when the job is not `queued`, was forwarded
    before, or `room` (>= 0) or more messages already wait there.

    Raises:
        ValueError: `priority` is not 0-9.
        redis.exceptions.ConnectionError: Redis is unreachable.
    """
    job_id = str(payload["id"])
    direct = direct_queue(queue, target)
    message = render_message(job_id, payload, queue, priority)
    script = redis.register_script(_FORWARD)
    done = script(
        keys=[keys.job(job_id), keys.direct_queues(), priority_list(direct, priority),
              *priority_lists(direct)],
        args=[room, target, message, direct, source],
    )  # fmt: skip
    return bool(done)


def return_direct(redis: Redis, keys: Keyspace, live: Collection[str]) -> list[str]:
    """Move every message of a direct queue whose worker is not in `live` (hostnames
    beating now) to the front of its shared queue; the ids of the jobs moved.

    Raises:
        redis.exceptions.ConnectionError: Redis is unreachable.
    """
    script = redis.register_script(_RETURN)
    moved: list[str] = []
    for name in direct_queues(redis, keys):
        try:
            queue, hostname = split_direct(name)
        except ValueError:
            redis.srem(keys.direct_queues(), name)
            continue
        if hostname in live:
            continue
        shared = [priority_list(queue, p) for p in PRIORITY_STEPS]
        items = script(keys=[keys.direct_queues(), *priority_lists(name), *shared], args=[name])
        moved += [message_id(item) or "" for item in items]
    return moved


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
