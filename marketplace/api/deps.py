"""Dependencies of the routes, as named aliases: the session, the caller, the store, the key.

The caller (``CurrentPrincipal``) is also where scopes are enforced, for every route at once:
``required_scope`` reads the route's scope from the tables below, and a key lacking it is
refused with a 403 naming the scope. Roles and ownership are checked by the services.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from functools import partial
from typing import Annotated

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from infra.cache import SharedRead
from infra.config import Settings, get_settings
from infra.db import AsyncCounterReader, read_counters, session_scope, utcnow
from infra.storage import ObjectStore, get_object_store
from marketplace.certificates import load_or_create_signing_key
from marketplace.errors import AuthenticationError, PermissionDeniedError
from marketplace.models import ACCESS_GENERATION
from marketplace.security import ALL_SCOPES, SCOPES
from marketplace.services.catalog import GENERATION as CATALOG_GENERATION
from marketplace.services.organizations import (
    Principal,
    load_grant,
    record_use,
    remembered_grant,
)


def app_settings(request: Request) -> Settings:
    """The settings the application was made with, or the process's."""
    settings: Settings = getattr(request.app.state, "settings", None) or get_settings()
    return settings


async def get_app_settings(request: Request) -> Settings:
    # async: it only reads, so it runs on the event loop rather than taking a thread
    return app_settings(request)


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def get_db(settings: SettingsDep) -> Iterator[Session]:
    with session_scope(settings) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]


# Areas of the API by path prefix: (scope of GET and HEAD, scope of every other method).
SCOPE_AREAS: tuple[tuple[str, tuple[str, str]], ...] = (
    ("/v1/datasets", ("datasets:read", "datasets:write")),
    ("/v1/curation-runs", ("datasets:read", "datasets:write")),
    ("/v1/versions", ("datasets:read", "datasets:write")),
    ("/api/datasets/", ("datasets:read", "datasets:read")),  # the Hub protocol only reads
    ("/datasets/", ("datasets:read", "datasets:read")),
    ("/v1/listings", ("listings:read", "listings:write")),
    ("/v1/catalog", ("listings:read", "listings:write")),
    ("/v1/review-rounds", ("listings:read", "listings:write")),  # human review before listing
    ("/v1/licenses", ("licenses:read", "licenses:write")),
    ("/v1/entitlements", ("licenses:read", "licenses:write")),
    ("/v1/certificates", ("licenses:read", "licenses:write")),
    ("/v1/orders", ("licenses:read", "licenses:write")),
    ("/v1/offers", ("licenses:read", "licenses:write")),
    ("/v1/ledger", ("ledger:read", "ledger:write")),
    ("/v1/training-jobs", ("training:read", "training:write")),
    ("/v1/fine_tuning", ("training:read", "training:write")),
    ("/v1/audit", ("audit:read", "admin")),
    ("/v1/organizations", ("admin", "admin")),
    ("/v1/users", ("admin", "admin")),
    ("/v1/api-keys", ("admin", "admin")),
)
# Exceptions, by (method, route path): None means any valid key (the service decides).
ROUTE_SCOPES: dict[tuple[str, str], str | None] = {
    ("GET", "/v1/me"): None,
    ("GET", "/v1/organizations/{organization_id}"): None,
    ("DELETE", "/v1/api-keys/{key_id}"): None,  # a key may always revoke itself
    ("GET", "/v1/organizations/{organization_id}/statement"): "ledger:read",
    ("POST", "/v1/certificates/verify"): "licenses:read",
    ("POST", "/v1/model-cards/verify"): "training:read",
}


def required_scope(method: str, path: str) -> str | None:
    """The scope a route needs; ``*`` (a key with every scope) for a route in no table."""
    if (method, path) in ROUTE_SCOPES:
        return ROUTE_SCOPES[method, path]
    for prefix, (read, write) in SCOPE_AREAS:
        if path == prefix or path.startswith(prefix if prefix.endswith("/") else prefix + "/"):
            return read if method in ("GET", "HEAD") else write
    return ALL_SCOPES


def get_read_db(settings: SettingsDep) -> Iterator[Session]:
    """A session for routes that only read: on SQLite it takes no write lock."""
    with session_scope(settings, readonly=True) as session:
        yield session


ReadSessionDep = Annotated[Session, Depends(get_read_db)]


# The counters a request reads once, first: what it may answer from memory depends on them.
COUNTERS = (ACCESS_GENERATION, CATALOG_GENERATION)
_COUNTERS_READ = "aidx.counters"  # where a request keeps the counters it read
_CounterReader = SharedRead[dict[str, int]]
_shared_reads: dict[tuple[int, str], tuple[asyncio.AbstractEventLoop, _CounterReader]] = {}


async def get_counters(request: Request) -> Mapping[str, int]:
    """The access and catalog generations as committed when the request arrived, or later.

    Read once per request, whichever asks first (the principal, the route), and kept in the
    request's scope. The principal and the catalog take it straight from here rather than as
    FastAPI sub-dependencies: each dependency costs FastAPI tens of microseconds a request.

    On SQLite the read is tens of microseconds of local I/O and runs on the event loop. A
    networked database is read without blocking the loop (PostgreSQL through psycopg's async
    connection; other drivers in the threadpool), and concurrent requests share reads
    (``SharedRead``): each waits for a read begun after it arrived, so the database sees about
    one read per round trip however many requests come.
    """
    counters: Mapping[str, int] | None = request.scope.get(_COUNTERS_READ)
    if counters is None:
        counters = request.scope[_COUNTERS_READ] = await _read(app_settings(request))
    return counters


async def _read(settings: Settings) -> Mapping[str, int]:
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        return read_counters(settings, COUNTERS)
    loop = asyncio.get_running_loop()
    entry = _shared_reads.get((id(loop), url))
    if entry is None or entry[0] is not loop:
        if len(_shared_reads) >= 64:  # loops come and go in tests
            _shared_reads.clear()
        if AsyncCounterReader.supports(url):
            reader = SharedRead(partial(AsyncCounterReader(url).read, COUNTERS))
        else:
            reader = SharedRead(lambda: run_in_threadpool(read_counters, settings, COUNTERS))
        entry = _shared_reads[id(loop), url] = (loop, reader)
    return await entry[1].get()


async def get_principal(request: Request) -> Principal:
    """The caller, with the route's scope enforced.

    A key used since the last change to any organisation, user or key is answered from memory
    (its expiry checked again); otherwise it is authenticated from the database in the
    threadpool. The key's last use is recorded about once a minute.
    """
    header = request.headers.get("authorization")
    if not header:
        raise AuthenticationError("missing Authorization header; send 'Bearer <API key>'")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("the Authorization header must be 'Bearer <API key>'")
    settings = app_settings(request)
    generation = (await get_counters(request))[ACCESS_GENERATION]
    grant = remembered_grant(settings, token, generation)
    if grant is None:
        grant = await run_in_threadpool(load_grant, settings, token, generation)
    elif grant.use_is_stale(utcnow()):
        await run_in_threadpool(record_use, settings, grant)
    principal = grant.principal
    route = request.scope.get("route")
    path = getattr(route, "path", None) or request.url.path
    scope = required_scope(request.method, path)
    if scope == ALL_SCOPES:
        if principal.scopes != frozenset(SCOPES):
            raise PermissionDeniedError(
                f"{request.method} {path} has no scope of its own; only a key with every "
                f"scope ('*') may call it"
            )
    elif scope is not None:
        principal.require_scope(scope)
    return principal


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
