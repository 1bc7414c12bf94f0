"""Connection limits: each connection's place, reserved before the 101.

Per app, in this process, three counts of open connections: the whole app's
(``Sockets(app, max_total_connections=N)``), each view's
(``Options.max_connections``) and each client address's per view
(``Options.max_connections_per_client``). A handshake is admitted only if
it fits under every limit, and is then counted in all three at once, under
one lock: two handshakes never both take the last place. The place is given
back once the view has returned and the connection is done, whatever ended
it: under gunicorn gthread a view holds a thread as long as it runs, even
after its connection ended, and the limits bound those threads.

A refusal is a normal HTTP response, raised as a werkzeug ``HTTPException``
before the 101, so nothing of the view runs: 429 when the client is over
its own limit (checked first: it is the client's doing, and waiting for
the server to empty would not help it), else 503. Both carry
``Retry-After``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Protocol

from flask import request
from werkzeug.exceptions import HTTPException, ServiceUnavailable, TooManyRequests

from .handshake import OneLineBody
from .options import LOG_LEVEL_WARNING, integer_limit

if TYPE_CHECKING:
    from flask import Flask

    from .connection import Connection
    from .options import Options

__all__ = [
    "LIMITS_KEY",
    "RETRY_AFTER",
    "ClientLimitReached",
    "Limits",
    "Registry",
    "ServerFull",
    "Slot",
    "limits_for",
    "reserve",
]

#: Where an app's :class:`Limits` is kept in ``app.extensions``.
LIMITS_KEY = "sockets_channels.limits"
#: Seconds a refused client is told to wait (``Retry-After``). A place frees
#: up whenever a connection ends, which the server cannot foresee: this only
#: spreads the retries out.
RETRY_AFTER = 5


class ServerFull(OneLineBody, ServiceUnavailable):
    """503: the view or the app has as many open connections as it may."""

    def __init__(self, description: str) -> None:
        super().__init__(description, retry_after=RETRY_AFTER)


class ClientLimitReached(OneLineBody, TooManyRequests):
    """429: this client has as many open connections to the view as it may."""

    def __init__(self, description: str) -> None:
        super().__init__(description, retry_after=RETRY_AFTER)


class Registry(Protocol):
    """What the ``Sockets`` extension does with an admitted connection."""

    def track(self, connection: Connection, endpoint: str) -> None:
        """Count ``connection`` as open."""

    def untrack(self, connection: Connection) -> None:
        """Count ``connection`` as closed; idempotent."""

    def record_error(self, error: BaseException) -> None:
        """Count an error the connection put on ``errors``."""


class Limits:
    """The open-connection counts of one app in this process.

    Args:
        max_total: Open connections of the whole app at most; ``None``: no
            limit.
    """

    def __init__(self, max_total: int | None = None) -> None:
        self.max_total = max_total
        self._lock = threading.Lock()  # guards the three counts
        self._total = 0
        self._by_view: dict[str, int] = {}
        self._by_client: dict[tuple[str, str], int] = {}

    def reserve(self, endpoint: str, client: str | None, options: Options) -> Slot:
        """Take a place for a connection of ``endpoint`` from ``client``.

        A client without an address (``remote_addr`` unknown) is not held
        to ``max_connections_per_client``: it cannot be told from others.

        Raises:
            ClientLimitReached: 429, the client is at its limit for the view.
            ServerFull: 503, the view or the app is at its limit.
        """
        per_client = options.max_connections_per_client if client else None
        client_key = (endpoint, client or "")
        with self._lock:
            open_by_client = self._by_client.get(client_key, 0)
            open_by_view = self._by_view.get(endpoint, 0)
            if per_client is not None and open_by_client >= per_client:
                refusal: HTTPException = ClientLimitReached(
                    f"this client has {open_by_client} connections open here, the most allowed"
                )
                why = f"client {client} is at max_connections_per_client={per_client}"
            elif options.max_connections is not None and open_by_view >= options.max_connections:
                refusal = ServerFull("too many connections; try again later")
                why = f"{endpoint} is at max_connections={options.max_connections}"
            elif self.max_total is not None and self._total >= self.max_total:
                refusal = ServerFull("too many connections; try again later")
                why = f"the app is at max_total_connections={self.max_total}"
            else:
                self._total += 1
                self._by_view[endpoint] = open_by_view + 1
                if per_client is None:  # the view's options never change: no count needed
                    return Slot(self, endpoint, None)
                self._by_client[client_key] = open_by_client + 1
                return Slot(self, endpoint, client_key)
        options.log(LOG_LEVEL_WARNING, "handshake refused (%d): %s", refusal.code, why)
        raise refusal

    def open_count(self, endpoint: str | None = None) -> int:
        """Open connections of the app, or of one view."""
        with self._lock:
            return self._total if endpoint is None else self._by_view.get(endpoint, 0)

    def _free(self, endpoint: str, client_key: tuple[str, str] | None) -> None:
        with self._lock:
            self._total -= 1
            self._by_view[endpoint] -= 1
            if client_key is not None:
                left = self._by_client[client_key] - 1
                if left:
                    self._by_client[client_key] = left
                else:  # so that every address ever seen does not stay in memory
                    del self._by_client[client_key]


class Slot:
    """One admitted connection's place under the limits (and, with the
    extension, in its registry): given back by :meth:`release`."""

    def __init__(self, limits: Limits, endpoint: str, client_key: tuple[str, str] | None) -> None:
        self.endpoint = endpoint
        self._limits = limits
        self._client_key = client_key
        self._release_lock = threading.Lock()
        self._released = False
        self._connection: Connection | None = None
        self._registry: Registry | None = None

    def attach(self, connection: Connection, registry: Registry | None) -> None:
        """Count ``connection`` in ``registry`` (the ``Sockets`` extension,
        if any) until :meth:`release`."""
        self._connection, self._registry = connection, registry
        if registry is not None:
            registry.track(connection, self.endpoint)
            # A hook of the connection that counts its errors; absent from
            # connections that do not offer it.
            on_error = getattr(connection, "on_error", None)
            if on_error is not None:
                on_error(registry.record_error)

    def release(self) -> None:
        """Give the place back and count the connection as closed;
        idempotent. Called once its view has returned and it is done, or
        when it never opened."""
        with self._release_lock:
            if self._released:
                return
            self._released = True
        self._limits._free(self.endpoint, self._client_key)
        if self._registry is not None and self._connection is not None:
            self._registry.untrack(self._connection)


def limits_for(app: Flask) -> Limits:
    """The :class:`Limits` of ``app``: made by ``Sockets.init_app``, or, for
    an app without the extension, on first use, from
    ``SOCKETS_MAX_TOTAL_CONNECTIONS``.

    Raises:
        ValueError: ``SOCKETS_MAX_TOTAL_CONNECTIONS`` is not ``None`` or an
            integer >= 0.
    """
    limits: Limits | None = app.extensions.get(LIMITS_KEY)
    if limits is None:
        max_total = config_max_total(app.config)
        # setdefault: two first requests at once share one Limits.
        limits = app.extensions.setdefault(LIMITS_KEY, Limits(max_total))
    return limits


def config_max_total(config: Any) -> int | None:
    """``SOCKETS_MAX_TOTAL_CONNECTIONS`` of an app's config, validated.

    Raises:
        ValueError: It is not ``None`` or an integer >= 0.
    """
    return integer_limit(
        "SOCKETS_MAX_TOTAL_CONNECTIONS", config.get("SOCKETS_MAX_TOTAL_CONNECTIONS"), 0
    )


def reserve(app: Flask, options: Options) -> Slot:
    """Take a place for the current request's connection under the limits
    of ``app`` and ``options``, before its socket is taken; then
    :meth:`Slot.attach` the connection, and :meth:`Slot.release` the place
    once its view has returned (or if there will be none).

    Raises:
        ClientLimitReached: 429.
        ServerFull: 503.
        ValueError: ``SOCKETS_MAX_TOTAL_CONNECTIONS`` is invalid (an app
            without the extension).
    """
    endpoint = request.endpoint or request.path
    return limits_for(app).reserve(endpoint, request.remote_addr, options)
