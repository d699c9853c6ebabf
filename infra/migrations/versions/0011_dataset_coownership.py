"""co-owned datasets; the catalog generation counter

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 04:55:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import infra.db

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTERS = sa.table("counters", sa.column("name", sa.String()), sa.column("value", sa.BigInteger()))


def upgrade() -> None:
    op.create_table(
        "dataset_owners",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("dataset_id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("invited_by", sa.String(length=40), nullable=False),
        sa.Column("created_at", infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", infra.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_dataset_owners_dataset_id_datasets")
        ),
        sa.ForeignKeyConstraint(
            ["invited_by"],
            ["organizations.id"],
            name=op.f("fk_dataset_owners_invited_by_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_dataset_owners_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_owners")),
        sa.UniqueConstraint(
            "dataset_id", "organization_id", name=op.f("uq_dataset_owners_dataset_id")
        ),
    )
    with op.batch_alter_table("dataset_owners", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dataset_owners_dataset_id"), ["dataset_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_dataset_owners_organization_id"), ["organization_id"], unique=False
        )
    # The catalog's generation: moved on by every change to listings, it keys the search cache.
    op.bulk_insert(COUNTERS, [{"name": "catalog_generation", "value": 0}])


def downgrade() -> None:
    op.execute(COUNTERS.delete().where(COUNTERS.c.name == "catalog_generation"))
    with op.batch_alter_table("dataset_owners", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dataset_owners_organization_id"))
        batch_op.drop_index(batch_op.f("ix_dataset_owners_dataset_id"))
    op.drop_table("dataset_owners")
