"""Listing review (compliance assurance) and the catalog of listed versions."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from curation.review import review_checklist_item
from dataset_cards import service as cards
from infra.db import new_id, utcnow
from marketplace.errors import ConflictError, InvalidRequestError, NotFoundError
from marketplace.models import Dataset, DatasetVersion, Listing, Offer
from marketplace.schemas import ListingCreate
from marketplace.services import audit, catalog
from marketplace.services.organizations import Principal


def card_errors(
    session: Session, *, version_id: str, price_amount: int, contract_parameters: dict[str, Any]
) -> list[str]:
    """The card's lint errors for this offer; any one of them keeps the version off the market."""
    plan = {
        "id": "listing",
        "permitted_uses": contract_parameters.get("permitted_uses", []),
        "price": price_amount,
    }
    issues = cards.lint_stored_card(session, version_id=version_id, price_plans=[plan])
    return [f"{issue.path}: {issue.message}" for issue in issues if issue.severity == "error"]


def _refuse_if_card_has_errors(session: Session, listing: Listing) -> None:
    errors = card_errors(
        session,
        version_id=listing.version_id,
        price_amount=listing.price_amount,
        contract_parameters=listing.contract_parameters,
    )
    if errors:
        raise InvalidRequestError(
            f"the card of version {listing.version_id} has {len(errors)} error(s); fix them with "
            f"PATCH /v1/versions/{listing.version_id}/card: " + "; ".join(errors)
        )


def submit_listing(session: Session, *, actor: Principal, request: ListingCreate) -> Listing:
    """A contributor offers one of its versions; it waits for the operator's review.

    A version whose card has lint errors cannot be submitted (nor approved later).
    """
    actor.require_role("contributor")
    version = session.get(DatasetVersion, request.version_id)
    dataset = session.get(Dataset, version.dataset_id) if version else None
    if version is None or dataset is None or dataset.organization_id != actor.organization_id:
        raise NotFoundError("dataset version", request.version_id)
    listing = Listing(
        id=new_id("lst"),
        version_id=version.id,
        organization_id=actor.organization_id,
        title=request.title,
        summary=request.summary,
        status="submitted",
        price_amount=request.price_amount,
        currency=request.currency,
        license_template=request.contract_parameters.template,
        allowed_uses=sorted(set(request.allowed_uses)),
        contract_parameters=request.contract_parameters.model_dump(mode="json"),
        training_price_per_million_tokens=request.training_price_per_million_tokens,
        created_at=utcnow(),
    )
    _refuse_if_card_has_errors(session, listing)
    session.add(listing)
    catalog.refresh_listing(session, listing)
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="listing.submitted",
        object_type="listing",
        object_id=listing.id,
        version_id=version.id,
        price_amount=request.price_amount,
        currency=request.currency,
    )
    session.commit()
    return listing


def review_listing(
    session: Session, *, actor: Principal, listing_id: str, decision: str, notes: str
) -> Listing:
    actor.require_role("operator")
    listing = session.get(Listing, listing_id, with_for_update=True)
    if listing is None:
        raise NotFoundError("listing", listing_id)
    if listing.status != "submitted":
        raise ConflictError(f"listing {listing_id} is {listing.status}, not submitted")
    listing.checklist = review_checklist(session, listing)
    if decision == "approve":
        _refuse_if_card_has_errors(session, listing)
    listing.status = "listed" if decision == "approve" else "rejected"
    listing.review_notes = notes
    listing.reviewed_by = actor.organization_id
    listing.reviewed_at = utcnow()
    if listing.status == "listed":
        default_offer(session, listing)
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action=f"listing.{listing.status}",
        object_type="listing",
        object_id=listing.id,
        notes=notes,
    )
    session.commit()
    return listing


def review_checklist(session: Session, listing: Listing) -> list[dict[str, Any]]:
    """The operator's checklist, evaluated where a machine can (``passed`` None: not measured)."""
    card = cards.current_card(session, version_id=listing.version_id)
    version = session.get(DatasetVersion, listing.version_id)
    assert version is not None
    errors = card_errors(
        session,
        version_id=listing.version_id,
        price_amount=listing.price_amount,
        contract_parameters=listing.contract_parameters,
    )
    steps = {step.get("step") for step in version.report.get("steps", [])}
    pii_scanned = "pii_redact" in steps
    return [
        {"check": "card_lint_clean", "passed": not errors, "detail": "; ".join(errors)},
        {
            "check": "lawful_source_statement",
            "passed": bool(card.lawful_source_statement),
            "detail": "stated" if card.lawful_source_statement else "missing",
        },
        {
            "check": "pii_redacted",
            "passed": True if pii_scanned else None,
            "detail": "PII redaction ran in curation"
            if pii_scanned
            else "no PII scan in the recipe",
        },
        {
            "check": "quality_score",
            "passed": None,
            "detail": "no quality evaluation recorded for this version",
        },
        review_checklist_item(session, version_id=listing.version_id),
    ]


def delist(session: Session, *, actor: Principal, listing_id: str, reason: str) -> Listing:
    """Stop new sales (its owner or the operator); licenses already concluded keep working."""
    listing = session.get(Listing, listing_id, with_for_update=True)
    if listing is None or (
        listing.organization_id != actor.organization_id and not actor.is_operator
    ):
        raise NotFoundError("listing", listing_id)
    if listing.status != "listed":
        raise ConflictError(f"listing {listing_id} is {listing.status}, not listed")
    listing.status = "delisted"
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="listing.delisted",
        object_type="listing",
        object_id=listing.id,
        reason=reason,
    )
    session.commit()
    return listing


def get_listing(session: Session, *, actor: Principal, listing_id: str) -> Listing:
    """Listed listings are public to every member; others only to their owner and operators."""
    listing = session.get(Listing, listing_id)
    if listing is None or (
        listing.status != "listed"
        and listing.organization_id != actor.organization_id
        and not actor.is_operator
    ):
        raise NotFoundError("listing", listing_id)
    return listing


def default_offer_id(listing_id: str) -> str:
    return f"off_{listing_id.removeprefix('lst_')}"[:40]


def default_offer(session: Session, listing: Listing) -> Offer:
    """The listing's own price fields as a public, automatically approved offer."""
    offer_id = default_offer_id(listing.id)
    found = session.get(Offer, offer_id)
    if found is not None:
        return found
    if listing.price_amount > 0:
        plan = "one_off"
    elif listing.training_price_per_million_tokens > 0:
        plan = "metered"
    else:
        plan = "free"
    offer = Offer(
        id=offer_id,
        listing_id=listing.id,
        organization_id=listing.organization_id,
        is_default=True,
        plan=plan,
        price_amount=listing.price_amount,
        currency=listing.currency,
        renews=False,
        training_price_per_million_tokens=listing.training_price_per_million_tokens,
        uses=list(listing.allowed_uses),
        delivery_mode="download" if "download" in listing.allowed_uses else "training_only",
        contract_parameters=dict(listing.contract_parameters),
        approval="automatic",
        status="active",
        withdrawn_reason="",
        created_at=listing.reviewed_at or listing.created_at,
    )
    try:
        with session.begin_nested():
            session.add(offer)
    except IntegrityError:  # opened concurrently by another transaction
        found = session.get(Offer, offer_id)
        assert found is not None
        return found
    return offer
