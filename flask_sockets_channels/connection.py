"""One WebSocket connection over a connected socket: the threading core.

Server-agnostic: it is given a socket whose opening handshake is done (or
about to be written) and the engine's protocol in the OPEN state (see
:mod:`.engine`), and works the same over a werkzeug, gunicorn or
``socket.socketpair()`` socket.

Threads (named after the connection):

* ``reader`` (:mod:`.reader`) reads the socket, feeds the engine, puts
  complete messages on ``receiver`` and hands the engine's replies (pongs,
  close frames) to the write path. It owns the end of the connection: its
  ``finally`` runs :meth:`Connection._teardown`.
* ``writer`` exists only while a backlog does (:mod:`.writer`): most frames
  are written by the thread that has them, without waiting.
* The process-wide timer thread (:mod:`.keepalive`) sends pings, declares
  silent peers dead and cuts closing handshakes that take too long.

Locks: ``sender.mutex`` guards the write path (the queue, what is being
written); ``_protocol_lock`` guards the engine. Order: ``sender.mutex``, then
``_protocol_lock``; no socket call is made under either.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import socket
import struct
import threading
import time
from typing import Any, Callable

from . import engine
from .assembler import Raw
from .channels import Channel, Closed
from .controls import Disconnect, Done, check_close
from .engine import Outgoing, Protocol, State
from .exceptions import (
    CloseCode,
    ConnectionClosedError,
    KeepaliveTimeout,
    SocketsError,
    WriteTimeout,
)
from .keepalive import scheduler
from .options import LOG_LEVEL_DEBUG, LOG_LEVEL_ERROR, LOG_LEVEL_INFO, LOG_LEVEL_WARNING, Options
from .options import seconds as to_seconds
from .reader import Reading, Receiver
from .writer import Sender, send_all, send_nowait

__all__ = ["Codec", "Connection"]

#: How many errors ``errors`` holds; more are logged and dropped.
ERRORS_BUFFER = 64
_numbers = itertools.count(1)


class Codec:
    """How a mode turns items into frames and messages into items.

    ``encode`` runs in the thread that calls ``sender.put`` and raises
    ``TypeError`` for an item of the wrong type. ``decode`` runs in the
    reader; :class:`ProtocolError` fails the connection with its code, any
    other exception is a :class:`DecodeError` for that message.
    """

    def encode(self, item: Any) -> Outgoing:
        raise NotImplementedError

    def decode(self, message: Raw) -> Any:
        raise NotImplementedError


class _CloseFrame:
    """``sender``'s last item after a normal close: the close frame."""

    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason


class Connection(Reading):
    """A WebSocket connection handed to a view.

    Attributes:
        receiver: Inbound messages, in order; ends once closed and drained.
        sender: Outbound messages; ``put`` waits only for room in the buffer
            and raises ``Closed`` once the connection is closing.
        done: Set once the connection is fully closed and its threads ended.
        remote_addr: The client's address.
        path: The request path.
        subprotocol: The negotiated subprotocol, or ``None``.
        name: A name for logs and threads.
        messages_in: How many data messages were received.
        messages_out: How many data messages were sent.
        bytes_in: The payload bytes of the data messages received.
        bytes_out: The payload bytes of the data messages sent.
    """

    # Slots: an idle connection is kept by the thousand. __dict__ stays (built
    # only if an app sets an attribute of its own), and so do weak references.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_close_code",
        "_close_deadline",
        "_close_reason",
        "_close_request",
        "_close_timeout",
        "_codec",
        "_disconnect",
        "_ended",
        "_errors",
        "_failed",
        "_flush_due",
        "_next_ping",
        "_on_done",
        "_on_error",
        "_ping_period",
        "_pong_wait",
        "_protocol",
        "_protocol_lock",
        "_reader",
        "_send_slice",
        "_sock",
        "_state",
        "_write_error",
        "_write_wait",
        "bytes_out",
        "done",
        "messages_out",
        "name",
        "options",
        "path",
        "receiver",
        "remote_addr",
        "sender",
        "subprotocol",
    )

    def __init__(
        self,
        sock: socket.socket,
        protocol: Protocol,
        options: Options,
        codec: Codec,
        *,
        remote_addr: str | None = None,
        path: str = "/",
        subprotocol: str | None = None,
    ) -> None:
        super().__init__(options.rate_limit)
        self.options = options
        self._write_wait = to_seconds(options.write_wait)
        self._ping_period = to_seconds(options.ping_period)
        self._pong_wait = to_seconds(options.pong_wait)
        self._close_timeout = to_seconds(options.close_timeout)
        # How often a blocked writer looks at its progress (a sign of life).
        self._send_slice = min(1.0, self._pong_wait / 4) if self._pong_wait else 1.0
        self.remote_addr = remote_addr
        self.path = path
        self.subprotocol = subprotocol
        self.name = f"ws-{next(_numbers)} {remote_addr or '?'} {path}"
        self.messages_out = self.bytes_out = 0
        self._sock = sock
        self._codec = codec
        self._protocol = protocol
        self._protocol_lock = threading.Lock()
        self.receiver: Channel[Any] = Receiver(options.recv_channel_buffer, self._flush)
        self.sender: Sender = Sender(
            options.send_channel_buffer, codec.encode, self, self._slow_consumer
        )
        # errors and disconnect are built on first use (most views take
        # neither, and most connections end without an error).
        self._errors: Channel[SocketsError] | None = None
        self._disconnect: Channel[Any] | None = None
        self._state = threading.Lock()  # guards the close bookkeeping below
        self._close_request: tuple[int, str] | None = None
        self._close_code: int | None = None
        self._close_reason = ""
        self._failed = False  # a connection-ending error was reported
        self._write_error: SocketsError | None = None  # for the reader to report
        self._ended = False  # teardown has begun
        self._close_deadline: float | None = None
        self._on_done: list[Callable[[Connection], None]] = []
        self._on_error: list[Callable[[SocketsError], None]] = []
        self._next_ping = float("inf")
        self._flush_due: float | None = None  # frames are held back on sender until then
        self._reader = threading.Thread(target=self._read_loop, name=f"{self.name} reader")
        self.done: threading.Event = Done(self._reader)

    # -- public API ---------------------------------------------------------

    @property
    def errors(self) -> Channel[SocketsError]:
        """Every error of the connection, before ``done`` is set."""
        errors: Channel[SocketsError] = self._errors or self._build(
            "_errors", lambda: Channel(ERRORS_BUFFER)
        )
        return errors

    @property
    def disconnect(self) -> Channel[Any]:
        """Put a close code, or ``(code, reason)``, to close."""
        return self._disconnect or self._build("_disconnect", lambda: Disconnect(self.close))

    def _build(self, slot: str, make: Callable[[], Channel[Any]]) -> Channel[Any]:
        """The channel in ``slot``, made once by ``make``."""
        with self._state:
            channel: Channel[Any] | None = getattr(self, slot)
            if channel is None:
                channel = make()
                setattr(self, slot, channel)
            return channel

    @property
    def bytes_in(self) -> int:
        """Payload bytes of the data frames received (inflated)."""
        return self._assembler.bytes_in

    @property
    def closed(self) -> bool:
        """Whether the connection is closing or closed (no more sending)."""
        return self._close_code is not None or self.sender.closed

    @property
    def close_code(self) -> int | None:
        """The code that ended the connection: ours if we closed first, the
        peer's if it did (1005 when it sent none), 1006 if TCP died; ``None``
        while open."""
        return self._close_code

    @property
    def close_reason(self) -> str:
        """The reason that goes with :attr:`close_code`."""
        return self._close_reason

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection: messages already put on ``sender`` are sent,
        then a close frame with ``code`` and ``reason``. Never blocks; only the
        first close counts.

        Raises:
            ValueError: ``code`` may not be sent (1005, 1006, 1015, out of
                range) or ``reason`` is longer than 123 bytes of UTF-8.
        """
        check_close(code, reason)
        if self._request_close(code, reason):
            self.receiver.close()
            self.sender.close_after_queued(_CloseFrame(code, reason))

    def fail(self, error: SocketsError | None, code: int, reason: str = "") -> None:
        """Close with an error ``code``, dropping what is queued on ``sender``.

        ``error`` (if any) goes to ``errors``. Used for 1011 when the view
        raises, for keepalive timeouts, and by the hub (1008). Never blocks.

        Raises:
            ValueError: As for :meth:`close`.
        """
        check_close(code, reason)
        if error is not None:
            self._report_failure(error)
        if self._request_close(code, reason):
            self.receiver.close()
            with self.sender.mutex, self._protocol_lock:
                if self._protocol.state is State.OPEN:
                    self._set_close_code(code, reason)
                    self._protocol.send_close(code, reason)
                replies = self._protocol.data_to_send()
            self._closing_started()
            self.sender.send_control(replies, discard=True)

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until ``done`` is set; return whether it is."""
        return self.done.wait(timeout)

    def on_done(self, callback: Callable[[Connection], None]) -> None:
        """Call ``callback(self)`` when the connection ends, before ``done``
        is set (the library's registry uses it)."""
        self._on_done.append(callback)

    def on_error(self, callback: Callable[[SocketsError], None]) -> None:
        """Call ``callback(error)`` for every error put on ``errors``."""
        self._on_error.append(callback)

    def start(self, handshake_response: bytes = b"", buffered: bytes = b"") -> None:
        """Write the 101 response, then start the reader (the library calls
        it once the handshake is accepted; views never do).

        ``buffered`` holds bytes the server read past the handshake; they are
        parsed before anything read from the socket.

        Raises:
            OSError: The 101 response could not be written.
            RuntimeError: No thread could start (the process is at its
                thread limit).
        """
        # A blocking socket: reads wait for data or for shutdown(); writes
        # that may wait are bounded by SO_SNDTIMEO (see send_within), writes
        # that may not use MSG_DONTWAIT.
        if handshake_response:
            self._sock.settimeout(self._write_wait)
            self._sock.sendall(handshake_response)
        self._sock.settimeout(None)
        self.options.log(LOG_LEVEL_INFO, "%s: opened", self.name)
        self._buffered = buffered
        now = time.monotonic()
        self._last_alive = now
        if self._ping_period is not None:
            self._next_ping = now + self._ping_period
        due = self._next_due(now)
        if due is not None:
            scheduler.schedule(self, due)
        try:
            self._reader.start()
        except RuntimeError:  # no thread to read with: the timer forgets it
            scheduler.cancel(self)
            raise

    def abort(self) -> None:
        """Cut TCP at once, without a closing handshake; the threads end.

        Closing ``receiver`` wakes a reader paused on a full ``receiver``
        (a view that does not read): shutting the socket down alone would
        not, and the reader would never reach its teardown.
        """
        self._shutdown(socket.SHUT_RDWR)
        self.receiver.close()
        if self._unpause is not None:
            self._unpause.set()  # a reader waiting for the rate limit

    def _slow_consumer(self) -> None:
        self.options.log(LOG_LEVEL_WARNING, "%s: hub backlog full; closing (1008)", self.name)
        self.fail(None, CloseCode.POLICY_VIOLATION, "slow consumer")

    # -- timers (called by the scheduler's thread; never block) ---------------

    def tick(self, now: float) -> float | None:
        """Send a due ping, declare a silent peer dead, or cut a closing
        handshake that took longer than ``close_timeout``."""
        if self._ended:
            return None
        due = self._flush_due
        if due is not None and now >= due:
            self._flush_due = None
            self.sender.flush()
        if self._close_deadline is not None and now >= self._close_deadline:
            if self.sender.writing:
                # Our close frame is still behind a frame the peer is reading
                # (a stuck write ends by write_wait): its time starts later.
                self._close_deadline = now + (self._close_timeout or 0.0)
                return self._close_deadline
            self.options.log(LOG_LEVEL_DEBUG, "%s: no close from the peer in time", self.name)
            self.abort()
            return None
        if self._close_request is None:
            pong_wait = self._pong_wait
            if pong_wait is not None and not self._paused and now - self._last_alive >= pong_wait:
                self.fail(
                    KeepaliveTimeout(f"nothing received or drained within {pong_wait} s"),
                    CloseCode.INTERNAL_ERROR,
                    "keepalive timeout",
                )
            elif self._ping_period is not None and now >= self._next_ping:
                self._next_ping = now + self._ping_period
                self._send_ping()
        return self._next_due(now)

    def _next_due(self, now: float) -> float | None:
        dues = [] if self._close_deadline is None else [self._close_deadline]
        if self._flush_due is not None:
            dues.append(self._flush_due)
        if self._close_request is None:
            if self._ping_period is not None:
                dues.append(self._next_ping)
            if self._pong_wait is not None:
                dues.append((now if self._paused else self._last_alive) + self._pong_wait)
        return min(dues) if dues else None

    def _send_ping(self) -> None:
        with self.sender.mutex, self._protocol_lock:
            if self._protocol.state is not State.OPEN:
                return
            self._protocol.send_ping(struct.pack("!d", time.monotonic()))
            ping = self._protocol.data_to_send()
        self.sender.send_control(ping)

    def _closing_started(self) -> None:
        """The closing handshake began: the peer has ``close_timeout`` to
        finish it, then TCP is cut."""
        if self._close_timeout is None or self._close_deadline is not None:
            return
        self._close_deadline = time.monotonic() + self._close_timeout
        if not self._ended:
            try:
                scheduler.schedule(self, self._close_deadline)
            except RuntimeError as exc:  # nothing would bound the close: cut TCP
                self.options.log(LOG_LEVEL_ERROR, "%s: no timer thread (%s)", self.name, exc)
                self.abort()

    # -- the write path's wire (see writer.Wire) ------------------------------

    def serialize(self, item: Any) -> bytes | None:
        """The frame bytes for ``item``; ``None`` once closing. The caller
        holds ``sender.mutex``, which orders every frame we send.

        A data frame is built without ``_protocol_lock``: the reader may hold
        it for a whole read's parsing, and the view would wait for it on
        every message. The state is read once: a close frame the reader is
        producing meanwhile still reaches the socket after this frame, since
        it goes through ``sender.mutex`` too.
        """
        if isinstance(item, _CloseFrame):
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
        self.messages_out += 1
        self.bytes_out += len(item.data)
        return engine.data_frame(item, self._protocol)

    def more_to_read(self) -> bool:
        """Whether messages wait on ``receiver`` (see ``writer.HOLD_FRAMES``)."""
        return bool(self.receiver.queue)

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
        self.options.log(LOG_LEVEL_DEBUG, "%s: write failed: %s", self.name, exc)
        self.sender.close(discard=True)
        self.receiver.close()  # a reader paused on a full receiver reads on

    def writer_unavailable(self, exc: RuntimeError) -> None:
        """No writer thread could start (the process is at its thread
        limit): the rest of a frame the kernel did not take is lost, so the
        connection cannot go on. It is marked closed (1006) and cut; the
        reader reports the error as it ends. Called with ``sender.mutex``
        held: it takes no lock a sender's caller may hold, runs no callback.
        """
        self.options.log(
            LOG_LEVEL_ERROR, "%s: cannot start a writer thread (%s); cutting TCP", self.name, exc
        )
        error = ConnectionClosedError(CloseCode.ABNORMAL_CLOSURE, f"no writer thread: {exc}")
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

    # -- closing bookkeeping ----------------------------------------------------

    def _request_close(self, code: int, reason: str) -> bool:
        """Record the close to send; False if one was already recorded."""
        with self._state:
            if self._close_request is not None:
                return False
            self._close_request = (code, reason)
            return True

    def _set_close_code(self, code: int, reason: str) -> None:
        with self._state:
            if self._close_code is None:
                self._close_code, self._close_reason = int(code), reason

    def _report_failure(self, error: SocketsError) -> None:
        """Report the error that ends the connection; only the first counts."""
        with self._state:
            if self._failed:
                return
            self._failed = True
        self._report(error, LOG_LEVEL_WARNING)

    def _report(self, error: SocketsError, level: int) -> None:
        self.options.log(level, "%s: %s: %s", self.name, type(error).__name__, error)
        for callback in self._on_error:
            callback(error)
        try:
            self.errors.put_nowait(error)
        except queue.Full:
            self.options.log(LOG_LEVEL_WARNING, "%s: errors channel full, dropped", self.name)
        except Closed:
            pass  # the connection has ended: nobody reads errors any more

    def _shutdown(self, how: int) -> None:
        with contextlib.suppress(OSError):  # already shut down, or reset
            self._sock.shutdown(how)

    def _teardown(self) -> None:
        """End the connection; run once, by the reader as it ends.

        Every thread ends: the reader is the caller; a writer thread is woken
        from ``send`` by the socket's shutdown and stops at once
        (``sender.shutdown`` joins it); the timer forgets the connection.
        Blocked views are woken by closing ``receiver`` and ``sender``.
        ``done`` is set last, after ``errors`` holds every error.
        """
        self._ended = True
        self._shutdown(socket.SHUT_RDWR)
        self.receiver.close()
        self.sender.shutdown()
        scheduler.cancel(self)
        self._set_close_code(CloseCode.ABNORMAL_CLOSURE, "")
        self.errors.close()
        self.options.log(LOG_LEVEL_DEBUG, "%s: done (%s)", self.name, self._close_code)
        for callback in self._on_done:
            try:
                callback(self)
            except Exception:
                self.options.log(
                    LOG_LEVEL_ERROR, "%s: on_done callback failed", self.name, exc_info=True
                )
        self._on_done.clear()
        self._on_error.clear()
        self.done.set()
