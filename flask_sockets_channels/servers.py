"""What differs between the WSGI servers we run under.

The only module that knows where werkzeug and gunicorn keep the client's
socket, where they keep bytes they read past the request headers, and how a
request that became a WebSocket session must end.

How a session ends: the connection shuts the socket down both ways before the
view's request returns. The server then tries to write the response returned
by :func:`finished_response`, gets ``EPIPE`` and drops the connection quietly
(werkzeug treats it as a dropped client; gunicorn logs it at debug level), so
no stray HTTP bytes follow the WebSocket frames on the wire.
"""

from __future__ import annotations

import contextlib
import io
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Response

__all__ = ["ServerSocket", "UnsupportedServer", "finished_response", "take_socket"]


class UnsupportedServer(RuntimeError):
    """The WSGI server does not expose the client's socket."""


@dataclass
class ServerSocket:
    """The client's socket, taken over from the WSGI server.

    Attributes:
        sock: The connected socket.
        buffered: Bytes the client sent after the handshake that the server
            had already read into its own buffer; they are the first bytes of
            the WebSocket stream.
        server: ``"werkzeug"`` or ``"gunicorn"``.
    """

    sock: socket.socket
    buffered: bytes
    server: str


def take_socket(environ: Mapping[str, Any]) -> ServerSocket:
    """Take the client's socket out of a WSGI ``environ``.

    Raises:
        UnsupportedServer: The server is neither werkzeug nor gunicorn.
    """
    if "werkzeug.socket" in environ:
        sock, server = environ["werkzeug.socket"], "werkzeug"
        buffered = _werkzeug_buffered(sock, environ["wsgi.input"])
    elif "gunicorn.socket" in environ:
        sock, server = environ["gunicorn.socket"], "gunicorn"
        buffered = _gunicorn_buffered(environ["wsgi.input"])
    else:
        raise UnsupportedServer(
            "this WSGI server does not expose the client's socket; run under the "
            "werkzeug development server or gunicorn with -k gthread"
        )
    # werkzeug leaves Nagle on; small frames would wait for ACKs. (Not TCP:
    # a Unix socket behind a proxy.)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ServerSocket(sock, buffered, server)


def finished_response() -> Response:
    """The response a socket view returns once its session is over.

    The socket is shut down by then, so the server's attempt to write it
    fails with ``EPIPE`` and nothing reaches the wire; its status appears in
    the server's access log.
    """
    return Response(status=101)


def _werkzeug_buffered(sock: socket.socket, rfile: Any) -> bytes:
    """Bytes werkzeug's buffered reader holds past the request headers."""
    rfile = getattr(rfile, "_rfile", rfile)  # DechunkedInput wraps the reader
    read1 = getattr(rfile, "read1", None)
    if read1 is None:
        return b""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        # Non-blocking: returns what is buffered (or readable), never waits.
        buffered = bytes(read1(1 << 16) or b"")
    except OSError:
        buffered = b""
    finally:
        sock.settimeout(timeout)
    if isinstance(rfile, io.BufferedReader):
        # The reader keeps its 8 KiB buffer for as long as the request runs,
        # which is the whole session, and werkzeug reads through it once
        # more after the view returns, so it must stay usable. Its
        # constructor, run again on the same socket with a 1-byte buffer,
        # frees the 8 KiB: 4 KiB of RSS per idle connection.
        io.BufferedReader.__init__(rfile, rfile.raw, 1)
    return buffered


def _gunicorn_buffered(body: Any) -> bytes:
    """Bytes gunicorn's request parser read ahead past the request headers."""
    unreader = getattr(getattr(body, "reader", None), "unreader", None)
    if unreader is None:
        return b""
    take = getattr(unreader, "take_buffered", None)
    if take is not None:
        return bytes(take())
    data = unreader.buf.getvalue()  # gunicorn < 24 has no take_buffered()
    unreader.buf.seek(0)
    unreader.buf.truncate()
    return bytes(data)
