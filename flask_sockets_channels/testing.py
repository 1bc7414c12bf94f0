"""Test WebSocket routes in-process, as ``app.test_client()`` tests HTTP ones.

::

    from flask_sockets_channels.testing import WebSocketTestClient

    def test_echo(app):
        client = WebSocketTestClient(app)
        with client.connect("/echo") as ws:
            ws.send("hello")
            assert ws.receive() == "hello"

It drives the real handshake and protocol, without a network port: the
request is a WSGI environ whose ``werkzeug.socket`` is one end of a
``socket.socketpair()``; the app runs in a background thread that plays the
server's request thread (the view runs there); the test speaks WebSocket on
the other end with websockets' sans-I/O client (``ClientProtocol``), whose
handshake request becomes the environ's headers.

Every wait is bounded by the client's ``timeout``: :data:`DEFAULT_TIMEOUT`
(5 s) unless given. The client itself runs no thread: frames are read only
inside :meth:`WebSocketSession.receive` and :meth:`WebSocketSession.close`,
which answer the server's pings and close frame there, so nothing of the
client outlives the session. The request thread is joined when the session
closes; if it does not end in time, closing raises ``AssertionError``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Union

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHeader
from websockets.exceptions import ProtocolError as EngineProtocolError
from websockets.frames import Frame, Opcode
from websockets.protocol import SEND_EOF, State
from websockets.typing import Subprotocol
from websockets.uri import WebSocketURI
from werkzeug.datastructures import Headers
from werkzeug.test import EnvironBuilder

from .exceptions import (
    NORMAL_CODES,
    CloseCode,
    ConnectionClosed,
    ConnectionClosedError,
    SocketsError,
)

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["DEFAULT_TIMEOUT", "HandshakeRejected", "WebSocketSession", "WebSocketTestClient"]

#: Seconds that ``receive``, the handshake and the end of a session wait by
#: default (``WebSocketTestClient(app, timeout=...)`` changes it).
DEFAULT_TIMEOUT = 5.0

HeadersArg = Union[Headers, Mapping[str, str], Iterable[tuple[str, str]]]
QueryArg = Union[Mapping[str, str], str]

_RECV_SIZE = 1 << 16
_DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)


class HandshakeRejected(SocketsError):
    """The app answered the upgrade request with a plain HTTP response.

    Attributes:
        status: The HTTP status code, e.g. 400, 403, 405 or 426.
        body: The response body, decoded as UTF-8.
        headers: The response headers.
    """

    def __init__(self, status: int, body: str, headers: Headers) -> None:
        self.status = status
        self.body = body
        self.headers = headers
        super().__init__(f"handshake rejected with {status}: {body.strip()}")


class WebSocketTestClient:
    """Opens in-process WebSocket sessions with a Flask app.

    Works with or without ``Sockets(app)``, with blueprints and app
    factories, and with ``app.config["TESTING"] = True`` (an exception that
    Flask propagates from a request is re-raised in the test).

    Args:
        app: The Flask application.
        timeout: Default bound, in seconds, of every wait: a ``receive``
            without its own timeout, the handshake, and the wait for the
            server side to finish when a session closes.
            :data:`DEFAULT_TIMEOUT` (5 s) by default.
    """

    def __init__(self, app: Flask, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.app = app
        self.timeout = timeout

    def connect(
        self,
        path: str,
        headers: HeadersArg | None = None,
        subprotocols: Iterable[str] | None = None,
        query_string: QueryArg | None = None,
        *,
        method: str = "GET",
    ) -> WebSocketSession:
        """Open a WebSocket session with the app, handshake included.

        Use the result as a context manager: leaving the ``with`` block
        closes the session (see :meth:`WebSocketSession.close`).

        Args:
            path: The URL path, optionally with a query string.
            headers: Extra request headers (``Origin``, ``Cookie``, ...).
                They replace the handshake's own headers of the same name,
                which is how a test sends a bad ``Sec-WebSocket-Key`` or
                ``Sec-WebSocket-Version``.
            subprotocols: Subprotocols offered, in order of preference.
            query_string: A dict or an encoded string.
            method: The request method; anything but ``GET`` gets a 405.

        Blocks until the app has answered the handshake, at most
        ``timeout`` seconds.

        Raises:
            HandshakeRejected: The app answered with an HTTP error (400, 403,
                405, 426, ...) instead of 101.
            TimeoutError: The app did not answer within ``timeout`` (its
                request thread, a daemon, is left waiting).
            ConnectionClosedError: The socket closed during the handshake
                (1006), or the 101 response is invalid (1002).
            ValueError: ``query_string`` is given and ``path`` has one too.
            Exception: Whatever the app raised, when Flask propagates it
                (``TESTING`` is set).
        """
        builder = EnvironBuilder(
            path=path,
            method=method,
            headers=Headers(headers) if headers is not None else None,
            query_string=query_string,
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
        )
        uri = WebSocketURI(
            secure=False,
            host=builder.host,
            port=80,
            path=builder.path,
            query=builder.query_string,
        )
        offered = [Subprotocol(name) for name in subprotocols or ()]
        # No limit on inbound messages, and no extensions offered: the client
        # sees what the app sends, as the app sent it.
        protocol = ClientProtocol(uri, subprotocols=offered or None, max_size=None)
        request = protocol.connect()
        for name, value in request.headers.raw_items():
            if name not in builder.headers:  # the caller's headers win
                builder.headers.add(name, value)
        environ = builder.get_environ()
        environ["REQUEST_URI"] = environ["RAW_URI"] = request.path
        client_sock, server_sock = socket.socketpair()
        environ["werkzeug.socket"] = server_sock
        session = WebSocketSession(client_sock, protocol, self.timeout)
        session._start_server(self.app, environ, server_sock)
        session._open()
        return session


class WebSocketSession:
    """The client's end of one WebSocket session, made by
    :meth:`WebSocketTestClient.connect`.

    Not thread-safe: use it from one thread. Frames are read only inside
    :meth:`receive` and :meth:`close`; that is also when the server's pings
    and close frame are answered.

    Attributes:
        subprotocol: The subprotocol the server chose, or ``None``.
    """

    def __init__(self, sock: socket.socket, protocol: ClientProtocol, timeout: float) -> None:
        self.subprotocol: str | None = None
        self._sock = sock
        self._protocol = protocol
        self._timeout = timeout
        self._messages: deque[str | bytes] = deque()
        # The frames of the message being received: its type, its payloads.
        self._fragments_text = False
        self._fragments: list[bytes] = []
        self._close_code: int | None = None
        self._close_reason = ""
        self._eof = False
        self._finished = False
        # Filled in by the request thread, read once it has been joined.
        self._status: str | None = None
        self._response_headers = Headers()
        self._body = b""
        self._server_error: BaseException | None = None
        self._server: threading.Thread | None = None

    # -- public API ---------------------------------------------------------

    @property
    def close_code(self) -> int | None:
        """The code of the server's close frame (its reply, when the client
        closed first); 1005 if it had none, 1006 if the socket closed without
        one; ``None`` until a close frame was read."""
        return self._close_code

    @property
    def close_reason(self) -> str:
        """The reason that goes with :attr:`close_code`."""
        return self._close_reason

    def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a text frame for ``str``, a binary frame for bytes-like.

        Blocks until the frame is written, at most ``timeout`` seconds.

        Raises:
            TypeError: ``message`` is neither ``str`` nor bytes-like.
            ConnectionClosed: The session is closing or closed.
            TimeoutError: The server did not read for ``timeout`` seconds.
        """
        if not isinstance(message, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"send() takes str or bytes-like, not {type(message).__name__}")
        protocol = self._protocol
        if self._finished or protocol.state is not State.OPEN:
            raise self._closed()
        if isinstance(message, str):
            protocol.send_text(message.encode())
        else:
            protocol.send_binary(bytes(message))
        self._flush()

    def send_json(self, value: Any) -> None:
        """Send ``value`` as JSON in a text frame; as :meth:`send`.

        Raises:
            TypeError: ``value`` is not JSON-serialisable.
            ConnectionClosed: The session is closing or closed.
            TimeoutError: The server did not read for ``timeout`` seconds.
        """
        self.send(json.dumps(value))

    def receive(self, timeout: float | None = None) -> str | bytes:
        """The next message: ``str`` for a text frame, ``bytes`` for binary.

        Blocks until a message arrives, at most ``timeout`` seconds (the
        client's ``timeout``, :data:`DEFAULT_TIMEOUT` by default). Messages
        that arrived before the server's close frame are returned first.

        Raises:
            ConnectionClosed: The server closed the session (``code`` and
                ``reason`` are its close frame's; a
                :class:`ConnectionClosedError` for a code other than 1000,
                1001 or 1005, and for 1006 when the socket closed without a
                close frame).
            TimeoutError: No message within ``timeout``.
        """
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        while not self._messages:
            if self._close_code is not None or self._finished:
                raise self._closed()
            self._read(deadline)
        return self._messages.popleft()

    def receive_json(self, timeout: float | None = None) -> Any:
        """The next message, decoded from JSON; as :meth:`receive`.

        Raises:
            ValueError: The message is not JSON.
            ConnectionClosed: The server closed the session.
            TimeoutError: No message within ``timeout``.
        """
        return json.loads(self.receive(timeout))

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the session and wait for the server side to finish.

        Sends a close frame with ``code`` and ``reason`` unless the closing
        handshake is already over, reads (buffering any messages) until the
        server's close frame, then waits for the request thread (the view) to
        end. Each wait is bounded by the client's ``timeout``. Idempotent.

        Raises:
            ValueError: ``code`` may not be sent in a close frame (1005, 1006,
                1015, below 1000, ...) or ``reason`` is over 123 bytes; the
                session is left open.
            AssertionError: The request thread did not end in time: the view
                does not return once its connection is closed.
            Exception: Whatever the app raised, when Flask propagates it.
        """
        if self._finished:
            return
        protocol = self._protocol
        if protocol.state is State.OPEN:
            try:
                protocol.send_close(code, reason)
            except EngineProtocolError as exc:  # nothing was queued
                raise ValueError(f"cannot close with {code} {reason!r}: {exc}") from exc
        self._finished = True
        deadline = time.monotonic() + self._timeout
        try:
            self._flush()
            while self._close_code is None:
                self._read(deadline)
        except (OSError, TimeoutError, ConnectionClosed):
            pass  # the server is gone or silent: the join below tells which
        finally:
            ended = self._finish(deadline)
        if self._server_error is not None:
            raise self._server_error
        if not ended:
            raise AssertionError(
                f"the server's request thread did not end within {self._timeout} s of "
                "the session closing: the view does not return once its connection is closed"
            )

    def __enter__(self) -> WebSocketSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- the server side ----------------------------------------------------

    def _start_server(
        self, app: Flask, environ: dict[str, Any], server_sock: socket.socket
    ) -> None:
        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            self._status = status
            self._response_headers = Headers(headers)
            return lambda data: None

        def serve() -> None:
            # Owns: the server's end of the socket pair, and the request. Ends
            # when the app returns: a refusal at once, a session once the view
            # returned and its connection is done.
            try:
                response = app(environ, start_response)
                try:
                    self._body = b"".join(response)
                finally:
                    close = getattr(response, "close", None)
                    if close is not None:
                        close()
            except BaseException as exc:  # re-raised in the test's thread
                self._server_error = exc
            finally:
                # As a server drops the connection: a refused handshake wrote
                # nothing, so the client sees EOF where it waits for the 101.
                server_sock.close()

        name = f"websocket test request {environ['PATH_INFO']}"
        self._server = threading.Thread(target=serve, name=name, daemon=True)
        self._server.start()

    def _open(self) -> None:
        """Read the 101 response, or learn why there is none."""
        protocol = self._protocol
        deadline = time.monotonic() + self._timeout
        try:
            while protocol.state is State.CONNECTING and protocol.handshake_exc is None:
                data = self._recv(deadline)
                if not data:
                    break  # EOF: the app answered without a 101, or wrote half of one
                protocol.receive_data(data)
        except TimeoutError:
            self._finished = True
            self._finish(deadline)  # no second wait: the app is stuck before its answer
            error = f"the app did not answer the handshake within {self._timeout} s"
            raise TimeoutError(error) from None
        error_exc = protocol.handshake_exc
        if error_exc is not None:
            self._abandon()
            error = f"bad 101 response: {_describe_handshake_error(error_exc)}"
            raise ConnectionClosedError(CloseCode.PROTOCOL_ERROR, error) from error_exc
        if protocol.state is not State.CONNECTING:
            self.subprotocol = protocol.subprotocol
            # Frames that came with the 101 are already parsed. If a reply to
            # them cannot be written, the server is gone: receive tells.
            with contextlib.suppress(ConnectionClosed):
                self._handle(protocol.events_received(), opened=True)
            return
        # EOF without a 101: the refusal is read as the app returned it to
        # its server (status, headers, body), not re-parsed from the wire.
        self._abandon()
        status = int((self._status or "0").split()[0])
        if status != 101:
            body = self._body.decode("utf-8", "replace")
            raise HandshakeRejected(status, body, self._response_headers)
        error = "socket closed during the handshake"
        raise ConnectionClosedError(CloseCode.ABNORMAL_CLOSURE, error)

    def _abandon(self) -> None:
        """End a session that never opened; re-raise the app's error."""
        self._finished = True
        if not self._finish(time.monotonic() + self._timeout):
            raise AssertionError(f"the app's request thread did not end within {self._timeout} s")
        if self._server_error is not None:
            raise self._server_error

    def _finish(self, deadline: float) -> bool:
        """Close our end (the server reads EOF) and join the request thread,
        until ``deadline``; return whether it ended."""
        with contextlib.suppress(OSError):  # the server reset it first
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        assert self._server is not None
        self._server.join(max(0.0, deadline - time.monotonic()))
        return not self._server.is_alive()

    # -- reading ------------------------------------------------------------

    def _read(self, deadline: float) -> None:
        """Read once and handle what arrived.

        Raises:
            TimeoutError: Nothing arrived before ``deadline``.
            ConnectionClosed: A pong or close frame could not be written.
        """
        protocol = self._protocol
        opened = protocol.state is State.OPEN
        data = b"" if self._eof else self._recv(deadline)
        if data:
            protocol.receive_data(data)
        else:
            self._eof = True
            protocol.receive_eof()
        self._handle(protocol.events_received(), opened)
        if self._eof and self._close_code is None:
            self._set_close(CloseCode.ABNORMAL_CLOSURE, "")

    def _handle(self, events: Iterable[object], opened: bool) -> None:
        """Take the messages and the close frame out of ``events``, then
        write what the protocol queued in reply: pongs, the echo of the
        server's close frame, the close frame of a failure.

        Args:
            events: What the protocol parsed from the data just received.
            opened: Whether the connection was open before that data, so
                that a close frame the protocol queued is its failure's.
        """
        protocol = self._protocol
        for event in events:
            if not isinstance(event, Frame):
                continue  # the 101 response
            if event.opcode is Opcode.CLOSE:
                close = protocol.close_rcvd
                assert close is not None
                self._set_close(close.code, close.reason)
            elif event.opcode in _DATA_OPCODES and not self._take_frame(event):
                break  # failed with 1007: the protocol discards the rest
        failure = protocol.close_sent
        if self._close_code is None and opened and failure is not None:
            # The server broke the protocol (1002, 1007, ...): the client
            # failed the connection with that code, as a close nobody sent.
            self._set_close(failure.code, failure.reason)
        self._flush()
        if self._close_code is not None:
            # The closing handshake is over: the server reads EOF next.
            self._shutdown_write()

    def _take_frame(self, frame: Frame) -> bool:
        """Add a data frame to the message being received; queue the message
        once complete. Return ``False`` if it is text and not UTF-8 (the
        connection is then failed with 1007)."""
        if frame.opcode is not Opcode.CONT:
            self._fragments_text = frame.opcode is Opcode.TEXT
        self._fragments.append(bytes(frame.data))
        if not frame.fin:
            return True
        data, self._fragments = b"".join(self._fragments), []
        if not self._fragments_text:
            self._messages.append(data)
            return True
        try:
            self._messages.append(data.decode())
        except UnicodeDecodeError as exc:
            reason = f"invalid UTF-8: {exc.reason} at position {exc.start}"
            self._protocol.fail(CloseCode.INVALID_FRAME_PAYLOAD_DATA, reason)
            return False
        return True

    def _flush(self) -> None:
        """Write what the protocol queued; its end-of-stream marker shuts
        our side down."""
        for data in self._protocol.data_to_send():
            if data == SEND_EOF:
                self._shutdown_write()
            else:
                self._write(data)

    def _recv(self, deadline: float) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no message from the server in time")
        self._sock.settimeout(remaining)
        try:
            return self._sock.recv(_RECV_SIZE)
        except socket.timeout as exc:  # not a TimeoutError before Python 3.10
            raise TimeoutError("no message from the server in time") from exc
        except OSError:
            return b""  # reset: as EOF

    def _write(self, data: bytes) -> None:
        self._sock.settimeout(self._timeout)
        try:
            self._sock.sendall(data)
        except socket.timeout as exc:
            raise TimeoutError(f"the server did not read for {self._timeout} s") from exc
        except OSError as exc:
            if self._close_code is None:
                self._set_close(CloseCode.ABNORMAL_CLOSURE, "")
            raise self._closed() from exc

    def _shutdown_write(self) -> None:
        with contextlib.suppress(OSError):  # already shut down, or reset
            self._sock.shutdown(socket.SHUT_WR)

    def _set_close(self, code: int, reason: str) -> None:
        self._close_code, self._close_reason = int(code), reason

    def _closed(self) -> ConnectionClosed:
        """The exception for a session that is closed."""
        code = CloseCode.ABNORMAL_CLOSURE if self._close_code is None else self._close_code
        if code in NORMAL_CODES or code == CloseCode.NO_STATUS_RCVD:
            return ConnectionClosed(code, self._close_reason)
        return ConnectionClosedError(code, self._close_reason)


def _describe_handshake_error(exc: Exception) -> str:
    """Why the client refused the server's 101 response."""
    if isinstance(exc, InvalidHeader) and exc.name == "Sec-WebSocket-Accept" and exc.value:
        return f"Sec-WebSocket-Accept {exc.value!r} is not the accept token of the key sent"
    return str(exc)
