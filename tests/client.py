"""The ``websockets`` sync client every test connects with.

On websockets ≥ 14 it is ``websockets.sync.client.connect`` unchanged. On 13.x
(the ``min`` environment) the client's handshake has a race a fast server
trips: when the 101 response, a message and a close frame arrive in one read,
the client's reader thread parses the close before the handshake checks the
protocol's state; the handshake then takes "not OPEN" for a refused upgrade,
waits ``close_timeout`` for its reader (blocked handing over the message),
closes the socket and returns a connection whose ``recv`` raises
``ConnectionClosedOK`` for a message that did arrive. A view that sends and
returns at once (``/only-sender``) hits it about once in 200 connections.
websockets 14 decides on ``handshake_exc`` alone; so does the connection
class below.

websockets 13 also hands each message over unbuffered: its reader waits
until ``recv`` takes the message before it reads on. A test that closes
without reading every message (a "ready" it did not need, a broadcast)
left the reader blocked on one, and ``close`` waited its whole
``close_timeout`` (10 s) for the server's close reply behind it. The
connection class below discards what is not read once it closes, as
websockets 14 does.
"""

from __future__ import annotations

import threading
from typing import Any

import websockets
from websockets.http11 import USER_AGENT
from websockets.protocol import CONNECTING
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as _connect

__all__ = ["connect"]

_MAJOR = int(websockets.__version__.split(".")[0])


class _HandshakeFixedConnection(ClientConnection):
    """websockets 13's client connection, with its handshake deciding
    success on ``handshake_exc``, not on a state the reader may have moved
    on from."""

    def handshake(
        self,
        additional_headers: Any = None,
        user_agent_header: str | None = USER_AGENT,
        timeout: float | None = None,
    ) -> None:
        with self.send_context(expected_state=CONNECTING):
            self.request = self.protocol.connect()
            if additional_headers is not None:
                self.request.headers.update(additional_headers)
            if user_agent_header is not None:
                self.request.headers["User-Agent"] = user_agent_header
            self.protocol.send_request(self.request)
        received = self.response_rcvd.wait(timeout)
        failure: BaseException | None = None
        if not received:
            failure = TimeoutError("timed out during handshake")
        elif self.response is None:
            failure = ConnectionError("connection closed during handshake")
        elif self.protocol.handshake_exc is not None:
            failure = self.protocol.handshake_exc
        if failure is not None:
            self.close_socket()
            self.recv_events_thread.join()
            raise failure

    def close(self, code: int = 1000, reason: str = "") -> None:
        discarding = threading.Thread(target=self._discard_unread, name="unread", daemon=True)
        discarding.start()
        try:
            super().close(code, reason)
        finally:
            self.close_socket()  # closes the assembler: the discarding ends
            discarding.join()

    def _discard_unread(self) -> None:
        try:
            while True:
                self.recv_messages.get()
        except (EOFError, RuntimeError):  # closed; or a recv() is running
            pass


def connect(uri: str, **kwargs: Any) -> ClientConnection:
    """``websockets.sync.client.connect``, on websockets 13 with the
    handshake race fixed (see the module's docstring)."""
    if _MAJOR < 14:
        kwargs.setdefault("create_connection", _HandshakeFixedConnection)
    return _connect(uri, **kwargs)
