"""Listings: submission, the operator's review, and the catalog."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from dataset_cards.licenses import AllowedUse
from infra.cache import SingleFlight
from infra.config import Settings
from infra.db import session_scope
from marketplace import schemas
from marketplace.api.deps import (
    CurrentPrincipal,
    ReadSessionDep,
    SessionDep,
    StoreDep,
    app_settings,
    get_counters,
)
from marketplace.api.query import query_model, query_parameters
from marketplace.models import Listing
from marketplace.services import catalog as catalog_service
from marketplace.services import listings, preview

router = APIRouter(tags=["listings"])
_searches: SingleFlight[bytes] = SingleFlight()  # catalog pages being searched, per key
Status = Literal["submitted", "listed", "rejected", "delisted"]


@router.post("/v1/listings", status_code=201)
def submit_listing(
    body: schemas.ListingCreate, session: SessionDep, principal: CurrentPrincipal
) -> schemas.ListingPublic:
    return schemas.ListingPublic.model_validate(
        listings.submit_listing(session, actor=principal, request=body)
    )


@router.post("/v1/listings/{listing_id}/review")
def review_listing(
    listing_id: str,
    body: schemas.ListingReview,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> schemas.ListingPublic:
    return schemas.ListingPublic.model_validate(
        listings.review_listing(
            session,
            actor=principal,
            listing_id=listing_id,
            decision=body.decision,
            notes=body.notes,
        )
    )


@router.post("/v1/listings/{listing_id}/delist")
def delist(
    listing_id: str,
    body: schemas.DelistRequest,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> schemas.ListingPublic:
    return schemas.ListingPublic.model_validate(
        listings.delist(session, actor=principal, listing_id=listing_id, reason=body.reason)
    )


@router.get("/v1/listings/{listing_id}")
def get_listing(
    listing_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.ListingPublic:
    return schemas.ListingPublic.model_validate(
        listings.get_listing(session, actor=principal, listing_id=listing_id)
    )


@router.get("/v1/listings/{listing_id}/preview")
def preview_listing(
    listing_id: str,
    session: SessionDep,
    principal: CurrentPrincipal,
    store: StoreDep,
    rows: Annotated[int, Query(ge=1, le=preview.PREVIEW_ROWS)] = 10,
) -> schemas.ListingPreviewPublic:
    """A few rows of the listed version, PII-redacted, long text cut; fewer for paid data."""
    return schemas.ListingPreviewPublic.model_validate(
        preview.preview(session, store=store, actor=principal, listing_id=listing_id, rows=rows)
    )


@router.get("/v1/listings/{listing_id}/statistics")
def listing_statistics(
    listing_id: str, session: SessionDep, principal: CurrentPrincipal, store: StoreDep
) -> schemas.ListingStatisticsPublic:
    """Per-column statistics of the listed version; no extremes or top values for paid data."""
    return schemas.ListingStatisticsPublic.model_validate(
        preview.statistics(session, store=store, actor=principal, listing_id=listing_id)
    )


@router.get("/v1/listings")
def list_listings(
    session: ReadSessionDep,
    principal: CurrentPrincipal,
    status: Status | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> schemas.ListingsPublic:
    """Listings the caller may see; ``q`` is the catalog's full-text search over the cards."""
    rows, count = catalog_service.list_listings(
        session, actor=principal, status=status, query=q, limit=limit, offset=offset
    )
    return schemas.ListingsPublic(
        data=[schemas.ListingPublic.model_validate(row) for row in rows], count=count
    )


class CatalogQuery(BaseModel):
    """The catalog's search, filters, sort and page."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    q: str | None = Field(None, max_length=200, description="Full-text search.")
    license: str | None = Field(None, max_length=64)
    allowed_use: AllowedUse | None = Field(None, description="License class.")
    language: str | None = Field(None, max_length=20)
    task: str | None = Field(None, max_length=100)
    min_rows: int | None = Field(None, ge=0)
    max_rows: int | None = Field(None, ge=0)
    min_price: int | None = Field(None, ge=0)
    max_price: int | None = Field(None, ge=0)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    sort: catalog_service.Sort = "relevance"
    limit: int = Field(50, ge=1, le=200)
    offset: int = Field(0, ge=0)


@router.get(
    "/v1/catalog",
    response_model=schemas.ListingsPublic,
    openapi_extra=query_parameters(CatalogQuery),
)
async def catalog(
    request: Request,
    principal: CurrentPrincipal,  # authenticates; the catalog is the same for every caller
    search: Annotated[CatalogQuery, Depends(query_model(CatalogQuery))],
) -> Response:
    """Listed datasets: full-text search over their cards, facets, sorting and pages.

    A page rendered since the catalog last changed is answered on the event loop; any other is
    searched and rendered in the threadpool.
    """
    # The request's own counters, read for the principal; not sub-dependencies (see get_counters)
    settings, counters = app_settings(request), await get_counters(request)
    filters = catalog_service.Filters(
        license=search.license, allowed_use=search.allowed_use, language=search.language,
        task=search.task, min_rows=search.min_rows, max_rows=search.max_rows,
        min_price=search.min_price, max_price=search.max_price, currency=search.currency,
    )  # fmt: skip
    page: dict[str, Any] = {
        "database": settings.resolved_database_url,
        "query": search.q,
        "filters": filters,
        "sort": search.sort,
        "limit": search.limit,
        "offset": search.offset,
    }
    generation, key = counters[catalog_service.GENERATION], catalog_service.catalog_key(**page)
    body = catalog_service.cached_body(generation, key)
    if body is None:
        # Requests for a page missing from the cache share one search. Keyed by the generation
        # each read after it arrived, so none joins a search begun before a change it must see.
        body = await _searches.run(
            (generation, key), partial(run_in_threadpool, _search_body, settings, page)
        )
    return Response(content=body, media_type="application/json")


def _search_body(settings: Settings, page: dict[str, Any]) -> bytes:
    with session_scope(settings, readonly=True) as session:
        return catalog_service.search_body(session, **page, render=_render_listings)


def _render_listings(rows: list[Listing], count: int) -> bytes:
    page = schemas.ListingsPublic(
        data=[schemas.ListingPublic.model_validate(row) for row in rows], count=count
    )
    return page.model_dump_json().encode()
