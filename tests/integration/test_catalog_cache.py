"""The catalog's page cache under concurrent requests, and across databases in one process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.config import Settings
from infra.db import dispose_engines, session_scope, upgrade_database
from marketplace.app import create_app
from marketplace.services import catalog as catalog_service
from marketplace.services.organizations import bootstrap_operator

TOKEN = "bootstrap-token-for-the-cache-tests"


def _exchange(home: Path) -> tuple[Settings, str]:
    """A migrated database and the operator's API key."""
    settings = Settings(home=home, bootstrap_token=TOKEN)
    upgrade_database(settings)
    with session_scope(settings) as session:
        _, _, key = bootstrap_operator(
            session, settings=settings, presented_token=TOKEN, organization_name="Operator"
        )
        session.commit()
    return settings, key


@pytest.fixture
def searches(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Every catalog search that reaches the database, as its arguments."""
    seen: list[dict[str, Any]] = []
    search_body = catalog_service.search_body

    def counted(session: Any, **page: Any) -> bytes:
        seen.append(page)
        return search_body(session, **page)

    monkeypatch.setattr(catalog_service, "search_body", counted)
    yield seen
    dispose_engines()


def test_concurrent_requests_for_a_missing_page_share_one_search(
    tmp_path: Path, searches: list[dict[str, Any]]
) -> None:
    settings, key = _exchange(tmp_path / "home")
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {key}"}

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aidx") as client:
            same = [client.get("/v1/catalog?q=math", headers=headers) for _ in range(40)]
            other = [client.get("/v1/catalog?q=poetry", headers=headers) for _ in range(10)]
            return await asyncio.gather(*same, *other)

    responses = asyncio.run(scenario())
    assert [response.status_code for response in responses] == [200] * 50
    assert {response.json()["count"] for response in responses} == {0}
    assert sorted(page["query"] for page in searches) == ["math", "poetry"]


def test_pages_of_one_database_are_never_answered_for_another(tmp_path: Path) -> None:
    """One process may serve several databases (tests, tools) whose catalog generations are
    equal; each page is cached for its own database."""
    first, _ = _exchange(tmp_path / "first")
    second, _ = _exchange(tmp_path / "second")
    page: dict[str, Any] = {
        "query": "math",
        "filters": catalog_service.Filters(),
        "sort": "relevance",
        "limit": 20,
        "offset": 0,
    }
    bodies = []
    for settings, label in ((first, b"first"), (second, b"second"), (first, b"first again")):
        with session_scope(settings, readonly=True) as session:
            bodies.append(
                catalog_service.search_body(
                    session,
                    database=settings.resolved_database_url,
                    render=lambda _rows, _count, label=label: label,
                    **page,
                )
            )
    dispose_engines()
    # Both catalogs are at generation 0; the third page comes from the cache, as rendered first.
    assert bodies == [b"first", b"second", b"first"]
