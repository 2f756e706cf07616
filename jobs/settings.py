"""One settings object for every process, read once at start-up and passed down.

Sources, later ones winning: defaults, a settings file (`DARKROOM_CONFIG`, YAML or
JSON), environment variables with the `DARKROOM_` prefix, then CLI flags.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobs.errors import ConfigError
from jobs.tiers import DEFAULT_TIERS, Tier


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

    # Models: the store they are published to, and each worker's pull-through cache.
    model_store: str | None = Field(
        None, description="folder or s3://bucket/prefix; None: <home>/models"
    )
    model_cache: Path | None = Field(None, description="None: <home>/model-cache")
    model_cache_max_gb: float = Field(100.0, gt=0)
    model_budget_gb: float | None = Field(
        None, gt=0, description="memory for resident models; None: the card's (or a share of RAM)"
    )

    # Metrics: a folder for prometheus-client's multiprocess mode (emptied at start).
    metrics_dir: Path | None = None
    metrics_port: int | None = Field(None, ge=1, le=65535)
    metrics_addr: str = Field("127.0.0.1", description="address the exporter binds")

    # Tiers: defaults unless a file lists them.
    tiers_file: Path | None = None

    def tiers(self) -> tuple[Tier, ...]:
        if self.tiers_file is None:
            return DEFAULT_TIERS
        return load_tiers(self.tiers_file)

    def shutdown_grace(self) -> float:
        """Seconds a stopping worker waits for its renders: `shutdown_grace_s`, or the
        render time limit plus the 30 s Celery adds for its hard limit."""
        return self.shutdown_grace_s or float(self.render_time_limit_s + 30)

    def model_store_uri(self) -> str:
        return self.model_store or str((self.home / "models").resolve())

    def model_cache_dir(self) -> Path:
        return self.model_cache or self.home / "model-cache"

    def check(self) -> Settings:
        if self.visibility_timeout_s <= self.render_time_limit_s:
            raise ConfigError(
                f"visibility_timeout_s ({self.visibility_timeout_s}) must exceed "
                f"render_time_limit_s ({self.render_time_limit_s}), or long renders run twice"
            )
        if self.heartbeat_ttl_s <= self.heartbeat_interval_s:
            raise ConfigError("heartbeat_ttl_s must exceed heartbeat_interval_s")
        return self


def load_tiers(path: Path) -> tuple[Tier, ...]:
    data = _read_structured(path)
    rows = data.get("tiers", data) if isinstance(data, dict) else data
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{path}: expected a list of tiers")
    try:
        return tuple(Tier.model_validate(row) for row in rows)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _read_structured(path: Path) -> Any:
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(text)
    return json.loads(text)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and `DARKROOM_CONFIG`), with flag overrides."""
    import os

    base: dict[str, Any] = {}
    config = os.environ.get("DARKROOM_CONFIG")
    if config:
        loaded = _read_structured(Path(config))
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
