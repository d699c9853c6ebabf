"""Remembered keys: what an API process answers from memory stops the moment access changes.

Each API process remembers the grants of recently used keys while the ``access_generation``
counter is unchanged. These tests use a key until it is remembered by the running service
(``aidx up``, both backends), then change access (through the API, or from this process straight
in the database, as another API process or the CLI would) and check the very next request.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from sqlalchemy import select

from infra.db import session_scope, utcnow
from marketplace.client import AidxClient, ApiError
from marketplace.models import ApiKey, Counter, Organization
from tests.conftest import Exchange


@pytest.fixture(scope="module")
def operator(exchange: Exchange) -> Iterator[AidxClient]:
    with exchange.client() as anonymous:
        created = anonymous.bootstrap(exchange.bootstrap_token, "Exchange operator")
    with exchange.client(created["api_key"]["api_key"]) as client:
        yield client


@pytest.fixture
def client_for(exchange: Exchange) -> Iterator[Callable[[str], AidxClient]]:
    """Clients for keys, closed after the test."""
    with ExitStack() as stack:
        yield lambda key: stack.enter_context(exchange.client(key))


def _organization(
    operator: AidxClient, client_for: Callable[[str], AidxClient]
) -> tuple[dict[str, Any], AidxClient]:
    created = operator.create_organization(f"Buyer {uuid.uuid4().hex[:8]}", ["buyer"])
    return created, client_for(created["api_key"]["api_key"])


def _remembered(client: AidxClient) -> None:
    for _ in range(3):
        client.request("GET", "/v1/catalog")


def _refused(client: AidxClient, path: str = "/v1/catalog") -> ApiError:
    with pytest.raises(ApiError) as raised:
        client.request("GET", path)
    assert raised.value.status_code == 401, raised.value
    return raised.value


def _access_generation(exchange: Exchange) -> int:
    with session_scope(exchange.settings) as session:
        value = session.scalar(select(Counter.value).where(Counter.name == "access_generation"))
    assert value is not None
    return value


def test_a_key_revoked_from_another_process_is_refused_on_its_next_request(
    exchange: Exchange, operator: AidxClient, client_for: Callable[[str], AidxClient]
) -> None:
    created, buyer = _organization(operator, client_for)
    other, bystander = _organization(operator, client_for)
    _remembered(buyer)
    _remembered(bystander)
    before = _access_generation(exchange)
    with session_scope(exchange.settings) as session:  # this process, not the service's
        key = session.get(ApiKey, created["api_key"]["id"])
        assert key is not None
        key.revoked_at = utcnow()
        session.commit()
    assert _access_generation(exchange) == before + 1
    assert "revoked" in _refused(buyer).message
    assert bystander.request("GET", "/v1/me")["organization"]["id"] == other["id"]


def test_a_key_revoked_through_the_api_is_refused_on_its_next_request(
    exchange: Exchange, operator: AidxClient, client_for: Callable[[str], AidxClient]
) -> None:
    created, buyer = _organization(operator, client_for)
    _remembered(buyer)
    buyer.revoke_api_key(created["api_key"]["id"])
    assert "revoked" in _refused(buyer).message


def test_a_disabled_users_remembered_key_is_refused(
    exchange: Exchange, operator: AidxClient, client_for: Callable[[str], AidxClient]
) -> None:
    created, admin = _organization(operator, client_for)
    organization_id = created["id"]
    user = admin.create_user(
        organization_id, name="Ana", email=f"{uuid.uuid4().hex[:8]}@x.example", roles=["buyer"]
    )
    key = admin.create_api_key(organization_id, user_id=user["id"], scopes=["listings:read"])
    member = client_for(key["api_key"])
    _remembered(member)
    admin.request("POST", f"/v1/users/{user['id']}/disable")
    assert "disabled" in _refused(member).message


def test_roles_changed_in_the_database_apply_to_the_next_request(
    exchange: Exchange, operator: AidxClient, client_for: Callable[[str], AidxClient]
) -> None:
    created, buyer = _organization(operator, client_for)
    assert buyer.request("GET", "/v1/me")["roles"] == ["buyer"]
    with session_scope(exchange.settings) as session:
        organization = session.get(Organization, created["id"])
        assert organization is not None
        organization.roles = ["buyer", "researcher"]
        session.commit()
    assert buyer.request("GET", "/v1/me")["roles"] == ["buyer", "researcher"]


def test_a_remembered_key_still_expires_on_time(
    exchange: Exchange, operator: AidxClient, client_for: Callable[[str], AidxClient]
) -> None:
    created, admin = _organization(operator, client_for)
    expires_at = utcnow() + dt.timedelta(seconds=3)
    key = admin.create_api_key(
        created["id"], scopes=["listings:read"], expires_at=expires_at.isoformat()
    )
    expiring = client_for(key["api_key"])
    _remembered(expiring)
    generation = _access_generation(exchange)
    time.sleep(max(0.0, (expires_at - utcnow()).total_seconds()) + 0.2)
    assert "expired" in _refused(expiring).message
    assert _access_generation(exchange) == generation  # nothing changed but the clock


def test_the_first_use_of_a_key_is_recorded(
    exchange: Exchange, operator: AidxClient, client_for: Callable[[str], AidxClient]
) -> None:
    created, buyer = _organization(operator, client_for)
    with session_scope(exchange.settings) as session:
        key = session.get(ApiKey, created["api_key"]["id"])
        assert key is not None and key.last_used_at is None
    started = utcnow()
    _remembered(buyer)
    with session_scope(exchange.settings) as session:
        key = session.get(ApiKey, created["api_key"]["id"])
        assert key is not None and key.last_used_at is not None
        assert started - dt.timedelta(seconds=1) <= key.last_used_at <= utcnow()
