"""Licensing: the one-step purchase, licenses, entitlements, renewals and revocation.

``license_listing`` is the one-step path for a public (or the buyer's own private), automatically
approved offer: it runs the order machinery of ``services.orders`` in one transaction (order,
approval, contract, both acceptances, filing, settlement, entitlement, certificate). The
client's idempotency key makes a retried request return the first result.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from infra.db import utcnow
from marketplace.errors import ConflictError, NotFoundError, PermissionDeniedError
from marketplace.models import (
    Certificate,
    Contract,
    DatasetVersion,
    Entitlement,
    License,
    Listing,
    Offer,
    Order,
)
from marketplace.services import audit, ledger, listings, offers, orders
from marketplace.services.organizations import Principal


def _request_hash(listing_id: str, uses: list[str], offer_id: str | None) -> str:
    parts: list[object] = [listing_id, uses] if offer_id is None else [listing_id, uses, offer_id]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def license_listing(
    session: Session,
    *,
    actor: Principal,
    listing_id: str,
    uses: list[str] | None,
    idempotency_key: str,
    signing_key: Ed25519PrivateKey,
    platform_fee_bps: int,
    offer_id: str | None = None,
) -> tuple[License, bool]:
    """Conclude a license; ``(license, False)`` when the idempotency key replays an earlier one."""
    actor.require_role("buyer")
    orders.check_idempotency_key(idempotency_key)
    listing = session.get(Listing, listing_id)
    if listing is None or listing.status != "listed":
        raise NotFoundError("listed listing", listing_id)
    if offer_id is None:
        offer = listings.default_offer(session, listing)
    else:
        offer = offers.get_offer(session, actor=actor, offer_id=offer_id, listing_id=listing.id)
    chosen = offers.choose_uses(offer, uses)
    hashed = _request_hash(listing_id, chosen, offer_id)
    previous = _replay(session, actor.organization_id, idempotency_key, hashed)
    if previous is not None:
        return previous, False
    orders.orderable(session, actor=actor, offer=offer)
    if offer.approval != "automatic":
        raise ConflictError(
            f"offer {offer.id} needs the seller's approval: place an order (POST /v1/orders) "
            "with the verification form"
        )
    order = orders.open_order(
        session,
        actor=actor,
        offer=offer,
        listing=listing,
        uses=chosen,
        verification=None,
        idempotency_key=idempotency_key,
        hashed=hashed,
    )
    try:
        session.flush()
    except IntegrityError:
        # A concurrent retry with the same key won the race: answer with its result.
        session.rollback()
        previous = _replay(session, actor.organization_id, idempotency_key, hashed)
        if previous is None:
            raise
        return previous, False
    contract = orders.approve(
        session,
        order=order,
        offer=offer,
        decided_by=None,
        reason="approved automatically under the offer's terms",
    )
    orders.record_acceptance(
        session,
        order=order,
        contract=contract,
        party="seller",
        api_key_id=offer.created_by_api_key_id,
        basis="standing_offer",
    )
    orders.record_acceptance(
        session,
        order=order,
        contract=contract,
        party="buyer",
        api_key_id=actor.api_key_id,
        basis="purchase",
    )
    license_ = orders.file_accepted(
        session,
        actor=actor,
        order=order,
        contract=contract,
        filing_key=idempotency_key,
        license_key=idempotency_key,
        license_hash=hashed,
        signing_key=signing_key,
        platform_fee_bps=platform_fee_bps,
    )
    session.commit()
    return license_, True


def _replay(session: Session, buyer_id: str, key: str, hashed: str) -> License | None:
    """The license an earlier request with this key concluded; 409 if it asked otherwise."""
    previous = session.scalar(
        select(License)
        .where(License.buyer_organization_id == buyer_id)
        .where(License.idempotency_key == key)
    )
    if previous is not None:
        if previous.request_hash != hashed:
            raise ConflictError(f"Idempotency-Key {key!r} was already used for a different request")
        return previous
    if orders.by_idempotency_key(session, buyer_id, key) is not None:  # an order's key
        raise ConflictError(f"Idempotency-Key {key!r} was already used for a different request")
    return None


def get_license(session: Session, *, actor: Principal, license_id: str) -> License:
    license_ = session.get(License, license_id)
    if license_ is None or (
        actor.organization_id
        not in (
            license_.buyer_organization_id,
            license_.seller_organization_id,
        )
        # The operator, auditors and regulators read every license, contract and certificate.
        and not actor.roles.intersection(ledger.READERS)
    ):
        raise NotFoundError("license", license_id)
    return license_


def entitlement_of(session: Session, license_id: str) -> Entitlement:
    entitlement = session.scalar(select(Entitlement).where(Entitlement.license_id == license_id))
    assert entitlement is not None
    return entitlement


def certificate_of(session: Session, license_id: str) -> Certificate:
    certificate = session.scalar(select(Certificate).where(Certificate.license_id == license_id))
    assert certificate is not None
    return certificate


def order_of(session: Session, license_id: str) -> Order | None:
    """The order a license was concluded through; None for licenses from before orders."""
    return session.scalar(select(Order).where(Order.license_id == license_id))


def list_entitlements(session: Session, *, actor: Principal) -> list[Entitlement]:
    return list(
        session.scalars(
            select(Entitlement)
            .where(Entitlement.organization_id == actor.organization_id)
            .order_by(Entitlement.created_at)
        )
    )


def contract_of(session: Session, license_id: str) -> Contract | None:
    """The filed contract; None for licenses concluded before contracts were filed."""
    return session.scalar(select(Contract).where(Contract.license_id == license_id))


def renew_subscription(
    session: Session,
    *,
    actor: Principal,
    license_id: str,
    idempotency_key: str,
    platform_fee_bps: int,
) -> tuple[License, bool]:
    """Pay the next period of a renewable subscription; a retried key charges once.

    The period starts where the paid ones end (or now, if they have ended), and the
    entitlement's expiry moves to its end, in the transaction that charges it.
    """
    actor.require_role("buyer")
    orders.check_idempotency_key(idempotency_key)
    license_ = get_license(session, actor=actor, license_id=license_id)
    if license_.buyer_organization_id != actor.organization_id:
        raise PermissionDeniedError("only the licensee renews its subscription")
    offer = session.get(Offer, license_.offer_id) if license_.offer_id else None
    if offer is None or offer.plan != "subscription":
        raise ConflictError(
            f"license {license_id} is a {license_.plan} license; only subscriptions renew"
        )
    if not offer.renews:
        raise ConflictError(f"license {license_id} is a fixed-term subscription; it does not renew")
    entitlement = session.scalar(
        select(Entitlement).where(Entitlement.license_id == license_id).with_for_update()
    )
    assert entitlement is not None and offer.period_unit and offer.period_length
    if ledger.replayed_renewal(session, license_id=license_id, idempotency_key=idempotency_key):
        return license_, False
    if entitlement.revoked_at is not None:
        raise ConflictError(f"the entitlement of license {license_id} was revoked")
    now = utcnow()
    start = max(entitlement.expires_at or now, now)
    ends = offers.add_period(start, offer.period_unit, offer.period_length)
    version_contributions = _contributions(session, license_)
    transaction = ledger.settle_renewal(
        session,
        buyer_organization_id=actor.organization_id,
        license_id=license_id,
        idempotency_key=idempotency_key,
        price=license_.price_amount,
        currency=license_.currency,
        contributions=version_contributions,
        fee_bps=platform_fee_bps,
    )
    entitlement.expires_at = ends
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="license.renewed",
        object_type="license",
        object_id=license_id,
        ledger_transaction_id=transaction.id,
        price_amount=license_.price_amount,
        currency=license_.currency,
        period_starts=start,
        expires_at=ends,
    )
    session.commit()
    return license_, True


def _contributions(session: Session, license_: License) -> dict[str, int]:
    version = session.get(DatasetVersion, license_.version_id)
    assert version is not None
    return version.contributions or {license_.seller_organization_id: 1}


def revoke_entitlement(
    session: Session, *, actor: Principal, entitlement_id: str, reason: str
) -> Entitlement:
    """The seller or the operator revokes an entitlement; access stops at the next request."""
    entitlement = session.get(Entitlement, entitlement_id, with_for_update=True)
    license_ = session.get(License, entitlement.license_id) if entitlement else None
    if (
        entitlement is None
        or license_ is None
        or (
            actor.organization_id
            not in (license_.buyer_organization_id, license_.seller_organization_id)
            and not actor.is_operator
        )
    ):
        raise NotFoundError("entitlement", entitlement_id)
    if license_.seller_organization_id != actor.organization_id and not actor.is_operator:
        raise PermissionDeniedError("only the seller or the operator revokes an entitlement")
    if entitlement.revoked_at is not None:
        raise ConflictError(
            f"entitlement {entitlement_id} was already revoked at "
            f"{entitlement.revoked_at.isoformat()}"
        )
    entitlement.revoked_at = utcnow()
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="entitlement.revoked",
        object_type="entitlement",
        object_id=entitlement.id,
        license_id=license_.id,
        reason=reason,
    )
    session.commit()
    return entitlement


@dataclass(frozen=True)
class MeteredTerms:
    """What governed training costs under a license, as its filed contract fixed it."""

    price_per_million_tokens: int
    currency: str


def metered_terms(session: Session, license_id: str) -> MeteredTerms:
    """The per-token price of training under a license (fixed when it was concluded)."""
    license_ = session.get(License, license_id)
    if license_ is None:
        raise NotFoundError("license", license_id)
    return MeteredTerms(
        price_per_million_tokens=license_.training_price_per_million_tokens,
        currency=license_.currency,
    )
