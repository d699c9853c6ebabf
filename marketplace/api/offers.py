"""Offers of a listing: the seller creates and withdraws them; buyers list those they may see."""

from __future__ import annotations

from fastapi import APIRouter

from marketplace import schemas
from marketplace.api.deps import CurrentPrincipal, SessionDep
from marketplace.services import offers

router = APIRouter(tags=["offers"])


@router.post("/v1/listings/{listing_id}/offers", status_code=201)
def create_offer(
    listing_id: str,
    body: schemas.OfferCreate,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> schemas.OfferPublic:
    """A plan (free, one-off, subscription, metered), public or private to one buyer."""
    return schemas.OfferPublic.model_validate(
        offers.create_offer(session, actor=principal, listing_id=listing_id, request=body)
    )


@router.get("/v1/listings/{listing_id}/offers")
def list_offers(
    listing_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.OffersPublic:
    """The listing's offers the caller may see (its default public offer among them)."""
    rows = offers.list_offers(session, actor=principal, listing_id=listing_id)
    return schemas.OffersPublic(
        data=[schemas.OfferPublic.model_validate(row) for row in rows], count=len(rows)
    )


@router.get("/v1/listings/{listing_id}/offers/{offer_id}")
def get_offer(
    listing_id: str, offer_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.OfferPublic:
    return schemas.OfferPublic.model_validate(
        offers.get_offer(session, actor=principal, offer_id=offer_id, listing_id=listing_id)
    )


@router.post("/v1/listings/{listing_id}/offers/{offer_id}/withdraw")
def withdraw_offer(
    listing_id: str,
    offer_id: str,
    body: schemas.OfferWithdraw,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> schemas.OfferPublic:
    """Stop new orders under the offer; orders already placed go on."""
    return schemas.OfferPublic.model_validate(
        offers.withdraw_offer(
            session,
            actor=principal,
            listing_id=listing_id,
            offer_id=offer_id,
            reason=body.reason,
        )
    )
