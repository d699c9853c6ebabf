"""The generation cache and the counter read that guards it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from infra.cache import GenerationCache
from infra.config import Settings
from infra.db import dispose_engines, read_counters, session_scope, upgrade_database
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


@pytest.mark.parametrize("names", [(), ("x'; DROP TABLE counters; --",), ("Catalog",)])
def test_only_plain_counter_names_are_read(settings: Settings, names: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="bad counter names"):
        read_counters(settings, names)
