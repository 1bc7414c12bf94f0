"""Run one socket view: handshake, take the socket, start the connection,
call the view with its channels, close, and end the request cleanly."""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from flask import Flask, current_app, request
from flask.signals import request_started
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.routing.exceptions import WebsocketMismatch

from . import handshake, limits, servers
from .channels import Closed
from .connection import Codec, Connection
from .options import LOG_LEVEL_ERROR, LOG_LEVEL_INFO, LOG_LEVEL_WARNING, Options, resolve_options

if TYPE_CHECKING:
    from flask.typing import ResponseReturnValue

__all__ = [
    "EXTENSION_KEY",
    "INJECTABLE",
    "SocketView",
    "check_options",
    "is_socket_view",
    "socket_view",
]

#: Where the ``Sockets`` extension keeps itself in ``app.extensions``.
EXTENSION_KEY = "sockets_channels"
#: Keyword arguments a socket view may ask for by naming them.
INJECTABLE = ("receiver", "sender", "errors", "disconnect", "done", "connection")

_MISROUTED_HINT = (
    "socket view %r is on a plain (non-WebSocket) rule, so werkzeug answers WebSocket "
    "upgrades to it with 400 before it runs. Fix: add websocket=True to its route, "
    "or set up Sockets(app) / sockets.init_app(app)"
)


@dataclass
class SocketView:
    """What a socket decorator knows about the view it wraps."""

    view: Callable[..., Any]
    codec: Codec
    options: Options | None
    overrides: Mapping[str, Any]
    inject: tuple[str, ...]
    _per_app: weakref.WeakKeyDictionary[Flask, Options] = field(
        default_factory=weakref.WeakKeyDictionary
    )
    _hinted: weakref.WeakSet[Flask] = field(default_factory=weakref.WeakSet)

    def options_for(self, app: Flask) -> Options:
        """The options in force for ``app``: overrides > options > config."""
        options = self._per_app.get(app)
        if options is None:
            options = resolve_options(app.config, self.options, **self.overrides)
            self._per_app[app] = options
        return options

    def hint_misrouted(self, app: Flask, options: Options) -> None:
        """Log, once per app, that this view sits on a plain rule."""
        if app not in self._hinted:
            self._hinted.add(app)
            options.log(LOG_LEVEL_WARNING, _MISROUTED_HINT, self.view.__name__)


def socket_view(
    view: Callable[..., Any], codec: Codec, options: Options | None, overrides: Mapping[str, Any]
) -> Callable[..., ResponseReturnValue]:
    """Wrap ``view`` into a Flask view that runs a WebSocket session.

    Raises:
        ValueError: The options are invalid.
        TypeError: ``options`` is not an ``Options``, or an override names no
            option.
    """
    check_options(options, overrides)
    spec = SocketView(view, codec, options, dict(overrides), _injected_names(view))
    _watch_misrouted_upgrades()

    @functools.wraps(view)
    def endpoint(**url_values: Any) -> ResponseReturnValue:
        return run(spec, url_values)

    endpoint.__sockets_channels__ = spec  # type: ignore[attr-defined]
    endpoint.methods = ["GET"]  # type: ignore[attr-defined]
    endpoint.provide_automatic_options = False  # type: ignore[attr-defined]
    return endpoint


def check_options(options: object, overrides: Mapping[str, Any]) -> None:
    """Fail at decoration for invalid options.

    Raises:
        ValueError: A value is invalid.
        TypeError: ``options`` is not an ``Options``, or an override names no
            option.
    """
    if options is not None and not isinstance(options, Options):
        raise TypeError(f"options must be an Options instance, not {type(options).__name__}")
    resolve_options({}, options, **overrides)


def is_socket_view(function: object) -> bool:
    """Whether ``function`` was made by one of the socket decorators."""
    return isinstance(getattr(function, "__sockets_channels__", None), SocketView)


def run(spec: SocketView, url_values: dict[str, Any]) -> ResponseReturnValue:
    """Serve the current request as a WebSocket session of ``spec.view``."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    options = spec.options_for(app)
    opened = _open(spec, app, options)
    if opened is None:
        return servers.finished_response()
    connection, slot = opened
    # The place under the connection limits is held while the view runs,
    # not only while the connection is open: the limits bound threads.
    try:
        _serve(spec, options, connection, url_values)
    finally:
        slot.release()
    return servers.finished_response()


def _serve(
    spec: SocketView, options: Options, connection: Connection, url_values: dict[str, Any]
) -> None:
    """Call the view, close the connection as its end says, and wait until
    the connection is done."""
    try:
        spec.view(**url_values, **_injected(spec, connection))
    except Exception as exc:
        # `Closed` from this connection's channels is how a view learns the
        # connection ended (a put after the peer left): a normal end.
        if not (isinstance(exc, Closed) and connection.closed):
            options.log(
                LOG_LEVEL_ERROR,
                "%s: view raised; closing with 1011",
                connection.name,
                exc_info=True,
            )
            connection.fail(None, 1011, "internal error")
    except BaseException:
        connection.abort()
        raise
    else:
        connection.close()
    # Every path to `done` is bounded once the view has returned (see
    # Connection._teardown); only write_wait=None can make it wait for ever.
    connection.wait_closed()


def _open(spec: SocketView, app: Flask, options: Options) -> tuple[Connection, limits.Slot] | None:
    """Upgrade the request and start its connection, with its place under
    the limits; ``None`` when it could not start after the 101 (the
    connection is cut and logged, the place given back).

    A function of its own so that what only the upgrade needs (the request
    as parsed, the 101's bytes) is freed before the view runs for as long as
    the session lasts.
    """
    rule = request.url_rule
    if rule is not None and not rule.websocket:
        spec.hint_misrouted(app, options)
    accepted = handshake.accept(request, options)
    # Past a connection limit: 503 / 429 here, while an HTTP response can
    # still be sent; the place is given back once the view has returned and
    # the connection is done.
    slot = limits.reserve(app, options)
    try:
        taken = servers.take_socket(request.environ)
    except servers.UnsupportedServer as exc:
        slot.release()
        options.log(LOG_LEVEL_ERROR, "%s", exc)
        raise InternalServerError(str(exc)) from exc
    connection = Connection(
        taken.sock,
        accepted.protocol,
        options,
        spec.codec,
        remote_addr=request.remote_addr,
        path=request.path,
        subprotocol=accepted.subprotocol,
    )
    slot.attach(connection, app.extensions.get(EXTENSION_KEY))
    try:
        connection.start(accepted.response, taken.buffered)
    except Exception as exc:
        # After the socket was taken, no HTTP response may follow: whatever
        # failed, cut the connection and end the request quietly.
        level = LOG_LEVEL_INFO if isinstance(exc, OSError) else LOG_LEVEL_ERROR
        traceback = level == LOG_LEVEL_ERROR
        options.log(level, "%s: could not start: %s", connection.name, exc, exc_info=traceback)
        connection.abort()
        slot.release()
        return None
    return connection, slot


def _injected(spec: SocketView, connection: Connection) -> dict[str, Any]:
    """The keyword arguments the view asks for."""
    return {
        name: connection if name == "connection" else getattr(connection, name)
        for name in spec.inject
    }


def _injected_names(view: Callable[..., Any]) -> tuple[str, ...]:
    parameters = inspect.signature(view).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return INJECTABLE
    names = {p.name for p in parameters}
    return tuple(name for name in INJECTABLE if name in names)


@functools.cache
def _watch_misrouted_upgrades() -> None:
    """Connect, once, the signal receiver that explains a 400 given by
    werkzeug to an upgrade request aimed at a socket view on a plain rule."""
    request_started.connect(_hint_misrouted_upgrade, weak=False)


def _hint_misrouted_upgrade(sender: Flask, **extra: Any) -> None:
    if not isinstance(request.routing_exception, WebsocketMismatch):
        return
    try:
        endpoint, _ = sender.url_map.bind_to_environ(request.environ).match(websocket=False)
    except HTTPException:
        return
    view = sender.view_functions.get(endpoint)
    if is_socket_view(view):
        spec: SocketView = view.__sockets_channels__  # type: ignore[union-attr]
        spec.hint_misrouted(sender, spec.options_for(sender))
