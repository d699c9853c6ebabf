"""Database access: one declarative base, lazily built engines, sessions, migrations.

Models of every package share :class:`Base` so that one Alembic history covers the exchange.
Engines are created on first use for a URL and cached, never at import time.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import QueuePool
from sqlalchemy.types import TypeDecorator

from infra.config import Settings, get_settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id(prefix: str) -> str:
    """A readable, globally unique id such as ``ds_3f9c...``."""
    return f"{prefix}_{uuid.uuid4().hex}"


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver must not open transactions itself; _begin_immediate does, see below.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _begin_immediate(connection: Any) -> None:
    """Take SQLite's write lock when a transaction starts, not at its first write.

    Two deferred transactions that read, then write, would fail one of them with "database is
    locked"; immediate ones queue behind each other (busy_timeout), as PostgreSQL's row locks
    make them. Keep transactions short: long work runs outside a transaction.
    """
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _begin_deferred(connection: Any) -> None:
    """A read-only transaction: a WAL snapshot that takes no lock, so reads run side by side."""
    connection.exec_driver_sql("BEGIN")


_ENGINES: dict[tuple[str, bool, bool], Engine] = {}
# One sessionmaker per engine: each ``sessionmaker()`` call makes a new Session subclass, and the
# first session of a new class builds its event dispatch anew (about 0.25 ms per request).
_FACTORIES: dict[int, sessionmaker[Session]] = {}

# PostgreSQL connections per process: as many as the threads that serve requests (AnyIO's
# default limit is 40), so a burst of requests never waits on the pool.
POOL_SIZE = 10
POOL_OVERFLOW = 30


def _build_engine(url: str, echo: bool, readonly: bool = False) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Pooled: a new SQLite connection costs about a millisecond at its first statement
        # (opening the WAL index), more than most reads. Connections are used by one thread at a
        # time; a forked process calls `dispose_engines` before it uses the database.
        engine = create_engine(
            url,
            echo=echo,
            poolclass=QueuePool,
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
            connect_args={"check_same_thread": False},
        )
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _begin_deferred if readonly else _begin_immediate)
        return engine
    if readonly:
        # One pool per URL: the read-only sessions share the read-write engine's pool.
        return get_engine_for(url, echo, readonly=False)
    return create_engine(
        url, echo=echo, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW
    )


def get_engine_for(url: str, echo: bool, *, readonly: bool) -> Engine:
    key = (url, echo, readonly)
    engine = _ENGINES.get(key)
    if engine is None:
        engine = _ENGINES[key] = _build_engine(*key)
    return engine


def get_engine(settings: Settings | None = None, *, readonly: bool = False) -> Engine:
    """The engine for the configured URL, built on first use and cached per URL.

    ``readonly`` engines are for sessions that only read: on SQLite their transactions start
    deferred (a snapshot, no lock) instead of taking the write lock at once.
    """
    settings = settings or get_settings()
    return get_engine_for(settings.resolved_database_url, settings.database_echo, readonly=readonly)


def dispose_engines(*, close: bool = True) -> None:
    """Forget every cached engine (tests call this; worker processes after a fork, with
    ``close=False``: the parent's pooled connections are the parent's to close, never a child's)."""
    for engine in _ENGINES.values():
        engine.dispose(close=close)
    _ENGINES.clear()
    _FACTORIES.clear()


_COUNTER_NAME = re.compile(r"^[a-z_]{1,40}$")


def read_counters(settings: Settings | None, names: tuple[str, ...]) -> dict[str, int]:
    """The current values of the named rows of ``counters``, outside any session.

    One statement, on SQLite over a connection the calling thread keeps (tens of microseconds;
    a session and an ORM query cost several times that), otherwise on a pooled connection, so a
    request can afford it before using what it caches. Each value is the last committed one.
    Names are the code's own constants, never input.
    """
    query = _counters_query(names)
    engine = get_engine(settings, readonly=True)
    if engine.dialect.name == "sqlite":
        # A connection of this thread's own, in autocommit: each statement sees the last commit.
        # Checking one out of the pool and back (a rollback on return) cost twice the read.
        rows = _own_sqlite_connection(engine).execute(query).fetchall()
        return {name: int(value) for name, value in rows}
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        try:
            cursor.execute(query)
            return {name: int(value) for name, value in cursor.fetchall()}
        finally:
            cursor.close()
    finally:
        connection.close()  # back to the pool, rolled back there


_OWN = threading.local()
_OWN_PER_THREAD = 4  # databases a thread keeps a connection to (tests use many in turn)


def _own_sqlite_connection(engine: Engine) -> Any:
    """This thread's own DBAPI connection to ``engine``'s SQLite database, made once by the
    engine (so with its pragmas: WAL, autocommit) and detached from its pool."""
    held: OrderedDict[int, tuple[Engine, int, Any]] | None = getattr(_OWN, "held", None)
    if held is None:
        held = _OWN.held = OrderedDict()
    # Keyed by the engine itself (held, so its id is not reused), not its URL rendered anew on
    # every request. A forked process makes its own: a connection of the parent's is dropped,
    # never closed here, as the pool's rule is that only its maker closes it.
    entry = held.get(id(engine))
    if entry is None or entry[1] != os.getpid():
        fairy = engine.raw_connection()
        fairy.detach()
        entry = held[id(engine)] = (engine, os.getpid(), fairy.dbapi_connection)
        while len(held) > _OWN_PER_THREAD:
            _, (_, pid, oldest) = held.popitem(last=False)
            if pid == os.getpid():
                oldest.close()
    held.move_to_end(id(engine))
    return entry[2]


def _counters_query(names: tuple[str, ...]) -> str:
    if not names or not all(_COUNTER_NAME.match(name) for name in names):
        raise ValueError(f"bad counter names: {names!r}")
    listed = ", ".join(f"'{name}'" for name in names)
    return f"SELECT name, value FROM counters WHERE name IN ({listed})"


class AsyncCounterReader:
    """Reads counters on the event loop over one connection of its own (PostgreSQL, psycopg).

    A read in the threadpool waits for the GIL behind a busy event loop (up to the 5 ms switch
    interval), which made a shared read of the counters cost milliseconds under load; here the
    loop waits on the socket instead. One reader serves one event loop, one read at a time
    (``infra.cache.SharedRead`` sees to that); a failed read drops the connection, and the
    next read connects again.
    """

    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        self._conninfo = make_url(url).set(drivername="postgresql").render_as_string(False)
        self._connection: Any = None

    @staticmethod
    def supports(url: str) -> bool:
        return url.startswith("postgresql+psycopg://")

    async def read(self, names: tuple[str, ...]) -> dict[str, int]:
        import psycopg

        query = _counters_query(names)
        if self._connection is None or self._connection.closed:
            self._connection = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True
            )
        try:
            cursor = await self._connection.execute(query)
            rows = await cursor.fetchall()
        except BaseException:
            connection, self._connection = self._connection, None
            await connection.close()
            raise
        return {name: int(value) for name, value in rows}

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()


def session_factory(
    settings: Settings | None = None, *, readonly: bool = False
) -> sessionmaker[Session]:
    engine = get_engine(settings, readonly=readonly)
    factory = _FACTORIES.get(id(engine))
    if factory is None or factory.kw["bind"] is not engine:
        factory = _FACTORIES[id(engine)] = sessionmaker(bind=engine, expire_on_commit=False)
    return factory


@contextmanager
def session_scope(settings: Settings | None = None, *, readonly: bool = False) -> Iterator[Session]:
    """A session whose transaction the caller commits; rolled back on error, always closed.

    ``readonly`` sessions must not write: on SQLite they hold a snapshot, not the write lock.
    """
    session = session_factory(settings, readonly=readonly)()
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(settings: Settings | None = None) -> Any:
    from alembic.config import Config

    settings = settings or get_settings()
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", settings.resolved_database_url.replace("%", "%%"))
    return config


def upgrade_database(settings: Settings | None = None, revision: str = "head") -> None:
    """Apply Alembic migrations up to ``revision``."""
    from alembic import command

    settings = settings or get_settings()
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings), revision)


# What the migrations make that no model describes: the catalog's full-text indexes (SQLite's
# FTS5 table, with the shadow tables SQLite keeps for it; PostgreSQL's stored vector column and
# its GIN index, and before migration 0014 a GIN expression index).
UNMANAGED_TABLE_PREFIXES = ("listing_search",)
UNMANAGED_INDEXES = ("ix_listings_search_text_fts", "ix_listings_search_vector")
UNMANAGED_COLUMNS = (("listings", "search_vector"),)


def is_unmanaged_table(name: str) -> bool:
    return name.startswith(UNMANAGED_TABLE_PREFIXES)


def is_unmanaged_column(table: str | None, name: str) -> bool:
    return (table, name) in UNMANAGED_COLUMNS


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic's filter: compare everything the models describe, nothing else."""
    if name is None:
        return True
    if type_ == "table":
        return not is_unmanaged_table(name)
    if type_ == "column":
        return not is_unmanaged_column(getattr(getattr(obj, "table", None), "name", None), name)
    return not (type_ == "index" and name in UNMANAGED_INDEXES)


MODEL_MODULES = (
    "marketplace.models",
    "curation.models",
    "training_jobs.models",
    "dataset_cards.models",
)


def import_all_models() -> None:
    """Import every package's models so ``Base.metadata`` is complete."""
    for module in MODEL_MODULES:
        importlib.import_module(module)
