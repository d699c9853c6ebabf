"""Listings: submission, the operator's review, and the catalog."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from marketplace import schemas
from marketplace.api.deps import CurrentPrincipal, SessionDep
from marketplace.services import listings

router = APIRouter(tags=["listings"])
Status = Literal["submitted", "listed", "rejected"]


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


@router.get("/v1/listings/{listing_id}")
def get_listing(
    listing_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.ListingPublic:
    return schemas.ListingPublic.model_validate(
        listings.get_listing(session, actor=principal, listing_id=listing_id)
    )


@router.get("/v1/listings")
def list_listings(
    session: SessionDep,
    principal: CurrentPrincipal,
    status: Status | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> schemas.ListingsPublic:
    rows, count = listings.list_listings(
        session, actor=principal, status=status, query=q, limit=limit, offset=offset
    )
    return schemas.ListingsPublic(
        data=[schemas.ListingPublic.model_validate(row) for row in rows], count=count
    )


@router.get("/v1/catalog")
def catalog(
    session: SessionDep,
    principal: CurrentPrincipal,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> schemas.ListingsPublic:
    """Listed datasets, newest first; ``q`` searches titles and summaries."""
    return list_listings(session, principal, status="listed", q=q, limit=limit, offset=offset)
