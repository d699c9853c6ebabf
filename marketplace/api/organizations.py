"""Organisations, their users and API keys."""

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
    """The operator registers an organisation; its first key is an organisation key."""
    organization, key, plaintext = organizations.create_organization(
        session, actor=principal, name=body.name, roles=list(body.roles)
    )
    return organization_created(organization, key, plaintext)


@router.get("/v1/me")
def me(session: SessionDep, principal: CurrentPrincipal) -> schemas.Me:
    """Who the key acts for: organisation, user, effective roles and scopes."""
    organization = organizations.get_organization(
        session, actor=principal, organization_id=principal.organization_id
    )
    return schemas.Me(
        organization=schemas.OrganizationPublic.model_validate(organization),
        api_key_id=principal.api_key_id,
        user_id=principal.user_id,
        roles=sorted(principal.roles),
        scopes=sorted(principal.scopes),
        is_admin=principal.is_admin,
    )


@router.get("/v1/organizations/{organization_id}")
def get_organization(
    organization_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.OrganizationPublic:
    return schemas.OrganizationPublic.model_validate(
        organizations.get_organization(session, actor=principal, organization_id=organization_id)
    )


# Users --------------------------------------------------------------------------------------


@router.post("/v1/organizations/{organization_id}/users", status_code=201)
def create_user(
    organization_id: str,
    body: schemas.UserCreate,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> schemas.UserPublic:
    """An organisation admin (or the operator) adds a user with some of the org's roles."""
    return schemas.UserPublic.model_validate(
        organizations.create_user(
            session,
            actor=principal,
            organization_id=organization_id,
            name=body.name,
            email=body.email,
            roles=list(body.roles),
            is_admin=body.is_admin,
        )
    )


@router.get("/v1/organizations/{organization_id}/users")
def list_users(
    organization_id: str, session: SessionDep, principal: CurrentPrincipal
) -> list[schemas.UserPublic]:
    return [
        schemas.UserPublic.model_validate(user)
        for user in organizations.list_users(
            session, actor=principal, organization_id=organization_id
        )
    ]


@router.post("/v1/users/{user_id}/disable")
def disable_user(
    user_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.UserPublic:
    """Disable a user; every key of theirs is refused from the next request on."""
    return schemas.UserPublic.model_validate(
        organizations.disable_user(session, actor=principal, user_id=user_id)
    )


# API keys -----------------------------------------------------------------------------------


@router.post("/v1/organizations/{organization_id}/api-keys", status_code=201)
def create_api_key(
    organization_id: str,
    body: schemas.ApiKeyCreate,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> schemas.ApiKeyCreated:
    """Issue a key, scoped and optionally expiring; the secret is in this answer only."""
    key, plaintext = organizations.create_api_key(
        session,
        actor=principal,
        organization_id=organization_id,
        name=body.name,
        scopes=body.scopes,
        expires_at=body.expires_at,
        user_id=body.user_id,
    )
    return schemas.ApiKeyCreated(
        **schemas.ApiKeyPublic.model_validate(key).model_dump(), api_key=plaintext
    )


@router.get("/v1/organizations/{organization_id}/api-keys")
def list_api_keys(
    organization_id: str, session: SessionDep, principal: CurrentPrincipal
) -> list[schemas.ApiKeyPublic]:
    """The organisation's keys: prefix, scopes, created, last used; never a secret."""
    return [
        schemas.ApiKeyPublic.model_validate(key)
        for key in organizations.list_api_keys(
            session, actor=principal, organization_id=organization_id
        )
    ]


@router.delete("/v1/api-keys/{key_id}")
def revoke_api_key(
    key_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.ApiKeyPublic:
    """Revoke a key (its own holder, or an admin); refused from the next request on."""
    return schemas.ApiKeyPublic.model_validate(
        organizations.revoke_api_key(session, actor=principal, key_id=key_id)
    )
