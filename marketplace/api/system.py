"""Health, bootstrap of the operator organisation, and the exchange's public signing key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlalchemy import text

from infra.storage import LocalObjectStore, ObjectNotFoundError
from marketplace import schemas
from marketplace.api.deps import SessionDep, SettingsDep, SigningKeyDep, StoreDep
from marketplace.api.organizations import organization_created
from marketplace.certificates import ALGORITHM, key_id, public_key_pem
from marketplace.errors import NotFoundError, PermissionDeniedError
from marketplace.services import organizations

router = APIRouter(tags=["system"])


@router.get("/healthz")
def health(session: SessionDep) -> dict[str, str]:
    session.execute(text("SELECT 1"))
    return {"status": "ok"}


@router.post("/v1/bootstrap", status_code=201)
def bootstrap(
    body: schemas.BootstrapCreate,
    session: SessionDep,
    settings: SettingsDep,
    x_bootstrap_token: Annotated[str, Header()],
) -> schemas.OrganizationCreated:
    """Create the exchange's operator organisation, once, with the bootstrap token."""
    organization, key, plaintext = organizations.bootstrap_operator(
        session,
        settings=settings,
        presented_token=x_bootstrap_token,
        organization_name=body.organization_name,
    )
    return organization_created(organization, key, plaintext)


@router.get("/.well-known/aidx-certificate-key.pem", response_class=PlainTextResponse)
def well_known_signing_key(key: SigningKeyDep) -> PlainTextResponse:
    """The exchange's public key in PEM, where other institutions look for it."""
    return PlainTextResponse(public_key_pem(key.public_key()), media_type="application/x-pem-file")


@router.get("/v1/exchange/signing-key")
def signing_key(key: SigningKeyDep) -> schemas.SigningKeyPublic:
    public = key.public_key()
    return schemas.SigningKeyPublic(
        key_id=key_id(public), algorithm=ALGORITHM, public_key_pem=public_key_pem(public)
    )


@router.get("/v1/objects/{key:path}", include_in_schema=False)
def presigned_object(
    key: str,
    store: StoreDep,
    expires: Annotated[str, Query()],
    signature: Annotated[str, Query()],
) -> StreamingResponse:
    """Serve a presigned URL of the local object store (S3 serves its own)."""
    if not isinstance(store, LocalObjectStore) or not store.verify_presigned(
        key, expires, signature
    ):
        raise PermissionDeniedError("the presigned URL is invalid or has expired")
    try:
        stored = store.stat(key)
    except ObjectNotFoundError as error:
        raise NotFoundError("object", key) from error
    return StreamingResponse(
        store.open_stream(key),
        headers={"Content-Length": str(stored.size)},
        media_type="application/octet-stream",
    )
