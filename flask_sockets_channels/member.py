"""A hub member: one ``sender`` in one room, and how hub messages reach it.

A member holds its ``sender`` weakly and offers it each message without
waiting (see :meth:`~.sender.Sender.offer`). Joining with a catch-up (a
replay or a resume), it holds the live messages offered meanwhile until its
catch-up is queued, so that the catch-up comes first and nothing comes
twice.
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .channels import Channel, Closed
from .engine import Outgoing
from .transport import EntryId

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["Member"]

logger = logging.getLogger("flask_sockets_channels.hub")


class Member:
    """One sender in one room; a context manager that leaves on exit.

    A member holds its ``sender`` weakly: one that never leaves does not keep
    its connection alive, and is removed once that connection has ended.

    Attributes:
        room: The room's name.
        max_backlog: How many hub messages may wait past its buffer.
        presence: What it said about itself at ``join`` (as JSON gives it
            back), or ``None``.
        recovered: For a member that joined with ``since``: whether every
            message after that position was delivered to it (before any
            live one); ``None`` for one that did not.
        reason: Why it did not recover: ``"too old"``, ``"epoch changed"``,
            ``"unknown position"`` or ``"too many"``; else ``None``.
        position: Where the room stood when it joined, as text (for a
            member that replayed, resumed or asked for envelopes), else
            ``None``.
        envelope: Its messages come as ``{"room", "position", "data"}``
            JSON (the browser client's protocol).
    """

    def __init__(
        self,
        hub: Hub,
        room: str,
        sender: Channel[Any],
        max_backlog: int,
        presence: str | None,
        number: int,
        envelope: bool = False,
    ) -> None:
        self.room = room
        self.max_backlog = max_backlog
        self.envelope = envelope
        self.recovered: bool | None = None
        self.reason: str | None = None
        self.position: str | None = None
        self.presence: Any = None if presence is None else json.loads(presence)
        self._hub = hub
        self._sender = weakref.ref(sender)
        self._encoded_presence = presence
        self._number = number
        self.too_slow = False  # closed with 1008: its backlog overflowed
        # Orders a catch-up before the live messages: live messages offered
        # once the member is in its room, until its catch-up is queued, are
        # held here (see _catch_up).
        self._lock = threading.Lock()
        self._held: list[tuple[EntryId, Outgoing]] | None = None
        self._floor: EntryId | None = None  # live ids up to this came with the catch-up

    @property
    def sender(self) -> Channel[Any] | None:
        """The member's ``sender``; ``None`` once its connection is gone."""
        return self._sender()

    @property
    def gone(self) -> bool:
        """Whether the member's connection is closing or gone."""
        sender = self._sender()
        return sender is None or sender.closed

    def leave(self) -> None:
        """Leave the room; idempotent. Across processes, blocks for one
        Redis write when the member had a presence. Never raises: a
        presence that cannot be removed from Redis now is removed later."""
        self._hub._remove([self], write_presence=True)

    def __enter__(self) -> Member:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.leave()

    def __repr__(self) -> str:
        return f"<Member of {self.room!r}>"

    def _offer(self, entry_id: EntryId, frame: Outgoing) -> bool:
        """Queue one live message; False when the member is gone or too slow."""
        with self._lock:
            if self._held is not None:
                self._held.append((entry_id, frame))
                return True
            if self._floor is not None:
                if not entry_id > self._floor:
                    return True  # it came with the catch-up
                # Ids grow: no later message came with it. (Forgotten, so
                # that ids that went back with Redis are not taken for it.)
                self._floor = None
            return self._send(frame, 0)

    def _catch_up(self, frames: list[Outgoing], floor: EntryId | None) -> bool:
        """Queue ``frames`` (taken from the room's log when the member
        entered its room: every message up to ``floor``), then the live
        messages held since that came after them (the reader may deliver a
        message after the history that had it was read). False when the
        member is gone or too slow."""
        with self._lock:
            held, self._held = self._held or [], None
            self._floor = floor
            later = [f for i, f in held if floor is None or i > floor]
            catch_up = frames + later
            # The catch-up itself may exceed the backlog: it is not the
            # member's fault that it arrives at once.
            return all(self._send(frame, len(catch_up)) for frame in catch_up)

    def _send(self, frame: Outgoing, allowance: int) -> bool:
        """Offer ``frame`` to the sender; False when it is gone, too slow,
        or its ``offer`` raised (logged here, once: the member is then
        removed, and the others and the hub's thread go on)."""
        sender = self._sender()
        if sender is None:
            return False
        try:
            queued = bool(sender.offer(frame, self.max_backlog + allowance))  # type: ignore[attr-defined]
        except Closed:
            return False
        except Exception:
            logger.exception("hub: the sender of %r raised in offer(); it leaves the room", self)
            return False
        self.too_slow = not queued  # the sender closed itself with 1008
        return queued
