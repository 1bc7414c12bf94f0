"""The ``Sockets`` Flask extension: config, routing, registry, shutdown."""

from __future__ import annotations

import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from flask import Flask, request
from werkzeug.routing import Rule
from werkzeug.routing.exceptions import WebsocketMismatch

from .exceptions import CloseCode
from .handshake import NotUpgrade
from .hub import Hub
from .options import LOG_LEVEL_WARNING, resolve_options, unknown_config_keys
from .session import EXTENSION_KEY, is_socket_view

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

    from .connection import Connection

__all__ = ["Sockets"]


class Sockets:
    """WebSocket support for a Flask app: ``Sockets(app)`` or ``init_app(app)``.

    It is optional for the decorators, which also work on a route declared
    with ``websocket=True``. What it adds:

    * plain ``@app.route`` rules of socket views become WebSocket rules (for
      this app only, also for blueprints registered later);
    * the ``SOCKETS_*`` config keys are validated at ``init_app`` (one key
      per :class:`Options` field: ``SOCKETS_PING_PERIOD``,
      ``SOCKETS_WRITE_WAIT``, ``SOCKETS_MAX_MESSAGE_SIZE``, ...);
    * a registry of open connections (:attr:`connections`) and
      :meth:`close_all` for a graceful shutdown;
    * :attr:`hub`, made from ``SOCKETS_HUB_URL`` (``None``: in-process;
      ``redis://...``: across processes), so that one setting moves an app
      from one process to many; ``SOCKETS_HUB_HISTORY`` (default 0) is how
      many of each room's last messages it keeps for a replay.

    Stored in ``app.extensions["sockets_channels"]``.
    """

    def __init__(self, app: Flask | None = None) -> None:
        self._lock = threading.Lock()  # guards _connections
        self._connections: set[Connection] = set()
        self._hub_url: str | None = None
        self._hub_history = 0
        self._hub: Hub | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Set up ``app``.

        Raises:
            ValueError: A ``SOCKETS_*`` config value is invalid.
        """
        options = resolve_options(app.config)
        self._hub_url = app.config.get("SOCKETS_HUB_URL")
        if self._hub_url is not None and not isinstance(self._hub_url, str):
            raise ValueError(f"SOCKETS_HUB_URL must be a URL or None, not {self._hub_url!r}")
        history = app.config.get("SOCKETS_HUB_HISTORY", 0)
        if isinstance(history, bool) or not isinstance(history, int) or history < 0:
            raise ValueError(f"SOCKETS_HUB_HISTORY must be an int >= 0, not {history!r}")
        self._hub_history = history
        for key in unknown_config_keys(app.config):
            options.log(LOG_LEVEL_WARNING, "unknown config key %s is ignored", key)
        app.extensions[EXTENSION_KEY] = self
        for view in app.view_functions.values():
            _check_view_options(app, view)
        for rule in app.url_map.iter_rules():
            if is_socket_view(app.view_functions.get(rule.endpoint)):
                rule.websocket = True
        app.url_rule_class = _socket_rule_class(app, app.url_rule_class)
        app.view_functions = _CheckedViews(app, app.view_functions)
        if WebsocketMismatch not in app.error_handler_spec[None][400]:
            app.register_error_handler(WebsocketMismatch, _explain_mismatch)

    @property
    def hub(self) -> Hub:
        """The app's hub, made on first use from ``SOCKETS_HUB_URL``."""
        with self._lock:
            if self._hub is None:
                self._hub = Hub.from_url(self._hub_url, history=self._hub_history)
            return self._hub

    @property
    def connections(self) -> frozenset[Connection]:
        """The connections open now (a snapshot)."""
        with self._lock:
            return frozenset(self._connections)

    def close_all(
        self, code: int = CloseCode.GOING_AWAY, reason: str = "", timeout: float | None = None
    ) -> bool:
        """Close every open connection with ``code`` (1001 by default), after
        what their views already put on ``sender``. Never blocks unless
        ``timeout`` is given: then wait up to ``timeout`` seconds for them to
        end, cut TCP of those still open, and return whether all ended in
        time. The hub's listener thread (if any) stops too.

        Call it when the process is told to stop, e.g. on SIGTERM (see
        :meth:`install_sigterm_handler`).
        """
        connections = self.connections
        for connection in connections:
            connection.close(code, reason)
        with self._lock:
            hub = self._hub
        if hub is not None:
            hub.close()
        if timeout is None:
            return True
        deadline = time.monotonic() + timeout
        all_done = True
        for connection in connections:
            if not connection.wait_closed(max(0.0, deadline - time.monotonic())):
                connection.abort()
                all_done = False
        return all_done

    def install_sigterm_handler(self, code: int = CloseCode.GOING_AWAY) -> None:
        """On SIGTERM, close every connection with ``code``, then run the
        handler that was installed before (gunicorn's, which starts the
        graceful shutdown). Call it in the main thread, e.g. from gunicorn's
        ``post_worker_init`` hook: ``worker_exit`` runs too late, after the
        graceful timeout."""
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: Any) -> None:
            self.close_all(code)
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.raise_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_sigterm)

    def track(self, connection: Connection) -> None:
        """Add ``connection`` to the registry until it is done."""
        with self._lock:
            self._connections.add(connection)
        connection.on_done(self.untrack)

    def untrack(self, connection: Connection) -> None:
        """Remove ``connection`` from the registry."""
        with self._lock:
            self._connections.discard(connection)


def _check_view_options(app: Flask, view: object) -> None:
    """Resolve a socket view's options against the app's config now, so that
    a conflict (``SOCKETS_PONG_WAIT`` below a decorator's ``ping_period``)
    raises ``ValueError`` at app setup rather than at the first request."""
    if is_socket_view(view):
        view.__sockets_channels__.options_for(app)  # type: ignore[attr-defined]


class _CheckedViews(dict):  # type: ignore[type-arg]
    """``app.view_functions`` for this app: checks the options of socket
    views registered after ``init_app`` (e.g. by blueprints) as they come."""

    def __init__(self, app: Flask, views: dict[str, Any]) -> None:
        super().__init__(views)
        self._app = app

    def __setitem__(self, endpoint: str, view: Any) -> None:
        _check_view_options(self._app, view)
        super().__setitem__(endpoint, view)


def _socket_rule_class(app: Flask, base: type[Rule]) -> type[Rule]:
    """A rule class for ``app`` whose rules are WebSocket rules when their
    endpoint is a socket view. Decided at match time, because Flask creates
    the rule before it records the view."""

    class SocketsRule(base):  # type: ignore[valid-type,misc]
        @property
        def websocket(self) -> bool:
            return self._websocket or is_socket_view(app.view_functions.get(self.endpoint))

        @websocket.setter
        def websocket(self, value: bool) -> None:
            self._websocket = value

    return SocketsRule


def _explain_mismatch(error: Any) -> Response:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        reason = "this URL does not accept WebSocket upgrades"
    else:
        reason = (
            "this URL only accepts WebSocket upgrades (Connection: Upgrade, Upgrade: websocket)"
        )
    return NotUpgrade(reason).get_response()
