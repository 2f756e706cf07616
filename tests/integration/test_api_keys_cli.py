"""`darkroom keys` and `darkroom webhooks` as a user runs them, against a real Redis."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from producer.api_keys import KeyRing, digest, keys
from transport.embedded import EmbeddedRedis
from transport.keyspace import Keyspace
from workers.webhooks import webhooks

pytestmark = pytest.mark.integration


def env(redis_server: EmbeddedRedis, tmp_path: Path) -> dict[str, str]:
    return {"DARKROOM_REDIS_URL": redis_server.url, "DARKROOM_HOME": str(tmp_path / "home")}


def test_a_key_is_shown_once_stored_hashed_listed_and_revoked(
    redis_server: EmbeddedRedis, redis_client: redis.Redis, tmp_path: Path
) -> None:
    runner = CliRunner()
    created = runner.invoke(
        keys,
        [
            "create",
            "--tenant",
            "studio",
            "--rate",
            "30",
            "--concurrency",
            "4",
            "--ops",
            "sharpen,denoise",
        ],
        env=env(redis_server, tmp_path),
    )
    assert created.exit_code == 0, created.output
    key = re.search(r"API key:\s+(drk_\S+)", created.output)
    key_id = re.search(r"key id:\s+([0-9a-f]{12})", created.output)
    assert key and key_id and "whsec_" in created.output
    stored = redis_client.hgetall(Keyspace().api_key(key_id[1]))
    assert key[1].encode() not in b"".join(stored.values())  # never the key itself
    assert stored[b"sha256"] == digest(key[1]).encode()
    record = KeyRing(redis_client).authenticate(key[1])
    assert record is not None and record.tenant == "studio"
    assert record.limits.rate_per_min == 30 and record.limits.ops == {"sharpen", "denoise"}

    listed = runner.invoke(keys, ["list"], env=env(redis_server, tmp_path))
    assert key_id[1] in listed.output and "studio" in listed.output and key[1] not in listed.output

    revoked = runner.invoke(keys, ["revoke", key_id[1]], env=env(redis_server, tmp_path))
    assert revoked.exit_code == 0 and KeyRing(redis_client).authenticate(key[1]) is None
    missing = runner.invoke(keys, ["revoke", "000000000000"], env=env(redis_server, tmp_path))
    assert missing.exit_code != 0 and "no key" in missing.output


def test_keys_create_refuses_a_bad_tenant_or_op(
    redis_server: EmbeddedRedis, redis_client: redis.Redis, tmp_path: Path
) -> None:
    runner = CliRunner()
    for args in (["--tenant", "Not Valid"], ["--tenant", "ok", "--ops", "teleport"]):
        result = runner.invoke(keys, ["create", *args], env=env(redis_server, tmp_path))
        assert result.exit_code == 2 and "Error:" in result.output, result.output
    assert redis_client.scard(Keyspace().api_keys()) == 0


def test_webhooks_serve_drains_the_queue_and_stops(
    redis_server: EmbeddedRedis, redis_client: redis.Redis, tmp_path: Path
) -> None:
    runner = CliRunner()
    result = runner.invoke(
        webhooks, ["serve", "--drain", "--max-seconds", "5"], env=env(redis_server, tmp_path)
    )
    assert result.exit_code == 0 and "stopped after 0 attempts" in result.output
    pending = runner.invoke(webhooks, ["pending"], env=env(redis_server, tmp_path))
    assert "0 deliveries pending" in pending.output
