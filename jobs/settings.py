"""One settings object for every process, read once at start-up and passed down.

Sources, later ones winning: defaults, a settings file (`DARKROOM_CONFIG`, YAML or
JSON), environment variables with the `DARKROOM_` prefix, then CLI flags.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobs.errors import ConfigError
from jobs.tiers import DEFAULT_TIERS, Tier
from jobs.yamlfile import load_file

log = logging.getLogger(__name__)
ENV_PREFIX = "DARKROOM_"
# DARKROOM_* variables that are not settings fields but are read by name elsewhere.
OTHER_VARIABLES = frozenset({"DARKROOM_CONFIG", "DARKROOM_SCHEDULES"})
OTHER_PREFIXES = ("DARKROOM_LOAD_",)  # bench/locustfile.py's load-test knobs


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DARKROOM_", extra="ignore", frozen=True)

    # Broker and state. None: start an embedded redis-server under `home`.
    redis_url: str | None = None
    home: Path = Field(Path(".darkroom"), description="embedded Redis, caches, PID files")
    key_prefix: str = Field("darkroom", description="prefix of darkroom's own Redis keys")

    # Where outputs go when a job names no destination: a folder or s3://bucket/prefix.
    output: str = "./out"

    # S3 (any S3-compatible endpoint). Credentials: these, else boto3's usual chain.
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_sse: str | None = Field("AES256", description="server-side encryption on write")
    presign_expires_s: int = Field(3600, ge=1, le=7 * 24 * 3600)

    # Input limits, enforced before any decoding work.
    max_input_bytes: int = Field(50 * 2**20, ge=1)
    max_input_pixels: int = Field(80_000_000, ge=1)
    min_input_side: int = Field(8, ge=1)
    fetch_timeout_s: float = Field(20.0, gt=0)
    fetch_max_redirects: int = Field(3, ge=0)
    fetch_per_tenant: int = Field(
        4, ge=1, description="remote inputs one tenant has fetched at once, per API process"
    )
    fetch_budget_s: float = Field(
        120.0, gt=0, description="how long an unreachable or slow input is retried"
    )
    fetch_allow_private: bool = Field(
        False, description="allow https inputs from loopback/private hosts (tests only)"
    )

    # Queue behaviour.
    job_ttl_s: int = Field(7 * 24 * 3600, ge=60, description="how long job state is kept")
    render_time_limit_s: int = Field(1800, ge=1, description="hard limit of one render")
    visibility_timeout_s: int = Field(
        7200, ge=1, description="above the longest render, or a render runs twice"
    )
    shutdown_grace_s: float | None = Field(
        None, gt=0, description="SIGTERM: wait this long for running renders; None: time limit"
    )
    heartbeat_interval_s: float = Field(1.0, gt=0)
    heartbeat_ttl_s: float = Field(4.0, gt=0, description="a silent worker is dead after this")
    max_attempts: int = Field(3, ge=1, description="deliveries of one job before it fails")
    retry_budget_s: float = Field(
        600.0, ge=0, description="how long a job retries through a storage outage"
    )
    redis_retry_s: float = Field(
        33.0, ge=0, description="how long one Redis call retries (with backoff) before it fails"
    )
    redis_socket_timeout_s: float = Field(
        30.0,
        ge=2,  # above the webhook deliverer's blocking wait (1 s)
        description="a Redis reply slower than this counts as a lost connection",
    )

    # One card, two lanes (`darkroom worker --lane both`): see workers/steps.py.
    preview_slots: int = Field(
        2, ge=1, le=64, description="previews one model-owning worker holds and runs at once"
    )
    max_overtakes: int = Field(
        4, ge=1, description="previews that may run between two steps of a final render"
    )
    preview_batch_ms: float | None = Field(
        None,
        ge=0,
        le=1000,
        description="micro-batch window for same-model previews; 0: off; "
        "None: 5 ms on a GPU worker, off on CPU (no gain measured there)",
    )

    # Models: the store they are published to, and each worker's pull-through cache.
    model_store: str | None = Field(
        None, description="folder or s3://bucket/prefix; None: <home>/models"
    )
    model_cache: Path | None = Field(None, description="None: <home>/model-cache")
    model_cache_max_gb: float = Field(100.0, gt=0)
    model_budget_gb: float | None = Field(
        None, gt=0, description="memory for resident models; None: the card's (or a share of RAM)"
    )
    model_affinity: bool = Field(
        True,
        description="send a job whose model is cold here to a live worker of the same queue "
        "that holds it resident (once per job); off: every worker loads what it takes (LRU)",
    )
    affinity_backlog: int = Field(
        1,
        ge=0,
        le=64,
        description="jobs that may wait for a worker beyond its slots when "
        "forwarded to it; 0: only to a worker with a free slot",
    )

    # Metrics: a folder for prometheus-client's multiprocess mode (emptied at start).
    metrics_dir: Path | None = None
    metrics_port: int | None = Field(None, ge=1, le=65535)
    metrics_addr: str = Field("127.0.0.1", description="address the exporter binds")

    # The hosted tier (Gemini 2.5 Flash Image, "Nano Banana"): off until a key is set.
    # What leaves the machine when it is on: each hosted job's image(s) and instruction.
    hosted_api_key: SecretStr | None = Field(
        None, description="Gemini API key; None: the hosted tier is off on this deployment"
    )
    hosted_base_url: str | None = Field(
        None, description="None: Google's endpoint; tests point it at testbed.genai_standin"
    )
    hosted_timeout_s: float = Field(60.0, gt=0, description="one provider call, end to end")
    hosted_usd_per_image: float = Field(
        0.039, gt=0, description="reserved per call: 1290 output tokens at USD 30 per million"
    )
    hosted_usd_per_m_input_tokens: float = Field(0.30, ge=0, description="settles the call")
    hosted_usd_per_m_output_tokens: float = Field(30.0, ge=0, description="settles the call")
    hosted_daily_cap_usd: float = Field(
        20.0, ge=0, description="hosted spend per UTC day, all tenants together"
    )
    hosted_tenant_daily_cap_usd: float = Field(
        5.0, ge=0, description="hosted spend per UTC day and tenant"
    )
    hosted_estimate_max_age_s: float = Field(
        60.0, gt=0, description="an older queue-wait estimate never spills a job"
    )

    # Tiers: defaults unless a file lists them.
    tiers_file: Path | None = None

    def tiers(self) -> tuple[Tier, ...]:
        if self.tiers_file is None:
            return DEFAULT_TIERS
        return load_tiers(self.tiers_file)

    @property
    def hosted_enabled(self) -> bool:
        """Whether this deployment may send edits to the hosted provider."""
        return self.hosted_api_key is not None and bool(self.hosted_api_key.get_secret_value())

    def shutdown_grace(self) -> float:
        """Seconds a stopping worker waits for its renders: `shutdown_grace_s`, or the
        render time limit plus the 30 s Celery adds for its hard limit."""
        return self.shutdown_grace_s or float(self.render_time_limit_s + 30)

    def model_store_uri(self) -> str:
        return self.model_store or str((self.home / "models").resolve())

    def model_cache_dir(self) -> Path:
        return self.model_cache or self.home / "model-cache"

    def check(self) -> Settings:
        """`self`, once its settings are consistent with one another.

        Raises:
            ConfigError: settings that contradict each other (timeouts, heartbeats).
        """
        if self.visibility_timeout_s <= self.render_time_limit_s:
            raise ConfigError(
                f"visibility_timeout_s ({self.visibility_timeout_s}) must exceed "
                f"render_time_limit_s ({self.render_time_limit_s}), or long renders run twice"
            )
        if self.heartbeat_ttl_s <= self.heartbeat_interval_s:
            raise ConfigError("heartbeat_ttl_s must exceed heartbeat_interval_s")
        return self


def load_tiers(path: Path) -> tuple[Tier, ...]:
    """Tiers from a YAML or JSON file: a list, or a mapping with a `tiers` list.

    Raises:
        ConfigError: the file cannot be read or parsed, or holds no valid tiers.
    """
    data = load_file(path)
    rows = data.get("tiers", data) if isinstance(data, dict) else data
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{path}: expected a list of tiers")
    try:
        return tuple(Tier.model_validate(row) for row in rows)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One message per `DARKROOM_*` variable no setting reads (a typo such as
    `DARKROOM_STORAGE`), naming the closest known variable when one is close."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | OTHER_VARIABLES
    messages = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known or name.startswith(OTHER_PREFIXES):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        messages.append(f"{name} is not a darkroom setting and is ignored{hint}")
    return messages


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and `DARKROOM_CONFIG`), with flag overrides.

    A `DARKROOM_*` variable no setting reads is logged as a warning, not ignored silently.

    Raises:
        ConfigError: the `DARKROOM_CONFIG` file cannot be read or is not a mapping,
            or the settings contradict each other.
    """
    import os

    for message in unknown_variables(os.environ):
        log.warning(message)

    base: dict[str, Any] = {}
    config = os.environ.get("DARKROOM_CONFIG")
    if config:
        loaded = load_file(Path(config))
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config}: expected a mapping of settings")
        base.update(loaded)
    env = Settings()
    merged = {
        **base,
        **env.model_dump(exclude_unset=True),
        **{k: v for k, v in overrides.items() if v is not None},
    }
    return Settings(**merged).check()
