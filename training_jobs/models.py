"""Database records of governed training jobs, their events and their checkpoints."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from infra.db import Base, UTCDateTime, utcnow


class TrainingJob(Base):
    __tablename__ = "training_jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("dataset_versions.id"))
    entitlement_id: Mapped[str] = mapped_column(ForeignKey("entitlements.id"))
    grant_hash: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="validating_files", index=True)
    error: Mapped[str | None] = mapped_column(Text)
    # What failed, for clients: a stable code and the request parameter at fault, if any.
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_param: Mapped[str | None] = mapped_column(String(100))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    artifacts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    trained_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    # Metering: the most the job can cost is held in escrow at submission; the charge for the
    # tokens actually trained is settled with the job's completion, the rest returned.
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    held_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    charged_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    # The most tokens the job may train: reserved against the entitlement's quota until it ends.
    max_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    # What the buyer named: the base model, a suffix for the trained model's name, a seed,
    # free metadata (OpenAI's limits), and the country the buyer uses the data in.
    model: Mapped[str] = mapped_column(String(100), default="aidx-tiny")
    suffix: Mapped[str | None] = mapped_column(String(64))
    user_metadata: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON)
    country: Mapped[str | None] = mapped_column(String(2))
    fine_tuned_model: Mapped[str | None] = mapped_column(String(200))
    # The data validation report (row numbers, fields, token counts; never row text).
    validation: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The signed model card of a released model ({payload, signature, key_id, algorithm}).
    model_card: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The lease: one worker at a time runs the job, renewing `lease_expires_at` while it does;
    # an expired lease means the worker was lost, and the reaper requeues the job.
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class TrainingJobEvent(Base):
    __tablename__ = "training_job_events"
    __table_args__ = (UniqueConstraint("job_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("training_jobs.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    type: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class TrainingJobCheckpoint(Base):
    """A checkpoint in the object store: weights plus optimizer, scheduler, RNG and data state."""

    __tablename__ = "training_job_checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "step"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("training_jobs.id"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
