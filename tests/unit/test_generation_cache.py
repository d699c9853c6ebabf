"""The generation cache, the counter read that guards it, reads and computations shared by
callers."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from infra.cache import GenerationCache, SharedRead, SingleFlight
from infra.config import Settings
from infra.db import (
    AsyncCounterReader,
    _own_sqlite_connection,
    dispose_engines,
    get_engine,
    read_counters,
    session_scope,
    upgrade_database,
)
from marketplace.models import ACCESS_GENERATION, Counter


def test_values_hold_within_a_generation_and_a_new_one_empties_the_cache() -> None:
    cache: GenerationCache[str] = GenerationCache(8)
    assert cache.get(1, "a") is None
    cache.put(1, "a", "page a")
    assert cache.get(1, "a") == "page a"
    assert cache.get(2, "a") is None  # the counter moved on
    assert cache.get(1, "a") is None  # and nothing of the old generation comes back


def test_a_value_read_before_the_generation_moved_is_not_kept() -> None:
    cache: GenerationCache[str] = GenerationCache(8)
    assert cache.get(1, "a") is None
    assert cache.get(2, "b") is None  # another request saw the newer generation meanwhile
    cache.put(1, "a", "computed under generation 1")
    assert cache.get(2, "a") is None


def test_the_least_recently_used_value_goes_first() -> None:
    cache: GenerationCache[int] = GenerationCache(2)
    cache.get(5, "a")
    cache.put(5, "a", 1)
    cache.put(5, "b", 2)
    assert cache.get(5, "a") == 1  # a is now the most recent
    cache.put(5, "c", 3)
    assert cache.get(5, "b") is None
    assert (cache.get(5, "a"), cache.get(5, "c")) == (1, 3)
    cache.discard("a")
    assert cache.get(5, "a") is None


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    settings = Settings(home=tmp_path)
    upgrade_database(settings)
    yield settings
    dispose_engines()


def test_counters_read_outside_a_session_see_each_commit(settings: Settings) -> None:
    names = (ACCESS_GENERATION, "catalog_generation")
    assert read_counters(settings, names) == {ACCESS_GENERATION: 0, "catalog_generation": 0}
    with session_scope(settings) as session:
        session.execute(update(Counter).where(Counter.name == ACCESS_GENERATION).values(value=7))
        assert read_counters(settings, names)[ACCESS_GENERATION] == 0  # not yet committed
        session.commit()
    assert read_counters(settings, names)[ACCESS_GENERATION] == 7


def test_a_thread_reads_counters_over_its_own_connections_to_a_few_databases(
    tmp_path: Path,
) -> None:
    names = (ACCESS_GENERATION,)
    homes = [Settings(home=tmp_path / f"home-{index}") for index in range(6)]
    connections = []
    try:
        for settings in homes:
            upgrade_database(settings)
            assert read_counters(settings, names) == {ACCESS_GENERATION: 0}
            engine = get_engine(settings, readonly=True)
            connections.append(_own_sqlite_connection(engine))
            assert _own_sqlite_connection(engine) is connections[-1]  # kept, not checked out
        for closed in connections[:2]:  # the thread keeps four; the oldest were closed
            with pytest.raises(sqlite3.ProgrammingError, match="closed"):
                closed.execute("SELECT 1")
        assert all(kept.execute("SELECT 1").fetchone() == (1,) for kept in connections[2:])
        assert read_counters(homes[0], names) == {ACCESS_GENERATION: 0}  # opened again
        dispose_engines()  # a new engine for the same database gets a connection of its own
        assert read_counters(homes[5], names) == {ACCESS_GENERATION: 0}
        assert _own_sqlite_connection(get_engine(homes[5], readonly=True)) is not connections[5]
    finally:
        dispose_engines()


@pytest.mark.parametrize("names", [(), ("x'; DROP TABLE counters; --",), ("Catalog",)])
def test_only_plain_counter_names_are_read(settings: Settings, names: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="bad counter names"):
        read_counters(settings, names)


class _Database:
    """A counter read that takes as long as the test says: each read returns how many began."""

    def __init__(self) -> None:
        self.reads = 0
        self.release = asyncio.Event()
        self.fail = False

    async def read(self) -> int:
        self.reads += 1
        began = self.reads
        await self.release.wait()
        if self.fail:
            raise ConnectionError("the database went away")
        return began


def test_callers_during_a_read_share_the_next_one_not_the_running_one() -> None:
    async def scenario() -> None:
        database = _Database()
        shared = SharedRead(database.read)
        first = asyncio.ensure_future(shared.get())
        await asyncio.sleep(0)  # the first read is running
        later = [asyncio.ensure_future(shared.get()) for _ in range(50)]
        await asyncio.sleep(0)
        assert database.reads == 1  # the fifty wait; no read of theirs has begun yet
        database.release.set()
        assert await first == 1
        assert [await caller for caller in later] == [2] * 50  # one read, begun after they came
        assert database.reads == 2
        assert await shared.get() == 3  # nothing running: a caller reads at once

    asyncio.run(scenario())


def test_a_failed_read_fails_its_callers_and_the_next_call_reads_again() -> None:
    async def scenario() -> None:
        database = _Database()
        database.fail = True
        database.release.set()
        shared = SharedRead(database.read)
        callers = [asyncio.ensure_future(shared.get()) for _ in range(3)]
        results = await asyncio.gather(*callers, return_exceptions=True)
        assert all(isinstance(result, ConnectionError) for result in results)
        assert database.reads == 2  # the first caller's read, then the other two's
        database.fail = False
        assert await shared.get() == 3

    asyncio.run(scenario())


def test_a_caller_that_goes_away_does_not_cancel_the_others_read() -> None:
    async def scenario() -> None:
        database = _Database()
        shared = SharedRead(database.read)
        first = asyncio.ensure_future(shared.get())
        await asyncio.sleep(0)
        leaving, staying = (asyncio.ensure_future(shared.get()) for _ in range(2))
        await asyncio.sleep(0)
        leaving.cancel()
        database.release.set()
        assert (await first, await staying) == (1, 2)
        assert leaving.cancelled()

    asyncio.run(scenario())


def test_postgresql_counters_are_read_on_the_event_loop(postgres_database_url: str) -> None:
    settings = Settings(home=Path(tempfile.mkdtemp()), database_url=postgres_database_url)
    upgrade_database(settings)
    names = (ACCESS_GENERATION, "catalog_generation")
    reader = AsyncCounterReader(postgres_database_url)
    assert AsyncCounterReader.supports(postgres_database_url)

    async def scenario() -> None:
        assert await reader.read(names) == {ACCESS_GENERATION: 0, "catalog_generation": 0}
        with session_scope(settings) as session:
            session.execute(
                update(Counter).where(Counter.name == ACCESS_GENERATION).values(value=3)
            )
            session.commit()
        assert (await reader.read(names))[ACCESS_GENERATION] == 3  # the same connection, fresh
        with pytest.raises(ValueError, match="bad counter names"):
            await reader.read(("Robert'); --",))

    try:
        asyncio.run(scenario())
    finally:
        asyncio.run(reader.close())
        dispose_engines()


async def _turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


class _Search:
    """A computation that runs until the test releases it: each returns its key and how many
    computations had begun."""

    def __init__(self) -> None:
        self.begun: list[str] = []
        self.release = asyncio.Event()
        self.fail = False

    def of(self, key: str) -> Callable[[], Awaitable[tuple[str, int]]]:
        async def compute() -> tuple[str, int]:
            self.begun.append(key)
            began = len(self.begun)
            await self.release.wait()
            if self.fail:
                raise LookupError(f"search for {key} failed")
            return key, began

        return compute


def test_callers_of_one_key_share_one_computation_and_other_keys_get_their_own() -> None:
    async def scenario() -> None:
        search, flights = _Search(), SingleFlight[tuple[str, int]]()
        same = [asyncio.ensure_future(flights.run("a", search.of("a"))) for _ in range(50)]
        other = asyncio.ensure_future(flights.run("b", search.of("b")))
        await _turns(3)  # the callers run, then the computations they started
        assert search.begun == ["a", "b"] and flights.in_flight() == 2
        search.release.set()
        assert [await caller for caller in same] == [("a", 1)] * 50
        assert await other == ("b", 2)
        assert flights.in_flight() == 0
        assert await flights.run("a", search.of("a")) == ("a", 3)  # shared while running only

    asyncio.run(scenario())


def test_a_failed_computation_fails_every_caller_and_the_next_call_computes_again() -> None:
    async def scenario() -> None:
        search, flights = _Search(), SingleFlight[tuple[str, int]]()
        search.fail = True
        search.release.set()
        callers = [asyncio.ensure_future(flights.run("a", search.of("a"))) for _ in range(3)]
        results = await asyncio.gather(*callers, return_exceptions=True)
        assert all(isinstance(result, LookupError) for result in results)
        assert search.begun == ["a"]
        search.fail = False
        assert await flights.run("a", search.of("a")) == ("a", 2)

    asyncio.run(scenario())


def test_a_caller_that_goes_away_leaves_the_computation_to_the_others() -> None:
    async def scenario() -> None:
        search, flights = _Search(), SingleFlight[tuple[str, int]]()
        leaving = asyncio.ensure_future(flights.run("a", search.of("a")))
        staying = asyncio.ensure_future(flights.run("a", search.of("a")))
        await _turns(3)
        leaving.cancel()
        await _turns(3)
        search.release.set()
        assert await staying == ("a", 1)
        assert leaving.cancelled() and search.begun == ["a"]

    asyncio.run(scenario())
