"""The ``Sockets`` Flask extension: config, routing, registry, limits,
stats, shutdown."""

from __future__ import annotations

import _thread
import logging
import signal
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable

from flask import Flask, current_app, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Rule
from werkzeug.routing.exceptions import WebsocketMismatch

from .browser import serve_client
from .exceptions import CloseCode, is_sendable_code
from .handshake import NotUpgrade
from .hub import MAX_MESSAGE_SIZE, MAX_RESUME, Hub
from .limits import LIMITS_KEY, Limits, config_max_total
from .options import LOG_LEVEL_WARNING, integer_limit, resolve_options, unknown_config_keys
from .session import EXTENSION_KEY, is_socket_view
from .stats import Snapshot, Stats

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

    from .connection import Connection

logger = logging.getLogger("flask_sockets_channels")

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
    * a limit on the open connections of all the app's socket views
      together, in this process: ``max_total_connections`` (or the
      ``SOCKETS_MAX_TOTAL_CONNECTIONS`` config key); past it a handshake is
      answered 503 with ``Retry-After`` and nothing of the view runs;
    * :meth:`stats`: what happened in this process (connections, refused
      handshakes, messages, bytes, close codes, errors, the hub);
    * the browser client, a plain script that reconnects and resumes hub
      rooms, at ``url_for("sockets_channels.static", filename="client.js")``
      (or ``client.mjs``, an ES module);
    * :attr:`hub`, made from ``SOCKETS_HUB_URL`` (``None``: in-process;
      ``redis://...``: across processes), so that one setting moves an app
      from one process to many; ``SOCKETS_HUB_HISTORY`` (default 0) is how
      many of each room's last messages it keeps for a replay,
      ``SOCKETS_HUB_MAX_MESSAGE_SIZE`` (default 65536) the largest message,
      in bytes, it publishes, and ``SOCKETS_HUB_MAX_RESUME`` (default 1000)
      the most messages one resume replays.

    Stored in ``app.extensions["sockets_channels"]``.

    Args:
        app: The app to set up now, or ``None`` to call :meth:`init_app`
            later.
        max_total_connections: Open connections of all the socket views of
            an app together, at most; it wins over
            ``SOCKETS_MAX_TOTAL_CONNECTIONS``. ``None`` (the default): the
            config key's value, or no limit. 0 refuses every handshake.

    Raises:
        ValueError: ``max_total_connections`` is not ``None`` or an integer
            >= 0; see also :meth:`init_app`.
    """

    def __init__(
        self, app: Flask | None = None, *, max_total_connections: int | None = None
    ) -> None:
        self._max_total = integer_limit("max_total_connections", max_total_connections, 0)
        self._lock = threading.Lock()  # guards the hub's creation
        self._stats = Stats()
        self._hub_url: str | None = None
        self._hub_history = 0
        self._hub_max_message_size = MAX_MESSAGE_SIZE
        self._hub_max_resume = MAX_RESUME
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
        max_total = config_max_total(app.config) if self._max_total is None else self._max_total
        self._hub_history = _config_int(app.config, "SOCKETS_HUB_HISTORY", 0, 0)
        self._hub_max_message_size = _config_int(
            app.config, "SOCKETS_HUB_MAX_MESSAGE_SIZE", MAX_MESSAGE_SIZE, 1
        )
        self._hub_max_resume = _config_int(app.config, "SOCKETS_HUB_MAX_RESUME", MAX_RESUME, 0)
        for key in unknown_config_keys(app.config):
            options.log(LOG_LEVEL_WARNING, "unknown config key %s is ignored", key)
        app.extensions[EXTENSION_KEY] = self
        app.extensions[LIMITS_KEY] = Limits(max_total)
        serve_client(app)
        if self._count_refusal not in app.after_request_funcs.get(None, []):
            app.after_request(self._count_refusal)
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
                self._hub = Hub.from_url(
                    self._hub_url,
                    history=self._hub_history,
                    max_message_size=self._hub_max_message_size,
                    max_resume=self._hub_max_resume,
                )
            return self._hub

    @property
    def connections(self) -> frozenset[Connection]:
        """The connections open now, and those that ended while their view
        still runs (a snapshot)."""
        return frozenset(self._stats.open_connections())

    def stats(self) -> Snapshot:
        """The figures of this process, as a new dict (a snapshot).

        Keys: ``open`` (connections open now, and those that ended while
        their view still runs: each holds a place under the connection
        limits), ``open_by_endpoint`` (endpoint -> the same), ``opened``
        and ``closed`` (since the start), ``rejected`` (HTTP status -> handshakes refused with
        it: 403, 429, 503, 401 from an access check, ...), ``messages_in``,
        ``messages_out``, ``bytes_in`` and ``bytes_out`` (payload bytes of
        the messages, of open and closed connections), ``close_codes``
        (close code -> connections that ended with it, 1006 when TCP died;
        the codes 3000-4999, which a peer picks at will, are counted
        together under ``"application"``),
        ``errors`` (type name -> errors put on ``errors``) and ``hub``
        (``rooms`` and ``members`` in this process, ``published``,
        ``delivered``, ``slow_consumers_closed``, ``reconnects``, ``messages_lost``).

        Takes a lock shared with the connections' bookkeeping (not with
        their messages): do not call it from a signal handler.
        """
        return self._stats.snapshot(self._hub)

    def close_all(
        self, code: int = CloseCode.GOING_AWAY, reason: str = "", timeout: float | None = None
    ) -> bool:
        """Close every open connection with ``code`` (1001 by default), after
        what their views already put on ``sender``, and stop the hub's
        listener thread (if any).

        Without ``timeout`` it returns at once: the closes are started by a
        new thread, so that it takes no lock and waits for nothing here. That
        makes it safe in a signal handler (see
        :meth:`install_sigterm_handler`), which may have interrupted a thread
        holding any lock. With ``timeout`` it closes in the calling thread
        and waits up to ``timeout`` seconds for the connections to end, cuts
        TCP of those still open, and returns whether all ended in time.

        Raises:
            ValueError: ``code`` may not be sent in a close frame, or
                ``reason`` is longer than 123 bytes of UTF-8.
        """
        if not isinstance(code, int) or not is_sendable_code(code):
            raise ValueError(f"close code {code!r} may not be sent in a close frame")
        if not isinstance(reason, str) or len(reason.encode()) > 123:
            raise ValueError("close reason must be a str of at most 123 bytes of UTF-8")
        connections = self._stats.open_connections()
        hub = self._hub
        if timeout is None:
            _in_new_thread(lambda: _close(connections, hub, code, reason))
            return True
        _close(connections, hub, code, reason)
        deadline = time.monotonic() + timeout
        all_done = True
        for connection in connections:
            if not connection.wait_closed(max(0.0, deadline - time.monotonic())):
                connection.abort()
                all_done = False
        return all_done

    def install_sigterm_handler(
        self, code: int = CloseCode.GOING_AWAY, grace_period: float = 5.0
    ) -> None:
        """On SIGTERM, close every connection with ``code``, then run the
        handler that was installed before: gunicorn's, which starts the
        graceful shutdown. Call it in the main thread, e.g. from gunicorn's
        ``post_worker_init`` hook: ``worker_exit`` runs too late, after the
        graceful timeout.

        Where the handler before was the default one, which ends the process
        at once (the werkzeug development server, a plain script), the
        process first waits up to ``grace_period`` seconds for the
        connections to end (their close frames sent, the peers' answers
        read), then ends by SIGTERM as it would have.

        Raises:
            ValueError: ``code`` may not be sent in a close frame, or
                ``grace_period`` is not a number of seconds >= 0.
        """
        if not isinstance(code, int) or not is_sendable_code(code):
            raise ValueError(f"close code {code!r} may not be sent in a close frame")
        if (
            not isinstance(grace_period, (int, float))
            or isinstance(grace_period, bool)
            or not grace_period >= 0
        ):
            raise ValueError(f"grace_period must be seconds >= 0, not {grace_period!r}")
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: Any) -> None:
            connections = self._stats.open_connections()
            self.close_all(code)
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                # Only the close_all thread sends the close frames: ending
                # the process now would cut them all (1006).
                _wait_done(connections, grace_period)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.raise_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_sigterm)

    def track(self, connection: Connection, endpoint: str) -> None:
        """Add ``connection``, of view ``endpoint``, to the registry (the
        library calls it once the connection is admitted, before its 101)."""
        self._stats.opened(connection, endpoint)

    def untrack(self, connection: Connection) -> None:
        """Remove ``connection`` from the registry and count it as closed
        (the library calls it when the connection is done); idempotent."""
        self._stats.closed(connection)

    def record_error(self, error: BaseException) -> None:
        """Count ``error``, put on a connection's ``errors``, in
        :meth:`stats` (the library calls it)."""
        self._stats.record_error(error)

    def _count_refusal(self, response: Response) -> Response:
        """``after_request``: count an upgrade request to a socket view
        answered with an HTTP error, whatever refused it (the handshake, a
        limit, an access check in ``before_request`` or a decorator,
        routing: 405 for a method other than GET). An upgrade request to
        any other URL is not a refused handshake: a client could make the
        figures count whatever it likes."""
        if (
            response.status_code >= 400
            and request.headers.get("Upgrade", "").lower() == "websocket"
            and _aimed_at_socket_view()
        ):
            self._stats.record_rejection(response.status_code)
        return response


def _config_int(config: Any, key: str, default: int, minimum: int) -> int:
    """The integer config value ``key`` (``default`` if unset).

    Raises:
        ValueError: It is not an int >= ``minimum``.
    """
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an int >= {minimum}, not {value!r}")
    return int(value)


def _wait_done(connections: Sequence[Connection], timeout: float) -> None:
    """Wait up to ``timeout`` seconds in all for ``connections`` to end."""
    deadline = time.monotonic() + timeout
    for connection in connections:
        if not connection.wait_closed(max(0.0, deadline - time.monotonic())):
            return


def _aimed_at_socket_view() -> bool:
    """Whether the current request's URL is a socket view's: its rule's
    view, or, when routing refused the request (a method other than GET),
    the socket view a GET upgrade to that URL would reach."""
    app = current_app
    rule = request.url_rule
    if rule is not None:
        return is_socket_view(app.view_functions.get(rule.endpoint))
    try:
        adapter = app.url_map.bind_to_environ(request.environ)
        endpoint, _ = adapter.match(method="GET", websocket=True)
    except HTTPException:
        return False
    return is_socket_view(app.view_functions.get(endpoint))


def _close(connections: Sequence[Connection], hub: Hub | None, code: int, reason: str) -> None:
    for connection in connections:
        connection.close(code, reason)
    if hub is not None:
        try:
            hub.close()
        except Exception:
            logger.error("close_all: stopping the hub failed", exc_info=True)


def _in_new_thread(work: Callable[[], None]) -> None:
    """Run ``work`` in a new thread; safe in a signal handler.

    ``threading.Thread.start()`` takes ``threading``'s own lock, which the
    thread a signal interrupted may hold (gunicorn's main thread starts pool
    threads): there it would deadlock. ``_thread.start_new_thread`` takes no
    lock of Python code, so a first thread is started with it and starts the
    real one, waiting, if need be, for that lock to be released.
    """

    def start() -> None:
        try:
            # daemon given, so that Thread() does not call current_thread(),
            # which would register this thread (unknown to `threading`) for
            # good.
            thread = threading.Thread(
                target=work, name="flask-sockets-channels close_all", daemon=True
            )
            thread.start()
        except RuntimeError:  # no thread can be started: do it here
            work()

    try:
        _thread.start_new_thread(start, ())
    except RuntimeError:
        work()


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
