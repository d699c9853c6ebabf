"""Settlement (top-ups, payouts, statements, the trial balance) and the audit trail."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse

from marketplace import schemas
from marketplace.api.deps import CurrentPrincipal, SessionDep
from marketplace.errors import PermissionDeniedError
from marketplace.services import audit, ledger

router = APIRouter(tags=["settlement"])


def _transfer(
    kind: str,
    body: schemas.TransferCreate,
    session: SessionDep,
    principal: CurrentPrincipal,
    idempotency_key: str,
) -> JSONResponse:
    transaction, created = ledger.record_transfer(
        session,
        actor=principal,
        kind=kind,
        organization_id=body.organization_id,
        amount=body.amount,
        currency=body.currency,
        idempotency_key=idempotency_key,
        memo=body.memo,
    )
    return JSONResponse(
        schemas.LedgerTransactionPublic.model_validate(transaction).model_dump(mode="json"),
        status_code=201 if created else 200,
    )


@router.post("/v1/ledger/top-ups", status_code=201)
def top_up(
    body: schemas.TransferCreate,
    session: SessionDep,
    principal: CurrentPrincipal,
    idempotency_key: Annotated[str, Header()],
) -> JSONResponse:
    """The operator records money an organisation paid in (a retry with the same key is a 200)."""
    return _transfer("top_up", body, session, principal, idempotency_key)


@router.post("/v1/ledger/payouts", status_code=201)
def payout(
    body: schemas.TransferCreate,
    session: SessionDep,
    principal: CurrentPrincipal,
    idempotency_key: Annotated[str, Header()],
) -> JSONResponse:
    """The operator records money paid out to an organisation, up to its balance."""
    return _transfer("payout", body, session, principal, idempotency_key)


@router.get("/v1/organizations/{organization_id}/statement")
def statement(
    organization_id: str, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    return ledger.statement(session, actor=principal, organization_id=organization_id)


@router.get("/v1/ledger/trial-balance")
def trial_balance(session: SessionDep, principal: CurrentPrincipal) -> dict[str, Any]:
    return ledger.trial_balance(session, actor=principal)


@router.get("/v1/audit/verify")
def verify_audit_chain(
    session: SessionDep, principal: CurrentPrincipal
) -> schemas.AuditChainPublic:
    """Recompute the audit trail's hash chain (operator, auditors, regulators)."""
    if not principal.roles.intersection(ledger.READERS):
        raise PermissionDeniedError("only the operator, auditors and regulators may verify")
    report = audit.verify_chain(session)
    return schemas.AuditChainPublic(intact=report.intact, **report.__dict__)


@router.get("/v1/audit/events")
def list_audit_events(
    session: SessionDep,
    principal: CurrentPrincipal,
    after_seq: Annotated[int, Query(ge=0, description="events after this sequence number")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    object_type: Annotated[str | None, Query(max_length=40)] = None,
    object_id: Annotated[str | None, Query(max_length=40)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
) -> list[schemas.AuditEventPublic]:
    """The audit trail in chain order, a page at a time (operator, auditors, regulators).

    Each event carries ``prev_hash`` and ``hash``, so a reader can check the links it is given.
    """
    if not principal.roles.intersection(ledger.READERS):
        raise PermissionDeniedError("only the operator, auditors and regulators may read the trail")
    events = audit.list_events(
        session,
        after_seq=after_seq,
        limit=limit,
        object_type=object_type,
        object_id=object_id,
        action=action,
    )
    return [schemas.AuditEventPublic.model_validate(event) for event in events]
