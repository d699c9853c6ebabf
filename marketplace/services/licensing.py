"""Licensing: a buyer licenses a listed version; entitlement and certificate come with it.

The license, its entitlement, the signed certificate and the audit record are written in one
transaction. The client's idempotency key makes a retried request return the first result.
"""

from __future__ import annotations

import hashlib
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from infra.db import new_id, utcnow
from marketplace.certificates import CERTIFICATE_TYPE, sign_certificate
from marketplace.errors import ConflictError, InvalidRequestError, NotFoundError
from marketplace.models import (
    Certificate,
    Contract,
    Dataset,
    DatasetVersion,
    Entitlement,
    LedgerTransaction,
    License,
    Listing,
    Organization,
)
from marketplace.services import audit, contracts, ledger
from marketplace.services.organizations import Principal


def _request_hash(listing_id: str, uses: list[str]) -> str:
    return hashlib.sha256(json.dumps([listing_id, uses]).encode()).hexdigest()


def license_listing(
    session: Session,
    *,
    actor: Principal,
    listing_id: str,
    uses: list[str] | None,
    idempotency_key: str,
    signing_key: Ed25519PrivateKey,
    platform_fee_bps: int,
) -> tuple[License, bool]:
    """Conclude a license; ``(license, False)`` when the idempotency key replays an earlier one."""
    actor.require_role("buyer")
    if not 1 <= len(idempotency_key) <= 128:
        raise InvalidRequestError("the Idempotency-Key header must be 1 to 128 characters")
    listing = session.get(Listing, listing_id)
    if listing is None or listing.status != "listed":
        raise NotFoundError("listed listing", listing_id)
    chosen = sorted(set(uses if uses is not None else listing.allowed_uses))
    refused = [use for use in chosen if use not in listing.allowed_uses]
    if refused:
        raise InvalidRequestError(
            f"listing {listing_id} does not allow {', '.join(refused)}; "
            f"it allows {', '.join(listing.allowed_uses)}"
        )
    if listing.organization_id == actor.organization_id:
        raise ConflictError("an organisation cannot license its own listing")
    request_hash = _request_hash(listing_id, chosen)
    previous = _by_idempotency_key(session, actor.organization_id, idempotency_key)
    if previous is not None:
        return _same_request_or_conflict(previous, request_hash, idempotency_key), False

    now = utcnow()
    license_ = License(
        id=new_id("lic"),
        listing_id=listing.id,
        version_id=listing.version_id,
        buyer_organization_id=actor.organization_id,
        seller_organization_id=listing.organization_id,
        price_amount=listing.price_amount,
        currency=listing.currency,
        license_template=listing.license_template,
        uses=chosen,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        created_at=now,
    )
    session.add(license_)
    try:
        session.flush()
    except IntegrityError:
        # A concurrent retry with the same key won the race: answer with its result.
        session.rollback()
        previous = _by_idempotency_key(session, actor.organization_id, idempotency_key)
        if previous is None:
            raise
        return _same_request_or_conflict(previous, request_hash, idempotency_key), False
    contract = contracts.file_contract(
        session,
        license_=license_,
        parameters=listing.contract_parameters,
        seller_accepted_at=listing.created_at,
        buyer_api_key_id=actor.api_key_id,
    )
    session.add(
        Entitlement(
            id=new_id("ent"),
            license_id=license_.id,
            organization_id=actor.organization_id,
            version_id=listing.version_id,
            uses=chosen,
            expires_at=contracts.expiry(listing.contract_parameters, contract.filed_at),
            created_at=now,
        )
    )
    session.flush()
    version = session.get(DatasetVersion, listing.version_id)
    assert version is not None
    settlement = ledger.settle_purchase(
        session,
        buyer_organization_id=actor.organization_id,
        license_id=license_.id,
        price=listing.price_amount,
        currency=listing.currency,
        contributions=version.contributions or {listing.organization_id: 1},
        fee_bps=platform_fee_bps,
    )
    session.add(_certificate(session, license_, signing_key, settlement, contract))
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="license.concluded",
        object_type="license",
        object_id=license_.id,
        listing_id=listing.id,
        price_amount=listing.price_amount,
        currency=listing.currency,
    )
    session.commit()
    return license_, True


def _by_idempotency_key(session: Session, buyer_id: str, key: str) -> License | None:
    return session.scalar(
        select(License)
        .where(License.buyer_organization_id == buyer_id)
        .where(License.idempotency_key == key)
    )


def _same_request_or_conflict(previous: License, request_hash: str, key: str) -> License:
    if previous.request_hash != request_hash:
        raise ConflictError(f"Idempotency-Key {key!r} was already used for a different request")
    return previous


def _certificate(
    session: Session,
    license_: License,
    signing_key: Ed25519PrivateKey,
    settlement: LedgerTransaction | None,
    contract: Contract,
) -> Certificate:
    version = session.get(DatasetVersion, license_.version_id)
    assert version is not None
    dataset = session.get(Dataset, version.dataset_id)
    buyer = session.get(Organization, license_.buyer_organization_id)
    seller = session.get(Organization, license_.seller_organization_id)
    assert dataset is not None and buyer is not None and seller is not None
    certificate_id = new_id("cert")
    payload = {
        "type": CERTIFICATE_TYPE,
        "certificate_id": certificate_id,
        "issued_at": utcnow().isoformat(),
        "license_id": license_.id,
        "listing_id": license_.listing_id,
        "contract": {
            "contract_id": contract.id,
            "template": contract.template,
            "sha256": contract.sha256,
            "filing_number": contract.filing_number,
        },
        "uses": license_.uses,
        "buyer": {"organization_id": buyer.id, "name": buyer.name},
        "seller": {"organization_id": seller.id, "name": seller.name},
        "dataset": {
            "dataset_id": dataset.id,
            "name": dataset.name,
            "version_id": version.id,
            "version_number": version.number,
            "content_hash": version.content_hash,
        },
        "price": {"amount": license_.price_amount, "currency": license_.currency},
        "settlement": {"ledger_transaction_id": settlement.id if settlement else None},
    }
    signed = sign_certificate(payload, signing_key)
    return Certificate(
        id=certificate_id,
        license_id=license_.id,
        payload=payload,
        signature=signed["signature"],
        key_id=signed["key_id"],
    )


def get_license(session: Session, *, actor: Principal, license_id: str) -> License:
    license_ = session.get(License, license_id)
    if license_ is None or (
        actor.organization_id
        not in (
            license_.buyer_organization_id,
            license_.seller_organization_id,
        )
        and not actor.is_operator
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
