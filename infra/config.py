"""One settings object for the whole exchange.

With no configuration everything is embedded under one folder (``./.aidx`` or ``AIDX_HOME``):
a SQLite database, a local object-store folder, a Celery broker and result backend on SQLite.
Production points the same fields at PostgreSQL, Redis or RabbitMQ, and any S3 endpoint::

    AIDX_DATABASE_URL=postgresql+psycopg://aidx@db/aidx
    AIDX_BROKER_URL=redis://redis:6379/0
    AIDX_S3_ENDPOINT_URL=https://s3.example.com  AIDX_S3_BUCKET=aidx

Nothing here opens a connection; engines and clients are built on first use elsewhere.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVELOPMENT_SECRET = "aidx-development-secret-do-not-use-in-production"


class Settings(BaseSettings):
    """Every tunable of the exchange, read from ``AIDX_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="AIDX_", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    home: Path = Field(default=Path(".aidx"), description="Folder for all embedded state.")

    # Database
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite if unset.")
    database_echo: bool = False

    # Object storage: a local folder unless an S3 bucket is named.
    storage_root: Path | None = None
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_region: str = "us-east-1"

    # Celery
    broker_url: str | None = Field(default=None, description="Celery broker; SQLite if unset.")
    result_backend: str | None = None
    broker_key_prefix: str = Field(
        default="", max_length=100, description="Prefix of every Redis key (several deployments)."
    )
    broker_polling_interval: float = Field(default=0.1, gt=0, le=10)
    longest_job_seconds: int = Field(default=6 * 3600, gt=0)
    task_always_eager: bool = False

    # API
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    public_base_url: str | None = None
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, gt=0)

    # Settlement
    platform_fee_bps: int = Field(
        default=500, ge=0, le=10_000, description="The exchange's fee, in basis points of a sale."
    )

    # Governed training: the release gate's thresholds (training_jobs.release_checks.ReleasePolicy
    # fields, e.g. AIDX_RELEASE_POLICY='{"max_membership_auc": 0.7}'); empty means the defaults.
    release_policy: dict[str, Any] = Field(default_factory=dict)
    # Governed training jobs: a worker holds a job's lease while it runs it, renewing it every
    # quarter of its length; a lease that ran out means the worker was lost, and the job resumes
    # from its last checkpoint on another worker (at most `training_max_attempts` runs).
    training_lease_seconds: float = Field(default=60.0, ge=1, le=3600)
    training_max_attempts: int = Field(default=5, ge=1, le=100)
    # Seconds of training a job may use over all its runs: past the soft limit it stops between
    # two steps and fails (time_limit_exceeded); the hard limit kills the run.
    training_soft_time_limit_seconds: float = Field(default=6 * 3600, gt=0)
    training_time_limit_seconds: float = Field(default=6 * 3600 + 900, gt=0)
    training_checkpoints_kept: int = Field(default=3, ge=1, le=1000)

    # Secrets
    secret_key: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    bootstrap_token: SecretStr | None = None
    signing_key_path: Path | None = Field(
        default=None, description="PEM file of the exchange's Ed25519 certificate-signing key."
    )

    @model_validator(mode="after")
    def _refuse_development_secret_in_production(self) -> Settings:
        if self.environment == "production":
            if self.secret_key.get_secret_value() == DEVELOPMENT_SECRET:
                raise ValueError("AIDX_SECRET_KEY must be set to a real secret in production")
            if self.bootstrap_token is None:
                raise ValueError("AIDX_BOOTSTRAP_TOKEN must be set in production")
        return self

    # Derived values -------------------------------------------------------------------------

    @property
    def home_dir(self) -> Path:
        return _resolved(self.home, os.getcwd())

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or _sqlite_url(self.home_dir)

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.home_dir / 'broker.db'}"

    @property
    def resolved_result_backend(self) -> str:
        return self.result_backend or f"db+sqlite:///{self.home_dir / 'results.db'}"

    @property
    def resolved_storage_root(self) -> Path:
        return (self.storage_root or self.home_dir / "objects").expanduser().resolve()

    @property
    def resolved_signing_key_path(self) -> Path:
        return self.signing_key_path or self.home_dir / "keys" / "exchange-ed25519.pem"

    @property
    def resolved_bootstrap_token_path(self) -> Path:
        return self.home_dir / "bootstrap-token"

    @property
    def storage_backend(self) -> Literal["local", "s3"]:
        return "s3" if self.s3_bucket else "local"

    @property
    def resolved_public_base_url(self) -> str:
        return (self.public_base_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def uses_embedded_broker(self) -> bool:
        return self.resolved_broker_url.startswith("sqla+")


@functools.lru_cache(maxsize=64)
def _resolved(home: Path, cwd: str) -> Path:
    """``home`` made absolute: resolving walks the file system, so it is done once per folder."""
    return home.expanduser().resolve()


@functools.lru_cache(maxsize=64)
def _sqlite_url(home_dir: Path) -> str:
    return f"sqlite:///{home_dir / 'aidx.db'}"


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings()
