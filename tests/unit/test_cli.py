"""The ``aidx`` command line, driven through typer's runner as a user would type it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from infra.cli import app
from infra.config import get_settings
from infra.db import (
    Base,
    alembic_config,
    dispose_engines,
    import_all_models,
    is_unmanaged_table,
)
from marketplace.certificates import public_key_pem, sign_certificate

PAYLOAD: dict[str, Any] = {
    "certificate_id": "cert_0123456789",
    "license_id": "lic_42",
    "issued_at": "2026-01-02T03:04:05Z",
    "buyer": {"name": "Zürich Labs"},
    "seller": {"name": "Acme Data"},
    "dataset": {"content_hash": "sha256:" + "ab" * 32},
    "price": {"amount": 125000, "currency": "EUR"},
}

runner = CliRunner()


def squash(text: str) -> str:
    """The output without whitespace: rich wraps long lines (and paths) at the terminal width."""
    return "".join(text.split())


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Every command sees only ``AIDX_HOME=tmp_path``; settings and engines are rebuilt after."""
    for name in list(os.environ):
        if name.startswith("AIDX_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("AIDX_HOME", str(home))
    get_settings.cache_clear()
    dispose_engines()
    yield home
    dispose_engines()
    get_settings.cache_clear()


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path, dict[str, Any]]:
    """A certificate file and the public key file that verifies it."""
    key = Ed25519PrivateKey.generate()
    certificate = sign_certificate(dict(PAYLOAD), key)
    certificate_path = tmp_path / "certificate.json"
    certificate_path.write_text(json.dumps(certificate, indent=2, ensure_ascii=False))
    public_key_path = tmp_path / "exchange.pub.pem"
    public_key_path.write_text(public_key_pem(key.public_key()))
    return certificate_path, public_key_path, certificate


def verify(certificate: Path, public_key: Path) -> Any:
    return runner.invoke(app, ["cert", "verify", str(certificate), "--public-key", str(public_key)])


# aidx cert verify ---------------------------------------------------------------------------


def test_cert_verify_accepts_a_genuine_certificate(
    signed: tuple[Path, Path, dict[str, Any]],
) -> None:
    certificate_path, public_key_path, _ = signed

    result = verify(certificate_path, public_key_path)

    assert result.exit_code == 0, result.output
    assert "valid certificate cert_0123456789" in result.stdout
    assert "INVALID" not in result.output
    assert "license_id: lic_42" in result.stdout
    assert "buyer: Zürich Labs" in result.stdout
    assert "price: 125000 EUR" in result.stdout


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda c: c["payload"]["price"].update(amount=1), id="price"),
        pytest.param(lambda c: c["payload"].update(license_id="lic_43"), id="license"),
        pytest.param(lambda c: c.update(key_id="0" * 64), id="key-id"),
        pytest.param(lambda c: c.update(algorithm="RS256"), id="algorithm"),
        pytest.param(lambda c: c.update(signature=c["signature"][::-1]), id="signature"),
    ],
)
def test_cert_verify_rejects_a_tampered_certificate(
    signed: tuple[Path, Path, dict[str, Any]], tamper: Any
) -> None:
    certificate_path, public_key_path, certificate = signed
    tamper(certificate)
    certificate_path.write_text(json.dumps(certificate))

    result = verify(certificate_path, public_key_path)

    assert result.exit_code == 1
    assert "INVALID" in result.stderr
    assert "valid certificate" not in result.output


def test_cert_verify_rejects_a_certificate_checked_against_another_key(
    signed: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    certificate_path, _, _ = signed
    other = tmp_path / "other.pub.pem"
    other.write_text(public_key_pem(Ed25519PrivateKey.generate().public_key()))

    result = verify(certificate_path, other)

    assert result.exit_code == 1
    assert "INVALID" in result.stderr
    assert "another key" in result.stderr


def test_cert_verify_reports_a_null_signature_as_invalid(
    signed: tuple[Path, Path, dict[str, Any]],
) -> None:
    certificate_path, public_key_path, certificate = signed
    certificate["signature"] = None
    certificate_path.write_text(json.dumps(certificate))

    result = verify(certificate_path, public_key_path)

    assert result.exit_code == 1
    assert "INVALID" in result.stderr


def test_cert_verify_names_a_missing_certificate_file(
    signed: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    _, public_key_path, _ = signed
    missing = tmp_path / "no-such-certificate.json"

    result = verify(missing, public_key_path)

    assert result.exit_code == 1
    assert squash(f"error: {missing}: no such file") in squash(result.stderr)
    assert not isinstance(result.exception, FileNotFoundError)  # reported, not a traceback


def test_cert_verify_names_a_missing_public_key_file(
    signed: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    certificate_path, _, _ = signed
    missing = tmp_path / "no-such-key.pem"

    result = verify(certificate_path, missing)

    assert result.exit_code == 1
    assert squash(f"{missing}: no such file") in squash(result.stderr)


@pytest.mark.parametrize("content", ["", "not json", '{"payload": ', "<certificate/>"])
def test_cert_verify_reports_a_file_that_is_not_json(
    signed: tuple[Path, Path, dict[str, Any]], content: str
) -> None:
    certificate_path, public_key_path, _ = signed
    certificate_path.write_text(content)

    result = verify(certificate_path, public_key_path)

    assert result.exit_code == 1
    assert squash(f"{certificate_path}: not JSON") in squash(result.stderr)
    assert "Traceback" not in result.output


def test_cert_verify_reports_a_public_key_that_is_not_pem(
    signed: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    certificate_path, _, _ = signed
    bad_key = tmp_path / "bad.pem"
    bad_key.write_text("not a key")

    result = verify(certificate_path, bad_key)

    assert result.exit_code == 1
    assert "INVALID" in result.stderr
    assert squash("not a PEM public key") in squash(result.stderr)


# aidx worker --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queues", "named"),
    [("nope", "nope"), ("curation,nope", "nope"), ("training,gpu,curation", "gpu")],
)
def test_worker_refuses_an_unknown_queue_naming_it(queues: str, named: str) -> None:
    # A known list would exec a real worker in place of the test process, so only bad ones here.
    result = runner.invoke(app, ["worker", "--queues", queues])

    assert result.exit_code == 2
    assert f"unknown queue(s) {named}; known: curation, training" in result.stderr


# aidx db upgrade ----------------------------------------------------------------------------


def model_tables() -> set[str]:
    import curation.models  # noqa: F401
    import marketplace.models  # noqa: F401

    import_all_models()
    return set(Base.metadata.tables)


def test_db_upgrade_creates_the_embedded_database_with_every_table(
    isolated_settings: Path,
) -> None:
    database = isolated_settings / "aidx.db"
    assert not database.exists()

    result = runner.invoke(app, ["db", "upgrade"])

    assert result.exit_code == 0, result.output
    assert "is at head" in result.stdout
    assert database.is_file()
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            tables = {
                t for t in sa.inspect(connection).get_table_names() if not is_unmanaged_table(t)
            }
            version = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            head = ScriptDirectory.from_config(alembic_config(get_settings())).get_current_head()
            assert version.scalar_one() == head
    finally:
        engine.dispose()
    expected = model_tables()
    assert {"organizations", "listings", "licenses", "certificates", "training_jobs"} <= expected
    assert tables == expected | {"alembic_version"}


def test_db_upgrade_twice_is_harmless(isolated_settings: Path) -> None:
    first = runner.invoke(app, ["db", "upgrade"])
    second = runner.invoke(app, ["db", "upgrade"])

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output


def test_database_url_is_printed_without_its_password() -> None:
    from infra.cli import _redact

    redacted = _redact("postgresql+psycopg://aidx:s3cret-pw@db:5432/aidx")

    assert "s3cret-pw" not in redacted
    assert redacted == "postgresql+psycopg://aidx:***@db:5432/aidx"
