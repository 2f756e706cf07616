"""Queue state read from a real Redis: the scrape-time collector, the observer, a tick."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator

import pytest
import redis

from jobs.schema import Job, Recipe, Step
from jobs.settings import Settings
from jobs.states import JobState
from transport.embedded import EmbeddedRedis, free_port
from transport.keyspace import Keyspace
from transport.messages import UNACKED_HASH, priority_list
from transport.store import JobStore, Submission
from workers.autoscale.drivers import DryRunDriver
from workers.autoscale.loop import Autoscaler
from workers.autoscale.observer import Observer
from workers.autoscale.pools import parse_pools
from workers.metrics import serve

pytestmark = pytest.mark.integration
RECIPE = Recipe(steps=[Step(op="resize", params={"max_side": 64})])


def enqueue(store: JobStore, queue: str, priority: int, n: int) -> list[str]:
    jobs = [Job(input=f"file:///scans/{i}.png", recipe=RECIPE, priority=priority) for i in range(n)]
    store.enqueue([Submission(job=j, queue=queue) for j in jobs])
    return [j.id for j in jobs]


def deliver(client: redis.Redis, queue: str, priority: int) -> str:
    """Move one message to kombu's unacked hash, as a worker's BRPOP + ack-late does."""
    raw = client.rpop(priority_list(queue, priority))
    assert raw is not None
    message = json.loads(raw)
    client.hset(UNACKED_HASH, message["properties"]["delivery_tag"],
                json.dumps([message, "", queue]))  # fmt: skip
    return str(message["headers"]["id"])


def scrape(port: int) -> dict[tuple[str, str], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (s.name, s.labels.get("queue", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, Keyspace("darkroom"))


@pytest.fixture
def exporter(redis_server: EmbeddedRedis, redis_client: redis.Redis) -> Iterator[int]:
    port = free_port()
    server = serve(Settings(redis_url=redis_server.url), port=port)
    yield port
    server.shutdown()
    server.server_close()


def test_a_scrape_shows_depth_in_flight_and_oldest_age_per_queue(
    store: JobStore, redis_client: redis.Redis, exporter: int
) -> None:
    enqueue(store, "a10.final", 9, 2)
    enqueue(store, "a10.final", 0, 1)
    enqueue(store, "cpu.preview", 0, 2)
    time.sleep(0.3)
    deliver(redis_client, "cpu.preview", 0)
    redis_client.set("darkroom:worker:w1", json.dumps({"queues": ["cpu.preview"]}))
    redis_client.sadd("darkroom:workers", "w1")
    seen = scrape(exporter)
    assert seen[("darkroom_queue_depth", "a10.final")] == 3  # priority sub-lists summed
    assert seen[("darkroom_queue_depth", "cpu.preview")] == 1
    assert seen[("darkroom_queue_in_flight", "cpu.preview")] == 1
    assert seen[("darkroom_queue_depth", "a100.preview")] == 0
    assert 0.3 <= seen[("darkroom_queue_oldest_age_seconds", "a10.final")] < 30
    assert seen[("darkroom_queue_workers", "cpu.preview")] == 1
    assert seen[("darkroom_queue_scrape_ok", "")] == 1


def test_the_observer_measures_service_time_of_jobs_it_saw_running(
    store: JobStore, redis_client: redis.Redis
) -> None:
    enqueue(store, "a10.final", 8, 4)
    observer = Observer(redis_client, Keyspace("darkroom"))
    job_id = deliver(redis_client, "a10.final", 8)
    store.transition(job_id, JobState.RUNNING, attempt=True)
    first = observer.sample(["a10.final"])["a10.final"]
    assert (first.depth, first.in_flight, first.service_time_s) == (3, 1, None)
    time.sleep(0.25)
    store.transition(job_id, JobState.SUCCEEDED)
    redis_client.delete(UNACKED_HASH)
    second = observer.sample(["a10.final"])["a10.final"]
    assert second.in_flight == 0
    assert second.service_time_s is not None and 0.2 <= second.service_time_s < 5


def test_one_tick_against_redis_asks_for_replicas_to_drain_a_backlog(
    store: JobStore, redis_client: redis.Redis
) -> None:
    enqueue(store, "a10.final", 8, 300)
    config = parse_pools({"pools": [
        {"queue": "a10.final", "max_replicas": 20, "service_time_s": 6, "drain_time_s": 600},
        {"queue": "a10.preview", "min_replicas": 1, "max_replicas": 4},
    ]})  # fmt: skip
    driver = DryRunDriver()
    observer = Observer(redis_client, Keyspace("darkroom"))
    decisions = {d.queue: d for d in Autoscaler(config, observer.sample, driver).step()}
    assert decisions["a10.final"].desired == 3  # 300 x 6 s / 600 s
    assert decisions["a10.preview"].desired == 1
    assert driver.replicas == {"a10.final": 3, "a10.preview": 1}
