"""The socket side of a connection's write path: the :class:`~.writer.Wire`
its :class:`~.writer.Sender` writes through — frames serialised by the
engine, non-blocking and bounded sends, and what a failed write or a lost writer
thread does to the connection.

:class:`Writing` is a base of :class:`~.connection.Connection` (after
:class:`~.reader.Reading`), holding the state only the write path keeps; a
base class, not an object of its own, for the same reason as ``Reading``
(an idle connection is kept by the thousand).
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Any

from . import engine
from .engine import Outgoing, State
from .exceptions import CloseCode, ConnectionClosedError, SocketsError, WriteTimeout
from .keepalive import scheduler, vanished
from .options import LOG_LEVEL_DEBUG, LOG_LEVEL_ERROR, Options
from .options import seconds as to_seconds
from .reader import Reading
from .writer import send_all, send_nowait

__all__ = ["HEARTBEAT", "CloseFrame", "Writing"]


class CloseFrame:
    """``sender``'s last item after a normal close: the close frame."""

    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason


#: ``Options.heartbeat``'s empty text message (not counted as a message).
HEARTBEAT = Outgoing(True, b"")


class Writing(Reading):
    """The write path's socket side of a connection (see the module's
    docstring); the rest of the state it uses is the connection's."""

    __slots__ = (
        "_flush_due",
        "_send_slice",
        "_write_error",
        "_write_wait",
        "bytes_out",
        "messages_out",
    )

    #: Frames are held back on ``sender`` until then (monotonic time).
    _flush_due: float | None
    #: How often a blocked writer looks at its progress (a sign of life).
    _send_slice: float
    #: A failure of the write path, for the reader to report as it ends.
    _write_error: SocketsError | None
    _write_wait: float | None
    #: How many data messages were sent.
    messages_out: int
    #: The payload bytes of the data messages sent.
    bytes_out: int

    if TYPE_CHECKING:  # set and defined by Connection

        def abort(self) -> None: ...
        def tick(self, now: float) -> float | None: ...
        def _shutdown(self, how: int) -> None: ...

    def __init__(self, options: Options) -> None:
        super().__init__(options.rate_limit)
        self._write_wait = to_seconds(options.write_wait)
        pong_wait = to_seconds(options.pong_wait)
        self._send_slice = min(1.0, pong_wait / 4) if pong_wait else 1.0
        self._write_error = None
        self._flush_due = None
        self.messages_out = self.bytes_out = 0

    def serialize(self, item: Any) -> bytes | None:
        """The frame bytes for ``item``; ``None`` once closing. The caller
        holds ``sender.mutex``, which orders every frame we send.

        A data frame is built without ``_protocol_lock``: the reader may hold
        it for a whole read's parsing, and the view would wait for it on
        every message. The state is read once: a close frame the reader is
        producing meanwhile still reaches the socket after this frame, since
        it goes through ``sender.mutex`` too.
        """
        if isinstance(item, CloseFrame):
            with self._protocol_lock:
                if self._protocol.state is not State.OPEN:
                    return None
                self._set_close_code(item.code, item.reason)
                self._protocol.send_close(item.code, item.reason)
                self._closing_started()
                data = self._protocol.data_to_send()
            return data[0] if len(data) == 1 else b"".join(data)
        if self._protocol.state is not State.OPEN:
            return None
        if item is not HEARTBEAT:
            self.messages_out += 1
            self.bytes_out += len(item.data)
        return engine.data_frame(item, self._protocol)

    def more_to_read(self) -> bool:
        """Whether messages wait on ``receiver`` (see ``writer.HOLD_FRAMES``)."""
        return bool(self.receiver.queue)  # unlocked: a hint

    def flush_by(self, due: float) -> None:
        """Have the timer write what ``sender`` holds back by ``due``.

        Race-free with :meth:`tick`: it clears ``_flush_due`` before it
        flushes, so a frame held before this call sees either that flush or
        a new schedule.
        """
        current = self._flush_due
        if current is None or due < current:
            self._flush_due = due
            if not self._ended:
                try:
                    scheduler.schedule(self, due)
                except RuntimeError:  # no timer thread: write them now
                    self._flush_due = None
                    self.sender.flush()

    def _flush(self) -> None:
        # receiver's get is about to wait: the view answered what it read.
        if self._flush_due is not None:
            self.sender.flush()

    def send_nowait(self, data: bytes | memoryview) -> int:
        """Send what the kernel takes at once. Raises ``OSError``."""
        return send_nowait(self._sock, data)

    def send_within(self, data: bytes | memoryview, started: float) -> bool:
        """Send all of ``data`` by ``started + write_wait``; on a timeout or
        a socket error, report it, cut TCP and return False."""
        deadline = None if self._write_wait is None else started + self._write_wait
        try:
            send_all(self._sock, data, deadline, self._send_slice, self._drained)
        except socket.timeout as exc:
            if exc.errno is not None:  # the kernel's ETIMEDOUT (3.10+: the same class)
                self.write_failed(exc)
            else:
                self._write_broke(WriteTimeout(f"write blocked for {self._write_wait} s"), exc)
            return False
        except OSError as exc:
            self.write_failed(exc)
            return False
        return True

    def _drained(self) -> None:
        # A writer thread runs only while the kernel's buffer is full: its
        # progress means the peer is reading. Alive.
        self._last_alive = time.monotonic()

    def write_failed(self, exc: OSError) -> None:
        """A write failed: the peer reset the connection or is gone.

        The verdict is the reader's: what the peer sent before it left (often
        a close frame: a browser tab closing) is still readable, then EOF or
        the reset, which the reader reports as 1006. Until then the
        connection reads as closed, so a ``put`` raising ``Closed`` is a
        normal end for the view.
        """
        dead = vanished(exc, to_seconds(self.options.pong_wait))
        if dead is not None:  # no close frame can reach the peer
            self._write_broke(dead, exc)
            return
        self.options.log(LOG_LEVEL_DEBUG, "%s: write failed: %s", self.name, exc)
        self.sender.close(discard=True)
        self._stop_receiving()  # a paused reader reads on, to the EOF or reset

    def writer_lost(self, exc: Exception) -> None:
        """The write path lost its writer thread: none could start (the
        process is at its thread limit) or it failed (a bug). The rest of a
        frame the kernel did not take is lost, so the connection cannot go
        on: it is marked closed (1006) and cut; the reader reports the error
        as it ends. Called with ``sender.mutex`` held: it takes no lock a
        sender's caller may hold, runs no callback.
        """
        if isinstance(exc, RuntimeError):
            reason = f"no writer thread: {exc}"
            self.options.log(
                LOG_LEVEL_ERROR, "%s: cannot start a writer thread (%s); cutting TCP",
                self.name, exc,
            )  # fmt: skip
        else:
            reason = f"writer thread failed: {exc}"
            self.options.log(
                LOG_LEVEL_ERROR, "%s: the writer thread failed; cutting TCP", self.name,
                exc_info=True,
            )  # fmt: skip
        error = ConnectionClosedError(CloseCode.ABNORMAL_CLOSURE, reason)
        error.__cause__ = exc
        self._write_error = error
        self._set_close_code(CloseCode.ABNORMAL_CLOSURE, "")
        self.abort()

    def _write_broke(self, error: SocketsError, cause: BaseException) -> None:
        # The connection is marked closed (1006) and the error reported
        # before anything can raise Closed in the view.
        self._set_close_code(CloseCode.ABNORMAL_CLOSURE, "")
        if not self._ended and self._close_request is None:
            error.__cause__ = cause
            self._report_failure(error)
        self.sender.close(discard=True)
        self.abort()

    def shutdown_write(self) -> None:
        """Half-close TCP: the engine's EOF after a close frame."""
        self._shutdown(socket.SHUT_WR)
