"""Licensing a listing, entitlements, and transaction certificates."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from marketplace import schemas
from marketplace.api.deps import CurrentPrincipal, SessionDep, SettingsDep, SigningKeyDep
from marketplace.api.orders import contract_public
from marketplace.certificates import CertificateError, verify_certificate
from marketplace.errors import NotFoundError
from marketplace.models import License
from marketplace.services import licensing

router = APIRouter(tags=["licenses"])


_DERIVED = ("entitlement", "certificate_id", "contract_filing_number", "order_id")


def _license_public(session: Session, license_: License) -> schemas.LicensePublic:
    entitlement = licensing.entitlement_of(session, license_.id)
    certificate = licensing.certificate_of(session, license_.id)
    contract = licensing.contract_of(session, license_.id)
    order = licensing.order_of(session, license_.id)
    return schemas.LicensePublic(
        **{
            field: getattr(license_, field)
            for field in schemas.LicensePublic.model_fields
            if field not in _DERIVED
        },
        entitlement=schemas.EntitlementPublic.model_validate(entitlement),
        certificate_id=certificate.id,
        contract_filing_number=contract.filing_number if contract else None,
        order_id=order.id if order else None,
    )


def _answer(session: Session, license_: License, created: bool) -> JSONResponse:
    return JSONResponse(
        _license_public(session, license_).model_dump(mode="json"),
        status_code=201 if created else 200,
    )


@router.post("/v1/licenses", status_code=201)
def license_listing(
    body: schemas.LicenseCreate,
    session: SessionDep,
    principal: CurrentPrincipal,
    signing_key: SigningKeyDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str, Header()],
) -> JSONResponse:
    """License a listed dataset version in one step, under a public, automatically approved
    offer (the listing's own by default); a retry with the same Idempotency-Key is answered 200.
    """
    license_, created = licensing.license_listing(
        session,
        actor=principal,
        listing_id=body.listing_id,
        offer_id=body.offer_id,
        uses=list(body.uses) if body.uses is not None else None,
        idempotency_key=idempotency_key,
        signing_key=signing_key,
        platform_fee_bps=settings.platform_fee_bps,
    )
    return _answer(session, license_, created)


@router.post("/v1/licenses/{license_id}/renewals", status_code=201)
def renew_subscription(
    license_id: str,
    session: SessionDep,
    principal: CurrentPrincipal,
    settings: SettingsDep,
    idempotency_key: Annotated[str, Header()],
) -> JSONResponse:
    """Pay a renewable subscription's next period; a retry with the same key charges once."""
    license_, created = licensing.renew_subscription(
        session,
        actor=principal,
        license_id=license_id,
        idempotency_key=idempotency_key,
        platform_fee_bps=settings.platform_fee_bps,
    )
    return _answer(session, license_, created)


@router.get("/v1/licenses/{license_id}")
def get_license(
    license_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.LicensePublic:
    return _license_public(
        session, licensing.get_license(session, actor=principal, license_id=license_id)
    )


@router.get("/v1/licenses/{license_id}/certificate")
def get_certificate(
    license_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.CertificatePublic:
    """The signed transaction certificate; verify it offline with ``aidx cert verify``."""
    licensing.get_license(session, actor=principal, license_id=license_id)
    certificate = licensing.certificate_of(session, license_id)
    return schemas.CertificatePublic(
        payload=certificate.payload,
        signature=certificate.signature,
        key_id=certificate.key_id,
        algorithm="Ed25519",
    )


@router.get("/v1/licenses/{license_id}/contract")
def get_contract(
    license_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.ContractPublic:
    """The filed contract, in English and Chinese, with its hash and filing number."""
    licensing.get_license(session, actor=principal, license_id=license_id)
    contract = licensing.contract_of(session, license_id)
    if contract is None:
        raise NotFoundError("contract of license", license_id)
    return contract_public(session, contract)


@router.post("/v1/certificates/verify")
def verify_certificate_online(
    certificate: dict[str, Any], principal: CurrentPrincipal, signing_key: SigningKeyDep
) -> dict[str, Any]:
    """Any member checks a certificate it was shown against the exchange's key."""
    try:
        payload = verify_certificate(certificate, signing_key.public_key())
    except CertificateError as error:
        return {"valid": False, "reason": str(error)}
    return {"valid": True, "payload": payload}


@router.get("/v1/entitlements")
def list_entitlements(
    session: SessionDep, principal: CurrentPrincipal
) -> list[schemas.EntitlementPublic]:
    return [
        schemas.EntitlementPublic.model_validate(entitlement)
        for entitlement in licensing.list_entitlements(session, actor=principal)
    ]


@router.post("/v1/entitlements/{entitlement_id}/revoke")
def revoke_entitlement(
    entitlement_id: str,
    body: schemas.EntitlementRevocation,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> schemas.EntitlementPublic:
    """The seller or the operator revokes an entitlement, with a reason; access stops at once."""
    return schemas.EntitlementPublic.model_validate(
        licensing.revoke_entitlement(
            session, actor=principal, entitlement_id=entitlement_id, reason=body.reason
        )
    )
