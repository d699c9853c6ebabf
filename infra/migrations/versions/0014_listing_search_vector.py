"""the catalog's full-text vectors stored on PostgreSQL, not computed per row on every search

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 11:45:00.000000

A search matched ``to_tsvector('simple', search_text)`` and ranked by it, which PostgreSQL
computed again for every listing it read: a search that also matches substrings (the ``ILIKE``
beside the text query) reads every listed row, so 2,000 listings cost about 200 ms a search.
The vector is now a stored generated column with the GIN index, computed once per change.
SQLite's catalog search (an FTS5 table) is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "ALTER TABLE listings ADD COLUMN search_vector tsvector "
        "GENERATED ALWAYS AS (to_tsvector('simple', search_text)) STORED"
    )
    op.execute("DROP INDEX ix_listings_search_text_fts")
    op.execute("CREATE INDEX ix_listings_search_vector ON listings USING gin (search_vector)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX ix_listings_search_vector")
    op.execute("ALTER TABLE listings DROP COLUMN search_vector")
    op.execute(
        "CREATE INDEX ix_listings_search_text_fts ON listings "
        "USING gin (to_tsvector('simple', search_text))"
    )
