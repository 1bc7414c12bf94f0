"""How the hub's messages travel: the transport interface, the in-process
transport, and hub URLs shown without their passwords.

A transport numbers every published message with an id that grows in
publish order (an ``int`` in process, a Redis stream id across processes)
within an epoch (see :mod:`.resume`), keeps each room's last messages (its
history), and hands every message to its sink, the :class:`~.hub.Hub`,
which offers it to its members. The
:class:`~.redis_transport.RedisTransport` does the same across processes
and also carries presence: what the members of other processes said about
themselves.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Iterable
from typing import Any, Protocol
from urllib.parse import unquote

from .engine import Outgoing
from .resume import Kept

__all__ = ["ROOM_TTL", "InProcessTransport", "Sink", "Transport", "display_url", "url_secrets"]

#: A room without members loses its history this many seconds after its last
#: message (and, across processes, its last member).
ROOM_TTL = 3600.0

EntryId = Any  # an int in process, a (milliseconds, sequence) pair in Redis


class Sink(Protocol):
    """What a transport delivers to: the hub of this process."""

    def deliver(
        self,
        room: str,
        entry_id: EntryId,
        frame: Outgoing,
        exclude: Collection[int],
        epoch: str,
    ) -> None:
        """Offer ``frame``, message ``entry_id`` of ``epoch``, to this
        process's members of ``room`` but those numbered in ``exclude``;
        never blocks."""

    def history_broken(self) -> None:
        """The histories kept may no longer continue what was delivered
        (the broker lost data): forget what was learnt of them."""

    def rooms(self) -> list[str]:
        """The rooms with members in this process."""

    def sweep(self) -> None:
        """Remove the members whose connection has ended."""

    def resync_presence(
        self, rooms: Iterable[str], within: Callable[[str], bool] | None = None
    ) -> None:
        """Write this process's presence again, for its rooms and ``rooms``
        (of those, only the rooms ``within`` accepts)."""

    def write_presence(self, rooms: Iterable[str]) -> None:
        """Write this process's presence in ``rooms``."""


class Transport(Protocol):
    """Carries published messages to the hubs of every process."""

    #: Where the messages go, without any password; ``None`` in process.
    url: str | None

    def start(self, sink: Sink) -> None:
        """Deliver every message published from now on to ``sink``
        (idempotent; the first join calls it)."""

    def wait_ready(self, timeout: float | None) -> bool:
        """Wait until messages of other processes reach the sink; before
        :meth:`start`, whether the broker answers. Bounded even when
        ``timeout`` is None."""

    def publish(self, room: str, frame: Outgoing, exclude: Collection[int]) -> None:
        """Send ``frame`` to ``room`` in every process, keep it in the room's
        history; raise ``HubUnavailable``."""

    def history(self, room: str) -> Kept:
        """The room's kept messages, oldest first, with its epoch; every
        message after the last of them reaches the sink. Raise
        ``HubUnavailable``."""

    def set_presence(self, room: str, values: list[str]) -> None:
        """Record this process's presence in ``room`` (JSON texts) now;
        never raises: what fails is written again later."""

    def presence_changed(self, rooms: Iterable[str]) -> None:
        """Record this process's presence in ``rooms`` later, from the
        transport's own thread; never blocks (what ``Hub.rooms()`` and
        ``Hub.members()`` call: statistics never wait for Redis)."""

    def presence(self, room: str) -> list[Any]:
        """The presence values of the other processes' members of ``room``;
        raise ``HubUnavailable``."""

    def close(self) -> None:
        """Stop the transport's threads."""

    def after_fork(self) -> None:
        """Forget the parent process's connections and threads (in a child)."""


class InProcessTransport:
    """Delivers at once, in the publisher's thread; keeps histories in memory."""

    url: str | None = None

    def __init__(self, history: int = 0) -> None:
        self.history_length = history
        self._start_afresh()
        self._sink: Sink | None = None

    def _start_afresh(self) -> None:
        """A new epoch, with nothing kept: the positions of another process
        (a parent before it forked) mean nothing here."""
        self.epoch = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()  # guards every field below
        self._ids = itertools.count(1)
        self._histories: dict[str, deque[tuple[int, Outgoing]]] = {}
        self._added: dict[str, int] = {}  # messages each kept history has seen
        self._last_publish: dict[str, float] = {}
        self._next_expiry = time.monotonic() + ROOM_TTL / 60

    def start(self, sink: Sink) -> None:
        self._sink = sink

    def wait_ready(self, timeout: float | None) -> bool:
        return True

    def publish(self, room: str, frame: Outgoing, exclude: Collection[int]) -> None:
        now = time.monotonic()
        with self._lock:
            # The id and the history entry are made together: a replay that
            # reads the history under this lock has every message up to its
            # last id (see roomlog.py).
            entry_id = next(self._ids)
            if self.history_length:
                kept = self._histories.get(room)
                if kept is None:
                    kept = self._histories[room] = deque(maxlen=self.history_length)
                kept.append((entry_id, frame))
                self._added[room] = self._added.get(room, 0) + 1
                self._last_publish[room] = now
            expire = now >= self._next_expiry
        if expire:
            self._expire(now)
        if self._sink is not None:
            self._sink.deliver(room, entry_id, frame, exclude, self.epoch)

    def history(self, room: str) -> Kept:
        with self._lock:
            entries = list(self._histories.get(room, ()))
            complete = self._added.get(room, 0) == len(entries)
            return Kept(self.epoch, entries, complete, entries[-1][0] if entries else None)

    def set_presence(self, room: str, values: list[str]) -> None:
        return None  # the hub's members are all the presence there is

    def presence_changed(self, rooms: Iterable[str]) -> None:
        return None

    def presence(self, room: str) -> list[Any]:
        return []

    def close(self) -> None:
        return None

    def after_fork(self) -> None:
        self._start_afresh()

    def _expire(self, now: float) -> None:
        """Drop the histories of rooms idle for ROOM_TTL with no members."""
        occupied = set(self._sink.rooms()) if self._sink is not None else set()
        with self._lock:
            self._next_expiry = now + ROOM_TTL / 60
            for room, last in list(self._last_publish.items()):
                if now - last > ROOM_TTL and room not in occupied:
                    del self._last_publish[room]
                    self._histories.pop(room, None)
                    self._added.pop(room, None)


# -- URLs without passwords --------------------------------------------------

_PASSWORD_PARAM = re.compile(
    r"(?P<name>[?&;](?:\w+_)?(?:password|passwd|pass|pwd|secret|token|auth)=)(?P<value>[^&;#]*)",
    re.IGNORECASE,
)


def _split(url: str) -> tuple[str, str, str]:
    """``(scheme://, location, ?query#fragment)``; a URL without ``://``
    (a mistyped scheme) is all location."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    ends = [i for i in (rest.find("?"), rest.find("#")) if i != -1]
    end = min(ends) if ends else len(rest)
    return (scheme + sep), rest[:end], rest[end:]


def _location_secret(location: str) -> tuple[str, str | None]:
    """The location with its password replaced by ``***``, and the password.

    A password is what follows the user name in ``user:password@``, all of
    a userinfo without ``:``, or a "port" that is not a number (a password
    whose ``@`` was left out).
    """
    at = location.rfind("@")
    if at != -1:
        userinfo, host = location[:at], location[at + 1 :]
        user, colon, password = userinfo.partition(":")
        if colon:
            return f"{user}:***@{host}", password
        return f"***@{host}", userinfo
    authority, slash, path = location.partition("/")
    hosts = authority.split(",")  # redis+sentinel:// and redis+cluster:// list several
    for index, host_port in enumerate(hosts):
        if not host_port.startswith("["):
            host, colon, port = host_port.partition(":")
            if colon and not port.isdigit():
                hosts[index] = f"{host}:***"
                return ",".join(hosts) + slash + path, port
    return location, None


def display_url(url: str) -> str:
    """``url`` as it may be shown (``repr``, logs, errors): every password
    replaced by ``***``, in the userinfo or in the query."""
    scheme, location, tail = _split(url)
    location, _ = _location_secret(location)
    return scheme + location + _PASSWORD_PARAM.sub(r"\g<name>***", tail)


def url_secrets(url: str) -> frozenset[str]:
    """The passwords in ``url``, as written and percent-decoded: text to
    remove from any message that might quote them."""
    _, location, tail = _split(url)
    found = [_location_secret(location)[1]]
    found += [match.group("value") for match in _PASSWORD_PARAM.finditer(tail)]
    return frozenset(
        form for secret in found if secret for form in (secret, unquote(secret)) if form
    )
