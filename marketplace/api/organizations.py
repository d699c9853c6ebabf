"""Organisations and API keys."""

from __future__ import annotations

from fastapi import APIRouter

from marketplace import schemas
from marketplace.api.deps import CurrentPrincipal, SessionDep
from marketplace.models import ApiKey, Organization
from marketplace.services import organizations

router = APIRouter(tags=["organizations"])


def organization_created(
    organization: Organization, key: ApiKey, plaintext: str
) -> schemas.OrganizationCreated:
    return schemas.OrganizationCreated(
        **schemas.OrganizationPublic.model_validate(organization).model_dump(),
        api_key=schemas.ApiKeyCreated(
            **schemas.ApiKeyPublic.model_validate(key).model_dump(), api_key=plaintext
        ),
    )


@router.post("/v1/organizations", status_code=201)
def create_organization(
    body: schemas.OrganizationCreate, session: SessionDep, principal: CurrentPrincipal
) -> schemas.OrganizationCreated:
    organization, key, plaintext = organizations.create_organization(
        session, actor=principal, name=body.name, roles=list(body.roles)
    )
    return organization_created(organization, key, plaintext)


@router.get("/v1/me")
def me(session: SessionDep, principal: CurrentPrincipal) -> schemas.Me:
    organization = organizations.get_organization(
        session, actor=principal, organization_id=principal.organization_id
    )
    return schemas.Me(
        organization=schemas.OrganizationPublic.model_validate(organization),
        api_key_id=principal.api_key_id,
    )


@router.get("/v1/organizations/{organization_id}")
def get_organization(
    organization_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.OrganizationPublic:
    return schemas.OrganizationPublic.model_validate(
        organizations.get_organization(session, actor=principal, organization_id=organization_id)
    )


@router.post("/v1/organizations/{organization_id}/api-keys", status_code=201)
def create_api_key(
    organization_id: str,
    body: schemas.ApiKeyCreate,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> schemas.ApiKeyCreated:
    key, plaintext = organizations.create_api_key(
        session, actor=principal, organization_id=organization_id, name=body.name
    )
    return schemas.ApiKeyCreated(
        **schemas.ApiKeyPublic.model_validate(key).model_dump(), api_key=plaintext
    )


@router.delete("/v1/api-keys/{key_id}")
def revoke_api_key(
    key_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.ApiKeyPublic:
    return schemas.ApiKeyPublic.model_validate(
        organizations.revoke_api_key(session, actor=principal, key_id=key_id)
    )
