"""Settlement: a double-entry ledger in minor units.

Every movement is one ``LedgerTransaction`` whose entries sum to zero, written in the same
database transaction as what caused it (a top-up, a purchase, a subscription's renewal, a
payout). Accounts: one per organisation and currency, the platform's fee account, and
``external`` for money entering or leaving the exchange (top-ups and payouts an operator
records; there is no payment network). A purchase locks the buyer's account row, so concurrent
purchases cannot overdraw it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from infra.db import new_id, utcnow
from marketplace.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from marketplace.models import Account, LedgerEntry, LedgerTransaction, Organization
from marketplace.services import audit
from marketplace.services.organizations import Principal, get_organization

READERS = ("operator", "auditor", "regulator")


class InsufficientFundsError(ConflictError):
    code = "insufficient_funds"


def _request_hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def account(
    session: Session, *, kind: str, currency: str, organization_id: str | None = None
) -> Account:
    """The account of that kind, organisation and currency, opened on first use."""
    query = select(Account).where(
        Account.kind == kind,
        Account.currency == currency,
        Account.organization_id.is_(None)
        if organization_id is None
        else Account.organization_id == organization_id,
    )
    found = session.scalar(query)
    if found is not None:
        return found
    opened = Account(
        id=new_id("acct"),
        kind=kind,
        organization_id=organization_id,
        currency=currency,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(opened)
    except IntegrityError:  # opened concurrently by another transaction
        found = session.scalar(query)
        assert found is not None
        return found
    return opened


def balance(session: Session, account_id: str) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.account_id == account_id
        )
    )
    return int(total or 0)


def _post(
    session: Session,
    *,
    kind: str,
    currency: str,
    entries: list[tuple[Account, int]],
    scope: str,
    idempotency_key: str,
    request_hash: str,
    reference: tuple[str, str] | None = None,
    memo: str = "",
) -> LedgerTransaction:
    if sum(amount for _, amount in entries) != 0:
        raise AssertionError(f"unbalanced ledger transaction: {entries}")
    transaction = LedgerTransaction(
        id=new_id("ltx"),
        kind=kind,
        currency=currency,
        reference_type=reference[0] if reference else None,
        reference_id=reference[1] if reference else None,
        memo=memo,
        idempotency_scope=scope,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        created_at=utcnow(),
    )
    session.add(transaction)
    session.flush()
    session.add_all(
        LedgerEntry(transaction_id=transaction.id, account_id=acct.id, amount=amount)
        for acct, amount in entries
        if amount != 0
    )
    return transaction


def _replayed(
    session: Session, scope: str, key: str, request_hash: str
) -> LedgerTransaction | None:
    previous = session.scalar(
        select(LedgerTransaction).where(
            LedgerTransaction.idempotency_scope == scope,
            LedgerTransaction.idempotency_key == key,
        )
    )
    if previous is not None and previous.request_hash != request_hash:
        raise ConflictError(f"Idempotency-Key {key!r} was already used for a different request")
    return previous


def _check_key(idempotency_key: str) -> None:
    if not 1 <= len(idempotency_key) <= 128:
        raise InvalidRequestError("the Idempotency-Key header must be 1 to 128 characters")


def record_transfer(
    session: Session,
    *,
    actor: Principal,
    kind: str,
    organization_id: str,
    amount: int,
    currency: str,
    idempotency_key: str,
    memo: str = "",
) -> tuple[LedgerTransaction, bool]:
    """An operator records money entering (``top_up``) or leaving (``payout``) an account."""
    actor.require_role("operator")
    _check_key(idempotency_key)
    if kind not in ("top_up", "payout"):
        raise InvalidRequestError(f"unknown transfer kind {kind!r}")
    if amount <= 0:
        raise InvalidRequestError(f"amount must be positive, got {amount}")
    get_organization(session, actor=actor, organization_id=organization_id)
    scope = f"{kind}:{actor.organization_id}"
    request_hash = _request_hash(kind, organization_id, amount, currency)
    previous = _replayed(session, scope, idempotency_key, request_hash)
    if previous is not None:
        return previous, False
    holder = account(
        session, kind="organization", organization_id=organization_id, currency=currency
    )
    outside = account(session, kind="external", currency=currency)
    if kind == "payout":
        holder = _funded_account(
            session,
            organization_id=organization_id,
            amount=amount,
            currency=currency,
            what=f"a payout of {amount} {currency} was asked",
        )
    sign = 1 if kind == "top_up" else -1
    transaction = _post(
        session,
        kind=kind,
        currency=currency,
        entries=[(holder, sign * amount), (outside, -sign * amount)],
        scope=scope,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        reference=("organization", organization_id),
        memo=memo,
    )
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action=f"ledger.{kind}",
        object_type="ledger_transaction",
        object_id=transaction.id,
        organization_id=organization_id,
        amount=amount,
        currency=currency,
    )
    session.commit()
    return transaction, True


def _funded_account(
    session: Session, *, organization_id: str, amount: int, currency: str, what: str
) -> Account:
    """The organisation's account, locked, if it holds ``amount``; else InsufficientFunds."""
    payer = account(
        session, kind="organization", organization_id=organization_id, currency=currency
    )
    payer = session.get(Account, payer.id, with_for_update=True) or payer
    available = balance(session, payer.id)
    if available < amount:
        raise InsufficientFundsError(
            f"{what}; your balance is {available} {currency} (an operator records top-ups)"
        )
    return payer


def _revenue(
    session: Session, amount: int, currency: str, contributions: dict[str, int], fee_bps: int
) -> list[tuple[Account, int]]:
    """The credit side of a sale: the platform's fee, then each contributor's share."""
    fee = amount * fee_bps // 10_000
    entries = [(account(session, kind="platform_fee", currency=currency), fee)]
    for organization_id, share in sorted(split(amount - fee, contributions).items()):
        holder = account(
            session, kind="organization", organization_id=organization_id, currency=currency
        )
        entries.append((holder, share))
    return entries


def split(amount: int, weights: dict[str, int]) -> dict[str, int]:
    """Split ``amount`` by ``weights`` exactly (largest remainder; ties by key)."""
    total = sum(weights.values())
    if amount == 0 or total <= 0:
        return dict.fromkeys(weights, 0)
    shares = {key: amount * weight // total for key, weight in weights.items()}
    remainders = sorted(weights, key=lambda key: (-(amount * weights[key] % total), key))
    for key in remainders[: amount - sum(shares.values())]:
        shares[key] += 1
    return shares


def settle_purchase(
    session: Session,
    *,
    buyer_organization_id: str,
    license_id: str,
    price: int,
    currency: str,
    contributions: dict[str, int],
    fee_bps: int,
) -> LedgerTransaction | None:
    """Move the price from the buyer to the contributors and the platform; caller commits."""
    if price == 0:
        return None
    buyer = _funded_account(
        session,
        organization_id=buyer_organization_id,
        amount=price,
        currency=currency,
        what=f"the price is {price} {currency}",
    )
    entries = [(buyer, -price), *_revenue(session, price, currency, contributions, fee_bps)]
    return _post(
        session,
        kind="purchase",
        currency=currency,
        entries=entries,
        scope=f"purchase:{buyer_organization_id}",
        idempotency_key=license_id,
        request_hash=_request_hash(license_id),
        reference=("license", license_id),
    )


def _renewal_scope(license_id: str) -> str:
    return f"renewal:{license_id}"


def replayed_renewal(
    session: Session, *, license_id: str, idempotency_key: str
) -> LedgerTransaction | None:
    """The renewal an earlier request with this key paid, if any."""
    return _replayed(
        session, _renewal_scope(license_id), idempotency_key, _request_hash("renewal", license_id)
    )


def settle_renewal(
    session: Session,
    *,
    buyer_organization_id: str,
    license_id: str,
    idempotency_key: str,
    price: int,
    currency: str,
    contributions: dict[str, int],
    fee_bps: int,
) -> LedgerTransaction:
    """Charge one more subscription period, once per idempotency key (caller commits)."""
    _check_key(idempotency_key)
    buyer = _funded_account(
        session,
        organization_id=buyer_organization_id,
        amount=price,
        currency=currency,
        what=f"the next period costs {price} {currency}",
    )
    entries = [(buyer, -price), *_revenue(session, price, currency, contributions, fee_bps)]
    return _post(
        session,
        kind="renewal",
        currency=currency,
        entries=entries,
        scope=_renewal_scope(license_id),
        idempotency_key=idempotency_key,
        request_hash=_request_hash("renewal", license_id),
        reference=("license", license_id),
    )


@dataclass(frozen=True)
class StatementLine:
    transaction_id: str
    kind: str
    at: str
    amount: int
    memo: str
    reference_type: str | None
    reference_id: str | None


def statement(session: Session, *, actor: Principal, organization_id: str) -> dict[str, Any]:
    """Balances and entries of an organisation, for itself and for supervisors."""
    if organization_id != actor.organization_id and not actor.roles.intersection(READERS):
        raise PermissionDeniedError("only the organisation itself or a supervisor may read this")
    if session.get(Organization, organization_id) is None:
        raise NotFoundError("organization", organization_id)
    accounts = session.scalars(
        select(Account).where(Account.organization_id == organization_id).order_by(Account.currency)
    ).all()
    result: dict[str, Any] = {"organization_id": organization_id, "accounts": []}
    for acct in accounts:
        rows = session.execute(
            select(LedgerEntry.amount, LedgerTransaction)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(LedgerEntry.account_id == acct.id)
            .order_by(LedgerTransaction.created_at, LedgerEntry.id)
        ).all()
        lines = [
            StatementLine(
                transaction_id=tx.id,
                kind=tx.kind,
                at=tx.created_at.isoformat(),
                amount=amount,
                memo=tx.memo,
                reference_type=tx.reference_type,
                reference_id=tx.reference_id,
            ).__dict__
            for amount, tx in rows
        ]
        result["accounts"].append(
            {
                "account_id": acct.id,
                "currency": acct.currency,
                "balance": sum(line["amount"] for line in lines),
                "entries": lines,
            }
        )
    return result


def trial_balance(session: Session, *, actor: Principal) -> dict[str, Any]:
    """Whether every transaction, and so the whole ledger, sums to zero."""
    if not actor.roles.intersection(READERS):
        raise PermissionDeniedError("only the operator, auditors and regulators may read this")
    total = int(session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0))) or 0)
    unbalanced = session.scalars(
        select(LedgerEntry.transaction_id)
        .group_by(LedgerEntry.transaction_id)
        .having(func.sum(LedgerEntry.amount) != 0)
    ).all()
    transactions = int(session.scalar(select(func.count()).select_from(LedgerTransaction)) or 0)
    return {
        "balanced": total == 0 and not unbalanced,
        "sum_of_all_entries": total,
        "unbalanced_transactions": list(unbalanced),
        "transactions": transactions,
    }


def hold(
    session: Session,
    *,
    organization_id: str,
    amount: int,
    currency: str,
    reference: tuple[str, str],
) -> LedgerTransaction | None:
    """Move ``amount`` from the organisation into escrow for a pending charge (caller commits)."""
    if amount == 0:
        return None
    payer = _funded_account(
        session,
        organization_id=organization_id,
        amount=amount,
        currency=currency,
        what=f"this job may cost up to {amount} {currency}",
    )
    escrow = account(session, kind="escrow", currency=currency)
    return _post(
        session,
        kind="hold",
        currency=currency,
        entries=[(payer, -amount), (escrow, amount)],
        scope=f"hold:{reference[0]}",
        idempotency_key=reference[1],
        request_hash=_request_hash("hold", *reference, amount),
        reference=reference,
    )


def settle_hold(
    session: Session,
    *,
    organization_id: str,
    held: int,
    charge: int,
    currency: str,
    contributions: dict[str, int],
    fee_bps: int,
    reference: tuple[str, str],
) -> LedgerTransaction | None:
    """Pay ``charge`` out of the escrowed ``held`` amount and return the rest (caller commits)."""
    if held == 0:
        return None
    if not 0 <= charge <= held:
        raise AssertionError(f"charge {charge} outside the hold of {held}")
    escrow = account(session, kind="escrow", currency=currency)
    payer = account(
        session, kind="organization", organization_id=organization_id, currency=currency
    )
    entries = [
        (escrow, -held),
        (payer, held - charge),
        *_revenue(session, charge, currency, contributions, fee_bps),
    ]
    return _post(
        session,
        kind="metered_charge",
        currency=currency,
        entries=entries,
        scope=f"settle:{reference[0]}",
        idempotency_key=reference[1],
        request_hash=_request_hash("settle", *reference, held, charge),
        reference=reference,
    )
