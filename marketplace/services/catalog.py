"""The catalog: full-text search over listed cards, facets, sorting and pages.

Each listing keeps a copy of its card's searchable text and facets (license, allowed use,
languages, tasks, size), refreshed whenever the card changes. Full-text search uses PostgreSQL's
``tsvector`` (with a substring fallback for scripts it does not segment, such as Chinese) and,
embedded, SQLite FTS5 with the trigram tokenizer, which matches any script.

A page is found in two steps: the ids of the page and the number of matches in one narrow query
(``count(*) OVER ()``, so the text is matched once and only ids are sorted), then those listings
by primary key. Each API process keeps the recent pages (ids and count) per search, valid while
the ``catalog_generation`` counter is unchanged: every flush that adds, changes or deletes a
listing (submission, review, delisting, a card revision) increments it in the same transaction,
so a search never answers from before a committed change.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    column,
    event,
    func,
    literal_column,
    or_,
    select,
    table,
    text,
    update,
)
from sqlalchemy.orm import Session, UOWTransaction

from dataset_cards import service as cards
from dataset_cards.models import CardRevision
from dataset_cards.schema import DatasetCard
from infra.cache import GenerationCache
from marketplace.models import Counter, Listing
from marketplace.services.organizations import Principal

Sort = Literal["relevance", "newest", "price_asc", "price_desc", "size_desc"]
FTS_TABLE = "listing_search"
FTS = table(FTS_TABLE, column("listing_id"), column("body"), column("rank"))  # SQLite FTS5
# PostgreSQL's full-text vector of search_text, a stored column no model maps (migration 0014)
SEARCH_VECTOR: ColumnElement[Any] = literal_column("listings.search_vector")
GENERATION = "catalog_generation"  # a Counter row, made by migration 0011
CACHED_PAGES = 2048


@event.listens_for(Session, "before_flush")
def _count_listing_changes(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    """A flush that writes listings moves the catalog's generation on, in its transaction."""
    changed = (*session.new, *session.dirty, *session.deleted)
    if any(isinstance(instance, Listing) for instance in changed):
        session.connection().execute(
            update(Counter).where(Counter.name == GENERATION).values(value=Counter.value + 1)
        )


_pages: GenerationCache[tuple[list[str], int]] = GenerationCache(CACHED_PAGES)  # ids and count
_bodies: GenerationCache[bytes] = GenerationCache(CACHED_PAGES)  # rendered response bodies


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


def _matching(
    session: Session, statement: Select[Listing], query: str | None
) -> tuple[Select[Listing], ColumnElement[float] | None]:
    """``statement`` narrowed to listings whose card text matches every word of ``query``, and
    the relevance to order by (None without a query)."""
    words = query.split() if query else []
    if not words:
        return statement, None
    if session.get_bind().dialect.name == "postgresql":
        vector = SEARCH_VECTOR  # stored, so neither match nor rank computes it per row
        tsquery = func.plainto_tsquery("simple", query)
        statement = statement.where(
            or_(vector.op("@@")(tsquery), Listing.search_text.ilike(f"%{query}%"))
        )
        return statement, func.ts_rank(vector, tsquery)
    if all(len(word) >= 3 for word in words):  # the trigram tokenizer's minimum
        matches = (
            select(FTS.c.listing_id, FTS.c.rank)
            .where(text(f"{FTS_TABLE} MATCH :match").bindparams(match=_fts_match(query or "")))
            .subquery()
        )
        statement = statement.join(matches, matches.c.listing_id == Listing.id)
        return statement, -matches.c.rank  # FTS5's bm25 rank: smaller is better
    for word in words:
        statement = statement.where(Listing.search_text.ilike(f"%{word}%"))
    return statement, None


def _page(
    session: Session,
    statement: Select[Listing],
    *,
    rank: ColumnElement[float] | None,
    sort: Sort,
    limit: int,
    offset: int,
) -> tuple[list[str], int]:
    """The ids of one page, in order, and the number of all matches."""
    orders: dict[str, list[Any]] = {
        "newest": [Listing.created_at.desc()],
        "price_asc": [Listing.price_amount.asc()],
        "price_desc": [Listing.price_amount.desc()],
        "size_desc": [Listing.num_rows.desc()],
        "relevance": [rank.desc()] if rank is not None else [Listing.created_at.desc()],
    }
    rows = session.execute(
        statement.with_only_columns(Listing.id, func.count().over())
        .order_by(*orders[sort], Listing.id)
        .limit(limit)
        .offset(offset)
    ).all()
    if rows:
        return [row[0] for row in rows], int(rows[0][1])
    if offset == 0:
        return [], 0
    count = session.scalar(select(func.count()).select_from(statement.subquery()))
    return [], int(count or 0)


def _generation(session: Session) -> int | None:
    return session.scalar(select(Counter.value).where(Counter.name == GENERATION))


def _cached_page(
    session: Session,
    generation: int | None,
    key: Hashable,
    statement: Select[Listing],
    query: str | None,
    *,
    sort: Sort | None,
    limit: int,
    offset: int,
) -> tuple[list[Listing], int]:
    """One page of the listings ``statement`` selects that match ``query``, from the cache
    while no listing has changed (``generation``: the catalog generation this session sees)."""
    page = _pages.get(generation, key) if generation is not None else None
    if page is None:
        statement, rank = _matching(session, statement, query)
        chosen: Sort = sort or ("relevance" if rank is not None else "newest")
        page = _page(session, statement, rank=rank, sort=chosen, limit=limit, offset=offset)
        if generation is not None:
            _pages.put(generation, key, page)
    ids, count = page
    found = {
        listing.id: listing
        for listing in session.scalars(select(Listing).where(Listing.id.in_(ids)))
    }
    return [found[listing_id] for listing_id in ids if listing_id in found], count


def search(
    session: Session,
    *,
    query: str | None,
    filters: Filters,
    sort: Sort,
    limit: int,
    offset: int,
) -> tuple[list[Listing], int]:
    """The catalog: listed listings matching ``query`` and ``filters``, one page of them."""
    key = catalog_key(
        database=str(session.get_bind().engine.url),
        query=query, filters=filters, sort=sort, limit=limit, offset=offset,
    )  # fmt: skip
    return _search(session, _generation(session), key, query, filters, sort, limit, offset)


def _search(
    session: Session,
    generation: int | None,
    key: Hashable,
    query: str | None,
    filters: Filters,
    sort: Sort,
    limit: int,
    offset: int,
) -> tuple[list[Listing], int]:
    statement = _filtered(select(Listing).where(Listing.status == "listed"), filters)
    return _cached_page(
        session, generation, key, statement, query, sort=sort, limit=limit, offset=offset
    )


def catalog_key(
    *, database: str, query: str | None, filters: Filters, sort: Sort, limit: int, offset: int
) -> Hashable:
    """What identifies one catalog page among the cached ones. The database is part of it: the
    cache is per process, and one process (a test run, a tool) may serve several databases
    whose generations can be equal."""
    return ("catalog", database, query, filters, sort, limit, offset)


def cached_body(generation: int, key: Hashable) -> bytes | None:
    """The rendered page ``key``, if it was rendered in this catalog generation."""
    return _bodies.get(generation, key)


def search_body(
    session: Session,
    *,
    database: str,
    query: str | None,
    filters: Filters,
    sort: Sort,
    limit: int,
    offset: int,
    render: Callable[[list[Listing], int], bytes],
) -> bytes:
    """The catalog page :func:`search` gives, as ``render`` writes it, cached with the pages.

    The catalog is the same for every caller, so a page is rendered once per generation and
    answered from memory (:func:`cached_body`) until a listing changes.
    """
    key = catalog_key(
        database=database, query=query, filters=filters, sort=sort, limit=limit, offset=offset
    )
    generation = _generation(session)
    body = _bodies.get(generation, key) if generation is not None else None
    if body is None:
        rows, count = _search(session, generation, key, query, filters, sort, limit, offset)
        body = render(rows, count)
        if generation is not None:
            _bodies.put(generation, key, body)
    return body


def list_listings(
    session: Session,
    *,
    actor: Principal,
    status: str | None,
    query: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Listing], int]:
    """Listings the caller may see (listed ones, its own, every one for operators), matched by
    the catalog's full-text search; by relevance with a query, newest first without."""
    statement = select(Listing)
    if status is not None:
        statement = statement.where(Listing.status == status)
    if status != "listed" and not actor.is_operator:
        statement = statement.where(
            or_(Listing.organization_id == actor.organization_id, Listing.status == "listed")
        )
    key = ("listings", actor.organization_id, actor.is_operator, status, query, limit, offset)
    return _cached_page(
        session, _generation(session), key, statement, query, sort=None, limit=limit, offset=offset
    )
