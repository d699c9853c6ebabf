"""``infra.db.upgrade_database``: the Alembic history builds exactly the models, on both DBs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from infra.config import Settings
from infra.db import (
    Base,
    alembic_config,
    dispose_engines,
    import_all_models,
    include_object,
    is_unmanaged_column,
    is_unmanaged_table,
    upgrade_database,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def complete_metadata() -> sa.MetaData:
    """Base.metadata with every model module loaded."""
    import_all_models()
    return Base.metadata


def head_revision(settings: Settings) -> str:
    head = ScriptDirectory.from_config(alembic_config(settings)).get_current_head()
    assert head is not None
    return head


@pytest.fixture(autouse=True)
def fresh_engines() -> Iterator[None]:
    dispose_engines()
    yield
    dispose_engines()


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def postgres_settings(tmp_path: Path, postgres_database_url: str) -> Settings:
    return Settings(home=tmp_path / "home", database_url=postgres_database_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest) -> Settings:
    fixture_name = "sqlite_settings" if request.param == "sqlite" else "postgres_settings"
    chosen: Settings = request.getfixturevalue(fixture_name)
    return chosen


def connect(settings: Settings) -> sa.Engine:
    return sa.create_engine(settings.resolved_database_url, poolclass=sa.pool.NullPool)


def test_upgrade_creates_every_model_table(settings: Settings) -> None:
    metadata = complete_metadata()

    upgrade_database(settings)

    engine = connect(settings)
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            tables = {t for t in inspector.get_table_names() if not is_unmanaged_table(t)}
            assert tables == set(metadata.tables) | {"alembic_version"}
            for table in metadata.tables.values():
                columns = {
                    column["name"]
                    for column in inspector.get_columns(table.name)
                    if not is_unmanaged_column(table.name, column["name"])
                }
                assert columns == set(table.columns.keys()), table.name
            version = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            assert version.scalar_one() == head_revision(settings)
    finally:
        engine.dispose()
    assert len(metadata.tables) >= 13


def test_models_do_not_drift_from_the_migrations(settings: Settings) -> None:
    metadata = complete_metadata()
    upgrade_database(settings)

    engine = connect(settings)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "compare_server_default": True,
                    "include_object": include_object,
                },
            )
            diff = compare_metadata(context, metadata)
    finally:
        engine.dispose()

    assert diff == []


def test_drift_check_sees_a_model_change(sqlite_settings: Settings) -> None:
    """The comparison above is not vacuous: a column the migrations lack shows up."""
    upgrade_database(sqlite_settings)
    changed = sa.MetaData()
    for table in complete_metadata().tables.values():
        table.to_metadata(changed)
    changed.tables["organizations"].append_column(sa.Column("nickname", sa.String(40)))

    engine = connect(sqlite_settings)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"include_object": include_object}
            )
            diff = compare_metadata(context, changed)
    finally:
        engine.dispose()

    assert [(entry[0], entry[3].name) for entry in diff] == [("add_column", "nickname")]


def test_upgrade_on_sqlite_creates_the_home_folder(tmp_path: Path) -> None:
    home = tmp_path / "not" / "yet" / "there"

    upgrade_database(Settings(home=home))

    assert (home / "aidx.db").is_file()


def test_upgrade_is_idempotent(settings: Settings) -> None:
    upgrade_database(settings)
    upgrade_database(settings)

    engine = connect(settings)
    try:
        with engine.connect() as connection:
            version = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            assert version.scalars().all() == [head_revision(settings)]
    finally:
        engine.dispose()


def test_downgrade_to_base_removes_every_table_on_postgresql(postgres_settings: Settings) -> None:
    upgrade_database(postgres_settings)

    command.downgrade(alembic_config(postgres_settings), "base")

    engine = connect(postgres_settings)
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            assert set(inspector.get_table_names()) == {"alembic_version"}
            assert connection.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 0
            # Named indexes and the like go with their tables; nothing of ours is left behind.
            leftover = connection.execute(
                sa.text(
                    "SELECT relname FROM pg_class WHERE relname LIKE 'ix_%' OR relname LIKE 'pk_%'"
                )
            )
            assert leftover.scalars().all() == []
    finally:
        engine.dispose()

    upgrade_database(postgres_settings)  # and the history can be replayed from scratch
    engine = connect(postgres_settings)
    try:
        with engine.connect() as connection:
            tables = {
                t for t in sa.inspect(connection).get_table_names() if not is_unmanaged_table(t)
            }
    finally:
        engine.dispose()
    assert tables == set(complete_metadata().tables) | {"alembic_version"}


def test_import_all_models_alone_completes_the_metadata(sqlite_settings: Settings) -> None:
    upgrade_database(sqlite_settings)
    engine = connect(sqlite_settings)
    try:
        with engine.connect() as connection:
            migrated = {
                t for t in sa.inspect(connection).get_table_names() if not is_unmanaged_table(t)
            } - {"alembic_version"}
    finally:
        engine.dispose()

    # A fresh interpreter, so no other test's imports fill the metadata in.
    probe = (
        "import json; from infra.db import Base, import_all_models; import_all_models(); "
        "print(json.dumps(sorted(Base.metadata.tables)))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert set(json.loads(completed.stdout)) == migrated
