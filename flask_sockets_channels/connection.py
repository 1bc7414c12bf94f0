"""One WebSocket connection over a connected socket: the threading core.

Server-agnostic: it is given a socket whose opening handshake is done (or
about to be written) and a wsproto connection in the OPEN state, and works
the same over a werkzeug, gunicorn or ``socket.socketpair()`` socket.

Threads (named after the connection):

* ``reader`` (:meth:`Connection._read_loop`) reads the socket, answers pings
  and close frames at once, fails the connection on protocol errors, and puts
  complete messages on ``receiver``. It owns the end of the connection: its
  ``finally`` runs :meth:`Connection._teardown`.
* ``writer`` (:meth:`Connection._write_loop`) sends what is put on
  ``sender`` (messages and keepalive pings) in batches, then the close frame,
  then waits up to ``close_timeout`` for the reader to end.
* The process-wide keepalive scheduler (:mod:`.keepalive`) queues pings and
  declares silent peers dead.

One lock, ``_protocol_lock``, guards the wsproto object and every write to
the socket, so frames go out whole and in the order they were serialised.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import socket
import struct
import threading
import time
from collections.abc import Iterable
from typing import Any, Callable, Union

from wsproto.connection import Connection as Protocol
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Event, Message, Ping, TextMessage

from .channels import Channel, Closed
from .exceptions import (
    NORMAL_CODES,
    CloseCode,
    ConnectionClosedError,
    DecodeError,
    KeepaliveTimeout,
    MessageTooBig,
    ProtocolError,
    SocketsError,
    WriteTimeout,
    is_sendable_code,
)
from .keepalive import scheduler
from .options import (
    LOG_LEVEL_DEBUG,
    LOG_LEVEL_ERROR,
    LOG_LEVEL_INFO,
    LOG_LEVEL_WARNING,
    Options,
    seconds,
)

__all__ = ["Codec", "Connection"]

RECV_SIZE = 1 << 16
#: Most frames written in one ``sendall`` (bounds how long the lock is held).
WRITE_BATCH = 256
#: How many errors ``errors`` holds; more are logged and dropped.
ERRORS_BUFFER = 64
_PEER_FAULTS = frozenset(
    {CloseCode.PROTOCOL_ERROR, CloseCode.INVALID_FRAME_PAYLOAD_DATA, CloseCode.MESSAGE_TOO_BIG}
)
_numbers = itertools.count(1)

Raw = Union[str, bytes]


class Codec:
    """How a mode turns items into frames and messages into items.

    ``encode`` runs in the thread that calls ``sender.put`` and raises
    ``TypeError`` for an item of the wrong type. ``decode`` runs in the
    reader and raises :class:`DecodeError` (the message is dropped) or
    :class:`ProtocolError` (the connection fails with its code).
    """

    def encode(self, item: Any) -> Message[Any]:
        raise NotImplementedError

    def decode(self, message: Raw) -> Any:
        raise NotImplementedError


class _Sender(Channel[Any]):
    """``sender``: encodes each item at ``put`` time, in the caller's thread.

    It also takes frames from the hub (:meth:`offer`), which never wait:
    past the buffer they queue in a backlog of bounded length, in order.
    """

    def __init__(
        self,
        maxsize: int,
        encode: Callable[[Any], Event],
        on_overflow: Callable[[], None],
        protocol_lock: threading.Lock | None = None,
        write_now: Callable[[Event], bool] | None = None,
    ) -> None:
        super().__init__(maxsize)
        self._encode = encode
        self._on_overflow = on_overflow
        self._protocol_lock = protocol_lock
        self._write_now = write_now
        self._written = 0  # items the writer took and has written (see _direct)

    def offer(self, event: Event, max_backlog: int) -> bool:
        """Queue a ready frame without waiting, even past the buffer, as long
        as at most ``max_backlog`` items wait beyond it; otherwise close the
        connection with 1008 ("slow consumer") and return False.

        Raises:
            Closed: The connection is closing or closed.
        """
        with self.mutex:
            if self._closed:
                raise Closed("offer to a closed channel")
            if self._qsize() >= self.maxsize + max_backlog:
                overflow = True
            else:
                overflow = False
                self._put(event)
                self._given += 1
                self.unfinished_tasks += 1
                self.not_empty.notify()
        if overflow:
            self._on_overflow()
        return not overflow

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Send ``item``: queue it, blocking while the buffer is full; or,
        when nothing is queued and the socket is free, write it at once in
        the caller's thread (blocking up to ``write_wait``).

        Raises:
            TypeError: ``item`` is not of the mode's type.
            Closed: The connection is closing or closed.
        """
        event = self._encode(item)
        if not self._direct(event):
            super().put(event, block, timeout)

    def _direct(self, event: Event) -> bool:
        """Write ``event`` in the caller's thread when nothing is queued or
        in the writer's hands and the socket is free: it saves waking the
        writer. Return whether it did.

        Order is kept: the decision and the lock are taken under the
        channel's mutex, and only when every item the writer took is written.

        Raises:
            Closed: The connection is closed, or the write failed.
        """
        lock = self._protocol_lock
        if lock is None or self._write_now is None:
            return False
        with self.mutex:
            if self._closed:
                raise Closed("put on a closed channel")
            if self.queue or self._taken != self._written or not lock.acquire(blocking=False):
                return False
        try:
            sent = self._write_now(event)
        finally:
            lock.release()
        if not sent:
            raise Closed("the connection closed before the message was sent")
        return True

    def written(self, count: int) -> None:
        """The writer has written ``count`` items it took."""
        with self.mutex:
            self._written += count

    def put_urgent(self, event: Event) -> None:
        """Queue a control frame past ``maxsize``: a keepalive ping must not
        wait for room. Raises :class:`Closed` once closed."""
        self._force(event)


class _Disconnect(Channel[Any]):
    """``disconnect``: putting a code (or ``(code, reason)``) closes the
    connection at once; never blocks, only the first one counts."""

    def __init__(self, close: Callable[[int, str], None]) -> None:
        super().__init__(1)
        self._close = close

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Close the connection with ``item``: a code or ``(code, reason)``.

        Raises:
            ValueError: The code may not be sent in a close frame.
        """
        code, reason = (item, "") if isinstance(item, int) else item
        self._close(code, reason)


class _Done(threading.Event):
    """``done``: once it reads as set, the connection's threads have ended.

    The reader sets it as its very last act; a thread cannot signal after it
    has ended, so ``wait`` and ``is_set`` also join the connection's threads
    (a matter of microseconds by then) before they report it set.
    """

    def __init__(self, threads: list[threading.Thread]) -> None:
        super().__init__()
        self._threads = threads

    def is_set(self) -> bool:
        if not super().is_set():
            return False
        self._join()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        if not super().wait(timeout):
            return False
        self._join()
        return True

    def _join(self) -> None:
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current and thread.ident is not None:
                thread.join()


class Connection:
    """A WebSocket connection handed to a view.

    Attributes:
        receiver: Inbound messages, in order; ends once closed and drained.
        sender: Outbound messages; ``put`` blocks while full, raises
            ``Closed`` once the connection is closing.
        errors: Every error of the connection, before ``done`` is set.
        disconnect: Put a close code, or ``(code, reason)``, to close.
        done: Set once the connection is fully closed and its threads ended.
        remote_addr: The client's address.
        path: The request path.
        subprotocol: The negotiated subprotocol, or ``None``.
        name: A name for logs and threads.
    """

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
        self._write_wait = seconds(options.write_wait)
        self._ping_period = seconds(options.ping_period)
        self._pong_wait = seconds(options.pong_wait)
        self._close_timeout = seconds(options.close_timeout)
        self.remote_addr = remote_addr
        self.path = path
        self.subprotocol = subprotocol
        self.name = f"ws-{next(_numbers)} {remote_addr or '?'} {path}"
        self.receiver: Channel[Any] = Channel(options.recv_channel_buffer)
        self._protocol_lock = threading.Lock()
        self.sender: Channel[Any] = _Sender(
            options.send_channel_buffer,
            codec.encode,
            self._slow_consumer,
            self._protocol_lock,
            self._write_now,
        )
        self.errors: Channel[SocketsError] = Channel(ERRORS_BUFFER)
        self.disconnect: Channel[Any] = _Disconnect(self.close)
        self._sock = sock
        self._codec = codec
        self._protocol = protocol
        self._state = threading.Condition()  # guards the close bookkeeping below
        self._close_request: tuple[int, str] | None = None
        self._close_code: int | None = None
        self._close_reason = ""
        self._failed = False  # a connection-ending error was reported
        self._reader_finished = False
        self._on_done: list[Callable[[Connection], None]] = []
        # Reader-owned state.
        self._fragments: list[Raw] = []
        self._fragments_size = 0
        self._draining = False  # the closing handshake is over: discard input
        # Keepalive state, written by the reader, read by the scheduler.
        self._last_seen = time.monotonic()
        self._paused = False
        self._next_ping = float("inf")
        self._reader = threading.Thread(target=self._read_loop, name=f"{self.name} reader")
        self._writer = threading.Thread(target=self._write_loop, name=f"{self.name} writer")
        self.done: threading.Event = _Done([self._reader, self._writer])

    # -- public API ---------------------------------------------------------

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
        if not isinstance(code, int) or not is_sendable_code(code):
            raise ValueError(f"close code {code!r} may not be sent in a close frame")
        if not isinstance(reason, str) or len(reason.encode()) > 123:
            raise ValueError("close reason must be a str of at most 123 bytes of UTF-8")
        if self._request_close(code, reason):
            self.receiver.close()
            self.sender.close()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until ``done`` is set; return whether it is."""
        return self.done.wait(timeout)

    def on_done(self, callback: Callable[[Connection], None]) -> None:
        """Call ``callback(self)`` when the connection ends, before ``done``
        is set (the library's registry uses it)."""
        self._on_done.append(callback)

    def start(self, handshake_response: bytes = b"", buffered: bytes = b"") -> None:
        """Write the 101 response, then start the reader and writer (the
        library calls it once the handshake is accepted; views never do).

        ``buffered`` holds bytes the server read past the handshake; they are
        parsed before anything read from the socket.

        Raises:
            OSError: The 101 response could not be written.
        """
        # A blocking socket: reads wait for data or for shutdown(); writes
        # are bounded by SO_SNDTIMEO (see _send_within) instead of a Python
        # socket timeout, which would add a poll() before every call.
        self._sock.settimeout(None)
        if self._write_wait is not None:
            self._set_send_timeout(self._write_wait)
        if handshake_response:
            self._send_within(handshake_response)
        self.options.log(LOG_LEVEL_INFO, "%s: opened", self.name)
        self._buffered = buffered
        now = time.monotonic()
        self._last_seen = now
        due = float("inf")
        if self._ping_period is not None:
            self._next_ping = due = now + self._ping_period
        if self._pong_wait is not None:
            due = min(due, now + self._pong_wait)
        if due != float("inf"):
            # Before the reader starts, so that its teardown's unregister
            # always comes after this.
            scheduler.register(self, due)
        self._writer.start()  # first: the reader's teardown joins it
        self._reader.start()

    def abort(self) -> None:
        """Cut TCP at once, without a closing handshake; the threads end.

        Closing ``receiver`` wakes a reader paused on a full ``receiver``
        (a view that does not read): shutting the socket down alone would
        not, and the reader would never reach its teardown.
        """
        self._shutdown(socket.SHUT_RDWR)
        self.receiver.close()

    def fail(self, error: SocketsError | None, code: int, reason: str = "") -> None:
        """Close with an error ``code``, dropping what is queued on ``sender``.

        ``error`` (if any) goes to ``errors``. Used for 1011 when the view
        raises, for keepalive timeouts, and by the hub (1008).
        """
        if error is not None:
            self._report_failure(error)
        if self._request_close(code, reason):
            self.receiver.close()
            self.sender.close(discard=True)

    def _slow_consumer(self) -> None:
        self.options.log(LOG_LEVEL_WARNING, "%s: hub backlog full; closing (1008)", self.name)
        self.fail(None, CloseCode.POLICY_VIOLATION, "slow consumer")

    # -- keepalive ----------------------------------------------------------

    def keepalive(self, now: float) -> float | None:
        """Called by the scheduler: send a due ping, or declare the peer dead
        when nothing arrived within ``pong_wait``. Never blocks."""
        if self.sender.closed:
            return None
        ping_period, pong_wait = self._ping_period, self._pong_wait
        if pong_wait is not None and not self._paused and now - self._last_seen >= pong_wait:
            self.fail(
                KeepaliveTimeout(f"no pong and no frame within {pong_wait} s"),
                CloseCode.INTERNAL_ERROR,
                "keepalive timeout",
            )
            return None
        if ping_period is not None and now >= self._next_ping:
            try:
                self.sender.put_urgent(Ping())  # type: ignore[attr-defined]
            except Closed:
                return None
            self._next_ping = now + ping_period
        due = self._next_ping
        if pong_wait is not None:
            due = min(due, (now if self._paused else self._last_seen) + pong_wait)
        return due

    # -- the reader ---------------------------------------------------------

    def _read_loop(self) -> None:
        # Owns: every read of the socket, the parser, pong and close replies.
        # Ends at EOF or a socket error; every close path ends in one, since
        # the writer (or abort) shuts the socket down after close_timeout.
        try:
            if self._buffered:
                self._receive(self._buffered)
            while True:
                try:
                    data = self._sock.recv(RECV_SIZE)
                except OSError as exc:
                    self._lost(exc)
                    return
                if not data:
                    self._lost(None)
                    return
                self._last_seen = time.monotonic()
                if not self._draining:
                    self._receive(data)
        except Exception:
            self.options.log(LOG_LEVEL_ERROR, "%s: reader crashed", self.name, exc_info=True)
        finally:
            self._teardown()

    def _receive(self, data: bytes) -> None:
        """Parse ``data``, answer control frames, deliver complete messages."""
        with self._protocol_lock:
            self._protocol.receive_data(data)
            messages = self._process_events(self._protocol.events())
        items = []
        decode = self._codec.decode
        for message in messages:
            try:
                items.append(decode(message))
            except DecodeError as exc:
                self._report(exc, LOG_LEVEL_WARNING)
            except ProtocolError as exc:
                self._fail_by_peer(exc)
                break
        if items:
            self._deliver(items)
        if self._draining:
            self.receiver.close()

    def _process_events(self, events: Iterable[Event]) -> list[Raw]:
        """Handle parsed events; return the complete data messages.

        Caller holds ``_protocol_lock``.
        """
        assert self._protocol_lock.locked()
        messages: list[Raw] = []
        for event in events:
            if isinstance(event, (TextMessage, BytesMessage)):
                message = self._assemble(event)
                if isinstance(message, MessageTooBig):
                    self._fail_by_peer(message, locked=True)
                    return messages
                if message is not None:
                    messages.append(message)
            elif isinstance(event, Ping):
                if self._protocol.state is ConnectionState.OPEN:
                    self._sendall(self._protocol.send(event.response()))
            elif isinstance(event, CloseConnection):
                if self._protocol.state is ConnectionState.OPEN:
                    # wsproto reports a parse failure as a close it did not send.
                    code = event.code if event.code in _PEER_FAULTS else CloseCode.PROTOCOL_ERROR
                    error = ProtocolError(event.reason or "protocol error", code)
                    self._fail_by_peer(error, locked=True)
                else:
                    self._closed_by_peer_or_reply(event)
                return messages
        return messages

    def _assemble(self, event: Message[Any]) -> Raw | MessageTooBig | None:
        """Add a fragment; return the whole message once complete."""
        data: Raw = event.data
        self._fragments.append(data)
        if isinstance(data, str):
            self._fragments_size += len(data) if data.isascii() else len(data.encode())
        else:
            self._fragments_size += len(data)
        limit = self.options.max_message_size
        if limit is not None and self._fragments_size > limit:
            return MessageTooBig(f"message of more than {limit} bytes")
        if not event.message_finished:
            return None
        fragments, self._fragments, self._fragments_size = self._fragments, [], 0
        if len(fragments) == 1:
            return data if isinstance(data, str) else bytes(data)
        if isinstance(data, str):
            return "".join(fragments)  # type: ignore[arg-type]
        return b"".join(fragments)  # type: ignore[arg-type]

    def _closed_by_peer_or_reply(self, event: CloseConnection) -> None:
        """A close frame arrived: reply if the peer started the close, then,
        with the handshake over, close our side of TCP. Caller holds
        ``_protocol_lock``."""
        assert self._protocol_lock.locked()
        peer_started = self._protocol.state is ConnectionState.REMOTE_CLOSING
        if peer_started:
            # The reply goes out before anything is woken.
            self._sendall(self._protocol.send(event.response()))
            self._set_close_code(event.code, event.reason or "")
            code = int(event.code)
            if code not in NORMAL_CODES and code != CloseCode.NO_STATUS_RCVD:
                self._report_failure(ConnectionClosedError(code, event.reason or ""))
            else:
                self.options.log(LOG_LEVEL_INFO, "%s: closed by peer (%s)", self.name, code)
        self._draining = True
        self._shutdown(socket.SHUT_WR)
        self.sender.close(discard=True)

    def _fail_by_peer(self, error: ProtocolError, locked: bool = False) -> None:
        """Fail the connection for the peer's fault (1002, 1007, 1009): send
        the close frame and close TCP at once (RFC 6455 §7.1.7)."""
        self._report_failure(error)
        self._request_close(error.code, str(error)[:120])
        if locked:
            self._send_close_and_shut(error.code, str(error))
        else:
            with self._protocol_lock:
                self._send_close_and_shut(error.code, str(error))
        self.sender.close(discard=True)

    def _send_close_and_shut(self, code: int, reason: str) -> None:
        assert self._protocol_lock.locked()
        self._draining = True
        if self._protocol.state is ConnectionState.OPEN:
            reason = reason.encode()[:120].decode(errors="ignore")
            self._set_close_code(code, reason)
            self._sendall(self._protocol.send(CloseConnection(code, reason)))
        self._shutdown(socket.SHUT_WR)

    def _deliver(self, items: list[Any]) -> None:
        """Put ``items`` on ``receiver``, waking the view once; while it is
        full, stop reading (TCP pushes back) and stop the keepalive clock.
        Once the connection is ending, the last messages go in past the
        limit (at most one read's worth), so that nothing sent before a
        close is lost."""
        try:
            if self._draining:
                for item in items:
                    self.receiver._force(item)
                return
            start = self.receiver._put_available(items)
        except Closed:
            return  # closing: the view reads no more
        if start == len(items):
            return
        self._paused = True
        try:
            self.receiver._put_all(items[start:])
        except Closed:
            pass
        finally:
            self._last_seen = time.monotonic()
            self._paused = False

    def _lost(self, cause: OSError | None) -> None:
        """The socket hit EOF or an error."""
        if self._draining or self._close_request is not None:
            return
        error = ConnectionClosedError(CloseCode.ABNORMAL_CLOSURE, "connection lost")
        error.__cause__ = cause
        self._report_failure(error)

    # -- the writer ---------------------------------------------------------

    def _write_loop(self) -> None:
        # Owns: data frames and pings from `sender`, the close frame, and the
        # close_timeout watchdog. Ends once `sender` is closed and drained and
        # the reader has ended (or been cut off by the watchdog).
        try:
            while True:
                try:
                    batch = self.sender.get_many(WRITE_BATCH)
                except Closed:
                    break
                written = self._write(batch)
                self.sender.written(len(batch))  # type: ignore[attr-defined]
                if not written:
                    return
            request = self._close_request
            if request is not None:
                with self._protocol_lock:
                    if self._protocol.state is ConnectionState.OPEN:
                        self._set_close_code(*request)
                        self._sendall(self._protocol.send(CloseConnection(*request)))
            with self._state:
                if not self._state.wait_for(
                    lambda: self._reader_finished, self._close_timeout
                ):
                    self.options.log(LOG_LEVEL_DEBUG, "%s: no close frame in time", self.name)
                    self.abort()
        except _WriteFailed:
            pass
        except Exception:
            self.options.log(LOG_LEVEL_ERROR, "%s: writer crashed", self.name, exc_info=True)
            self.abort()

    def _write_now(self, event: Event) -> bool:
        """Write one frame from the caller's thread; False if the connection
        is closing or the socket failed. Caller holds ``_protocol_lock``."""
        assert self._protocol_lock.locked()
        if self._protocol.state is not ConnectionState.OPEN:
            return False
        try:
            self._sendall(self._protocol.send(_event(event)))
        except _WriteFailed:
            return False
        return True

    def _write(self, batch: list[Event]) -> bool:
        """Send ``batch`` in one write; False if the socket failed."""
        try:
            with self._protocol_lock:
                if self._protocol.state is not ConnectionState.OPEN:
                    return True  # closing: what is left is dropped
                def send(event: Any) -> bytes:
                    return self._protocol.send(_event(event))

                if len(batch) == 1:
                    self._sendall(send(batch[0]))
                else:
                    self._sendall(b"".join([send(event) for event in batch]))
        except _WriteFailed:
            return False
        return True

    def _sendall(self, data: bytes) -> None:
        """Write ``data`` whole within ``write_wait``, or cut TCP.

        Caller holds ``_protocol_lock``. Raises :class:`_WriteFailed`.
        """
        assert self._protocol_lock.locked()
        try:
            self._send_within(data)
        except socket.timeout as exc:
            error: SocketsError = WriteTimeout(f"write blocked for {self._write_wait} s")
            error.__cause__ = exc
            self._report_failure(error)
            self.abort()
            raise _WriteFailed from exc
        except OSError as exc:
            if not self._draining and self._close_request is None:
                error = ConnectionClosedError(CloseCode.ABNORMAL_CLOSURE, "connection lost")
                error.__cause__ = exc
                self._report_failure(error)
            self.abort()
            raise _WriteFailed from exc

    def _send_within(self, data: bytes) -> None:
        """``sendall`` with a deadline of ``write_wait`` for the whole of
        ``data``. The common case is one ``send``; only a partial write
        re-arms SO_SNDTIMEO with the time that is left.

        Raises:
            socket.timeout: The deadline passed.
            OSError: The socket failed.
        """
        if self._write_wait is None:
            self._sock.sendall(data)
            return
        view = memoryview(data)
        deadline = None
        while True:
            try:
                sent = self._sock.send(view)
            except BlockingIOError:  # SO_SNDTIMEO expired with nothing sent
                sent = 0
            if sent == len(view):
                return
            view = view[sent:]
            now = time.monotonic()
            if deadline is None:
                deadline = now + self._write_wait
                if sent == 0:  # that send already waited the whole write_wait
                    raise socket.timeout("write_wait expired")
            if now >= deadline:
                raise socket.timeout("write_wait expired")
            self._set_send_timeout(deadline - now)

    def _set_send_timeout(self, seconds: float) -> None:
        whole = int(seconds)
        timeval = struct.pack("ll", whole, int((seconds - whole) * 1e6) or (0 if whole else 1))
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)

    # -- closing ------------------------------------------------------------

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
        try:
            self.errors.put_nowait(error)
        except (queue.Full, Closed):
            self.options.log(LOG_LEVEL_WARNING, "%s: errors channel full, dropped", self.name)

    def _shutdown(self, how: int) -> None:
        with contextlib.suppress(OSError):  # already shut down, or reset
            self._sock.shutdown(how)

    def _teardown(self) -> None:
        """End the connection; run once, by the reader as it ends.

        Every thread ends: the reader is the caller; the writer is woken from
        ``sender`` (closed), from ``sendall`` (socket shut down) and from its
        close watchdog (``_reader_finished``), so the join returns. Blocked
        views are woken by closing ``receiver`` and ``sender``. ``done`` is
        set last, after ``errors`` holds every error.
        """
        self._shutdown(socket.SHUT_RDWR)
        with self._state:
            self._reader_finished = True
            self._state.notify_all()
        self.receiver.close()
        self.sender.close(discard=True)
        self._writer.join()
        scheduler.unregister(self)
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
        self.done.set()


def _event(item: Any) -> Event:
    """Temporary: an ``Outgoing`` as a wsproto event."""
    from .engine import Outgoing

    if isinstance(item, Outgoing):
        return TextMessage(data=item.data.decode()) if item.text else BytesMessage(data=item.data)
    return item  # type: ignore[no-any-return]


class _WriteFailed(Exception):
    """A write failed; the error is reported and TCP is cut."""
