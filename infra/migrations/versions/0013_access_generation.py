"""the access generation counter: moves on with every change to organisations, users and keys

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 08:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTERS = sa.table("counters", sa.column("name", sa.String()), sa.column("value", sa.BigInteger()))


def upgrade() -> None:
    op.bulk_insert(COUNTERS, [{"name": "access_generation", "value": 0}])


def downgrade() -> None:
    op.execute(COUNTERS.delete().where(COUNTERS.c.name == "access_generation"))
