"""Shared fixtures: a running exchange (API + worker) on each backend, and its settings."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.fixtures")

from infra.config import Settings
from infra.demo import running_service
from infra.storage import ObjectStore, get_object_store
from marketplace.client import AidxClient
from tests.fixtures.services import free_port, redis_namespace, temporary_database

pytest_plugins = ["tests.fixtures.services", "tests.fixtures.s3", "tests.fixtures.labelstudio"]

FIXTURES = Path(__file__).parent / "fixtures" / "data"
BACKENDS = ("embedded", "services")


@pytest.fixture(scope="session")
def gsm8k_train() -> Path:
    return FIXTURES / "gsm8k_train.jsonl"


@dataclass
class Exchange:
    """A running ``aidx up`` and what a test needs to reach its state."""

    backend: str
    base_url: str
    home: Path
    env: dict[str, str] = field(default_factory=dict)

    def client(self, api_key: str | None = None) -> AidxClient:
        return AidxClient(self.base_url, api_key)

    @property
    def settings(self) -> Settings:
        values = {key.removeprefix("AIDX_").lower(): value for key, value in self.env.items()}
        return Settings(home=self.home, **values)

    @property
    def store(self) -> ObjectStore:
        return get_object_store(self.settings)

    @property
    def bootstrap_token(self) -> str:
        return (self.home / "bootstrap-token").read_text().strip()


@pytest.fixture(scope="module", params=BACKENDS)
def exchange(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Exchange]:
    """The whole service, started as a person would (``aidx up``), on one backend.

    ``embedded``: SQLite, the SQLite broker, a local object folder. ``services``: PostgreSQL,
    Redis as broker and result backend, and S3 (moto's server on loopback).
    """
    home = tmp_path_factory.mktemp(f"exchange-{request.param}")
    with ExitStack() as stack:
        env = _services_env(request, stack) if request.param == "services" else {}
        base_url = stack.enter_context(
            running_service(home, free_port(), home / "service.log", env)
        )
        yield Exchange(request.param, base_url, home, env)


def _services_env(request: pytest.FixtureRequest, stack: ExitStack) -> dict[str, str]:
    redis_url = request.getfixturevalue("redis_url")
    key_prefix = stack.enter_context(redis_namespace(redis_url))
    database_url = stack.enter_context(
        temporary_database(request.getfixturevalue("postgres_server_url"))
    )
    return {
        "AIDX_DATABASE_URL": database_url,
        "AIDX_BROKER_URL": redis_url,
        "AIDX_RESULT_BACKEND": redis_url,
        "AIDX_BROKER_KEY_PREFIX": key_prefix,
        "AIDX_S3_ENDPOINT_URL": request.getfixturevalue("s3_endpoint_url"),
        "AIDX_S3_BUCKET": f"aidx-{secrets.token_hex(8)}",
        "AIDX_S3_ACCESS_KEY_ID": "testing",
        "AIDX_S3_SECRET_ACCESS_KEY": "testing",
    }
