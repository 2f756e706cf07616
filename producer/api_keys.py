"""API keys: random, shown once, stored hashed, each bound to a tenant with limits.

A key reads `drk_<id>_<secret>`. The id finds the key's record (a Redis hash at
`Keyspace.api_key(id)`); the record holds the sha256 of the whole key, never the key
itself. sha256 is enough here: the secret is 256 random bits, so there is nothing to
guess and no need for a slow password hash. Each key also carries the secret its
webhooks are signed with (`webhook_secret`, read by `workers.webhooks`), shown once
with the key.

`darkroom keys create --tenant T [--rate N] [--concurrency N] [--ops a,b] [--hosted]`,
`darkroom keys list`, `darkroom keys revoke KEY_ID`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import click

from jobs.errors import SchemaError
from jobs.ops import CATALOGUE, get_op
from transport.keyspace import WEBHOOK_SECRET_FIELD, Keyspace

if TYPE_CHECKING:
    from redis import Redis

KEY_PREFIX = "drk"
TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
KEY_ID = re.compile(r"^[0-9a-f]{12}$")


@dataclass(frozen=True)
class KeyLimits:
    """What a key may do. `None` byte and pixel caps mean the server's settings."""

    rate_per_min: int = 600
    concurrency: int = 20
    max_image_bytes: int | None = None
    max_image_pixels: int | None = None
    ops: frozenset[str] = frozenset()  # empty: every op in the catalogue
    admin: bool = False  # may name file:// inputs and s3:// objects outside its prefix
    hosted: bool = False  # may send images to the hosted tier (gemini_edit, overflow)

    def check(self) -> KeyLimits:
        """`self` if it can be issued; checked at creation only, so a stored key whose
        op left the catalogue still reads (and still may not run that op)."""
        if self.rate_per_min < 1 or self.concurrency < 1:
            raise SchemaError("rate and concurrency must be at least 1")
        unknown = sorted(set(self.ops) - set(CATALOGUE))
        if unknown:
            raise SchemaError(
                f"unknown op(s) {', '.join(unknown)}; known: {', '.join(sorted(CATALOGUE))}"
            )
        return self


@dataclass(frozen=True)
class ApiKey:
    """A key's record as stored (never the key itself)."""

    id: str
    tenant: str
    limits: KeyLimits = field(default_factory=KeyLimits)
    created_at: float = 0.0
    revoked_at: float | None = None
    webhook_secret: str = ""

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows_op(self, op: str) -> bool:
        if get_op(op).family == "hosted" and not self.limits.hosted:
            return False  # images leave the machine only for keys that opted in
        return not self.limits.ops or op in self.limits.ops

    def describe(self) -> dict[str, Any]:
        """The record without its webhook secret, for listings."""
        limits = asdict(self.limits) | {"ops": sorted(self.limits.ops)}
        return {
            "id": self.id,
            "tenant": self.tenant,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "limits": limits,
        }


@dataclass(frozen=True)
class IssuedKey:
    """What `create` hands back once: the key and the webhook secret, in clear."""

    key: str
    record: ApiKey


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_tenant(tenant: str) -> str:
    if not TENANT.match(tenant):
        raise SchemaError(
            f"tenant {tenant!r}: use 1-63 lower-case letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return tenant


def split_key(presented: str) -> str | None:
    """The key id inside a presented key, or None if it is not shaped like one."""
    prefix, _, rest = presented.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or not KEY_ID.match(key_id) or len(secret) < 20:
        return None
    return key_id


class KeyRing:
    """API key records in Redis: create, authenticate, list, revoke."""

    def __init__(self, redis: Redis, keys: Keyspace | None = None) -> None:
        self.redis = redis
        self.keys = keys or Keyspace()

    def create(self, tenant: str, limits: KeyLimits | None = None) -> IssuedKey:
        record = ApiKey(
            id=secrets.token_hex(6),
            tenant=check_tenant(tenant),
            limits=(limits or KeyLimits()).check(),
            created_at=time.time(),
            webhook_secret="whsec_" + secrets.token_urlsafe(32),
        )
        key = f"{KEY_PREFIX}_{record.id}_{secrets.token_urlsafe(32)}"
        pipe = self.redis.pipeline()
        pipe.hset(self.keys.api_key(record.id), mapping=_to_hash(record, digest(key)))
        pipe.sadd(self.keys.api_keys(), record.id)
        pipe.execute()
        return IssuedKey(key, record)

    def authenticate(self, presented: str) -> ApiKey | None:
        """The active key `presented` is, or None (unknown, malformed or revoked)."""
        key_id = split_key(presented)
        if key_id is None:
            return None
        raw = self.redis.hgetall(self.keys.api_key(key_id))
        if not raw:
            return None
        stored = _text(raw.get(b"sha256", b""))
        if not hmac.compare_digest(stored, digest(presented)):
            return None
        record = _from_hash(key_id, raw)
        return record if record.active else None

    def get(self, key_id: str) -> ApiKey | None:
        raw = self.redis.hgetall(self.keys.api_key(key_id)) if KEY_ID.match(key_id) else {}
        return _from_hash(key_id, raw) if raw else None

    def list(self) -> list[ApiKey]:
        ids = sorted(_text(i) for i in self.redis.smembers(self.keys.api_keys()))
        found = (self.get(key_id) for key_id in ids)
        return sorted((k for k in found if k), key=lambda k: (k.tenant, k.created_at))

    def revoke(self, key_id: str) -> ApiKey | None:
        """Stop the key from authenticating; its record stays, so its webhooks still sign."""
        if self.get(key_id) is None:
            return None
        self.redis.hsetnx(self.keys.api_key(key_id), "revoked_at", repr(time.time()))
        return self.get(key_id)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _to_hash(record: ApiKey, sha256: str) -> dict[Any, str]:
    limits = record.limits
    fields: dict[Any, str] = {
        "tenant": record.tenant,
        "sha256": sha256,
        "created_at": repr(record.created_at),
        "rate_per_min": str(limits.rate_per_min),
        "concurrency": str(limits.concurrency),
        "ops": ",".join(sorted(limits.ops)),
        "admin": "1" if limits.admin else "0",
        "hosted": "1" if limits.hosted else "0",
        WEBHOOK_SECRET_FIELD: record.webhook_secret,
    }
    if limits.max_image_bytes is not None:
        fields["max_image_bytes"] = str(limits.max_image_bytes)
    if limits.max_image_pixels is not None:
        fields["max_image_pixels"] = str(limits.max_image_pixels)
    return fields


def _from_hash(key_id: str, raw: dict[Any, Any]) -> ApiKey:
    data = {_text(k): _text(v) for k, v in raw.items()}

    def number(name: str) -> int | None:
        return int(data[name]) if data.get(name) else None

    limits = KeyLimits(
        rate_per_min=max(1, number("rate_per_min") or 1),
        concurrency=max(1, number("concurrency") or 1),
        max_image_bytes=number("max_image_bytes"),
        max_image_pixels=number("max_image_pixels"),
        ops=frozenset(op for op in data.get("ops", "").split(",") if op),
        admin=data.get("admin") == "1",
        hosted=data.get("hosted") == "1",
    )
    revoked = data.get("revoked_at")
    return ApiKey(
        id=key_id,
        tenant=data.get("tenant", ""),
        limits=limits,
        created_at=float(data.get("created_at", 0)),
        revoked_at=float(revoked) if revoked else None,
        webhook_secret=data.get(WEBHOOK_SECRET_FIELD, ""),
    )


# -- the `darkroom keys` command -----------------------------------------------------


def _ring() -> KeyRing:
    from producer.cli_common import settings_and_redis

    settings, redis = settings_and_redis()
    return KeyRing(redis, Keyspace(settings.key_prefix))


def _ops(text: str | None) -> frozenset[str]:
    return frozenset(op.strip() for op in (text or "").split(",") if op.strip())


@click.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command()
@click.option("--tenant", required=True, help="the tenant the key acts for")
@click.option("--rate", type=click.IntRange(1), default=600, show_default=True, help="req/min")
@click.option("--concurrency", type=click.IntRange(1), default=20, show_default=True)
@click.option("--ops", default=None, help="comma-separated ops the key may use [default: all]")
@click.option("--max-bytes", type=click.IntRange(1), default=None, help="largest upload")
@click.option("--max-pixels", type=click.IntRange(1), default=None, help="largest image")
@click.option("--admin", is_flag=True, help="may use file:// inputs and any s3:// object")
@click.option("--hosted", is_flag=True, help="may send images to the hosted tier (Gemini)")
def create(
    tenant: str,
    rate: int,
    concurrency: int,
    ops: str | None,
    max_bytes: int | None,
    max_pixels: int | None,
    admin: bool,
    hosted: bool,
) -> None:
    """Create a key; it is shown once, here, and never again."""
    from producer.cli_common import one_line_errors

    def run() -> None:
        limits = KeyLimits(rate, concurrency, max_bytes, max_pixels, _ops(ops), admin, hosted)
        issued = _ring().create(tenant, limits)
        click.echo(f"key id:         {issued.record.id}  (tenant {tenant})")
        click.echo(f"API key:        {issued.key}")
        click.echo(f"webhook secret: {issued.record.webhook_secret}")
        click.echo("Store both now: they are not shown again.", err=True)

    one_line_errors(run)()


@keys.command(name="list")
@click.option("--json", "as_json", is_flag=True)
def list_api_keys(as_json: bool) -> None:
    """List keys (never the keys themselves)."""
    from producer.cli_common import echo_json, one_line_errors

    def run() -> None:
        found = _ring().list()
        if as_json:
            echo_json([k.describe() for k in found])
            return
        for key in found:
            state = "revoked" if key.revoked_at else "active"
            ops = ",".join(sorted(key.limits.ops)) or "all ops"
            ops += "  hosted" if key.limits.hosted else ""
            click.echo(
                f"{key.id}  {key.tenant:<20} {state:<8} {key.limits.rate_per_min}/min  "
                f"{key.limits.concurrency} concurrent  {ops}"
            )

    one_line_errors(run)()


@keys.command()
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke a key by its id: it stops authenticating at once."""
    from producer.cli_common import Failure, one_line_errors

    def run() -> None:
        record = _ring().revoke(key_id)
        if record is None:
            raise Failure(f"no key with id {key_id!r}; `darkroom keys list` shows them")
        click.echo(f"revoked {key_id} (tenant {record.tenant})")

    one_line_errors(run)()
