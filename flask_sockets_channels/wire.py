"""The socket side of a connection's write path.

:class:`SocketWire` is the :class:`~.sender.Wire` a connection's
:class:`~.sender.Sender` writes through: frames serialised by the engine,
non-blocking and bounded sends on the socket, and what a failed write or a
lost writer thread means. What that does to the connection (its close
state, its timers, cutting TCP) it tells the connection through
:class:`WireEvents`, the narrow interface the connection implements.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
import typing
from typing import TYPE_CHECKING, Any, Callable

from . import engine
from .engine import Outgoing, State
from .exceptions import CloseCode, ConnectionClosedError, SocketsError, WriteTimeout
from .keepalive import vanished
from .options import LOG_LEVEL_DEBUG, LOG_LEVEL_ERROR, Options
from .options import seconds as to_seconds

if TYPE_CHECKING:
    from .channels import Channel
    from .engine import Protocol

__all__ = [
    "HEARTBEAT",
    "CloseFrame",
    "SocketWire",
    "WireEvents",
    "send_all",
    "set_receive_timeout",
]


class CloseFrame:
    """``sender``'s last item after a normal close: the close frame."""

    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason


#: ``Options.heartbeat``'s empty text message (not counted as a message).
HEARTBEAT = Outgoing(True, b"")


class WireEvents(typing.Protocol):
    """What :class:`SocketWire` tells its connection."""

    def close_sent(self, code: int, reason: str) -> None:
        """Our close frame is serialised: the closing handshake began.
        Called with the sender's mutex and the engine's lock held."""

    def flush_by(self, due: float) -> None:
        """Have :meth:`~.sender.Sender.flush` called by monotonic time
        ``due`` (frames are held back)."""

    def peer_alive(self) -> None:
        """A blocked write made progress: the peer is reading."""

    def write_broke(self, error: SocketsError) -> None:
        """No frame can reach the peer any more (a write timed out, or the
        peer vanished): the connection ends abnormally, cut at once."""

    def write_refused(self) -> None:
        """A write failed (the peer reset or left); what it sent before is
        still to be read, and the reader reports the end."""

    def writer_lost(self, error: SocketsError) -> None:
        """The write path lost its writer thread; part of a frame is lost.
        Called with the sender's mutex held: no callback may run."""


class SocketWire:
    """The socket side of a connection's write path (see the module's
    docstring)."""

    # An idle connection is kept by the thousand: no __dict__.
    __slots__ = (
        "_events",
        "_options",
        "_protocol",
        "_protocol_lock",
        "_receiver",
        "_send_slice",
        "_sock",
        "_write_wait",
        "bytes_out",
        "messages_out",
        "name",
    )

    def __init__(
        self,
        sock: socket.socket,
        protocol: Protocol,
        protocol_lock: threading.Lock,
        receiver: Channel[Any],
        options: Options,
        name: str,
        events: WireEvents,
    ) -> None:
        self._sock = sock
        self._protocol = protocol
        self._protocol_lock = protocol_lock
        self._receiver = receiver
        self._options = options
        self.name = name
        self._events = events
        self._write_wait = to_seconds(options.write_wait)
        pong_wait = to_seconds(options.pong_wait)
        #: How often a blocked writer looks at its progress (a sign of life).
        self._send_slice = min(1.0, pong_wait / 4) if pong_wait else 1.0
        #: How many data messages were sent, and their payload bytes.
        self.messages_out = self.bytes_out = 0

    def serialize(self, item: Any) -> bytes | None:
        """The frame bytes for ``item``; ``None`` once closing. The caller
        holds ``sender.mutex``, which orders every frame we send.

        A data frame is built without the engine's lock: the reader may hold
        it for a whole read's parsing, and the view would wait for it on
        every message. The state is read once: a close frame the reader is
        producing meanwhile still reaches the socket after this frame, since
        it goes through ``sender.mutex`` too.
        """
        protocol = self._protocol
        if isinstance(item, CloseFrame):
            with self._protocol_lock:
                if protocol.state is not State.OPEN:
                    return None
                protocol.send_close(item.code, item.reason)
                self._events.close_sent(item.code, item.reason)
                data = protocol.data_to_send()
            return data[0] if len(data) == 1 else b"".join(data)
        if protocol.state is not State.OPEN:
            return None
        if item is not HEARTBEAT:
            self.messages_out += 1
            self.bytes_out += len(item.data)
        return engine.data_frame(item, protocol)

    def more_to_read(self) -> bool:
        """Whether messages wait on ``receiver`` (see ``sender.HOLD_FRAMES``)."""
        return bool(self._receiver.queue)  # unlocked: a hint

    def flush_by(self, due: float) -> None:
        """Have the connection's timer write what ``sender`` holds back by
        ``due``."""
        self._events.flush_by(due)

    def send_nowait(self, data: bytes | memoryview) -> int:
        """Send what the kernel takes at once; 0 where ``MSG_DONTWAIT`` does
        not exist (then the writer thread sends everything). Raises
        ``OSError``."""
        if not _NO_WAIT:
            return 0
        try:
            return self._sock.send(data, _NO_WAIT)
        except BlockingIOError:
            return 0

    def send_within(self, data: bytes | memoryview, started: float) -> bool:
        """Send all of ``data`` by ``started + write_wait``; on a timeout or
        a socket error, report it, cut TCP and return False."""
        deadline = None if self._write_wait is None else started + self._write_wait
        try:
            send_all(self._sock, data, deadline, self._send_slice, self._events.peer_alive)
        except socket.timeout as exc:
            if exc.errno is not None:  # the kernel's ETIMEDOUT (3.10+: the same class)
                self.write_failed(exc)
            else:
                error = WriteTimeout(f"write blocked for {self._write_wait} s")
                error.__cause__ = exc
                self._events.write_broke(error)
            return False
        except OSError as exc:
            self.write_failed(exc)
            return False
        return True

    def write_failed(self, exc: OSError) -> None:
        """A write failed: the peer reset the connection or is gone.

        The verdict is the reader's: what the peer sent before it left (often
        a close frame: a browser tab closing) is still readable, then EOF or
        the reset, which the reader reports as 1006. Until then the
        connection reads as closed, so a ``put`` raising ``Closed`` is a
        normal end for the view.
        """
        dead = vanished(exc, to_seconds(self._options.pong_wait))
        if dead is not None:  # no close frame can reach the peer
            dead.__cause__ = exc
            self._events.write_broke(dead)
            return
        self._options.log(LOG_LEVEL_DEBUG, "%s: write failed: %s", self.name, exc)
        self._events.write_refused()

    def writer_lost(self, exc: Exception) -> None:
        """The write path lost its writer thread: none could start (the
        process is at its thread limit) or it failed (a bug). The rest of a
        frame the kernel did not take is lost, so the connection cannot go
        on. Called with ``sender.mutex`` held."""
        if isinstance(exc, RuntimeError):
            reason = f"no writer thread: {exc}"
            self._options.log(
                LOG_LEVEL_ERROR, "%s: cannot start a writer thread (%s); cutting TCP",
                self.name, exc,
            )  # fmt: skip
        else:
            reason = f"writer thread failed: {exc}"
            self._options.log(
                LOG_LEVEL_ERROR, "%s: the writer thread failed; cutting TCP", self.name,
                exc_info=True,
            )  # fmt: skip
        error = ConnectionClosedError(CloseCode.ABNORMAL_CLOSURE, reason)
        error.__cause__ = exc
        self._events.writer_lost(error)

    def shutdown_write(self) -> None:
        """Half-close TCP: the engine's EOF after a close frame."""
        with contextlib.suppress(OSError):  # already shut down, or reset
            self._sock.shutdown(socket.SHUT_WR)


# -- socket writes -------------------------------------------------------------------

_NO_WAIT = getattr(socket, "MSG_DONTWAIT", 0)


def send_all(
    sock: socket.socket,
    data: bytes | memoryview,
    deadline: float | None,
    slice_wait: float,
    drained: Callable[[], None],
) -> None:
    """Send all of ``data`` on a blocking socket by ``deadline`` (monotonic
    time; ``None``: no deadline), calling ``drained()`` at each progress.

    A blocking send returns only once all of its data is queued or its
    ``SO_SNDTIMEO`` expires, so the timeout is at most ``slice_wait``: the
    loop sees the progress a slow reader makes.

    Raises:
        socket.timeout: The deadline passed.
        OSError: The socket failed.
    """
    view = memoryview(data)
    while view:
        wait = slice_wait
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("write_wait expired")
            wait = min(wait, left)
        _set_send_timeout(sock, wait)
        try:
            sent = sock.send(view)
        except BlockingIOError:  # SO_SNDTIMEO expired with nothing sent
            sent = 0
        if sent:
            drained()
        view = view[sent:]


def _set_send_timeout(sock: socket.socket, seconds: float) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(seconds))


def set_receive_timeout(sock: socket.socket, seconds: float) -> None:
    """Make a blocking ``recv`` on ``sock`` raise ``BlockingIOError`` after
    ``seconds`` without input (``SO_RCVTIMEO``; sends are not affected)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(seconds))


def _timeval(seconds: float) -> bytes:
    """A ``struct timeval``; never zero, which means no timeout."""
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1e6) or (0 if whole else 1))
