"""This process's copy of a room's kept messages, for replays and resumes.

A member that replays a room's history, or resumes from a position, needs
the room's kept messages in order with the live ones: none twice, none
missed in between. The hub reads them from the transport once per room (not
once per member: five hundred pages resuming one room after a deploy read
Redis once per process), then keeps the copy up to date with every message
it delivers to that room, for as long as the room has members here.

A member's catch-up is taken from the copy under the hub's lock, at the
instant the member is added to its room: every message is either in the
catch-up (delivered before) or offered to the member live (after), never
both, never neither.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from .engine import Outgoing, with_plain_frame
from .exceptions import HubUnavailable
from .resume import START, Kept, Position, envelope

__all__ = ["RoomLog"]


class RoomLog:
    """A room's kept messages in this process. Every method but
    :meth:`wait` is called with the hub's lock held.

    Attributes:
        joining: Joins that use the log and are not done yet (the log is
            kept while there are any, even if the room has no member yet).
    """

    def __init__(self, size: int) -> None:
        self._entries: deque[tuple[Any, Outgoing]] = deque(maxlen=size)
        self._size = size
        self._epoch = ""
        self._complete = False
        self._last: Any = None  # the room's last offset seen here (None: none)
        # Deliveries that came while the first read was in flight: whether
        # the read has them is told by their offsets.
        self._pending: list[tuple[Any, Outgoing, str]] | None = []
        self._ready = threading.Event()
        self._error: HubUnavailable | None = None
        # Each kept message as members receive it, serialised once for all
        # (a burst of resumes sends the same messages to hundreds).
        self._sent: dict[tuple[Any, bool], Outgoing] = {}
        self.joining = 0

    @property
    def ready(self) -> bool:
        """Whether the first read is done (successfully or not)."""
        return self._ready.is_set()

    def wait(self, timeout: float) -> None:
        """Wait until the first read is done. Takes no lock.

        Raises:
            HubUnavailable: The read failed, or did not end in ``timeout``.
        """
        if not self._ready.wait(timeout):
            raise HubUnavailable("the room's history could not be read in time")
        if self._error is not None:
            raise self._error

    def loaded(self, kept: Kept) -> None:
        """The first read's result: the copy starts from it, followed by
        what was delivered meanwhile that it did not have."""
        self._epoch, self._complete = kept.epoch, kept.complete
        self._entries.extend(kept.entries)
        if kept.entries:
            self._last = kept.entries[-1][0]
        pending, self._pending = self._pending or [], None
        for offset, frame, epoch in pending:
            if epoch != kept.epoch or not kept.entries or offset > kept.entries[-1][0]:
                self.add(offset, frame, epoch)
        self._ready.set()

    def failed(self, error: HubUnavailable) -> None:
        """The first read failed: every join waiting for it fails too."""
        self._error = error
        self._ready.set()

    def add(self, offset: Any, frame: Outgoing, epoch: str) -> None:
        """A message of the room was delivered here."""
        if self._pending is not None:
            self._pending.append((offset, frame, epoch))
            return
        if epoch != self._epoch:
            self.broken(epoch)
        elif self._last is not None and not offset > self._last:
            # The read had it: the reader delivers what it read after the
            # history (it may lag behind it).
            return
        if len(self._entries) == self._size:
            self._complete = False  # the oldest goes
            if self._entries:
                oldest = self._entries[0][0]
                self._sent.pop((oldest, True), None)
                self._sent.pop((oldest, False), None)
        self._entries.append((offset, frame))
        self._last = offset

    def broken(self, epoch: str = "") -> None:
        """What the copy holds no longer continues the room's history (the
        broker lost data): it starts over, knowing nothing before."""
        self._entries.clear()
        self._sent.clear()
        self._epoch, self._complete, self._last = epoch, False, None

    def as_sent(
        self, room: str, epoch: str, offset: Any, frame: Outgoing, enveloped: bool
    ) -> Outgoing:
        """A kept message as a member receives it (in an envelope, or not),
        serialised once. Takes no lock: two joins that make it at once make
        the same frame, and one of them is kept."""
        key = (offset, enveloped)
        sent = self._sent.get(key)
        if sent is None:
            made = envelope(room, Position(epoch, offset), frame) if enveloped else frame
            sent = self._sent.setdefault(key, with_plain_frame(made))
        return sent

    def kept(self) -> Kept:
        """The copy now."""
        return Kept(self._epoch, list(self._entries), self._complete, self._last)

    def position(self) -> Position:
        """Where the room stands: its last message's position."""
        return Position(self._epoch, START if self._last is None else self._last)
