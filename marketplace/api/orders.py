"""Orders: access requests, the seller's decision, both parties' acceptance, and filing."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from marketplace import schemas
from marketplace.api.deps import CurrentPrincipal, SessionDep, SettingsDep, SigningKeyDep
from marketplace.models import Contract, Order
from marketplace.services import contracts, orders

router = APIRouter(tags=["orders"])
Status = Literal["requested", "rejected", "awaiting_acceptance", "accepted", "filed"]


def order_public(session: Session, order: Order) -> schemas.OrderPublic:
    fields = {
        field: getattr(order, field)
        for field in schemas.OrderPublic.model_fields
        if field not in ("contract_sha256", "filing_number", "acceptances")
    }
    extra = orders.order_public_fields(session, order)
    return schemas.OrderPublic(
        **fields,
        contract_sha256=extra["contract_sha256"],
        filing_number=extra["filing_number"],
        acceptances=[
            schemas.ContractAcceptancePublic.model_validate(row) for row in extra["acceptances"]
        ],
    )


def contract_public(session: Session, contract: Contract) -> schemas.ContractPublic:
    public = schemas.ContractPublic.model_validate(contract)
    public.acceptances = [
        schemas.ContractAcceptancePublic.model_validate(row)
        for row in contracts.acceptances_of(session, contract.id)
    ]
    return public


def _created(session: Session, order: Order, created: bool) -> JSONResponse:
    return JSONResponse(
        order_public(session, order).model_dump(mode="json"), status_code=201 if created else 200
    )


@router.post("/v1/orders", status_code=201)
def place_order(
    body: schemas.OrderCreate,
    session: SessionDep,
    principal: CurrentPrincipal,
    idempotency_key: Annotated[str, Header()],
) -> JSONResponse:
    """Request access under an offer with the verification form; a retried key is a 200."""
    order, created = orders.place_order(
        session, actor=principal, request=body, idempotency_key=idempotency_key
    )
    return _created(session, order, created)


@router.get("/v1/orders")
def list_orders(
    session: SessionDep,
    principal: CurrentPrincipal,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> schemas.OrdersPublic:
    rows, count = orders.list_orders(
        session, actor=principal, status=status, limit=limit, offset=offset
    )
    return schemas.OrdersPublic(data=[order_public(session, row) for row in rows], count=count)


@router.get("/v1/orders/{order_id}")
def get_order(
    order_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.OrderPublic:
    return order_public(session, orders.get_order(session, actor=principal, order_id=order_id))


@router.post("/v1/orders/{order_id}/decision")
def decide_order(
    order_id: str,
    body: schemas.OrderDecision,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> schemas.OrderPublic:
    """The seller or the operator approves (the contract is generated) or rejects, with a reason."""
    order = orders.decide_order(
        session, actor=principal, order_id=order_id, decision=body.decision, reason=body.reason
    )
    return order_public(session, order)


@router.get("/v1/orders/{order_id}/contract")
def get_order_contract(
    order_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.ContractPublic:
    """The contract to accept (or, once filed, the filed one), with its SHA-256."""
    return contract_public(
        session, orders.contract_for(session, actor=principal, order_id=order_id)
    )


@router.post("/v1/orders/{order_id}/acceptances", status_code=201)
def accept_contract(
    order_id: str,
    body: schemas.ContractAcceptanceCreate,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> schemas.OrderPublic:
    """The caller's party accepts the contract whose SHA-256 it names (once)."""
    order = orders.accept_contract(
        session, actor=principal, order_id=order_id, contract_sha256=body.contract_sha256
    )
    return order_public(session, order)


@router.post("/v1/orders/{order_id}/filing", status_code=201)
def file_order(
    order_id: str,
    session: SessionDep,
    principal: CurrentPrincipal,
    signing_key: SigningKeyDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str, Header()],
) -> JSONResponse:
    """The exchange files the accepted contract and settles it; a retried key is a 200."""
    order, created = orders.file_order(
        session,
        actor=principal,
        order_id=order_id,
        idempotency_key=idempotency_key,
        signing_key=signing_key,
        platform_fee_bps=settings.platform_fee_bps,
    )
    return _created(session, order, created)
