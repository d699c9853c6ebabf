"""The catalog: full-text search over listed cards, facets, sorting and pages.

Each listing keeps a copy of its card's searchable text and facets (license, allowed use,
languages, tasks, size), refreshed whenever the card changes. Full-text search uses PostgreSQL's
``tsvector`` (with a substring fallback for scripts it does not segment, such as Chinese) and,
embedded, SQLite FTS5 with the trigram tokenizer, which matches any script.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, column, func, or_, select, table, text
from sqlalchemy.orm import Session

from dataset_cards import service as cards
from dataset_cards.models import CardRevision
from dataset_cards.schema import DatasetCard
from marketplace.models import Listing

Sort = Literal["relevance", "newest", "price_asc", "price_desc", "size_desc"]
FTS_TABLE = "listing_search"
FTS = table(FTS_TABLE, column("listing_id"), column("body"), column("rank"))  # SQLite FTS5


def _facet(values: list[str]) -> str:
    return "|" + "|".join(sorted({value.strip().lower() for value in values if value})) + "|"


def _search_body(listing: Listing, card: DatasetCard) -> str:
    parts = [listing.title, listing.summary, card.pretty_name or "", card.description or ""]
    parts += [card.intended_uses or "", card.scope or "", card.provider or ""]
    parts += list(card.tags or []) + list(card.task_categories or []) + list(card.language or [])
    return "\n".join(part for part in parts if part)


def refresh_listing(session: Session, listing: Listing) -> None:
    """Copy the card's searchable text and facets onto the listing (the caller commits)."""
    card = cards.current_card(session, version_id=listing.version_id)
    listing.search_text = _search_body(listing, card)
    listing.license = card.license or ""
    listing.allowed_use = card.license_class.allowed_use if card.license_class else "unspecified"
    listing.languages = _facet(list(card.language or []))
    listing.tasks = _facet(list(card.task_categories or []))
    listing.num_rows = card.num_rows
    if session.get_bind().dialect.name == "sqlite":
        session.flush()
        session.execute(text(f"DELETE FROM {FTS_TABLE} WHERE listing_id = :id"), {"id": listing.id})
        session.execute(
            text(f"INSERT INTO {FTS_TABLE} (listing_id, body) VALUES (:id, :body)"),
            {"id": listing.id, "body": listing.search_text},
        )


def refresh_version(session: Session, version_id: str) -> None:
    for listing in session.scalars(select(Listing).where(Listing.version_id == version_id)):
        refresh_listing(session, listing)


def revise_card(
    session: Session,
    *,
    version_id: str,
    changes: dict[str, Any],
    author_organization_id: str,
    reviewer: bool,
) -> CardRevision:
    """A new card revision, and the catalog entries of the version brought up to date."""
    revision = cards.update_card(
        session,
        version_id=version_id,
        changes=changes,
        author_organization_id=author_organization_id,
        reviewer=reviewer,
    )
    refresh_version(session, version_id)
    session.commit()
    return revision


@dataclass(frozen=True)
class Filters:
    license: str | None = None
    allowed_use: str | None = None
    language: str | None = None
    task: str | None = None
    min_rows: int | None = None
    max_rows: int | None = None
    min_price: int | None = None
    max_price: int | None = None
    currency: str | None = None


def _filtered(statement: Select[Listing], filters: Filters) -> Select[Listing]:
    conditions: list[ColumnElement[bool]] = []
    if filters.license:
        conditions.append(Listing.license == filters.license.lower())
    if filters.allowed_use:
        conditions.append(Listing.allowed_use == filters.allowed_use)
    if filters.language:
        conditions.append(Listing.languages.contains(f"|{filters.language.lower()}|"))
    if filters.task:
        conditions.append(Listing.tasks.contains(f"|{filters.task.lower()}|"))
    if filters.min_rows is not None:
        conditions.append(Listing.num_rows >= filters.min_rows)
    if filters.max_rows is not None:
        conditions.append(Listing.num_rows <= filters.max_rows)
    if filters.min_price is not None:
        conditions.append(Listing.price_amount >= filters.min_price)
    if filters.max_price is not None:
        conditions.append(Listing.price_amount <= filters.max_price)
    if filters.currency:
        conditions.append(Listing.currency == filters.currency)
    return statement.where(and_(*conditions)) if conditions else statement


def _fts_match(query: str) -> str:
    """An FTS5 query matching every word as a phrase (quotes escaped, so no syntax errors)."""
    words = [word.replace('"', '""') for word in query.split()]
    return " AND ".join(f'"{word}"' for word in words)


def search(
    session: Session,
    *,
    query: str | None,
    filters: Filters,
    sort: Sort,
    limit: int,
    offset: int,
) -> tuple[list[Listing], int]:
    statement = _filtered(select(Listing).where(Listing.status == "listed"), filters)
    rank: ColumnElement[float] | None = None
    words = query.split() if query else []
    if words:
        if session.get_bind().dialect.name == "postgresql":
            vector = func.to_tsvector("simple", Listing.search_text)
            tsquery = func.plainto_tsquery("simple", query)
            statement = statement.where(
                or_(vector.op("@@")(tsquery), Listing.search_text.ilike(f"%{query}%"))
            )
            rank = func.ts_rank(vector, tsquery)
        elif all(len(word) >= 3 for word in words):  # the trigram tokenizer's minimum
            matches = (
                select(FTS.c.listing_id, FTS.c.rank)
                .where(text(f"{FTS_TABLE} MATCH :match").bindparams(match=_fts_match(query or "")))
                .subquery()
            )
            statement = statement.join(matches, matches.c.listing_id == Listing.id)
            rank = -matches.c.rank  # FTS5's bm25 rank: smaller is better
        else:
            for word in words:
                statement = statement.where(Listing.search_text.ilike(f"%{word}%"))
    count = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    orders: dict[str, list[Any]] = {
        "newest": [Listing.created_at.desc()],
        "price_asc": [Listing.price_amount.asc()],
        "price_desc": [Listing.price_amount.desc()],
        "size_desc": [Listing.num_rows.desc()],
        "relevance": [rank.desc()] if rank is not None else [Listing.created_at.desc()],
    }
    order = orders[sort]
    rows = session.scalars(statement.order_by(*order, Listing.id).limit(limit).offset(offset))
    return list(rows), count
