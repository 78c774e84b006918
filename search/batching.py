"""Calls from many threads gathered into batches, for a server's concurrent queries.

A model embeds sixteen captions in about twice the time it takes for one (on these 2 cores,
MiniLM: 30 ms against 13 ms), so a server whose requests each embed their own words spends
most of its time on per-call overhead. ``Gathered`` wraps a function of a list: each thread
calls it with one item; one thread at a time runs the function over every item waiting,
then hands that role to the next waiting thread. Nothing waits for a batch to fill: a lone
caller runs at once, and batches grow only while the function is busy, with the load.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Ticket:
    __slots__ = ("item", "ready", "batch", "result", "error")

    def __init__(self, item):
        self.item = item
        self.ready = threading.Event()
        self.batch: list[_Ticket] | None = None  # handed to this caller to run, instead of a result
        self.result = None
        self.error: BaseException | None = None


class Gathered(Generic[Item, Result]):
    """``gathered(item)`` is ``function([item])[0]``, with concurrent calls sharing ``function`` calls.

    One batch runs at a time. A caller that finds none running runs its item at once; the
    others queue. When a batch ends, the oldest waiting caller takes what is
    queued (at most ``most`` items, its own first) and runs it, so each caller runs at most
    one batch and the queue is served in order. An exception from ``function`` is raised in
    every caller of that batch.
    """

    def __init__(self, function: Callable[[list[Item]], Sequence[Result]], most: int = 64):
        self.function = function
        self.most = most
        self._lock = threading.Lock()
        self._queue: list[_Ticket] = []
        self._running = False  # a batch; always, while the queue holds anyone

    def __call__(self, item: Item) -> Result:
        ticket = _Ticket(item)
        with self._lock:
            self._queue.append(ticket)
            batch = None if self._running else self._take()
        if batch is None:
            ticket.ready.wait()
            batch = ticket.batch
        if batch is not None:
            self._run(batch)
        if ticket.error is not None:
            raise ticket.error
        return ticket.result

    def _take(self) -> list[_Ticket]:
        self._running = True
        batch, self._queue = self._queue[: self.most], self._queue[self.most :]
        return batch

    def _run(self, batch: list[_Ticket]) -> None:
        try:
            results = self.function([ticket.item for ticket in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{self.function!r} gave {len(results)} results for {len(batch)} items")
            for ticket, result in zip(batch, results):
                ticket.result = result
        except BaseException as error:
            for ticket in batch:
                ticket.error = error
        following = None
        with self._lock:
            self._running = False
            if self._queue:
                following = self._queue[0]
                following.batch = self._take()
        for ticket in batch:
            ticket.ready.set()
        if following is not None:
            following.ready.set()
