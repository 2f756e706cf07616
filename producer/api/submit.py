"""Requests -> validated jobs -> Redis, with idempotency and the tenant's concurrency cap.

Order matters:
1. the recipe is built against the op catalogue and the key's allowed ops (422 / 403),
   and the job's extra images against what its ops read (422);
2. an `Idempotency-Key` is claimed (a replay returns the job it made; the same key
   with a different body is a 409);
3. the tenant's concurrency slots are reserved (429 when full; a batch is never refused
   for its size: its jobs wait in intake for slots, see `transport.intake`);
4. the job's owner (`tenant`, `api_key`) is written to its hash, then the job is
   queued by `JobStore.enqueue`, so no reader ever sees a job without its owner.
A failure after 2 or 3 gives the key and the slots back.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from jobs.errors import InputTooLarge, SchemaError
from jobs.ops import check_extra_inputs
from jobs.schema import Job, OutputSpec, Recipe, Step, new_job_id
from jobs.tiers import queue_name, route
from producer.api.caps import check_output
from producer.api.context import ApiContext
from producer.api.errors import ApiError, summary, validation_details
from producer.api.inputs import VettedUpload, check_input, check_webhook
from producer.api.models import MAX_BATCH_INPUTS, JobOptions, StepIn
from producer.api_keys import ApiKey
from producer.overflow import enabled, place
from transport.store import Submission

IDEMPOTENCY_KEY_MAX = 200
CONCURRENCY_RETRY_S = "2"
INTAKE_RETRY_S = "30"
HOLD_PER_SLOT = 10  # jobs a tenant may have waiting in intake per concurrency slot


def recipe_of(options: JobOptions) -> Recipe:
    """The request's recipe (or `ops`), each step checked against the catalogue."""
    if (options.recipe is None) == (options.ops is None):
        raise ApiError(422, "give exactly one of `recipe` (with steps) or `ops`")
    steps: Sequence[StepIn] = options.recipe.steps if options.recipe else options.ops or []
    built = []
    for index, step in enumerate(steps):
        try:
            built.append(Step(op=step.op, params=step.params))
        except SchemaError as exc:
            raise ApiError(422, f"step {index + 1}: {exc}") from None
        except ValidationError as exc:
            details = validation_details(exc)
            raise ApiError(422, f"step {index + 1}: {summary(details)}", details=details) from None
    return Recipe(name=options.recipe.name if options.recipe else None, steps=built)


def check_ops(recipe: Recipe, key: ApiKey) -> None:
    refused = sorted({s.op for s in recipe.steps if not key.allows_op(s.op)})
    if refused:
        allowed = ", ".join(sorted(key.limits.ops))
        raise ApiError(403, f"this key may not run {', '.join(refused)}; it may run: {allowed}")


Extra = str | VettedUpload
"""One of a job's extra images: a URI the tenant named, or an upload already vetted."""


def check_extras(recipe: Recipe, extras: Sequence[Extra], key: ApiKey, ctx: ApiContext) -> None:
    """422 when the recipe's ops take fewer extra images than sent; each named one checked
    as the job's input is (`check_input`)."""
    try:
        check_extra_inputs([(s.op, s.params) for s in recipe.steps], len(extras))
    except SchemaError as exc:
        raise ApiError(422, str(exc)) from None
    for number, extra in enumerate(extras, start=1):
        if isinstance(extra, str):
            try:
                check_input(extra, key, ctx.outputs, ctx.settings)
            except ApiError as exc:
                raise ApiError(
                    exc.status, f"extra input {number}: {exc.message}", code=exc.code
                ) from None


def store_extras(ctx: ApiContext, key: ApiKey, extras: Sequence[Extra]) -> list[str]:
    """The job's `extra_inputs`: uploads stored as the tenant's, named URIs as given."""
    return [
        extra
        if isinstance(extra, str)
        else ctx.outputs.store_upload(key.tenant, extra.data, extra.format)
        for extra in extras
    ]


def check_deadline(cancel_after: float | None, ctx: ApiContext) -> None:
    now = time.time()
    if cancel_after is not None and cancel_after <= now:
        raise ApiError(422, f"cancel_after {cancel_after} is in the past (now {now:.0f})")
    if cancel_after is not None and cancel_after > now + ctx.settings.job_ttl_s:
        raise ApiError(
            422, f"cancel_after is beyond the job's lifetime ({ctx.settings.job_ttl_s} s)"
        )


def queue_for(recipe: Recipe, options: JobOptions, ctx: ApiContext) -> str:
    try:
        return queue_name(enabled(route(recipe, ctx.settings.tiers()), ctx.settings), options.mode)
    except SchemaError as exc:
        raise ApiError(422, str(exc)) from None


def build_job(
    ctx: ApiContext,
    key: ApiKey,
    options: JobOptions,
    recipe: Recipe,
    input_uri: str,
    *,
    job_id: str | None = None,
    batch: str | None = None,
    idempotency_key: str | None = None,
    extra_inputs: Sequence[str] = (),
) -> Job:
    job_id = job_id or new_job_id()
    output = OutputSpec(
        format=options.output.format,
        quality=options.output.quality,
        lossless=options.output.lossless,
        metadata=options.output.metadata,
        bit_depth=options.output.bit_depth,
        frames=options.output.frames,
        uri=ctx.outputs.outputs_uri(key.tenant),
        key=job_id,
    )
    try:
        return Job(
            id=job_id,
            input=input_uri,
            extra_inputs=list(extra_inputs),
            recipe=recipe,
            mode=options.mode,
            priority=options.priority,
            output=output,
            seed=options.seed,
            webhook=options.webhook,
            idempotency_key=idempotency_key,
            batch=batch,
            tenant=key.tenant,
            cancel_after=options.cancel_after,
        )
    except ValidationError as exc:
        details = validation_details(exc)
        raise ApiError(422, summary(details), details=details) from None


def is_remote(uri: str) -> bool:
    """Inputs the API fetches and vets before the job is queued (see `intake`)."""
    return uri.startswith(("https://", "s3://"))


def check_output_size(recipe: Recipe, upload: VettedUpload, key: ApiKey, ctx: ApiContext) -> None:
    try:
        check_output(recipe, (upload.width, upload.height), key, ctx.settings)
    except InputTooLarge as exc:
        raise ApiError(413, exc.message, code="output_too_large") from None


def hold_limit(key: ApiKey) -> int:
    """How many jobs one tenant may have waiting in intake: always room for one full batch
    when nothing waits, so a batch is never refused for good."""
    return max(MAX_BATCH_INPUTS, HOLD_PER_SLOT * key.limits.concurrency)


def stage_batch(ctx: ApiContext, key: ApiKey, jobs: Sequence[Job], queue: str) -> None:
    """Hold a batch's jobs in intake: each is fetched and vetted, and started as the
    tenant's concurrency allows, so a batch larger than the quota is paced, not refused.
    A tenant with `hold_limit` jobs already waiting gets a 429 until they drain."""
    waiting = ctx.intake.waiting(key.tenant)
    if waiting + len(jobs) > hold_limit(key):
        raise ApiError(
            429,
            f"tenant {key.tenant} has {waiting} jobs waiting to start; this key may have "
            f"{hold_limit(key)} waiting (asked for {len(jobs)} more)",
            code="intake_full",
            headers={"Retry-After": INTAKE_RETRY_S},
        )
    ctx.intake.stage(jobs, queue, {"tenant": key.tenant, "api_key": key.id})


# -- idempotency -----------------------------------------------------------------------


def fingerprint(kind: str, body: Any, extra: bytes = b"") -> str:
    """What makes two requests 'the same': route kind, canonical body, uploaded bytes."""
    canonical = json.dumps([kind, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode() + hashlib.sha256(extra).digest()).hexdigest()


@dataclass(frozen=True)
class Idempotency:
    """A claimed `Idempotency-Key`: `existing` is the id it already named, if any."""

    redis_key: str
    fingerprint: str
    existing: str | None


def claim_idempotency(
    ctx: ApiContext, key: ApiKey, header: str | None, print_: str, new_id: str
) -> Idempotency | None:
    if header is None:
        return None
    if not header or len(header) > IDEMPOTENCY_KEY_MAX or not header.isprintable():
        raise ApiError(422, f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} printable characters")
    redis_key = ctx.keys.idempotency(key.tenant, header)
    value = json.dumps({"fp": print_, "id": new_id})
    if ctx.redis.set(redis_key, value, nx=True, ex=ctx.options.idempotency_ttl_s):
        return Idempotency(redis_key, print_, None)
    stored = ctx.redis.get(redis_key)
    seen = json.loads(stored) if stored else {"fp": print_, "id": new_id}
    if seen["fp"] != print_:
        raise ApiError(
            409,
            "this Idempotency-Key was already used with a different request; "
            "use a new key for a new request",
            code="idempotency_conflict",
        )
    return Idempotency(redis_key, print_, str(seen["id"]))


def release_idempotency(ctx: ApiContext, claim: Idempotency | None, new_id: str) -> None:
    """Free a key whose request failed, so a retry with it can succeed."""
    if claim is None or claim.existing is not None:
        return
    stored = ctx.redis.get(claim.redis_key)
    if stored and json.loads(stored).get("id") == new_id:
        ctx.redis.delete(claim.redis_key)


# -- queueing --------------------------------------------------------------------------


def enqueue(
    ctx: ApiContext, key: ApiKey, jobs: Sequence[Job], queue: str, *, hold: bool = False
) -> None:
    """Reserve the tenant's slots, record each job's owner, queue the jobs; `hold`: keep
    them in intake until their remote inputs are fetched (`transport.intake`)."""
    ids = [job.id for job in jobs]
    busy = ctx.limits.reserve(key.tenant, ids, key.limits.concurrency)
    if busy is not None:
        raise ApiError(
            429,
            f"tenant {key.tenant} has {busy} unfinished jobs; this key allows "
            f"{key.limits.concurrency} at once (asked for {len(ids)} more)",
            code="concurrency_limit",
            headers={"Retry-After": CONCURRENCY_RETRY_S},
        )
    try:
        if hold:
            ctx.intake.stage(jobs, queue, {"tenant": key.tenant, "api_key": key.id})
            return
        pipe = ctx.redis.pipeline(transaction=False)
        for job in jobs:
            owner: dict[Any, str] = {"tenant": key.tenant, "api_key": key.id}
            if job.cancel_after is not None:
                owner["cancel_after"] = repr(job.cancel_after)
            pipe.hset(ctx.keys.job(job.id), mapping=owner)
            pipe.expire(ctx.keys.job(job.id), ctx.settings.job_ttl_s)
        pipe.execute()
        ctx.store.enqueue(Submission(job=job, queue=queue, source=job.input) for job in jobs)
    except Exception:
        ctx.limits.release(key.tenant, ids)
        raise


def create_one(
    ctx: ApiContext,
    key: ApiKey,
    options: JobOptions,
    recipe: Recipe,
    *,
    input_uri: str | None,
    upload: VettedUpload | None,
    body: dict[str, Any],
    idempotency_key: str | None,
    kind: str = "job",
    extras: Sequence[Extra] = (),
) -> tuple[str, bool]:
    """Validate and queue one job; (its id, whether it is an idempotent replay).
    `extras` become the job's `extra_inputs`, vetted and held for intake like its input."""
    # 1. everything that can be refused without side effects
    check_ops(recipe, key)
    check_extras(recipe, extras, key, ctx)
    check_deadline(options.cancel_after, ctx)
    check_webhook(options.webhook, ctx.settings)
    queue = queue_for(recipe, options, ctx)
    placement = place(
        recipe,
        options.mode,
        settings=ctx.settings,
        redis=ctx.redis,
        keys=ctx.keys,
        tenant=key.tenant,
        tenant_opted_in=key.limits.hosted,
        spill_preview=options.spill_preview,
    )
    queue = placement.queue
    if input_uri is not None:
        check_input(input_uri, key, ctx.outputs, ctx.settings)
    if upload is not None:
        check_output_size(recipe, upload, key, ctx)
    # 2. the idempotency key: a replay ends here
    new_id = new_job_id()
    extra = upload.data if upload is not None else b""
    extra += b"".join(e.data for e in extras if isinstance(e, VettedUpload))
    claim = claim_idempotency(ctx, key, idempotency_key, fingerprint(kind, body, extra), new_id)
    if claim is not None and claim.existing is not None:
        return claim.existing, True
    # 3. store the upload, build the job, reserve slots and queue it (a remote input is
    #    held in intake until it is fetched and vetted)
    try:
        if upload is not None:
            input_uri = ctx.outputs.store_upload(key.tenant, upload.data, upload.format)
        assert input_uri is not None
        named = [input_uri] if upload is None else []
        named += [e for e in extras if isinstance(e, str)]
        job = build_job(
            ctx,
            key,
            options,
            recipe,
            input_uri,
            job_id=new_id,
            idempotency_key=idempotency_key,
            extra_inputs=store_extras(ctx, key, extras),
        )
        enqueue(ctx, key, [job], queue, hold=any(is_remote(uri) for uri in named))
        if placement.noted:
            ctx.redis.hset(ctx.keys.job(job.id), "placement", placement.reason)
    except BaseException:
        release_idempotency(ctx, claim, new_id)
        raise
    return new_id, False
