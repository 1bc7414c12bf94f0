"""Rooms and broadcast: a message published to a room reaches every member.

``Hub()`` fans out within the process. ``Hub.from_url("redis://...")`` also
carries each message through Redis pub/sub to the hubs of every other
process (gunicorn workers, hosts), which deliver it to their own members.

A member is a socket view's ``sender``. Publishing never blocks on a
member: a message is encoded to a frame once and offered to each member's
``sender``, where it waits beside the view's own messages, in a backlog of
at most ``max_backlog`` frames past the buffer. A member whose backlog is
full is closed with 1008 ("slow consumer") and removed; the others go on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from types import TracebackType
from typing import Any, Protocol

from .channels import Channel, Closed
from .engine import Outgoing
from .modes import to_frame

__all__ = ["Hub", "Member"]

logger = logging.getLogger("flask_sockets_channels.hub")


class Transport(Protocol):
    """Carries published frames to the other processes' hubs."""

    def publish(self, room: str, frame: Outgoing) -> None:
        """Send ``frame`` to the other processes; raise ``HubUnavailable``."""

    def start(self, deliver: Any) -> None:
        """Start calling ``deliver(room, frame)`` for others' messages."""

    def wait_ready(self, timeout: float | None) -> bool:
        """Wait until the listener is subscribed."""

    def close(self) -> None:
        """Stop; ends the transport's threads."""


class Member:
    """One sender in one room; a context manager that leaves on exit.

    Attributes:
        room: The room's name.
        sender: The member's ``sender`` channel.
        max_backlog: How many hub messages may wait past its buffer.
    """

    def __init__(self, hub: Hub, room: str, sender: Channel[Any], max_backlog: int) -> None:
        self.room = room
        self.sender = sender
        self.max_backlog = max_backlog
        self._hub = hub

    def leave(self) -> None:
        """Leave the room; idempotent."""
        self._hub._remove(self)

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


class Hub:
    """Rooms of senders, in this process (and others, through a transport).

    Use :meth:`Hub.from_url` for a hub that spans processes; ``Hub()`` is
    in-process only. Thread-safe.
    """

    def __init__(self, transport: Transport | None = None) -> None:
        self._lock = threading.Lock()  # guards _rooms and _started
        self._rooms: dict[str, dict[int, Member]] = {}
        self._transport = transport
        self._started = False
        self.url: str | None = None

    @classmethod
    def from_url(cls, url: str | None) -> Hub:
        """A hub for ``url``: ``None`` or ``"memory://"`` for in-process,
        ``redis://``, ``rediss://`` or ``unix://`` for Redis pub/sub
        (needs the ``redis`` extra: ``pip install flask-sockets-channels[redis]``).

        Raises:
            ValueError: The URL's scheme is not supported.
            ImportError: ``redis`` is not installed.
        """
        if url is None or url == "memory://":
            return cls()
        scheme = url.split("://", 1)[0].lower()
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"unsupported hub URL {url!r}: use redis://, rediss:// or unix://")
        from .redis_transport import RedisTransport

        hub = cls(RedisTransport(url))
        hub.url = url
        return hub

    def join(self, room: str, sender: Channel[Any], max_backlog: int = 1000) -> Member:
        """Add ``sender`` to ``room`` now; use the result as a context
        manager (``with hub.join(room, sender): ...``) to leave on exit,
        also when the view raises. A member whose connection has closed is
        also removed at the next publish.

        Raises:
            TypeError: ``sender`` is not a socket view's ``sender``.
            ValueError: ``max_backlog`` is negative.
        """
        if not callable(getattr(sender, "offer", None)):
            raise TypeError("hub members are a socket view's `sender` channel")
        if max_backlog < 0:
            raise ValueError(f"max_backlog must be >= 0, not {max_backlog}")
        member = Member(self, room, sender, max_backlog)
        with self._lock:
            self._rooms.setdefault(room, {})[id(member)] = member
            start = self._transport is not None and not self._started
            self._started = True
        if start:
            assert self._transport is not None
            self._transport.start(self._deliver)
        return member

    def publish(self, room: str, message: Any, exclude: Any = None) -> int:
        """Send ``message`` to every member of ``room``, in every process.

        ``message`` is sent as a text frame for ``str``, a binary frame for
        bytes-like objects, and JSON text for anything else (dicts,
        dataclasses, pydantic-style models, lists...). ``exclude`` is a
        sender (or a collection of senders) not to send to, typically the
        publisher's own. Never blocks on a member.

        Returns:
            How many members of this process it was queued for.

        Raises:
            TypeError: ``message`` cannot be serialised.
            HubUnavailable: The transport (Redis) cannot be reached; nothing
                was sent.
        """
        frame = to_frame(message)
        if self._transport is not None:
            self._transport.publish(room, frame)
        return self._deliver(room, frame, exclude)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until messages from other processes can arrive: the
        transport's listener (started by the first :meth:`join`) is
        subscribed. Messages published elsewhere before that are not seen
        here. Returns at once, True, for an in-process hub.
        """
        if self._transport is None:
            return True
        return self._transport.wait_ready(timeout)

    def members(self, room: str) -> list[Member]:
        """The members of ``room`` in this process."""
        with self._lock:
            return list(self._rooms.get(room, {}).values())

    def rooms(self) -> list[str]:
        """The rooms that have members in this process."""
        with self._lock:
            return list(self._rooms)

    def close(self) -> None:
        """Stop the transport's threads; the hub stays usable in-process and
        restarts its transport on the next join."""
        with self._lock:
            started, self._started = self._started, False
        if started and self._transport is not None:
            self._transport.close()

    def _deliver(self, room: str, frame: Outgoing, exclude: Any = None) -> int:
        with self._lock:
            members = list(self._rooms.get(room, {}).values())
        if exclude is None:
            excluded: Collection[Any] = ()
        elif isinstance(exclude, Channel):
            excluded = (exclude,)
        else:
            excluded = exclude
        delivered = 0
        for member in members:
            if member.sender in excluded:
                continue
            try:
                queued = member.sender.offer(frame, member.max_backlog)  # type: ignore[attr-defined]
            except Closed:
                queued = False
            if queued:
                delivered += 1
            else:
                self._remove(member)
        return delivered

    def _remove(self, member: Member) -> None:
        with self._lock:
            room = self._rooms.get(member.room)
            if room is not None:
                room.pop(id(member), None)
                if not room:
                    del self._rooms[member.room]
