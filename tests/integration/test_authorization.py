"""Who may call what: every route of the API refuses a caller without a valid key.

The route table is read from the application itself, so a route added later without
authentication fails this test rather than slipping through.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from infra.config import Settings
from infra.db import dispose_engines, upgrade_database
from marketplace.app import ROUTER_MODULES, create_app

# Routes that answer without an API key, and why.
PUBLIC = {
    ("GET", "/healthz"): "liveness probe",
    ("POST", "/v1/bootstrap"): "guarded by the one-time bootstrap token instead",
    ("GET", "/v1/exchange/signing-key"): "the public key certificates are verified with",
    ("GET", "/.well-known/aidx-certificate-key.pem"): "the same key, at a well-known URL",
    ("GET", "/v1/objects/{key:path}"): "a presigned URL: the signature is the grant",
}
PARAMETER = re.compile(r"\{([^}:]+)(?::path)?\}")


def routes() -> list[tuple[str, str]]:
    """Every (method, path) the app serves, from the same router list the app includes."""
    found = []
    for module in ROUTER_MODULES:
        for route in module.router.routes:
            assert isinstance(route, APIRoute)
            found += [(method, route.path) for method in sorted(route.methods - {"OPTIONS"})]
    return found


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    home: Path = tmp_path_factory.mktemp("authz")
    settings = Settings(home=home)
    upgrade_database(settings)
    with TestClient(create_app(settings)) as test_client:
        yield test_client
    dispose_engines()


def concrete(path: str) -> str:
    return PARAMETER.sub(lambda match: f"x_{match.group(1)}", path)


def test_the_route_table_is_read_and_every_public_route_exists() -> None:
    table = routes()
    assert len(table) > 40
    assert set(PUBLIC) <= set(table)  # the list of exceptions is not stale


@pytest.mark.parametrize(("method", "path"), [route for route in routes() if route not in PUBLIC])
@pytest.mark.parametrize(
    "authorization", [None, "Bearer aidx_000000000000_not-a-key", "Basic dXNlcjpwYXNz"]
)
def test_every_private_route_refuses_a_caller_without_a_valid_key(
    client: TestClient, method: str, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = client.request(method, concrete(path), headers=headers, json={})
    assert response.status_code == 401, (method, path, response.status_code, response.text)
    if path.startswith("/v1/"):
        assert response.json()["error"]["code"] == "unauthenticated"
    else:  # the Hugging Face Hub protocol's own error shape, also on HEAD (no body)
        assert response.headers.get("X-Error-Message") or response.headers.get("X-Error-Code")
