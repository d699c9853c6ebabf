"""A bounded cache whose entries hold while a database counter stays where it was.

The counter (a row of ``counters``) is moved on in the same transaction as every change the
cached values depend on, so a reader that reads the counter first and then the cache never
answers from before a committed change: a new value empties the cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

ValueT = TypeVar("ValueT")


class GenerationCache(Generic[ValueT]):
    """Recent values of one generation of a counter, least recently used dropped first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._generation: int | None = None
        self._values: OrderedDict[Hashable, ValueT] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, generation: int, key: Hashable) -> ValueT | None:
        with self._lock:
            if generation != self._generation:
                self._generation = generation
                self._values.clear()
                return None
            value = self._values.get(key)
            if value is not None:
                self._values.move_to_end(key)
            return value

    def put(self, generation: int, key: Hashable, value: ValueT) -> None:
        """Keep ``value`` unless the cache has moved on to another generation since it was read."""
        with self._lock:
            if generation != self._generation:
                return
            self._values[key] = value
            while len(self._values) > self._size:
                self._values.popitem(last=False)

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._values.pop(key, None)
