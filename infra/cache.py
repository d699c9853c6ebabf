"""A bounded cache whose entries hold while a database counter stays where it was.

The counter (a row of ``counters``) is moved on in the same transaction as every change the
cached values depend on, so a reader that reads the counter first and then the cache never
answers from before a committed change: a new value empties the cache.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
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


class SharedRead(Generic[ValueT]):
    """Concurrent callers share reads, each read begun after every caller it serves arrived.

    At most one read runs at a time. A caller that comes while one runs waits for the next,
    which begins when the running one ends and answers everyone who came meanwhile; so under
    load a networked database sees one read per round trip, not one per request, and no
    caller gets a value read before it arrived. One instance serves one event loop.
    """

    def __init__(self, read: Callable[[], Awaitable[ValueT]]) -> None:
        self._read = read
        self._running = False
        self._next: asyncio.Future[ValueT] | None = None

    async def get(self) -> ValueT:
        waiting = self._next
        if waiting is None:
            waiting = self._next = asyncio.get_running_loop().create_future()
            if not self._running:
                self._begin()
        # A caller that goes away (a closed connection) must not cancel the others' read.
        return await asyncio.shield(waiting)

    def _begin(self) -> None:
        waiting, self._next = self._next, None
        assert waiting is not None
        self._running = True
        task = asyncio.ensure_future(self._read())

        def finished(done: asyncio.Future[ValueT]) -> None:
            self._running = False
            if done.cancelled():
                waiting.cancel()
            elif (error := done.exception()) is not None:
                waiting.set_exception(error)
            else:
                waiting.set_result(done.result())
            if self._next is not None:
                self._begin()

        task.add_done_callback(finished)


class SingleFlight(Generic[ValueT]):
    """Concurrent callers asking for the same key share one computation.

    A cold cache under load would otherwise compute each missing value once per waiting
    request, all at once (a page asked for by 200 connections was searched 200 times, each
    search slowing the others). The caller chooses the key: it must name everything the value
    depends on, a cache generation included, so a caller never joins a computation begun
    before a change it should see. The computation runs to the end even if every caller goes
    away; failures reach every caller that waited. Keyed per event loop.
    """

    def __init__(self) -> None:
        self._flights: dict[tuple[int, Hashable], asyncio.Future[ValueT]] = {}

    async def run(self, key: Hashable, compute: Callable[[], Awaitable[ValueT]]) -> ValueT:
        loop = asyncio.get_running_loop()
        flight_key = (id(loop), key)
        flight = self._flights.get(flight_key)
        if flight is None or flight.get_loop() is not loop:
            flight = self._flights[flight_key] = asyncio.ensure_future(compute())
            flight.add_done_callback(partial(self._landed, flight_key))
        return await asyncio.shield(flight)

    def in_flight(self) -> int:
        return len(self._flights)

    def _landed(self, flight_key: tuple[int, Hashable], flight: asyncio.Future[ValueT]) -> None:
        if self._flights.get(flight_key) is flight:
            del self._flights[flight_key]
        if not flight.cancelled():
            flight.exception()  # retrieved here too, for when no caller is left to see it
