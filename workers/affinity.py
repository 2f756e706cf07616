"""Model-aware claiming: a job whose model is cold here runs where it is warm.

Each worker advertises the model refs resident in its processes (`resident` in its
heartbeat, refreshed on every beat and right after each job). When a worker is handed a
queued job whose models it does not hold, and a live worker of the same queue holds more
of them with room to take it (`holding` + its direct queue < `slots` +
`settings.affinity_backlog`), the job is forwarded there (`transport.direct.forward`)
instead of loading a model here, evicting another. A job is forwarded at most once; a
forwarded job that finds its target cold, or another worker after the sweep returned a
dead target's direct queue, simply runs. `DARKROOM_MODEL_AFFINITY=0` turns it off.

With several prefork slots a worker's processes each have their own cache: a worker
advertises the union, and the job may land in a process of it that is cold.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError, WatchError

from jobs.errors import DarkroomError
from jobs.schema import Job, Lane, model_refs
from jobs.tiers import queue_name
from transport import direct
from transport.messages import RENDER_TASK
from workers.heartbeat import live_workers

if TYPE_CHECKING:
    from celery import Celery
    from redis import Redis

    from transport.keyspace import Keyspace
    from workers.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Peer:
    """A live worker that could take a job: how many of its models it holds warm and how
    many more jobs may wait for it."""

    hostname: str
    warm: int
    room: int


def peers_for(
    beats: Mapping[str, Mapping[str, Any]],
    refs: Sequence[str],
    queue: str,
    *,
    here: int,
    worker: str,
    backlog: int,
) -> list[Peer]:
    """Workers in `beats` (hostname -> heartbeat record) that serve `queue`, hold more of
    `refs` resident than the `here` (0..len(refs)) this `worker` holds, and have room
    (`slots` + `backlog` - jobs `holding` > 0); warmest first, then the most room.
    """
    found = []
    for hostname, beat in beats.items():
        if hostname == worker or queue not in (beat.get("queues") or []):
            continue
        if not beat.get("ready", True):
            continue
        resident = set(beat.get("resident") or [])
        warm = sum(ref in resident for ref in refs)
        room = int(beat.get("slots") or 1) + backlog - len(beat.get("holding") or [])
        if warm > here and room > 0:
            found.append(Peer(hostname, warm, room))
    return sorted(found, key=lambda p: (-p.warm, -p.room, p.hostname))


def forward(rt: Runtime, job: Job, worker: str) -> str | None:
    """Send queued `job` to a live worker where its models are warm, if they are cold
    here; the hostname it went to, or None: run it here.

    A job that runs here cold is announced first: this process advertises what will be
    resident once it has loaded the job's models (`ResidentModels.refs_after_loading`:
    the least recently used ones it will evict are left out), so no peer forwards a job
    here for an evicted model, nor keeps one away for a model that stays.

    Best effort: when Redis fails meanwhile the job runs here (a message forwarded all
    the same meets this attempt's claim there, and is acked).
    """
    if rt.tier.hosted:
        return None
    refs = model_refs(job.recipe)
    here = held_here(rt, refs, job.mode)
    if here == len(refs):
        return None
    on = rt.settings.model_affinity
    try:
        target = _forward_to_peer(rt, job, worker, refs, here) if on else None
        if target is None:
            _publish(rt, worker, _after_loading(rt, refs, job.mode))
    except RedisError:
        log.warning("job %s: not forwarded (Redis failed); it runs here", job.id, exc_info=True)
        return None
    return target


def _after_loading(rt: Runtime, refs: list[str], lane: Lane) -> list[str]:
    models = rt.loaded_models()
    if models is None:
        return refs
    try:
        return models.refs_after_loading(refs, lane)
    except DarkroomError:  # not published, or not for this tier: the render will say so
        return refs


def _forward_to_peer(rt: Runtime, job: Job, worker: str, refs: list[str], here: int) -> str | None:
    queue = queue_name(rt.tier, job.mode)
    beats = live_workers(rt.redis, rt.keys)
    backlog = rt.settings.affinity_backlog
    payload = job.model_dump(mode="json", by_alias=True)
    for peer in peers_for(beats, refs, queue, here=here, worker=worker, backlog=backlog):
        if direct.forward(rt.redis, rt.keys, payload, queue=queue, priority=job.priority,
                          target=peer.hostname, source=worker, room=peer.room):  # fmt: skip
            log.info("job %s: %s warm on %s, cold here; forwarded", job.id, refs, peer.hostname)
            return peer.hostname
    log.debug("job %s: %s cold here and on every live worker with room", job.id, refs)
    return None


def held_here(rt: Runtime, refs: Sequence[str], lane: Lane) -> int:
    """How many of `refs` this process holds resident (0 before its first model)."""
    models = rt.loaded_models()
    if models is None:
        return 0
    held = 0
    for ref in refs:
        # not published, or not for this tier: the render will say so
        with contextlib.suppress(DarkroomError):
            held += models.holds(ref, lane)
    return held


def resident_of(redis: Redis, keys: Keyspace, hostname: str) -> list[str]:
    """Model refs resident in the live processes of worker `hostname` (this host's),
    each once, each process's most recent first; forgets processes that exited."""
    merged: list[str] = []
    for published in _published_by_live(redis, keys, hostname):
        merged += [ref for ref in published["refs"] if ref not in merged]
    return merged


def resident_bytes_of(redis: Redis, keys: Keyspace, hostname: str) -> int:
    """Measured bytes of the models resident in the live processes of worker `hostname`
    (`ResidentModels.resident_bytes`, summed over its processes: a model two processes
    hold counts twice, as it takes memory twice)."""
    return sum(int(p.get("bytes", 0)) for p in _published_by_live(redis, keys, hostname))


def _published_by_live(redis: Redis, keys: Keyspace, hostname: str) -> list[dict[str, Any]]:
    """What each live process of `hostname` published; forgets processes that exited."""
    key = keys.resident(hostname)
    found: list[dict[str, Any]] = []
    exited = []
    for pid, raw in redis.hgetall(key).items():
        if not _alive(int(pid)):
            exited.append(pid)
            continue
        found.append(json.loads(raw))
    if exited:
        redis.hdel(key, *exited)
    return found


def publish_resident(rt: Runtime, hostname: str) -> None:
    """After a job: record this process's resident refs and put the worker's merged list
    in its heartbeat record now (the next beat would, up to an interval later).

    Raises:
        redis.exceptions.ConnectionError: Redis is unreachable.
    """
    models = rt.loaded_models()
    if models is not None:
        _publish(rt, hostname, models.resident_refs())


def _publish(rt: Runtime, hostname: str, refs: list[str]) -> None:
    """Record this process's advertised refs and the measured bytes of what it holds."""
    models = rt.loaded_models()
    size = models.resident_bytes() if models is not None else 0
    rt.redis.hset(
        rt.keys.resident(hostname), str(os.getpid()), json.dumps({"refs": refs, "bytes": size})
    )
    _patch_beat(rt.redis, rt.keys.worker(hostname), resident_of(rt.redis, rt.keys, hostname))


def install(app: Celery) -> None:
    """Publish each process's resident models after every render task."""
    from celery import signals

    from workers.runtime import current

    @signals.task_postrun.connect(weak=False)
    def _published(task: Any = None, **_: Any) -> None:
        rt = current()
        if task is None or task.name != RENDER_TASK or rt is None:
            return
        try:
            publish_resident(rt, task.request.hostname or "unknown")
        except RedisError:
            log.warning("resident models not published (Redis); the next beat will", exc_info=True)


def _patch_beat(redis: Redis, key: str, resident: list[str]) -> None:
    with redis.pipeline() as pipe:
        try:
            pipe.watch(key)
            raw, ttl_ms = pipe.get(key), pipe.pttl(key)
            if raw is None or ttl_ms <= 0:
                return
            record = json.loads(raw)
            record["resident"] = resident
            pipe.multi()
            pipe.set(key, json.dumps(record), px=ttl_ms)
            pipe.execute()
        except WatchError:
            pass  # the heartbeat rewrote the record meanwhile, from the same hash


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
