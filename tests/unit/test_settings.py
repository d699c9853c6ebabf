"""``infra.config``: embedded defaults under one home folder, production switches, the validator."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from infra.config import DEVELOPMENT_SECRET, Settings, get_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No ``AIDX_*`` variable from the outer shell, and no settings cached across tests."""
    for name in list(os.environ):
        if name.startswith("AIDX_"):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AIDX_HOME", str(tmp_path))
    return tmp_path.resolve()


def test_embedded_defaults_all_live_under_aidx_home(home: Path) -> None:
    settings = get_settings()

    assert settings.home_dir == home
    assert settings.resolved_database_url == f"sqlite:///{home}/aidx.db"
    assert settings.resolved_broker_url == f"sqla+sqlite:///{home}/broker.db"
    assert settings.resolved_result_backend == f"db+sqlite:///{home}/results.db"
    assert settings.resolved_storage_root == home / "objects"
    assert settings.resolved_signing_key_path == home / "keys" / "exchange-ed25519.pem"
    assert settings.storage_backend == "local"
    assert settings.uses_embedded_broker is True
    assert settings.environment == "development"


def test_relative_home_resolves_to_an_absolute_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIDX_HOME", "state")

    settings = get_settings()

    assert settings.home_dir == tmp_path.resolve() / "state"
    assert settings.resolved_database_url == f"sqlite:///{tmp_path.resolve()}/state/aidx.db"


def test_database_url_switches_only_the_database(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql+psycopg://aidx:pw@db:5432/aidx"
    monkeypatch.setenv("AIDX_DATABASE_URL", url)

    settings = get_settings()

    assert settings.resolved_database_url == url
    assert settings.resolved_broker_url == f"sqla+sqlite:///{home}/broker.db"
    assert settings.storage_backend == "local"


def test_broker_url_switches_the_broker_and_leaves_embedded_mode(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIDX_BROKER_URL", "redis://redis:6379/0")

    settings = get_settings()

    assert settings.resolved_broker_url == "redis://redis:6379/0"
    assert settings.uses_embedded_broker is False
    # The result backend is its own setting; it stays embedded until named.
    assert settings.resolved_result_backend == f"db+sqlite:///{home}/results.db"
    assert settings.resolved_database_url == f"sqlite:///{home}/aidx.db"


def test_result_backend_switches_only_the_result_backend(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIDX_RESULT_BACKEND", "redis://redis:6379/1")

    settings = get_settings()

    assert settings.resolved_result_backend == "redis://redis:6379/1"
    assert settings.resolved_broker_url == f"sqla+sqlite:///{home}/broker.db"
    assert settings.uses_embedded_broker is True


def test_s3_bucket_switches_storage_to_s3(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIDX_S3_BUCKET", "aidx-objects")
    monkeypatch.setenv("AIDX_S3_ENDPOINT_URL", "https://s3.example.com")
    monkeypatch.setenv("AIDX_S3_SECRET_ACCESS_KEY", "s3-secret")

    settings = get_settings()

    assert settings.storage_backend == "s3"
    assert settings.s3_bucket == "aidx-objects"
    assert settings.s3_endpoint_url == "https://s3.example.com"
    assert settings.s3_secret_access_key is not None
    assert settings.s3_secret_access_key.get_secret_value() == "s3-secret"
    assert "s3-secret" not in repr(settings)


def test_production_refuses_the_development_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIDX_ENVIRONMENT", "production")
    monkeypatch.setenv("AIDX_BOOTSTRAP_TOKEN", "operator-token")

    with pytest.raises(ValidationError, match="AIDX_SECRET_KEY"):
        get_settings()

    monkeypatch.setenv("AIDX_SECRET_KEY", DEVELOPMENT_SECRET)
    get_settings.cache_clear()
    with pytest.raises(ValidationError, match="AIDX_SECRET_KEY"):
        get_settings()


def test_production_refuses_a_missing_bootstrap_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIDX_ENVIRONMENT", "production")
    monkeypatch.setenv("AIDX_SECRET_KEY", "a-real-production-secret")

    with pytest.raises(ValidationError, match="AIDX_BOOTSTRAP_TOKEN"):
        get_settings()


def test_production_accepts_a_real_secret_and_a_bootstrap_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIDX_ENVIRONMENT", "production")
    monkeypatch.setenv("AIDX_SECRET_KEY", "a-real-production-secret")
    monkeypatch.setenv("AIDX_BOOTSTRAP_TOKEN", "operator-token")

    settings = get_settings()

    assert settings.environment == "production"
    assert settings.secret_key.get_secret_value() == "a-real-production-secret"


@pytest.mark.parametrize("environment", ["development", "test"])
def test_development_secret_is_allowed_outside_production(
    environment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIDX_ENVIRONMENT", environment)

    settings = get_settings()

    assert settings.secret_key.get_secret_value() == DEVELOPMENT_SECRET
    assert settings.bootstrap_token is None


def test_unknown_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIDX_ENVIRONMENT", "staging")

    with pytest.raises(ValidationError, match="environment"):
        get_settings()


def test_get_settings_is_cached_until_cache_clear(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = get_settings()
    assert get_settings() is first

    monkeypatch.setenv("AIDX_HOME", str(tmp_path / "elsewhere"))
    assert get_settings() is first
    assert get_settings().home_dir == home

    get_settings.cache_clear()
    fresh = get_settings()
    assert fresh is not first
    assert fresh.home_dir == tmp_path.resolve() / "elsewhere"


def test_explicit_arguments_win_over_the_environment(home: Path, tmp_path: Path) -> None:
    """Tests and tools can build settings by hand whatever AIDX_HOME says."""
    other = tmp_path / "direct"

    settings = Settings(home=other, database_url="sqlite:///:memory:")

    assert settings.home_dir == other.resolve()
    assert settings.resolved_database_url == "sqlite:///:memory:"
    assert settings.resolved_broker_url == f"sqla+sqlite:///{other.resolve()}/broker.db"
