"""Organisations, their roles and API keys; who is asking."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from infra.config import Settings
from infra.db import Base, new_id, utcnow
from marketplace import security
from marketplace.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)
from marketplace.models import ApiKey, Organization
from marketplace.services import audit


@dataclass(frozen=True)
class Principal:
    """The caller, as established from its API key."""

    organization_id: str
    organization_name: str
    roles: frozenset[str]
    api_key_id: str

    def require_role(self, *roles: str) -> None:
        if not self.roles.intersection(roles):
            raise PermissionDeniedError(
                f"organisation {self.organization_name!r} needs one of the roles "
                f"{', '.join(roles)}; it has {', '.join(sorted(self.roles))}"
            )

    @property
    def is_operator(self) -> bool:
        return "operator" in self.roles


OwnedT = TypeVar("OwnedT", bound=Base)


def get_owned(
    session: Session,
    model: type[OwnedT],
    object_id: str,
    *,
    actor: Principal,
    kind: str,
    owner: str = "organization_id",
) -> OwnedT:
    """An object the caller's organisation owns (operators see all); 404 for anyone else.

    Another organisation's object answers exactly like a missing one, so ids do not leak.
    """
    found = session.get(model, object_id)
    if found is None or (getattr(found, owner) != actor.organization_id and not actor.is_operator):
        raise NotFoundError(kind, object_id)
    return found


def authenticate(session: Session, presented_key: str) -> Principal:
    prefix = security.parse_prefix(presented_key)
    if prefix is None:
        raise AuthenticationError("the API key is malformed")
    row = session.execute(
        select(ApiKey, Organization)
        .join(Organization, Organization.id == ApiKey.organization_id)
        .where(ApiKey.prefix == prefix)
    ).first()
    if row is None or not security.secret_matches(presented_key, row.ApiKey.secret_hash):
        raise AuthenticationError("the API key is not valid")
    key, organization = row.ApiKey, row.Organization
    if key.revoked_at is not None:
        raise AuthenticationError("the API key has been revoked")
    return Principal(
        organization_id=organization.id,
        organization_name=organization.name,
        roles=frozenset(organization.roles),
        api_key_id=key.id,
    )


def _issue_key(session: Session, organization_id: str, name: str) -> tuple[ApiKey, str]:
    generated = security.generate_api_key()
    key = ApiKey(
        id=new_id("key"),
        organization_id=organization_id,
        name=name,
        prefix=generated.prefix,
        secret_hash=generated.secret_hash,
        created_at=utcnow(),
    )
    session.add(key)
    return key, generated.plaintext


def bootstrap_token(settings: Settings) -> str:
    """The token that may create the first operator: configured, or made once per home."""
    if settings.bootstrap_token is not None:
        return settings.bootstrap_token.get_secret_value()
    path = settings.resolved_bootstrap_token_path
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(secrets.token_urlsafe(32))
        temporary.chmod(0o600)
        temporary.replace(path)
    return path.read_text().strip()


def bootstrap_operator(
    session: Session, *, settings: Settings, presented_token: str, organization_name: str
) -> tuple[Organization, ApiKey, str]:
    """Create the exchange's operator organisation; allowed once, with the bootstrap token."""
    if not secrets.compare_digest(presented_token, bootstrap_token(settings)):
        raise AuthenticationError("the bootstrap token is not valid")
    existing = session.scalars(select(Organization)).all()
    if any("operator" in organization.roles for organization in existing):
        raise ConflictError("the exchange already has an operator organisation")
    return _create(session, name=organization_name, roles=["operator"], actor=None)


def create_organization(
    session: Session, *, actor: Principal, name: str, roles: list[str]
) -> tuple[Organization, ApiKey, str]:
    actor.require_role("operator")
    return _create(session, name=name, roles=roles, actor=actor.organization_id)


def _create(
    session: Session, *, name: str, roles: list[str], actor: str | None
) -> tuple[Organization, ApiKey, str]:
    organization = Organization(
        id=new_id("org"), name=name, roles=sorted(set(roles)), created_at=utcnow()
    )
    session.add(organization)
    try:
        session.flush()
    except IntegrityError as error:
        session.rollback()
        raise ConflictError(f"an organisation named {name!r} already exists") from error
    key, plaintext = _issue_key(session, organization.id, "default")
    audit.record(
        session,
        actor_organization_id=actor or organization.id,
        action="organization.created",
        object_type="organization",
        object_id=organization.id,
        roles=organization.roles,
    )
    session.commit()
    return organization, key, plaintext


def get_organization(session: Session, *, actor: Principal, organization_id: str) -> Organization:
    return get_owned(
        session, Organization, organization_id, actor=actor, kind="organization", owner="id"
    )


def create_api_key(
    session: Session, *, actor: Principal, organization_id: str, name: str
) -> tuple[ApiKey, str]:
    get_organization(session, actor=actor, organization_id=organization_id)
    key, plaintext = _issue_key(session, organization_id, name)
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="api_key.created",
        object_type="api_key",
        object_id=key.id,
    )
    session.commit()
    return key, plaintext


def revoke_api_key(session: Session, *, actor: Principal, key_id: str) -> ApiKey:
    key = get_owned(session, ApiKey, key_id, actor=actor, kind="api key")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        audit.record(
            session,
            actor_organization_id=actor.organization_id,
            action="api_key.revoked",
            object_type="api_key",
            object_id=key.id,
        )
        session.commit()
    return key
