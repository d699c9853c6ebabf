"""Offers: the plans a listing is sold under, public or private to one buyer.

Plans: ``free``; ``one_off`` (a price once); ``subscription`` (a price per period of days or
months, renewable or a fixed term); ``metered`` (no upfront price, a price per million trained
tokens on governed training jobs). The delivery mode decides what the entitlement allows:
``download`` (the files, and training where offered) or ``training_only`` (可用不可见: training
inside the exchange, never the files). An offer's terms never change; a seller withdraws it.

A listing's own price fields are its default public offer, opened when the listing is approved
(``listings.default_offer``), with an id derived from the listing's. A listing approved before
that was so gets its default offer on first use.
"""

from __future__ import annotations

import calendar
import datetime as dt

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from infra.db import new_id, utcnow
from marketplace.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from marketplace.models import Listing, Offer, Organization
from marketplace.schemas import ContractParameters, OfferCreate
from marketplace.services import audit, listings
from marketplace.services.listings import default_offer, default_offer_id
from marketplace.services.organizations import Principal

OFFERABLE_LISTING_STATES = ("submitted", "listed")


def _listing_visible(session: Session, actor: Principal, listing_id: str) -> Listing:
    listing = session.get(Listing, listing_id)
    if listing is None or (
        listing.status != "listed"
        and listing.organization_id != actor.organization_id
        and not actor.is_operator
    ):
        raise NotFoundError("listing", listing_id)
    return listing


def may_see(actor: Principal, offer: Offer) -> bool:
    """Public offers: every member; private ones: their buyer, the seller and the operator."""
    return (
        offer.buyer_organization_id is None
        or actor.organization_id in (offer.buyer_organization_id, offer.organization_id)
        or actor.is_operator
    )


def _find(session: Session, offer_id: str, *, lock: bool = False) -> Offer | None:
    """The offer, opening a listed listing's default offer when its id is asked for first."""
    offer = session.get(Offer, offer_id, with_for_update=lock)
    if offer is None and offer_id.startswith("off_"):
        listing = session.get(Listing, "lst_" + offer_id.removeprefix("off_"))
        if listing is not None and listing.status == "listed":
            default_offer(session, listing)
            offer = session.get(Offer, offer_id, with_for_update=lock)
    return offer


def get_offer(
    session: Session, *, actor: Principal, offer_id: str, listing_id: str | None = None
) -> Offer:
    """An offer the caller may see (of that listing, if named); others get a missing one's 404."""
    offer = _find(session, offer_id)
    if (
        offer is None
        or not may_see(actor, offer)
        or (listing_id is not None and offer.listing_id != listing_id)
    ):
        raise NotFoundError("offer", offer_id)
    _listing_visible(session, actor, offer.listing_id)
    return offer


def list_offers(session: Session, *, actor: Principal, listing_id: str) -> list[Offer]:
    """The listing's offers the caller may see; buyers see active ones only."""
    listing = _listing_visible(session, actor, listing_id)
    seller_side = listing.organization_id == actor.organization_id or actor.is_operator
    if listing.status == "listed" and session.get(Offer, default_offer_id(listing.id)) is None:
        default_offer(session, listing)
        session.commit()
    query = select(Offer).where(Offer.listing_id == listing.id)
    if not seller_side:
        query = query.where(Offer.status == "active").where(
            or_(
                Offer.buyer_organization_id.is_(None),
                Offer.buyer_organization_id == actor.organization_id,
            )
        )
    return list(session.scalars(query.order_by(Offer.created_at, Offer.id)))


def _check_plan(request: OfferCreate, uses: list[str], terms: ContractParameters) -> None:
    """The fields each plan needs and refuses; every message names the field."""
    plan = request.plan
    if plan in ("free", "metered") and request.price_amount != 0:
        raise InvalidRequestError(f"price_amount: a {plan} plan has no upfront price; send 0")
    if plan in ("one_off", "subscription") and request.price_amount == 0:
        raise InvalidRequestError(
            f"price_amount: a {plan} plan needs a price above 0 (use the free plan for none)"
        )
    if plan == "free" and request.training_price_per_million_tokens != 0:
        raise InvalidRequestError(
            "training_price_per_million_tokens: a free plan charges nothing; use metered"
        )
    if plan == "metered":
        if request.training_price_per_million_tokens <= 0:
            raise InvalidRequestError(
                "training_price_per_million_tokens: a metered plan needs a price above 0"
            )
        if "training" not in uses:
            raise InvalidRequestError("uses: a metered plan charges training; offer 'training'")
    if plan == "subscription":
        if request.period_unit is None or request.period_length is None:
            raise InvalidRequestError(
                "period_unit, period_length: a subscription needs its period (e.g. 1 month)"
            )
        if terms.term_days is not None:
            raise InvalidRequestError(
                "contract_parameters.term_days: a subscription's term is its period; leave it unset"
            )
    else:
        for field in ("period_unit", "period_length"):
            if getattr(request, field) is not None:
                raise InvalidRequestError(f"{field}: only a subscription has a period")
        if request.renews:
            raise InvalidRequestError("renews: only a subscription renews")


def _uses(request: OfferCreate, listing: Listing) -> list[str]:
    if request.uses is None:
        wanted = ["training"] if request.delivery_mode == "training_only" else ["download"]
        if request.delivery_mode == "download" and "training" in listing.allowed_uses:
            wanted.append("training")
        uses = sorted(set(wanted))
    else:
        uses = sorted(set(request.uses))
    if request.delivery_mode == "training_only" and "download" in uses:
        raise InvalidRequestError(
            "uses: a training_only offer (usable but not visible) cannot grant download"
        )
    if request.delivery_mode == "download" and "download" not in uses:
        raise InvalidRequestError("uses: a download offer grants 'download'")
    refused = [use for use in uses if use not in listing.allowed_uses]
    if refused:
        raise InvalidRequestError(
            f"uses: listing {listing.id} does not allow {', '.join(refused)}; "
            f"it allows {', '.join(listing.allowed_uses)}"
        )
    return uses


def create_offer(
    session: Session, *, actor: Principal, listing_id: str, request: OfferCreate
) -> Offer:
    """The seller offers its listing under one more plan (audited)."""
    actor.require_role("contributor")
    listing = session.get(Listing, listing_id)
    if listing is None or listing.organization_id != actor.organization_id:
        raise NotFoundError("listing", listing_id)
    if listing.status not in OFFERABLE_LISTING_STATES:
        raise ConflictError(f"listing {listing_id} is {listing.status}; it takes no new offers")
    terms = request.contract_parameters or ContractParameters.model_validate(
        listing.contract_parameters
    )
    uses = _uses(request, listing)
    _check_plan(request, uses, terms)
    buyer_id = request.buyer_organization_id
    if buyer_id is not None:
        buyer = session.get(Organization, buyer_id)
        if buyer is None or "buyer" not in buyer.roles:
            raise InvalidRequestError(f"buyer_organization_id: no buyer organisation {buyer_id!r}")
        if buyer_id == actor.organization_id:
            raise InvalidRequestError("buyer_organization_id: a seller cannot buy from itself")
    errors = listings.card_errors(
        session,
        version_id=listing.version_id,
        price_amount=request.price_amount,
        contract_parameters=terms.model_dump(mode="json"),
    )
    if errors:
        raise InvalidRequestError(
            f"the card of version {listing.version_id} does not allow this offer: "
            + "; ".join(errors)
        )
    offer = Offer(
        id=new_id("off"),
        listing_id=listing.id,
        organization_id=actor.organization_id,
        is_default=False,
        plan=request.plan,
        price_amount=request.price_amount,
        currency=request.currency,
        period_unit=request.period_unit,
        period_length=request.period_length,
        renews=request.renews,
        training_price_per_million_tokens=request.training_price_per_million_tokens,
        uses=uses,
        delivery_mode=request.delivery_mode,
        contract_parameters=terms.model_dump(mode="json"),
        buyer_organization_id=buyer_id,
        approval=request.approval,
        status="active",
        created_by_api_key_id=actor.api_key_id,
        withdrawn_reason="",
        created_at=utcnow(),
    )
    session.add(offer)
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="offer.created",
        object_type="offer",
        object_id=offer.id,
        listing_id=listing.id,
        plan=offer.plan,
        price_amount=offer.price_amount,
        currency=offer.currency,
        private_to=buyer_id,
        approval=offer.approval,
    )
    session.commit()
    return offer


def withdraw_offer(
    session: Session, *, actor: Principal, listing_id: str, offer_id: str, reason: str
) -> Offer:
    """Stop new orders under an offer (the seller or the operator); orders placed go on."""
    offer = _find(session, offer_id, lock=True)
    if offer is None or offer.listing_id != listing_id or not may_see(actor, offer):
        raise NotFoundError("offer", offer_id)
    if offer.organization_id != actor.organization_id and not actor.is_operator:
        raise PermissionDeniedError("only the seller or the operator withdraws an offer")
    if offer.status != "active":
        raise ConflictError(f"offer {offer_id} is {offer.status}, not active")
    offer.status = "withdrawn"
    offer.withdrawn_reason = reason
    offer.withdrawn_at = utcnow()
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="offer.withdrawn",
        object_type="offer",
        object_id=offer.id,
        reason=reason,
    )
    session.commit()
    return offer


def choose_uses(offer: Offer, uses: list[str] | None) -> list[str]:
    """The uses asked for (default: all offered), each one offered, in a stable order."""
    chosen = sorted(set(uses if uses is not None else offer.uses))
    refused = [use for use in chosen if use not in offer.uses]
    if refused:
        raise InvalidRequestError(
            f"uses: offer {offer.id} does not grant {', '.join(refused)}; "
            f"it grants {', '.join(offer.uses)}"
        )
    return chosen


def add_period(start: dt.datetime, unit: str, length: int) -> dt.datetime:
    """``start`` plus ``length`` days or calendar months (a month end clamps to the last day)."""
    if unit == "day":
        return start + dt.timedelta(days=length)
    months = start.month - 1 + length
    year, month = start.year + months // 12, months % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


def first_expiry(offer: Offer, filed_at: dt.datetime) -> dt.datetime | None:
    """When an entitlement under this offer ends: one subscription period, or the contract term."""
    if offer.plan == "subscription":
        assert offer.period_unit is not None and offer.period_length is not None
        return add_period(filed_at, offer.period_unit, offer.period_length)
    term = ContractParameters.model_validate(offer.contract_parameters).term_days
    return None if term is None else filed_at + dt.timedelta(days=term)
