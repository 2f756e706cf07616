"""Overflow to the hosted tier: where a new job goes when its GPU queue is over target.

The decision is made here, at submit, because only here are the three things it needs
together: the caller's key (opt-in per tenant), the request (`spill_preview`), and the
queue the job would join, before any message exists. Moving a queued message later
would race the GPU consumers and need a requeue path in every worker.

A job spills when all of these hold:
1. the deployment has hosted credentials and the key carries the `hosted` flag;
2. every GPU step is an instruction edit the hosted model can do (`jobs.ops.hosted.SPILLABLE`);
3. it is a final job, or a preview whose request set `spill_preview`;
4. the autoscaler's estimate for its queue is fresh (`hosted_estimate_max_age_s`) and
   over that queue's target (`transport.estimates`): no estimate, no spill;
5. the tenant's and the deployment's daily spend caps have room for one more image.
The job keeps its recipe; only its queue changes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobs.errors import SchemaError
from jobs.ops import get_op
from jobs.ops.hosted import SPILLABLE
from jobs.schema import Lane, Recipe
from jobs.settings import Settings
from jobs.tiers import Tier, queue_name, route
from transport import estimates
from transport.keyspace import Keyspace
from transport.spend import Caps, SpendLedger

if TYPE_CHECKING:
    from redis import Redis


ROUTED = "routed"


@dataclass(frozen=True)
class Placement:
    """The queue a job joins, and why (a line a person reads)."""

    queue: str
    spilled: bool = False
    reason: str = ROUTED

    @property
    def noted(self) -> bool:
        """Whether the job's hash should say why (it spilled, or could have)."""
        return self.reason != ROUTED


def enabled(tier: Tier, settings: Settings) -> Tier:
    """`tier`, unless it is hosted and this deployment has no hosted credentials.

    Raises:
        SchemaError: the recipe needs the hosted tier and it is off.
    """
    if tier.hosted and not settings.hosted_enabled:
        raise SchemaError(
            f"the {tier.name} tier (Gemini 2.5 Flash Image) is off on this deployment; "
            "its operator enables it with DARKROOM_HOSTED_API_KEY"
        )
    return tier


def spillable(recipe: Recipe) -> bool:
    """Whether every GPU step of `recipe` is an edit the hosted model can do."""
    gpu_steps = [s.op for s in recipe.steps if not get_op(s.op).needs_of(s.params).cpu]
    return bool(gpu_steps) and all(op in SPILLABLE for op in gpu_steps)


def hosted_tier(tiers: tuple[Tier, ...]) -> Tier | None:
    return next((t for t in tiers if t.hosted), None)


def place(
    recipe: Recipe,
    lane: Lane,
    *,
    settings: Settings,
    redis: Redis,
    keys: Keyspace,
    tenant: str | None,
    tenant_opted_in: bool,
    spill_preview: bool = False,
    now: float | None = None,
) -> Placement:
    """The queue for a new job: its routed GPU queue, or the hosted one (see module doc).

    Raises:
        SchemaError: no tier can run the recipe, or it needs a hosted tier that is off.
    """
    tiers = settings.tiers()
    routed = queue_name(enabled(route(recipe, tiers), settings), lane)
    hosted = hosted_tier(tiers)
    # 1-3: may this job spill at all?
    if hosted is None or not (settings.hosted_enabled and tenant_opted_in):
        return Placement(routed)
    if not spillable(recipe) or (lane is Lane.PREVIEW and not spill_preview):
        return Placement(routed)
    # 4. does the estimate say its queue is over target?
    now = time.time() if now is None else now
    estimate = estimates.read(redis, keys, routed)
    if estimate is None or estimate.age_s(now) > settings.hosted_estimate_max_age_s:
        return Placement(routed, reason="routed (no fresh wait estimate)")
    if not estimate.over_target:
        return Placement(routed)
    # 5. is there room under the spend caps?
    caps = Caps(settings.hosted_tenant_daily_cap_usd, settings.hosted_daily_cap_usd)
    if not SpendLedger(redis, keys, caps).room_for(tenant, settings.hosted_usd_per_image, now):
        return Placement(routed, reason="routed (hosted spend cap reached today)")
    why = (
        f"spilled from {routed}: estimated wait {estimate.wait_s:.0f} s "
        f"over its {estimate.target_s:g} s target"
    )
    return Placement(queue_name(hosted, lane), spilled=True, reason=why)
