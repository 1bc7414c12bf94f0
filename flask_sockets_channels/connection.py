"""One WebSocket connection over a connected socket: the threading core.

Server-agnostic: it is given a socket whose opening handshake is done (or
about to be written) and the engine's protocol in the OPEN state (see
:mod:`.engine`), and works the same over a werkzeug, gunicorn or
``socket.socketpair()`` socket.

Threads (named after the connection):

* What reads runs the connection's :class:`~.reader.Reader`: it reads the
  socket, feeds the engine, puts complete messages on ``receiver`` and hands
  the engine's replies (pongs, close frames) to the write path; the one
  that meets the end of the connection runs :meth:`Connection._teardown`.
  With parking (``idle_reader_timeout``, the default where there is epoll)
  no thread reads an idle socket: the process's poller (:mod:`.parking`)
  watches it. A view whose ``get`` is about to wait reads it in its own
  thread, for up to :data:`READ_IN_VIEW` seconds and again whenever the
  poller wakes that ``get`` (:mod:`.receiver`), so a request-response
  exchange costs no thread hand-off; a worker of the poller reads what
  comes while no ``get`` waits. With ``idle_reader_timeout=None``, a
  ``reader`` thread does it all for the connection's life.
* ``writer`` exists only while a backlog does (:mod:`.sender`): most frames
  are written by the thread that has them, without waiting; the socket side
  of that path (serialising, sending, failed writes) is the connection's
  :class:`~.wire.SocketWire`.

The parts talk to the connection through narrow interfaces it implements
(:class:`~.reader.ReadEvents`, :class:`~.wire.WireEvents`); its close
bookkeeping has one owner, a :class:`~.closing.CloseState`.
* The process-wide timer thread (:mod:`.keepalive`) sends pings, declares
  silent peers dead and cuts closing handshakes that take too long.

Locks: ``sender.mutex`` guards the write path (the queue, what is being
written); ``_protocol_lock`` guards the engine. Order: ``sender.mutex``, then
``_protocol_lock``; no socket call is made under either.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import struct
import threading
import time
from typing import Any, Callable, cast

from . import parking
from .assembler import Raw
from .channels import Channel, build_slot_once
from .closing import CloseState
from .controls import Disconnect, Done, check_close
from .engine import Outgoing, Protocol, State
from .exceptions import (
    NORMAL_CODES,
    CloseCode,
    ConnectionClosedError,
    DecodeError,
    KeepaliveTimeout,
    SocketsError,
)
from .keepalive import input_waiting, limit_unacknowledged, scheduler, vanished
from .options import LOG_LEVEL_DEBUG, LOG_LEVEL_ERROR, LOG_LEVEL_INFO, LOG_LEVEL_WARNING, Options
from .options import seconds as to_seconds
from .reader import InView, Reader
from .receiver import Receiver
from .reporting import Reports
from .sender import Sender
from .wire import HEARTBEAT, CloseFrame, SocketWire, set_receive_timeout

__all__ = ["Codec", "Connection"]

_numbers = itertools.count(1)
#: Seconds a view whose ``get`` is about to wait reads a parked socket in its
#: own thread before it parks it again, for the poller to wake the ``get``
#: at the next input: long enough for a peer's answer on a busy network,
#: short enough that ``receiver.close()`` soon wakes a waiting ``get``.
READ_IN_VIEW = 0.05


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


class Connection:
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
        "_close_timeout",
        "_closing",
        "_codec",
        "_disconnect",
        "_flush_due",
        "_next_ping",
        "_on_done",
        "_ping_period",
        "_pong_wait",
        "_protocol",
        "_protocol_lock",
        "_reader",
        "_reads_in_view",
        "_reports",
        "_sock",
        "_thread",
        "_wire",
        "_write_error",
        "done",
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
        self.options = options
        self._ping_period = to_seconds(options.ping_period)
        self._pong_wait = to_seconds(options.pong_wait)
        self._close_timeout = to_seconds(options.close_timeout)
        self.remote_addr = remote_addr
        self.path = path
        self.subprotocol = subprotocol
        self.name = f"ws-{next(_numbers)} {remote_addr or '?'} {path}"
        self._sock = sock
        self._codec = codec
        self._protocol = protocol
        self._protocol_lock = threading.Lock()
        events = _PartsEvents(self)
        self.receiver: Receiver = Receiver(options.recv_channel_buffer, events)
        # Set at start when the socket parks (not with a rate limit, whose
        # waits are a reader's).
        self._reads_in_view = False
        self._wire = SocketWire(
            sock, protocol, self._protocol_lock, self.receiver, options, self.name, events
        )
        self.sender: Sender = Sender(
            options.send_channel_buffer, codec.encode, self._wire, self._slow_consumer
        )
        self._reader = Reader(
            sock, protocol, self._protocol_lock, self.receiver, self.sender, codec.decode,
            options, events,
        )  # fmt: skip
        self._closing = CloseState()
        #: Frames are held back on ``sender`` until then (monotonic time).
        self._flush_due: float | None = None
        #: A failure of the write path, for the reader to report as it ends.
        self._write_error: SocketsError | None = None
        self._reports = Reports(self.name, options)
        self._disconnect: Channel[Any] | None = None  # built on first use
        self._on_done: list[Callable[[Connection], None]] = []
        self._next_ping = float("inf")
        # A daemon, whatever the request thread is: the threading module
        # scans every live non-daemon thread each time one starts or ends
        # (CPython's _maintain_shutdown_locks), which made opening and
        # closing 10,000 connections quadratic under gunicorn, whose pool
        # threads are non-daemons. The request thread, not this one, is
        # what keeps a connection's process alive.
        self._thread = threading.Thread(
            target=self._reader.read_loop, name=f"{self.name} reader", daemon=True
        )
        self.done: threading.Event = Done(self._thread)

    # -- public API ---------------------------------------------------------

    @property
    def errors(self) -> Channel[SocketsError]:
        """Every error of the connection, before ``done`` is set."""
        return self._reports.errors

    @property
    def disconnect(self) -> Channel[Any]:
        """Put a close code, or ``(code, reason)``, to close."""
        disconnect: Channel[Any] = self._disconnect or build_slot_once(
            self, "_disconnect", lambda: Disconnect(self.close)
        )
        return disconnect

    @property
    def messages_in(self) -> int:
        """How many data messages were received."""
        return self._reader.messages_in

    @property
    def messages_out(self) -> int:
        """How many data messages were sent."""
        return self._wire.messages_out

    @property
    def bytes_in(self) -> int:
        """Payload bytes of the data frames received (inflated)."""
        return self._reader.bytes_in

    @property
    def bytes_out(self) -> int:
        """Payload bytes of the data frames sent."""
        return self._wire.bytes_out

    @property
    def closed(self) -> bool:
        """Whether the connection is closing or closed (no more sending)."""
        return self._closing.code is not None or self.sender.closed

    @property
    def close_code(self) -> int | None:
        """The code that ended the connection: ours if we closed first, the
        peer's if it did (1005 when it sent none), 1006 if TCP died; ``None``
        while open."""
        return self._closing.code

    @property
    def close_reason(self) -> str:
        """The reason that goes with :attr:`close_code`."""
        return self._closing.reason

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection: messages already put on ``sender`` are sent,
        then a close frame with ``code`` and ``reason``. Never blocks; only the
        first close counts.

        Raises:
            ValueError: ``code`` may not be sent (1005, 1006, 1015, out of
                range) or ``reason`` is longer than 123 bytes of UTF-8.
        """
        check_close(code, reason)
        if self._closing.ask(code, reason):
            self._stop_reading()
            self.sender.close_after_queued(CloseFrame(code, reason))

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
        if self._closing.ask(code, reason):
            self._stop_reading()
            with self.sender.mutex, self._protocol_lock:
                if self._protocol.state is State.OPEN:
                    self._closing.set_code(code, reason)
                    self._protocol.send_close(code, reason)
                replies = self._protocol.data_to_send()
            self._closing_started()
            self.sender.send_control(replies, discard=True)

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until ``done`` is set; return whether it is."""
        return self.done.wait(timeout)

    def on_done(self, callback: Callable[[Connection], None]) -> None:
        """Call ``callback(self)`` when the connection ends, before ``done``
        is set, in the library thread that met the end (the reader, or a
        worker of the poller). An exception it raises is logged (at ERROR,
        with its traceback) and changes nothing else."""
        self._on_done.append(callback)

    def on_error(self, callback: Callable[[SocketsError], None]) -> None:
        """Call ``callback(error)`` for every error put on ``errors``, in
        the thread that met it (the reader, a worker of the poller or the
        view's own in ``receiver.get``, the writer, the timer). It must
        not block; an exception it raises is logged (at ERROR, with its
        traceback, a few times per minute at most) and changes nothing
        else."""
        self._reports.on_error(callback)

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
            self._sock.settimeout(to_seconds(self.options.write_wait))
            self._sock.sendall(handshake_response)
        self._sock.settimeout(None)
        limit_unacknowledged(self._sock, self._pong_wait)
        idle_timeout = to_seconds(self.options.idle_reader_timeout)
        if idle_timeout is not None and parking.available():
            set_receive_timeout(self._sock, idle_timeout)
        self.options.log(LOG_LEVEL_INFO, "%s: opened", self.name)
        now = time.monotonic()
        self._reader.last_alive = now
        if self._ping_period is not None:
            self._next_ping = now + self._ping_period
        due = self._next_due(now)
        if due is not None:
            scheduler.schedule(self, due)
        self._reader.buffered = buffered
        if idle_timeout is not None and self.options.rate_limit is None:
            self._reads_in_view = True
        if idle_timeout is not None and not buffered and self._idle():
            cast(Done, self.done).follow(None)  # a worker reads at the first input
            return
        try:
            self._thread.start()
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
        self._stop_reading()

    def _slow_consumer(self) -> None:
        self.options.log(LOG_LEVEL_WARNING, "%s: hub backlog full; closing (1008)", self.name)
        self.fail(None, CloseCode.POLICY_VIOLATION, "slow consumer")

    # -- timers (called by the scheduler's thread; never block) ---------------

    def tick(self, now: float) -> float | None:
        """Send a due ping, declare a silent peer dead, or cut a closing
        handshake that took longer than ``close_timeout``."""
        closing = self._closing
        if closing.ended:
            return None
        due = self._flush_due
        if due is not None and now >= due:
            self._flush_due = None
            self.sender.flush()
        if closing.deadline is not None and now >= closing.deadline:
            if self.sender.writing:
                # Our close frame is still behind a frame the peer is reading
                # (a stuck write ends by write_wait): its time starts later.
                closing.deadline = now + (self._close_timeout or 0.0)
                return closing.deadline
            self.options.log(LOG_LEVEL_DEBUG, "%s: no close from the peer in time", self.name)
            self.abort()
            return None
        if closing.request is None:
            if self._peer_silent(now):
                self.fail(
                    KeepaliveTimeout(f"nothing received or drained within {self._pong_wait} s"),
                    CloseCode.INTERNAL_ERROR,
                    "keepalive timeout",
                )
            elif self._ping_period is not None and now >= self._next_ping:
                self._next_ping = now + self._ping_period
                self._send_ping()
                if self.options.heartbeat:
                    self.sender.send_if_idle(HEARTBEAT)
        return self._next_due(now)

    def _peer_silent(self, now: float) -> bool:
        """Nothing came from the peer for ``pong_wait``. Bytes waiting
        unread in the kernel count as having come: our reading lags, not the
        peer (the reader's clock is set to ``now``)."""
        pong_wait = self._pong_wait
        reader = self._reader
        if pong_wait is None or reader.paused or now - reader.last_alive < pong_wait:
            return False
        if input_waiting(self._sock):
            reader.last_alive = now
            return False
        return True

    def _next_due(self, now: float) -> float | None:
        closing = self._closing
        dues = [] if closing.deadline is None else [closing.deadline]
        if self._flush_due is not None:
            dues.append(self._flush_due)
        if closing.request is None:
            if self._ping_period is not None:
                dues.append(self._next_ping)
            if self._pong_wait is not None:
                reader = self._reader
                dues.append((now if reader.paused else reader.last_alive) + self._pong_wait)
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
        closing = self._closing
        if self._close_timeout is None or closing.deadline is not None:
            return
        closing.deadline = time.monotonic() + self._close_timeout
        if not closing.ended:
            try:
                scheduler.schedule(self, closing.deadline)
            except RuntimeError as exc:  # nothing would bound the close: cut TCP
                self.options.log(LOG_LEVEL_ERROR, "%s: no timer thread (%s)", self.name, exc)
                self.abort()

    def _flush_by(self, due: float) -> None:
        """Have the timer write what ``sender`` holds back by ``due``.

        Race-free with :meth:`tick`: it clears ``_flush_due`` before it
        flushes, so a frame held before this call sees either that flush or
        a new schedule.
        """
        current = self._flush_due
        if current is None or due < current:
            self._flush_due = due
            if not self._closing.ended:
                try:
                    scheduler.schedule(self, due)
                except RuntimeError:  # no timer thread: write them now
                    self._flush_due = None
                    self.sender.flush()

    def _flush(self) -> None:
        # receiver's get is about to wait: the view answered what it read.
        if self._flush_due is not None:
            self.sender.flush()

    # -- what the reader tells (ReadEvents; in the reader thread) ---------------

    def _close_received(self, code: int, reason: str, by_peer: bool) -> None:
        """A close frame arrived: the peer's, or its reply to ours."""
        self._closing_started()
        if by_peer:
            self._closing.set_code(code, reason)
            self._closing.ask(code, reason)
            if code not in NORMAL_CODES and code != CloseCode.NO_STATUS_RCVD:
                self._report_failure(ConnectionClosedError(code, reason))
            else:
                self.options.log(LOG_LEVEL_INFO, "%s: closed by peer (%s)", self.name, code)

    def _failed_by_peer(self, error: SocketsError, code: int, reason: str) -> None:
        """The peer broke the protocol; the engine's close is on its way."""
        self._closing.set_code(code, reason)
        self._closing.ask(code, "")
        self._report_failure(error)
        self._closing_started()

    def _undecodable(self, error: DecodeError) -> None:
        """A message did not decode (the peer can repeat it: capped logs)."""
        self._reports.report(error, LOG_LEVEL_WARNING, capped=True)

    def _lost(self, cause: OSError | None) -> None:
        """The socket hit EOF or an error: reported, unless the connection
        was closing anyway; a failure of the write path always is."""
        error = self._write_error
        if error is None:
            if self._closing.request is not None or self._protocol.state is not State.OPEN:
                return
            error = vanished(cause, self._pong_wait)
            if error is None:
                error = ConnectionClosedError(CloseCode.ABNORMAL_CLOSURE, "connection lost")
                error.__cause__ = cause
        self._report_failure(error)

    def _reader_crashed(self) -> None:
        """A bug in the reader, never peer input: keep the traceback."""
        self.options.log(LOG_LEVEL_ERROR, "%s: reader crashed", self.name, exc_info=True)
        self._closing.set_code(CloseCode.ABNORMAL_CLOSURE, "")

    def _idle(self) -> bool:
        """No input for ``idle_reader_timeout``, or a view waits on an empty
        ``receiver``: park the socket, so that no thread need read it until
        the next input."""
        return parking.lot.park(self._sock, self._woken)

    def _woken(self) -> None:
        """In the poller's thread: the parked socket has input, EOF or an
        error. The view's waiting ``get`` reads it, if it parked it for
        itself; else a worker does."""
        if not self.receiver.wake_view():
            parking.lot.dispatch(self._read_on)

    def _read_in_view(self, deadline: float | None, owned: bool) -> bool:
        """``receiver``'s ``get`` is about to wait until ``deadline``: if the
        socket is parked (or ``owned``: the poller woke this ``get`` for
        it), read it in this thread for up to :data:`READ_IN_VIEW` seconds.
        Then hold or park it, or hand it to a worker if input is left to
        deliver; or, if nothing came, return True: ``receiver`` parks it to
        be woken itself."""
        if not owned and (
            not self._reads_in_view or not parking.lot.claim(self._sock, self._woken)
        ):
            return False
        until = time.monotonic() + READ_IN_VIEW
        if deadline is not None:
            until = min(until, deadline)
        outcome = InView.FOR_A_READER
        try:
            outcome = self._reader.read_while_waiting(until)
        except Exception:  # a bug, never peer input: a reader ends the connection
            self._reader_crashed()
            self.abort()
        if outcome is InView.TIMED_OUT:
            return True
        if outcome is InView.FOR_A_READER or not (self._hold_for_the_next_get() or self._idle()):
            parking.lot.dispatch(self._read_on)
        return False

    def _hold_for_the_next_get(self) -> bool:
        """A message was read for the view: leave the socket unwatched, so
        that the view's next ``get`` reads on at no cost, unless the view
        works for longer than ``parking.HOLD_FOR`` (then the poller parks
        it) or the connection closes (then :meth:`_stop_reading` does)."""
        if not self.receiver.has_items or self._closing.request is not None:
            return False
        return parking.lot.hold(self._sock, self._woken)

    def _stop_reading(self) -> None:
        """The connection closes: a reader reads on for the peer's close
        frame or the EOF (a held socket is parked for it at once)."""
        self._reader.stop()
        parking.lot.release(self._sock, self._woken)

    def _reader_ended(self) -> None:
        """The reader thread ends: so does the connection."""
        self._teardown()

    def _read_on(self) -> None:
        """The parked socket has input, EOF or an error: read on, in a
        worker of the poller (which outlives the connection: ``done`` has
        no thread to join)."""
        cast(Done, self.done).follow(None)
        self._reader.read_loop(socket.MSG_DONTWAIT)

    # -- what the write path tells (WireEvents) -----------------------------------

    def _close_sent(self, code: int, reason: str) -> None:
        """Our close frame is serialised."""
        self._closing.set_code(code, reason)
        self._closing_started()

    def _peer_alive(self) -> None:
        """A blocked write made progress: the peer is reading. Alive."""
        self._reader.last_alive = time.monotonic()

    def _write_broke(self, error: SocketsError) -> None:
        """No frame can reach the peer: marked closed (1006) and the error
        reported before anything can raise ``Closed`` in the view; cut."""
        self._closing.set_code(CloseCode.ABNORMAL_CLOSURE, "")
        if not self._closing.ended and self._closing.request is None:
            self._report_failure(error)
        self.sender.close(discard=True)
        self.abort()

    def _write_refused(self) -> None:
        """A write failed; the reader reads on, to the EOF or reset, and
        reports the end."""
        self.sender.close(discard=True)
        self._stop_reading()

    def _writer_lost(self, error: SocketsError) -> None:
        """No writer thread: marked closed (1006) and cut; the reader
        reports ``error`` as it ends. Under the sender's mutex: no callback
        runs here."""
        self._write_error = error
        self._closing.set_code(CloseCode.ABNORMAL_CLOSURE, "")
        self.abort()

    # -- errors -------------------------------------------------------------------

    def _report_failure(self, error: SocketsError) -> None:
        """Report the error that ends the connection; only the first counts."""
        if self._closing.first_failure():
            self._reports.report(error, LOG_LEVEL_WARNING)

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
        self._closing.ended = True
        self._shutdown(socket.SHUT_RDWR)
        self.receiver.close()
        self.sender.shutdown()
        scheduler.cancel(self)
        self._closing.set_code(CloseCode.ABNORMAL_CLOSURE, "")
        self._reports.end()
        self.options.log(LOG_LEVEL_DEBUG, "%s: done (%s)", self.name, self._closing.code)
        for callback in self._on_done:
            self._reports.call(callback, self, "on_done")
        self._on_done.clear()
        self.done.set()


class _PartsEvents:
    """What the reader (``ReadEvents``) and the write path (``WireEvents``)
    tell their connection, and what ``receiver`` asks of it
    (``ViewReading``): kept off :class:`Connection`, whose public names are
    the view's. Each is the connection's method of the same name, with a
    leading underscore (``park`` is ``_idle``, ``read`` ``_read_in_view``)."""

    __slots__ = ("_connection",)

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def close_received(self, code: int, reason: str, by_peer: bool) -> None:
        self._connection._close_received(code, reason, by_peer)

    def failed_by_peer(self, error: SocketsError, code: int, reason: str) -> None:
        self._connection._failed_by_peer(error, code, reason)

    def undecodable(self, error: DecodeError) -> None:
        self._connection._undecodable(error)

    def lost(self, cause: OSError | None) -> None:
        self._connection._lost(cause)

    def reader_crashed(self) -> None:
        self._connection._reader_crashed()

    def idle(self) -> bool:
        return self._connection._idle()

    def flush(self) -> None:
        self._connection._flush()

    def read(self, deadline: float | None, owned: bool) -> bool:
        return self._connection._read_in_view(deadline, owned)

    def park(self) -> bool:
        return self._connection._idle()

    def hand_over(self) -> None:
        parking.lot.dispatch(self._connection._read_on)

    def reader_ended(self) -> None:
        self._connection._reader_ended()

    def close_sent(self, code: int, reason: str) -> None:
        self._connection._close_sent(code, reason)

    def flush_by(self, due: float) -> None:
        self._connection._flush_by(due)

    def peer_alive(self) -> None:
        self._connection._peer_alive()

    def write_broke(self, error: SocketsError) -> None:
        self._connection._write_broke(error)

    def write_refused(self) -> None:
        self._connection._write_refused()

    def writer_lost(self, error: SocketsError) -> None:
        self._connection._writer_lost(error)
