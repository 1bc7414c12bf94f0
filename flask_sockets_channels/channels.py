"""Go-style channels: a :class:`queue.Queue` that can be closed.

A closed channel refuses new items (``put`` raises :class:`Closed`) but still
hands out the items it holds; once they are consumed, ``get`` raises
:class:`Closed` and iteration ends. ``close`` wakes every blocked ``get`` and
``put``, so no thread waits on a closed channel.

As in Go, a channel of size 0 is unbuffered: ``put`` returns once a ``get``
has taken the item (a rendezvous), rather than never blocking as a
``queue.Queue(0)`` would.
"""

from __future__ import annotations

import _thread
import collections
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Callable, Protocol, TypeVar

__all__ = ["Channel", "Closed", "SlimCondition"]

T = TypeVar("T")

#: queue.Queue's conditions, which a Channel builds on first use.
_CONDITIONS = frozenset({"not_empty", "not_full", "all_tasks_done"})
#: ``Channel.queue`` while the channel holds no item.
_NO_ITEMS: tuple[()] = ()


def build_once(owner: object, name: str, make: Callable[[], Any]) -> Any:
    """``owner``'s attribute ``name``, made by ``make()`` the first time it
    is asked for: for the parts of a channel or an event that most
    connections never use. Of two threads that build it at once, both get
    the one stored first (``dict.setdefault`` is atomic)."""
    attributes = owner.__dict__
    built = attributes.get(name)
    if built is None:
        built = attributes.setdefault(name, make())
    return built


#: Guards :func:`build_slot_once` (rare: first uses only).
_slot_lock = threading.Lock()


def build_slot_once(owner: object, slot: str, make: Callable[[], Any]) -> Any:
    """:func:`build_once` for an attribute held in a ``__slots__`` slot
    (``None`` until built), which ``dict.setdefault`` cannot reach."""
    built = getattr(owner, slot)
    if built is None:
        with _slot_lock:
            built = getattr(owner, slot)
            if built is None:
                built = make()
                setattr(owner, slot, built)
    return built


class _Waitable(Protocol):
    def wait(self, timeout: float | None = None) -> bool: ...


class SlimCondition:
    """A condition variable on ``lock`` with what a channel or an event
    uses of :class:`threading.Condition`: ``with``, ``wait``, ``notify``
    and ``notify_all``.

    ``threading.Condition`` keeps its waiters in a deque, whose first block
    (about 760 bytes) stays allocated while empty: the receiver of every idle
    connection, whose view waits in ``get``, would keep one. A list costs 56.
    """

    __slots__ = ("_lock", "_waiters")

    def __init__(self, lock: _thread.LockType) -> None:
        self._lock = lock
        self._waiters: list[_thread.LockType] = []

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        """Locked: release the lock until notified or ``timeout`` passes,
        then take it back; whether it was notified."""
        waiter = _thread.allocate_lock()
        waiter.acquire()
        self._waiters.append(waiter)
        self._lock.release()
        notified = False
        try:
            if timeout is None:
                notified = waiter.acquire()
            elif timeout > 0:
                notified = waiter.acquire(True, timeout)
            else:
                notified = waiter.acquire(False)
            return notified
        finally:
            self._lock.acquire()
            if not notified and waiter in self._waiters:
                self._waiters.remove(waiter)

    def notify(self, count: int = 1) -> None:
        """Locked: wake up to ``count`` waiters, the longest waiting first."""
        woken = self._waiters[:count]
        del self._waiters[:count]
        for waiter in woken:
            waiter.release()

    def notify_all(self) -> None:
        """Locked: wake every waiter."""
        self.notify(len(self._waiters))


class Closed(Exception):
    """Raised by ``put`` on a closed channel, and by ``get`` on a closed,
    empty one."""


class Channel(queue.Queue[T]):
    """A thread-safe FIFO that can be closed, with Go's channel semantics.

    Args:
        maxsize: How many items the channel buffers. ``put`` blocks while that
            many are waiting. ``0`` means unbuffered: ``put`` blocks until a
            ``get`` takes the item.

    Iterating yields items until the channel is closed and drained.
    """

    def __init__(self, maxsize: int = 0) -> None:
        if maxsize < 0:
            raise ValueError(f"maxsize must be >= 0, not {maxsize}")
        # Not queue.Queue.__init__: its three conditions are built when
        # first used (see __getattr__), and its deque only while items wait
        # (an empty deque keeps a 64-slot block: ``queue`` is then an empty
        # tuple). Most channels of an idle connection never wait, and hold
        # no item between messages; each of these parts costs 0.8-1.3 KiB.
        self.queue: collections.deque[T] | tuple[()] = _NO_ITEMS
        # An unbuffered channel still needs one slot to hand the item over.
        self.maxsize = maxsize or 1
        self.mutex = threading.Lock()
        self.unfinished_tasks = 0
        self.capacity = maxsize
        self._closed = False
        self._taken = 0  # items removed by get, to tell a rendezvous put its item went
        self._given = 0  # items added by put
        self._waiting_getters = 0
        self._sleeping = 0  # threads in a wait on one of the conditions
        # While a batch put waits for room: wake it only once the buffer has
        # drained to this many items, not after every get (see _put_all).
        self._refill_at: int | None = None

    if not TYPE_CHECKING:  # typed by queue.Queue's attributes; typos stay errors

        def __getattr__(self, name: str) -> Any:
            # Only for what __init__ did not set: queue.Queue's conditions
            # (on the mutex). _notify does not build a condition: one nobody
            # built has nobody waiting on it.
            if name in _CONDITIONS:
                return build_once(self, name, lambda: SlimCondition(self.mutex))
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _notify(self, name: str, count: int | None = None) -> None:
        """Locked: wake ``count`` (all if ``None``) waiters of condition ``name``."""
        if not self._sleeping:
            return  # nobody waits: skip Condition.notify's own bookkeeping
        condition = self.__dict__.get(name)
        if condition is not None:
            if count is None:
                condition.notify_all()
            else:
                condition.notify(count)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def close(self, *, discard: bool = False) -> None:
        """Close the channel; idempotent.

        Blocked ``put`` calls raise :class:`Closed`; blocked ``get`` calls
        return the remaining items, then raise :class:`Closed`.

        Args:
            discard: Also drop the items still buffered (they count as done
                for :meth:`join`, which therefore never hangs on them).
        """
        with self.mutex:
            if discard:
                self._drop_items()
            self._closed = True
            self._notify("not_empty")
            self._notify("not_full")

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        """Put ``item``, blocking while the channel is full.

        Raises:
            Closed: The channel is closed (also when it closes while waiting).
            queue.Full: ``block`` is false or ``timeout`` expired and there was
                no room (for an unbuffered channel: no ``get`` took the item).
        """
        with self.mutex:
            self._check_open()
            if self.capacity and len(self.queue) < self.maxsize:  # the common case, fast
                self._append((item,))
                return
            deadline = None if timeout is None else time.monotonic() + timeout
            if self.capacity == 0 and not block and not self._waiting_getters:
                raise queue.Full
            self._wait(self.not_full, lambda: len(self.queue) < self.maxsize, block, deadline)
            self._check_open()
            self._append((item,))
            if self.capacity or not block:
                return
            ticket = self._given
            try:
                self._wait(self.not_full, lambda: self._taken >= ticket, True, deadline)
            except queue.Full:
                self._withdraw(item)
                raise
            if self._taken < ticket:
                self._withdraw(item)
                raise Closed("channel closed before the item was taken")

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Remove and return the oldest item, blocking while there is none.

        Raises:
            Closed: The channel is closed and empty.
            queue.Empty: ``block`` is false or ``timeout`` expired.
        """
        if self.queue:  # the common case, fast (unlocked: a hint, checked again)
            with self.mutex:
                if self.queue:
                    return self._take(1)[0]
        return self.get_many(1, block, timeout)[0]

    def get_many(
        self, max_items: int | None = None, block: bool = True, timeout: float | None = None
    ) -> list[T]:
        """Remove and return up to ``max_items`` items (all if ``None``), at
        least one, blocking while there is none.

        Raises:
            Closed: The channel is closed and empty.
            queue.Empty: ``block`` is false or ``timeout`` expired.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.not_empty:
            self._waiting_getters += 1
            try:
                self._wait(self.not_empty, self._qsize, block, deadline, queue.Empty)
            finally:
                self._waiting_getters -= 1
            if not self.queue:
                raise Closed("get on a closed, empty channel")
            count = len(self.queue) if max_items is None else min(max_items, len(self.queue))
            return self._take(count)

    # -- the bookkeeping, in one place; every caller holds ``self.mutex`` ----

    def _check_open(self) -> None:
        if self._closed:
            raise Closed("put on a closed channel")

    def _append(self, items: Iterable[T]) -> None:
        """Add ``items`` (no room check), count them and wake getters."""
        queued = self.queue
        if isinstance(queued, tuple):
            queued = self.queue = collections.deque()
        before = len(queued)
        queued.extend(items)
        count = len(queued) - before
        self._given += count
        self.unfinished_tasks += count
        self._notify("not_empty", count)
        self._appended()

    def _appended(self) -> None:
        """Hook: items were just added (subclasses start their consumer)."""

    def _take(self, count: int) -> list[T]:
        """Remove the ``count`` oldest items and wake putters."""
        queued = self.queue
        assert isinstance(queued, collections.deque), "taking from an empty channel"
        items = [queued.popleft() for _ in range(count)]
        if not queued:
            self.queue = _NO_ITEMS  # between messages, no deque (see __init__)
        self._taken += count
        if not self.capacity:
            self._notify("not_full")  # an unbuffered put waits for its own item
        elif self._refill_at is None:
            self._notify("not_full", count)
        elif len(self.queue) <= self._refill_at:
            self._notify("not_full")
        return items

    def _drop_items(self) -> None:
        """Drop every item; they count as done for ``join``."""
        if self.queue:
            self._discard(len(self.queue))
            self.queue = _NO_ITEMS

    def _discard(self, count: int) -> None:
        """``count`` items leave without being consumed: done for ``join``."""
        self.unfinished_tasks = max(0, self.unfinished_tasks - count)
        if not self.unfinished_tasks:
            self._notify("all_tasks_done")

    # -- batch operations for the library's reader and hub -------------------

    def _put_available(self, items: list[T]) -> int:
        """Put as many of ``items`` as there is room for, waking getters
        once; return how many. Raises :class:`Closed` once closed."""
        with self.mutex:
            self._check_open()
            count = min(len(items), self.capacity - len(self.queue)) if self.capacity else 0
            if count > 0:
                self._append(items[:count])
            return max(count, 0)

    def _put_all(self, items: list[T]) -> None:
        """Put every item of ``items`` in order, waiting while the buffer is
        full. The wait is in batches: the putter is woken when the buffer has
        drained to half, not after every get, which saves a thread switch per
        item when a reader hands over many messages at once.

        Raises:
            Closed: The channel is (or gets) closed; the rest is not put.
        """
        if not self.capacity:
            for item in items:
                self.put(item)
            return
        index = 0
        with self.not_full:
            while index < len(items):
                self._check_open()
                room = self.capacity - len(self.queue)
                if room <= 0:
                    self._refill_at = self.capacity // 4
                    try:
                        self._sleep(self.not_full, None)
                    finally:
                        self._refill_at = None
                    continue
                self._append(items[index : index + room])
                index += room

    def _put_past_limit(self, items: Iterable[T], limit: int | None = None) -> bool:
        """Add ``items`` past ``maxsize`` without waiting, for the library's
        own bounded extras (the last messages before a close, a hub backlog
        of at most ``limit`` items in all); False, and nothing added, when
        that would exceed ``limit``. Raises :class:`Closed` once closed."""
        with self.mutex:
            self._check_open()
            items = list(items)
            if limit is not None and len(self.queue) + len(items) > limit:
                return False
            self._append(items)
            return True

    def join(self) -> None:
        """Block until every item put has been taken and marked done with
        ``task_done`` (or dropped by ``close(discard=True)``)."""
        with self.all_tasks_done:
            while self.unfinished_tasks:
                self._sleep(self.all_tasks_done, None)

    def __iter__(self) -> Iterator[T]:
        """Yield items until the channel is closed and drained."""
        while True:
            try:
                yield self.get()
            except Closed:
                return

    def _wait(
        self,
        condition: _Waitable,
        ready: Callable[[], object],
        block: bool,
        deadline: float | None,
        timeout_error: type[Exception] = queue.Full,
    ) -> None:
        """Wait on ``condition`` until ``ready()`` or the channel is closed.

        Called with ``self.mutex`` held. Raises ``timeout_error`` when neither
        happens in time; the caller tells ready from closed.
        """
        while not ready() and not self._closed:
            if not block:
                raise timeout_error
            if deadline is None:
                self._sleep(condition, None)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise timeout_error
                self._sleep(condition, remaining)

    def _sleep(self, condition: _Waitable, timeout: float | None) -> None:
        """Locked: wait on ``condition``, counted so that a notify with
        nobody waiting costs nothing."""
        self._sleeping += 1
        try:
            condition.wait(timeout)
        finally:
            self._sleeping -= 1

    def _withdraw(self, item: T) -> None:
        """Take back an unbuffered put that nobody took in time."""
        queued = self.queue
        for index, candidate in enumerate(queued):
            if candidate is item:
                assert isinstance(queued, collections.deque)
                del queued[index]
                if not queued:
                    self.queue = _NO_ITEMS
                self._given -= 1
                self.unfinished_tasks -= 1
                return
