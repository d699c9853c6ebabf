"""Orders: a buyer's access request, from verification to the filed, settled contract.

    requested ──approve──▶ awaiting_acceptance ──both parties accept──▶ accepted ──file──▶ filed
        └──────reject────▶ rejected

The buyer submits an order for an offer with a verification form (company, use case, country).
An offer with automatic approval approves it at once; otherwise the seller or the operator
decides, with a reason. Approval generates the contract (rendered, hashed). Each party accepts
the SHA-256 of the text it read; the acceptance records who (organisation, API key), when and the
hash. Filing, in one transaction: the next filing number, the license, the entitlement, the
settlement through the ledger, the signed certificate and the audit events. The one-step
``POST /v1/licenses`` runs the same steps for a public, automatically approved offer.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from infra.db import new_id, utcnow
from marketplace.certificates import CERTIFICATE_TYPE, sign_certificate
from marketplace.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from marketplace.models import (
    Certificate,
    Contract,
    ContractAcceptance,
    Dataset,
    DatasetVersion,
    Entitlement,
    LedgerTransaction,
    License,
    Listing,
    Offer,
    Order,
    Organization,
)
from marketplace.schemas import ContractParameters, OrderCreate
from marketplace.services import audit, contracts, datasets, ledger, offers
from marketplace.services.organizations import Principal

STATUSES = ("requested", "rejected", "awaiting_acceptance", "accepted", "filed")


def request_hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def check_idempotency_key(key: str) -> None:
    if not 1 <= len(key) <= 128:
        raise InvalidRequestError("the Idempotency-Key header must be 1 to 128 characters")


def by_idempotency_key(session: Session, buyer_id: str, key: str) -> Order | None:
    return session.scalar(
        select(Order)
        .where(Order.buyer_organization_id == buyer_id)
        .where(Order.idempotency_key == key)
    )


def _same_request_or_conflict(previous: Order, hashed: str, key: str) -> Order:
    if previous.request_hash != hashed:
        raise ConflictError(f"Idempotency-Key {key!r} was already used for a different request")
    return previous


def orderable(session: Session, *, actor: Principal, offer: Offer) -> Listing:
    """The offer's listing, if a new order may be placed under the offer now."""
    listing = session.get(Listing, offer.listing_id)
    if listing is None or listing.status != "listed":
        raise NotFoundError("listed listing", offer.listing_id)
    if offer.status != "active":
        raise ConflictError(f"offer {offer.id} is {offer.status}; it takes no new orders")
    if listing.organization_id == actor.organization_id:
        raise ConflictError("an organisation cannot license its own listing")
    version = session.get(DatasetVersion, listing.version_id)
    dataset = session.get(Dataset, version.dataset_id) if version is not None else None
    if dataset is not None and datasets.is_owner(session, dataset, actor.organization_id):
        # A co-owner would pay itself its own share of the price.
        raise ConflictError("a co-owner of the dataset cannot license it")
    return listing


def open_order(
    session: Session,
    *,
    actor: Principal,
    offer: Offer,
    listing: Listing,
    uses: list[str],
    verification: dict[str, Any] | None,
    idempotency_key: str,
    hashed: str,
) -> Order:
    """A new order in ``requested`` (the caller flushes, catching a racing duplicate key)."""
    now = utcnow()
    order = Order(
        id=new_id("ord"),
        offer_id=offer.id,
        listing_id=listing.id,
        version_id=listing.version_id,
        buyer_organization_id=actor.organization_id,
        seller_organization_id=listing.organization_id,
        uses=uses,
        verification=verification,
        status="requested",
        decision_reason="",
        idempotency_key=idempotency_key,
        request_hash=hashed,
        created_at=now,
        updated_at=now,
    )
    session.add(order)
    return order


def _audit_requested(session: Session, actor: Principal, order: Order) -> None:
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="order.requested",
        object_type="order",
        object_id=order.id,
        offer_id=order.offer_id,
        uses=order.uses,
        verification=order.verification,
    )


def approve(
    session: Session, *, order: Order, offer: Offer, decided_by: str | None, reason: str
) -> Contract:
    """Approve an order and generate its contract (the caller commits)."""
    now = utcnow()
    order.status = "awaiting_acceptance"
    order.decision_reason = reason
    order.decided_by = decided_by
    order.decided_at = now
    order.updated_at = now
    contract = contracts.generate_contract(session, order=order, offer=offer)
    audit.record(
        session,
        actor_organization_id=decided_by,
        action="order.approved",
        object_type="order",
        object_id=order.id,
        reason=reason,
        contract_id=contract.id,
        contract_sha256=contract.sha256,
    )
    return contract


def place_order(
    session: Session, *, actor: Principal, request: OrderCreate, idempotency_key: str
) -> tuple[Order, bool]:
    """Submit an access request; ``(order, False)`` when the key replays an earlier one."""
    actor.require_role("buyer")
    check_idempotency_key(idempotency_key)
    offer = offers.get_offer(session, actor=actor, offer_id=request.offer_id)
    uses = offers.choose_uses(offer, list(request.uses) if request.uses is not None else None)
    verification = request.verification.model_dump()
    hashed = request_hash("order", offer.id, uses, verification)
    previous = by_idempotency_key(session, actor.organization_id, idempotency_key)
    if previous is not None:
        return _same_request_or_conflict(previous, hashed, idempotency_key), False
    listing = orderable(session, actor=actor, offer=offer)
    order = open_order(
        session,
        actor=actor,
        offer=offer,
        listing=listing,
        uses=uses,
        verification=verification,
        idempotency_key=idempotency_key,
        hashed=hashed,
    )
    try:
        session.flush()
    except IntegrityError:
        session.rollback()  # a concurrent retry with the same key won the race
        previous = by_idempotency_key(session, actor.organization_id, idempotency_key)
        if previous is None:
            raise
        return _same_request_or_conflict(previous, hashed, idempotency_key), False
    _audit_requested(session, actor, order)
    if offer.approval == "automatic":
        approve(
            session,
            order=order,
            offer=offer,
            decided_by=None,
            reason="approved automatically under the offer's terms",
        )
    session.commit()
    return order, True


def _visible_order(
    session: Session, actor: Principal, order_id: str, *, lock: bool = False
) -> Order:
    order = session.get(Order, order_id, with_for_update=lock)
    if order is None or (
        actor.organization_id not in (order.buyer_organization_id, order.seller_organization_id)
        and not actor.is_operator
    ):
        raise NotFoundError("order", order_id)
    return order


def get_order(session: Session, *, actor: Principal, order_id: str) -> Order:
    """An order, for its buyer, its seller and the operator; 404 for anyone else."""
    return _visible_order(session, actor, order_id)


def list_orders(
    session: Session, *, actor: Principal, status: str | None, limit: int, offset: int
) -> tuple[list[Order], int]:
    """The orders the caller's organisation placed or received (the operator: all)."""
    query = select(Order)
    if not actor.is_operator:
        query = query.where(
            or_(
                Order.buyer_organization_id == actor.organization_id,
                Order.seller_organization_id == actor.organization_id,
            )
        )
    if status is not None:
        query = query.where(Order.status == status)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Order.created_at.desc(), Order.id).limit(limit).offset(offset)
    )
    return list(rows), count


def decide_order(
    session: Session, *, actor: Principal, order_id: str, decision: str, reason: str
) -> Order:
    """The seller or the operator approves (generating the contract) or rejects an order."""
    order = _visible_order(session, actor, order_id, lock=True)
    if order.seller_organization_id != actor.organization_id and not actor.is_operator:
        raise PermissionDeniedError("only the seller or the operator decides on an order")
    if order.status != "requested":
        raise ConflictError(
            f"order {order_id} is {order.status}; only a requested order is decided"
        )
    if decision == "approve":
        offer = session.get(Offer, order.offer_id)
        assert offer is not None
        approve(session, order=order, offer=offer, decided_by=actor.organization_id, reason=reason)
    else:
        now = utcnow()
        order.status = "rejected"
        order.decision_reason = reason
        order.decided_by = actor.organization_id
        order.decided_at = now
        order.updated_at = now
        audit.record(
            session,
            actor_organization_id=actor.organization_id,
            action="order.rejected",
            object_type="order",
            object_id=order.id,
            reason=reason,
        )
    session.commit()
    return order


def contract_for(session: Session, *, actor: Principal, order_id: str) -> Contract:
    """The order's contract (generated on approval), for the parties and the operator."""
    order = _visible_order(session, actor, order_id)
    contract = contracts.contract_of_order(session, order.id)
    if contract is None:
        raise NotFoundError("contract of order", order_id)
    return contract


def record_acceptance(
    session: Session,
    *,
    order: Order,
    contract: Contract,
    party: str,
    api_key_id: str | None,
    basis: str,
) -> ContractAcceptance:
    """One party's acceptance of the contract's current hash (the caller commits)."""
    now = utcnow()
    organization_id = (
        order.buyer_organization_id if party == "buyer" else order.seller_organization_id
    )
    acceptance = ContractAcceptance(
        id=new_id("acc"),
        contract_id=contract.id,
        party=party,
        organization_id=organization_id,
        api_key_id=api_key_id,
        contract_sha256=contract.sha256,
        basis=basis,
        accepted_at=now,
    )
    session.add(acceptance)
    if party == "buyer":
        contract.buyer_accepted_at, contract.buyer_api_key_id = now, api_key_id
    else:
        contract.seller_accepted_at, contract.seller_api_key_id = now, api_key_id
    if contract.buyer_accepted_at is not None and contract.seller_accepted_at is not None:
        order.status = "accepted"
    order.updated_at = now
    audit.record(
        session,
        actor_organization_id=organization_id,
        action="contract.accepted",
        object_type="contract",
        object_id=contract.id,
        order_id=order.id,
        party=party,
        api_key_id=api_key_id,
        contract_sha256=contract.sha256,
        basis=basis,
    )
    return acceptance


def accept_contract(
    session: Session, *, actor: Principal, order_id: str, contract_sha256: str
) -> Order:
    """The buyer or the seller accepts the text whose SHA-256 it names; once each."""
    order = _visible_order(session, actor, order_id, lock=True)
    if actor.organization_id == order.buyer_organization_id:
        party = "buyer"
    elif actor.organization_id == order.seller_organization_id:
        party = "seller"
    else:
        raise PermissionDeniedError(f"only the buyer or the seller of order {order_id} accepts")
    contract = contracts.contract_of_order(session, order.id)
    if contract is None:
        raise ConflictError(
            f"order {order_id} is {order.status}; its contract is generated when it is approved"
        )
    if contract.filed_at is not None:
        raise ConflictError(f"the contract of order {order_id} is already filed")
    accepted_at = contract.buyer_accepted_at if party == "buyer" else contract.seller_accepted_at
    if accepted_at is not None:
        raise ConflictError(
            f"the {party} already accepted the contract of order {order_id} "
            f"at {accepted_at.isoformat()}"
        )
    if contract_sha256 != contract.sha256:
        raise ConflictError(
            f"contract_sha256 {contract_sha256} is not the current contract of order "
            f"{order_id} (its SHA-256 is {contract.sha256}); read it again and accept that"
        )
    record_acceptance(
        session,
        order=order,
        contract=contract,
        party=party,
        api_key_id=actor.api_key_id,
        basis="explicit",
    )
    try:
        session.commit()
    except IntegrityError as error:  # the same party accepted concurrently
        session.rollback()
        raise ConflictError(
            f"the {party} already accepted the contract of order {order_id}"
        ) from error
    return order


def file_accepted(
    session: Session,
    *,
    actor: Principal,
    order: Order,
    contract: Contract,
    filing_key: str,
    license_key: str,
    license_hash: str,
    signing_key: Ed25519PrivateKey,
    platform_fee_bps: int,
) -> License:
    """File an accepted contract, settle, and grant the license (the caller commits)."""
    offer = session.get(Offer, order.offer_id)
    assert offer is not None
    now = utcnow()
    license_ = License(
        id=new_id("lic"),
        listing_id=order.listing_id,
        version_id=order.version_id,
        buyer_organization_id=order.buyer_organization_id,
        seller_organization_id=order.seller_organization_id,
        price_amount=offer.price_amount,
        currency=offer.currency,
        license_template=contract.template,
        uses=order.uses,
        idempotency_key=license_key,
        request_hash=license_hash,
        created_at=now,
        offer_id=offer.id,
        plan=offer.plan,
        training_price_per_million_tokens=offer.training_price_per_million_tokens,
    )
    session.add(license_)
    session.flush()
    # Filed in one flush with its license: after it, the row never changes.
    contracts.file_contract(session, contract=contract, now=now)
    contract.license_id = license_.id
    order.license_id = license_.id
    order.status = "filed"
    order.filing_idempotency_key = filing_key
    order.updated_at = now
    terms = ContractParameters.model_validate(contract.parameters)
    entitlement = Entitlement(
        id=new_id("ent"),
        license_id=license_.id,
        organization_id=order.buyer_organization_id,
        version_id=order.version_id,
        uses=order.uses,
        expires_at=offers.first_expiry(offer, now),
        training_token_quota=terms.training_token_quota,
        territory=None if terms.territory == "worldwide" else list(terms.territory),
        created_at=now,
    )
    session.add(entitlement)
    session.flush()
    version = session.get(DatasetVersion, order.version_id)
    assert version is not None
    settlement = ledger.settle_purchase(
        session,
        buyer_organization_id=order.buyer_organization_id,
        license_id=license_.id,
        price=offer.price_amount,
        currency=offer.currency,
        contributions=version.contributions or {order.seller_organization_id: 1},
        fee_bps=platform_fee_bps,
    )
    acceptances = contracts.acceptances_of(session, contract.id)
    session.add(
        _certificate(
            session, license_, signing_key, settlement, contract, order, offer, acceptances
        )
    )
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="contract.filed",
        object_type="contract",
        object_id=contract.id,
        order_id=order.id,
        filing_number=contract.filing_number,
        contract_sha256=contract.sha256,
    )
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="license.concluded",
        object_type="license",
        object_id=license_.id,
        listing_id=order.listing_id,
        order_id=order.id,
        offer_id=offer.id,
        plan=offer.plan,
        price_amount=offer.price_amount,
        currency=offer.currency,
        entitlement_id=entitlement.id,
        expires_at=entitlement.expires_at,
    )
    return license_


def file_order(
    session: Session,
    *,
    actor: Principal,
    order_id: str,
    idempotency_key: str,
    signing_key: Ed25519PrivateKey,
    platform_fee_bps: int,
) -> tuple[Order, bool]:
    """The exchange files an order's accepted contract and settles it; a retry is answered once.

    Either party or the operator asks; the buyer pays what its accepted contract says. A retry
    with the same Idempotency-Key returns ``(order, False)``; another key on a filed order is a
    409, as is filing before both parties accepted.
    """
    check_idempotency_key(idempotency_key)
    order = _visible_order(session, actor, order_id, lock=True)
    if order.status == "filed":
        if order.filing_idempotency_key == idempotency_key:
            return order, False
        contract = contracts.contract_of_order(session, order.id)
        number = contract.filing_number if contract else None
        raise ConflictError(f"order {order_id} is already filed as {number}")
    contract = contracts.contract_of_order(session, order.id)
    if order.status != "accepted" or contract is None:
        missing = (
            [
                party
                for party, at in (
                    ("buyer", contract.buyer_accepted_at),
                    ("seller", contract.seller_accepted_at),
                )
                if at is None
            ]
            if contract is not None
            else []
        )
        detail = f"; not accepted by the {' and the '.join(missing)}" if missing else ""
        raise ConflictError(
            f"order {order_id} is {order.status}{detail}: only a contract both parties "
            "accepted is filed"
        )
    file_accepted(
        session,
        actor=actor,
        order=order,
        contract=contract,
        filing_key=idempotency_key,
        license_key=f"order:{order.id}",
        license_hash=request_hash("order", order.id),
        signing_key=signing_key,
        platform_fee_bps=platform_fee_bps,
    )
    session.commit()
    return order, True


def _certificate(
    session: Session,
    license_: License,
    signing_key: Ed25519PrivateKey,
    settlement: LedgerTransaction | None,
    contract: Contract,
    order: Order,
    offer: Offer,
    acceptances: list[ContractAcceptance],
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
        "order_id": order.id,
        "offer": {
            "offer_id": offer.id,
            "plan": offer.plan,
            "delivery_mode": offer.delivery_mode,
        },
        "contract": {
            "contract_id": contract.id,
            "template": contract.template,
            "sha256": contract.sha256,
            "filing_number": contract.filing_number,
        },
        "acceptances": [
            {
                "party": acceptance.party,
                "organization_id": acceptance.organization_id,
                "api_key_id": acceptance.api_key_id,
                "contract_sha256": acceptance.contract_sha256,
                "basis": acceptance.basis,
                "accepted_at": acceptance.accepted_at.isoformat(),
            }
            for acceptance in acceptances
        ],
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


def order_public_fields(session: Session, order: Order) -> dict[str, Any]:
    """The contract's hash, filing number and acceptances, for an order's response body."""
    contract = contracts.contract_of_order(session, order.id)
    if contract is None:
        return {"contract_sha256": None, "filing_number": None, "acceptances": []}
    return {
        "contract_sha256": contract.sha256,
        "filing_number": contract.filing_number,
        "acceptances": contracts.acceptances_of(session, contract.id),
    }
