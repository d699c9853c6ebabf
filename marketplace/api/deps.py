"""Dependencies of the routes, as named aliases: the session, the caller, the store, the key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from infra.config import Settings, get_settings
from infra.db import session_scope
from infra.storage import ObjectStore, get_object_store
from marketplace.certificates import load_or_create_signing_key
from marketplace.errors import AuthenticationError
from marketplace.services.organizations import Principal, authenticate


def get_app_settings(request: Request) -> Settings:
    settings: Settings = getattr(request.app.state, "settings", None) or get_settings()
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def get_db(settings: SettingsDep) -> Iterator[Session]:
    with session_scope(settings) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]


def get_principal(request: Request, session: SessionDep) -> Principal:
    header = request.headers.get("authorization")
    if not header:
        raise AuthenticationError("missing Authorization header; send 'Bearer <API key>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("the Authorization header must be 'Bearer <API key>'")
    return authenticate(session, token.strip())


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def get_store(request: Request, settings: SettingsDep) -> ObjectStore:
    store: ObjectStore | None = getattr(request.app.state, "store", None)
    if store is None:
        store = request.app.state.store = get_object_store(settings)
    return store


StoreDep = Annotated[ObjectStore, Depends(get_store)]


def get_signing_key(request: Request, settings: SettingsDep) -> Ed25519PrivateKey:
    key: Ed25519PrivateKey | None = getattr(request.app.state, "signing_key", None)
    if key is None:
        key = request.app.state.signing_key = load_or_create_signing_key(
            settings.resolved_signing_key_path, create=settings.environment != "production"
        )
    return key


SigningKeyDep = Annotated[Ed25519PrivateKey, Depends(get_signing_key)]
