"""training job lifecycle: validation, pause, checkpoints, quota and territory

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 04:55:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from infra.db import UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Existing jobs: nothing reserved, leased or run yet, the tiny model (server defaults, dropped
# once the rows are filled).
_DEFAULTED: dict[str, tuple[sa.types.TypeEngine[Any], str]] = {
    "max_tokens": (sa.BigInteger(), "0"),
    "model": (sa.String(length=100), "aidx-tiny"),
    "attempts": (sa.Integer(), "0"),
    "run_seconds": (sa.Float(), "0"),
}


def upgrade() -> None:
    with op.batch_alter_table("entitlements", schema=None) as batch_op:
        batch_op.add_column(sa.Column("training_token_quota", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("training_tokens_used", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("territory", sa.JSON(), nullable=True))
    with op.batch_alter_table("entitlements", schema=None) as batch_op:
        batch_op.alter_column("training_tokens_used", server_default=None)

    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("error_code", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("error_param", sa.String(length=100), nullable=True))
        for name, (type_, default) in _DEFAULTED.items():
            batch_op.add_column(sa.Column(name, type_, nullable=False, server_default=default))
        batch_op.add_column(sa.Column("suffix", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("metadata", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("country", sa.String(length=2), nullable=True))
        batch_op.add_column(sa.Column("fine_tuned_model", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("validation", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("model_card", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("lease_expires_at", UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        for name in _DEFAULTED:
            batch_op.alter_column(name, server_default=None)

    op.create_table(
        "training_job_checkpoints",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["training_jobs.id"],
            name=op.f("fk_training_job_checkpoints_job_id_training_jobs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_job_checkpoints")),
        sa.UniqueConstraint("job_id", "step", name=op.f("uq_training_job_checkpoints_job_id")),
    )
    with op.batch_alter_table("training_job_checkpoints", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_training_job_checkpoints_job_id"), ["job_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("training_job_checkpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_training_job_checkpoints_job_id"))
    op.drop_table("training_job_checkpoints")
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        for name in (
            "lease_expires_at", "lease_owner", "model_card", "validation", "fine_tuned_model",
            "country", "metadata", "suffix", *reversed(list(_DEFAULTED)), "error_param",
            "error_code",
        ):  # fmt: skip
            batch_op.drop_column(name)
    with op.batch_alter_table("entitlements", schema=None) as batch_op:
        batch_op.drop_column("territory")
        batch_op.drop_column("training_tokens_used")
        batch_op.drop_column("training_token_quota")
