"""What the ``Sockets`` extension counts, for :meth:`Sockets.stats` and metrics.

Nothing here runs per message. A connection counts its own messages and
bytes in plain integer attributes (``messages_in``, ``messages_out``,
``bytes_in``, ``bytes_out``) as it reads and writes; a snapshot adds up
those of the open connections and the totals of the finished ones, which
are added in once, when each connection is done. Everything else is
counted once per connection, refused handshake or error.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from .connection import Connection
    from .hub import Hub

__all__ = [
    "APPLICATION_CODES",
    "COUNTERS",
    "HUB_COUNTERS",
    "HubStats",
    "Snapshot",
    "Stats",
    "close_code_key",
]

#: The per-connection counters, read from each connection (0 if absent).
COUNTERS = ("messages_in", "messages_out", "bytes_in", "bytes_out")
#: The hub's counters, read from the hub (0 if absent).
HUB_COUNTERS = ("published", "delivered", "slow_consumers_closed", "reconnects", "messages_lost")
#: The key of ``close_codes`` for every code from 3000 to 4999.
APPLICATION_CODES = "application"


def close_code_key(code: int) -> int | str:
    """How ``close_codes`` counts ``code``: the protocol's own codes (1000
    to 1015) by number; 3000-4999, which any peer picks at will, together
    under :data:`APPLICATION_CODES` (a key, and a Prometheus series, per
    code a peer chose would let it grow the figures without bound)."""
    return code if code < 3000 else APPLICATION_CODES


class HubStats(TypedDict):
    """The hub's figures in a :class:`Snapshot`."""

    rooms: int
    members: int
    published: int
    delivered: int
    slow_consumers_closed: int
    reconnects: int
    messages_lost: int


class Snapshot(TypedDict):
    """The figures of :meth:`Sockets.stats`, for this process."""

    open: int
    open_by_endpoint: dict[str, int]
    opened: int
    closed: int
    rejected: dict[int, int]
    messages_in: int
    messages_out: int
    bytes_in: int
    bytes_out: int
    close_codes: dict[int | str, int]
    errors: dict[str, int]
    hub: HubStats


class Stats:
    """The open connections and the counters of one ``Sockets`` object."""

    def __init__(self) -> None:
        # Guards every field below. Reading `_open` without it is safe (one
        # dict copy, atomic under the GIL): close_all() does, in signal
        # handlers, where the interrupted thread may hold this lock.
        self._lock = threading.Lock()
        self._open: dict[Connection, str] = {}  # -> endpoint
        self._open_by_endpoint: dict[str, int] = {}
        self._opened = 0
        self._closed = 0
        self._rejected: dict[int, int] = {}
        self._close_codes: dict[int | str, int] = {}
        self._errors: dict[str, int] = {}
        self._finished = dict.fromkeys(COUNTERS, 0)  # the counters of closed connections

    def open_connections(self) -> list[Connection]:
        """The open connections. Takes no lock: safe in a signal handler."""
        return list(self._open.copy())

    def opened(self, connection: Connection, endpoint: str) -> None:
        """Count ``connection``, of view ``endpoint``, as open."""
        with self._lock:
            if connection in self._open:
                return
            self._open[connection] = endpoint
            self._open_by_endpoint[endpoint] = self._open_by_endpoint.get(endpoint, 0) + 1
            self._opened += 1

    def closed(self, connection: Connection) -> None:
        """Count ``connection`` as closed, with its close code and counters;
        idempotent."""
        with self._lock:
            endpoint = self._open.pop(connection, None)
            if endpoint is None:
                return
            self._open_by_endpoint[endpoint] -= 1
            self._closed += 1
            # None: it never started (the client left during the handshake).
            code = close_code_key(connection.close_code or 1006)
            self._close_codes[code] = self._close_codes.get(code, 0) + 1
            for name in COUNTERS:
                self._finished[name] += getattr(connection, name, 0)

    def record_rejection(self, status: int) -> None:
        """Count a handshake refused with HTTP ``status``."""
        with self._lock:
            self._rejected[status] = self._rejected.get(status, 0) + 1

    def record_error(self, error: BaseException) -> None:
        """Count an error a connection put on ``errors``, by type name."""
        name = type(error).__name__
        with self._lock:
            self._errors[name] = self._errors.get(name, 0) + 1

    def snapshot(self, hub: Hub | None = None) -> Snapshot:
        """The figures now, with those of ``hub`` (zeros if ``None``)."""
        hub_figures = hub_stats(hub)
        with self._lock:
            counters = dict(self._finished)
            for connection in self._open:
                for name in COUNTERS:
                    counters[name] += getattr(connection, name, 0)
            snapshot = Snapshot(
                open=len(self._open),
                open_by_endpoint=dict(self._open_by_endpoint),
                opened=self._opened,
                closed=self._closed,
                rejected=dict(self._rejected),
                messages_in=counters["messages_in"],
                messages_out=counters["messages_out"],
                bytes_in=counters["bytes_in"],
                bytes_out=counters["bytes_out"],
                close_codes=dict(self._close_codes),
                errors=dict(self._errors),
                hub=hub_figures,
            )
        return snapshot


def hub_stats(hub: Hub | None) -> HubStats:
    """The figures of ``hub`` in this process. Its counters are read as
    attributes, 0 for those it does not keep."""
    if hub is None:
        return HubStats(
            rooms=0,
            members=0,
            published=0,
            delivered=0,
            slow_consumers_closed=0,
            reconnects=0,
            messages_lost=0,
        )
    rooms = hub.rooms()
    counters = {name: int(getattr(hub, name, 0)) for name in HUB_COUNTERS}
    return HubStats(
        rooms=len(rooms),
        members=sum(len(hub.members(room)) for room in rooms),
        published=counters["published"],
        delivered=counters["delivered"],
        slow_consumers_closed=counters["slow_consumers_closed"],
        reconnects=counters["reconnects"],
        messages_lost=counters["messages_lost"],
    )
