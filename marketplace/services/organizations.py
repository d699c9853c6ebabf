"""Organisations, their users and roles, scoped API keys; who is asking.

A request acts for the user its key belongs to, with the user's roles (those of them the
organisation still holds), narrowed to the key's scopes. A key without a user is an organisation
key: it acts with all the organisation's roles and may administer it (see ``docs/access.md``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from infra.cache import GenerationCache
from infra.config import Settings
from infra.db import Base, new_id, session_scope, utcnow
from marketplace import security
from marketplace.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from marketplace.models import ApiKey, Organization, User
from marketplace.services import audit

# last_used_at is written at most once per key and interval, so reads stay reads.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)


@dataclass(frozen=True)
class Principal:
    """The caller, as established from its API key.

    ``roles`` are the effective roles (the user's, within the organisation's); ``scopes`` what the
    key may reach; ``user_id`` is None for an organisation key.
    """

    organization_id: str
    organization_name: str
    roles: frozenset[str]
    api_key_id: str
    user_id: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    is_admin: bool = False

    def require_role(self, *roles: str) -> None:
        if not self.roles.intersection(roles):
            raise PermissionDeniedError(
                f"organisation {self.organization_name!r} needs one of the roles "
                f"{', '.join(roles)}; it has {', '.join(sorted(self.roles)) or 'none'}"
            )

    def require_scope(self, scope: str) -> None:
        if scope not in self.scopes:
            raise PermissionDeniedError(
                f"the API key lacks the scope {scope!r}; "
                f"it has {', '.join(sorted(self.scopes)) or 'no scopes'}"
            )

    def require_admin(self) -> None:
        """An organisation admin's key (or an organisation key) with the ``admin`` scope."""
        self.require_scope("admin")
        if not self.is_admin:
            raise PermissionDeniedError(
                "only an organisation admin may manage organisations, users and API keys"
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


@dataclass
class KeyGrant:
    """What a valid key grants, and what is checked again on each use of a remembered grant."""

    principal: Principal
    expires_at: dt.datetime | None
    used_at: dt.datetime | None  # the key's last recorded use

    def check(self, now: dt.datetime) -> None:
        if self.expires_at is not None and self.expires_at <= now:
            raise AuthenticationError(f"the API key expired at {self.expires_at.isoformat()}")

    def use_is_stale(self, now: dt.datetime) -> bool:
        return self.used_at is None or now - self.used_at >= LAST_USED_RESOLUTION


def authenticate(session: Session, presented_key: str) -> KeyGrant:
    """The caller behind a presented key, with the key's expiry and last recorded use.

    Revoked and expired keys, and disabled users' keys, are refused. Only reads: the caller
    records the use (:func:`touch_key`) in a write transaction of its own when it is stale.
    """
    prefix = security.parse_prefix(presented_key)
    if prefix is None:
        raise AuthenticationError("the API key is malformed")
    row = session.execute(
        select(ApiKey, Organization, User)
        .join(Organization, Organization.id == ApiKey.organization_id)
        .outerjoin(User, User.id == ApiKey.user_id)
        .where(ApiKey.prefix == prefix)
    ).first()
    if row is None or not security.secret_matches(presented_key, row.ApiKey.secret_hash):
        raise AuthenticationError("the API key is not valid")
    key, organization, user = row.ApiKey, row.Organization, row.User
    if key.revoked_at is not None:
        raise AuthenticationError("the API key has been revoked")
    if user is not None and user.disabled_at is not None:
        raise AuthenticationError(f"the API key's user {user.id!r} is disabled")
    roles = frozenset(organization.roles)
    if user is not None:
        roles = roles.intersection(user.roles)
    principal = Principal(
        organization_id=organization.id,
        organization_name=organization.name,
        roles=roles,
        api_key_id=key.id,
        user_id=None if user is None else user.id,
        scopes=security.expand_scopes(key.scopes),
        is_admin=user is None or user.is_admin,
    )
    grant = KeyGrant(principal=principal, expires_at=key.expires_at, used_at=key.last_used_at)
    grant.check(utcnow())
    return grant


# Grants of recently used keys, per database and key digest, valid while the access generation
# is unchanged (see ``marketplace.models.ACCESS_GENERATION``): a revoked key, a disabled user or
# a changed role is refused on its next request, in every process.
_grants: GenerationCache[KeyGrant] = GenerationCache(4096)


def _grant_cache_key(settings: Settings, presented_key: str) -> tuple[str, bytes]:
    return settings.resolved_database_url, hashlib.sha256(presented_key.encode()).digest()


def remembered_grant(settings: Settings, presented_key: str, generation: int) -> KeyGrant | None:
    """The grant of a key used since the access generation last moved, checked for expiry."""
    grant = _grants.get(generation, _grant_cache_key(settings, presented_key))
    if grant is not None:
        grant.check(utcnow())
    return grant


def load_grant(settings: Settings, presented_key: str, generation: int) -> KeyGrant:
    """Authenticate from the database, record a stale use, and remember the grant.

    ``generation`` is the access generation read before this, so a change committed in
    between leaves the grant unremembered (the next request reads the newer generation).
    """
    with session_scope(settings, readonly=True) as session:
        grant = authenticate(session, presented_key)
    if grant.use_is_stale(utcnow()):
        record_use(settings, grant)
    _grants.put(generation, _grant_cache_key(settings, presented_key), grant)
    return grant


def record_use(settings: Settings, grant: KeyGrant) -> None:
    with session_scope(settings) as session:
        touch_key(session, grant.principal.api_key_id)
    grant.used_at = utcnow()


def touch_key(session: Session, key_id: str) -> None:
    """Record that a key was used now, unless another request did within the resolution."""
    now = utcnow()
    session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .where(
            or_(
                ApiKey.last_used_at.is_(None),
                ApiKey.last_used_at < now - LAST_USED_RESOLUTION,
            )
        )
        .values(last_used_at=now)
    )
    session.commit()


def _issue_key(
    session: Session,
    organization_id: str,
    name: str,
    *,
    user_id: str | None = None,
    scopes: list[str] | None = None,
    expires_at: dt.datetime | None = None,
) -> tuple[ApiKey, str]:
    generated = security.generate_api_key()
    key = ApiKey(
        id=new_id("key"),
        organization_id=organization_id,
        user_id=user_id,
        name=name,
        prefix=generated.prefix,
        secret_hash=generated.secret_hash,
        scopes=scopes if scopes is not None else [security.ALL_SCOPES],
        created_at=utcnow(),
        expires_at=expires_at,
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
    actor.require_admin()
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


def _administered(session: Session, *, actor: Principal, organization_id: str) -> Organization:
    """An organisation whose users and keys the caller manages: its own, or any for operators."""
    organization = get_organization(session, actor=actor, organization_id=organization_id)
    actor.require_admin()
    return organization


# Users --------------------------------------------------------------------------------------


def create_user(
    session: Session,
    *,
    actor: Principal,
    organization_id: str,
    name: str,
    email: str,
    roles: list[str],
    is_admin: bool,
) -> User:
    organization = _administered(session, actor=actor, organization_id=organization_id)
    foreign = sorted(set(roles) - set(organization.roles))
    if foreign:
        raise InvalidRequestError(
            f"roles {', '.join(foreign)} are not roles of organisation {organization.name!r} "
            f"(it has {', '.join(sorted(organization.roles))})"
        )
    user = User(
        id=new_id("usr"),
        organization_id=organization.id,
        name=name,
        email=email.lower(),
        roles=sorted(set(roles)),
        is_admin=is_admin,
        created_at=utcnow(),
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as error:
        session.rollback()
        raise ConflictError(
            f"organisation {organization.name!r} already has a user with e-mail {email!r}"
        ) from error
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="user.created",
        object_type="user",
        object_id=user.id,
        organization_id=organization.id,
        roles=user.roles,
        is_admin=is_admin,
        by_user_id=actor.user_id,
    )
    session.commit()
    return user


def list_users(session: Session, *, actor: Principal, organization_id: str) -> list[User]:
    _administered(session, actor=actor, organization_id=organization_id)
    return list(
        session.scalars(
            select(User)
            .where(User.organization_id == organization_id)
            .order_by(User.created_at, User.id)
        )
    )


def disable_user(session: Session, *, actor: Principal, user_id: str) -> User:
    """Disable a user; their keys are refused from the next request on. Idempotent."""
    user = session.get(User, user_id)
    if user is None or (user.organization_id != actor.organization_id and not actor.is_operator):
        raise NotFoundError("user", user_id)
    _administered(session, actor=actor, organization_id=user.organization_id)
    if user.disabled_at is None:
        user.disabled_at = utcnow()
        audit.record(
            session,
            actor_organization_id=actor.organization_id,
            action="user.disabled",
            object_type="user",
            object_id=user.id,
            organization_id=user.organization_id,
            by_user_id=actor.user_id,
        )
        session.commit()
    return user


# API keys -----------------------------------------------------------------------------------


def create_api_key(
    session: Session,
    *,
    actor: Principal,
    organization_id: str,
    name: str,
    scopes: list[str] | None = None,
    expires_at: dt.datetime | None = None,
    user_id: str | None = None,
) -> tuple[ApiKey, str]:
    """Issue a key for a user of the organisation (by default the caller's own user).

    A key never grants a scope the caller's key lacks; ``admin`` only to an admin. With no
    ``scopes`` the new key has the caller's.
    """
    organization = _administered(session, actor=actor, organization_id=organization_id)
    if user_id is None and organization.id == actor.organization_id:
        user_id = actor.user_id
    user: User | None = None
    if user_id is not None:
        user = session.get(User, user_id)
        if user is None or user.organization_id != organization.id:
            raise NotFoundError("user", user_id)
        if user.disabled_at is not None:
            raise ConflictError(f"user {user_id!r} is disabled")
    if scopes is None:
        stored = (
            [security.ALL_SCOPES]
            if actor.scopes == frozenset(security.SCOPES)
            else sorted(actor.scopes)
        )
    else:
        try:
            stored = security.normalize_scopes(scopes)
        except ValueError as error:
            raise InvalidRequestError(str(error)) from error
    granted = security.expand_scopes(stored)
    beyond = sorted(granted - actor.scopes)
    if beyond:
        raise PermissionDeniedError(
            f"a key cannot grant scopes its issuer's key lacks: {', '.join(beyond)}"
        )
    if "admin" in granted and user is not None and not user.is_admin:
        raise InvalidRequestError(
            f"user {user.id!r} is not an organisation admin, so its keys cannot hold 'admin'"
        )
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidRequestError(f"expires_at {expires_at.isoformat()} is not in the future")
    key, plaintext = _issue_key(
        session, organization.id, name, user_id=user_id, scopes=stored, expires_at=expires_at
    )
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="api_key.created",
        object_type="api_key",
        object_id=key.id,
        organization_id=organization.id,
        user_id=user_id,
        scopes=stored,
        expires_at=expires_at,
        by_user_id=actor.user_id,
    )
    session.commit()
    return key, plaintext


def list_api_keys(session: Session, *, actor: Principal, organization_id: str) -> list[ApiKey]:
    _administered(session, actor=actor, organization_id=organization_id)
    return list(
        session.scalars(
            select(ApiKey)
            .where(ApiKey.organization_id == organization_id)
            .order_by(ApiKey.created_at, ApiKey.id)
        )
    )


def revoke_api_key(session: Session, *, actor: Principal, key_id: str) -> ApiKey:
    """Revoke a key: any key may revoke itself or its user's keys; admins revoke any of theirs."""
    key = get_owned(session, ApiKey, key_id, actor=actor, kind="api key")
    own = key.id == actor.api_key_id or (
        actor.user_id is not None
        and key.user_id == actor.user_id
        and key.organization_id == actor.organization_id
    )
    if not own:
        actor.require_admin()
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        audit.record(
            session,
            actor_organization_id=actor.organization_id,
            action="api_key.revoked",
            object_type="api_key",
            object_id=key.id,
            by_user_id=actor.user_id,
        )
        session.commit()
    return key
