"""The read half of a connection: the reader thread.

:class:`Reading` is the part of :class:`~.connection.Connection` that runs in
its reader thread: it reads the socket, feeds the engine, hands the engine's
replies (pongs, close frames) to the write path and the complete messages to
``receiver``, with one wake-up of the view per read. It owns the end of the
connection: its ``finally`` runs the connection's teardown.
"""

from __future__ import annotations

import threading
import time
import typing
from typing import TYPE_CHECKING, Any, Callable, cast

from . import engine
from .assembler import Assembler, Raw
from .channels import Channel, Closed
from .engine import Frame, Opcode, State, parser_error
from .exceptions import (
    NORMAL_CODES,
    CloseCode,
    ConnectionClosedError,
    DecodeError,
    ProtocolError,
    SocketsError,
)
from .keepalive import vanished
from .options import LOG_LEVEL_ERROR, LOG_LEVEL_INFO, LOG_LEVEL_WARNING, seconds
from .ratelimit import TokenBucket

if TYPE_CHECKING:
    import socket

    from .engine import Protocol
    from .options import Options
    from .writer import Sender

__all__ = ["Reading"]

#: Bytes asked of a read while data flows (the last read filled what it
#: asked for, or a frame is only partly in), and otherwise: a blocked
#: ``recv`` holds a buffer of the size it asked for, and an idle connection
#: need not keep 64 KiB of it. 256 bytes hold a lone chat-sized message;
#: a burst fills them and the next read is large (measured: 0.7-0.9 KiB of
#: RSS less per idle connection than 1 KiB, no change in rtt or echo).
RECV_SIZE = 1 << 16
RECV_IDLE_SIZE = 1 << 8
#: How many times its size a piece of deflate data may inflate to, at most
#: (DEFLATE's own bound: 258 bytes from a 2-bit code, about 1032:1).
DEFLATE_MAX_RATIO = 1032
#: The smallest piece of a read fed to the engine at once with compression.
MIN_FEED_SIZE = 64


class _Decoder(typing.Protocol):
    """What the reader needs of the mode's codec (``connection.Codec``)."""

    def decode(self, message: Raw) -> Any: ...


class Reading:
    """The reader thread's half of a connection: a base of
    :class:`~.connection.Connection`, which holds the rest of the state it
    reads (declared below for the type checker)."""

    # The state the reader writes; the rest is the connection's.
    __slots__ = (
        "_assembler",
        "_bucket",
        "_buffered",
        "_last_alive",
        "_paused",
        "_unpause",
        "messages_in",
    )

    _assembler: Assembler
    #: The rate limit's bucket, if any.
    _bucket: TokenBucket | None
    #: Bytes the server read past the handshake, parsed first.
    _buffered: bytes
    #: When the peer last showed it is alive (a read, or the writer's
    #: progress); the timer declares it dead ``pong_wait`` later.
    _last_alive: float
    #: The reader waits for room on ``receiver`` or for the rate limit: the
    #: peer's silence is ours, not a sign of death.
    _paused: bool
    #: Set to end a pause for the rate limit early (the end).
    _unpause: threading.Event | None
    #: How many data messages were received.
    messages_in: int

    if TYPE_CHECKING:  # set and defined by Connection
        options: Options
        name: str
        receiver: Channel[Any]
        sender: Sender
        _sock: socket.socket
        _codec: _Decoder
        _protocol: Protocol
        _protocol_lock: threading.Lock
        _ended: bool
        _close_request: tuple[int, str] | None
        _write_error: SocketsError | None

        def _teardown(self) -> None: ...
        def _set_close_code(self, code: int, reason: str) -> None: ...
        def _request_close(self, code: int, reason: str) -> bool: ...
        def _report_failure(self, error: SocketsError) -> None: ...
        def _report(self, error: SocketsError, level: int, capped: bool = False) -> None: ...
        def _closing_started(self) -> None: ...

    def __init__(self, rate_limit: tuple[float, float] | None) -> None:
        self._assembler = Assembler()
        self._bucket = TokenBucket(*rate_limit) if rate_limit else None
        self._unpause = threading.Event() if rate_limit else None
        self._buffered = b""
        self._last_alive = time.monotonic()
        self._paused = False
        self.messages_in = 0

    def _read_loop(self) -> None:
        # Owns: every read of the socket, the engine's parser, and the end of
        # the connection. Ends at EOF or a socket error; every close path ends
        # in one, since the peer closes TCP or the close timer cuts it.
        try:
            data, self._buffered = self._buffered, b""
            size = RECV_IDLE_SIZE
            feed = _feed_size(self._protocol, self.options.max_message_size)
            while True:
                if len(data) > feed:
                    self._receive_in_pieces(data, feed)
                elif data:
                    self._receive(data)
                try:
                    data = self._sock.recv(size)
                except OSError as exc:
                    self._lost(exc)
                    return
                if not data:
                    self._lost(None)
                    return
                flowing = len(data) == size or engine.mid_frame(self._protocol)
                size = RECV_SIZE if flowing else RECV_IDLE_SIZE
                self._last_alive = time.monotonic()
        except Exception:  # a bug, never peer input: keep the traceback
            self.options.log(LOG_LEVEL_ERROR, "%s: reader crashed", self.name, exc_info=True)
            self._set_close_code(CloseCode.ABNORMAL_CLOSURE, "")
        finally:
            self._teardown()

    def _receive_in_pieces(self, data: bytes, feed: int) -> None:
        """Feed ``data`` to the engine ``feed`` bytes at a time, delivering
        what each piece completes before the next: while ``receiver`` is
        full, nothing more is inflated (see :func:`_feed_size`)."""
        for start in range(0, len(data), feed):
            self._receive(data[start : start + feed])

    def _receive(self, data: bytes) -> None:
        """Feed ``data`` to the engine, send its replies, deliver messages."""
        protocol = self._protocol
        with self._protocol_lock:
            state = protocol.state
            if state is State.CLOSED:
                return
            protocol.receive_data(data)
            # Past the handshake, the engine's events are frames.
            frames = cast("list[Frame]", protocol.events_received())
            replies = protocol.data_to_send()
            failure = protocol.parser_exc if state is State.OPEN else None
            closing = protocol.state is not State.OPEN
            if failure is not None and protocol.close_rcvd is not None:
                # RFC 6455 §5.4 allows a close frame inside a fragmented
                # message; the engine fails it with 1002, we echo it.
                replies = [engine.close_echo(protocol.close_rcvd), *replies[1:]]
                frames.append(Frame(Opcode.CLOSE, b""))  # the engine left it out
                failure = None
        items: list[Any] = []
        for frame in frames:
            if frame.opcode is Opcode.CLOSE:
                self._closed_by_peer(frame)
            elif frame.opcode in _DATA:
                message = self._assembler.add(frame)
                if isinstance(message, ProtocolError):
                    self._fail_by_peer(message)
                    break
                if message is not None:
                    item = self._decode(message)
                    if isinstance(item, ProtocolError):
                        self._fail_by_peer(item)
                        break
                    if item is not _SKIP:
                        items.append(item)
        if failure is not None:
            self._failed_by_engine(failure)
        if replies or closing:
            # The close reply goes out before the view is woken by the
            # sender's close; what was queued cannot be sent any more.
            self.sender.send_control(replies, discard=closing)
        if items:
            self._deliver(items)

    def _decode(self, message: Raw) -> Any:
        """The mode's item for ``message``; ``_SKIP`` if it does not decode
        (reported as a ``DecodeError``); a ``ProtocolError`` to fail with."""
        self.messages_in += 1
        try:
            return self._codec.decode(message)
        except ProtocolError as exc:
            return exc
        except DecodeError as exc:
            error = exc
        except Exception as exc:  # whatever a user's model raises
            error = DecodeError(f"message does not decode: {type(exc).__name__}: {exc}", message)
            error.__cause__ = exc
        # Reported out of the except clause: a callback's own exception is
        # not chained to the decode error.
        self._report(error, LOG_LEVEL_WARNING, capped=True)
        return _SKIP

    def _closed_by_peer(self, frame: Frame) -> None:
        """A close frame arrived: the peer's, or its reply to ours."""
        close = self._protocol.close_rcvd
        if close is None:
            return
        self._closing_started()
        if self._protocol.close_rcvd_then_sent:  # the peer started the close
            code, reason = int(close.code), close.reason
            self._set_close_code(code, reason)
            self._request_close(code, reason)
            if code not in NORMAL_CODES and code != CloseCode.NO_STATUS_RCVD:
                self._report_failure(ConnectionClosedError(code, reason))
            else:
                self.options.log(LOG_LEVEL_INFO, "%s: closed by peer (%s)", self.name, code)

    def _fail_by_peer(self, error: ProtocolError) -> None:
        """Fail the connection for the peer's fault (1002, 1007, 1009): send
        the close frame and close TCP at once (RFC 6455 §7.1.7)."""
        reason = str(error).encode()[:120].decode(errors="ignore")
        with self._protocol_lock:
            if self._protocol.state is not State.OPEN:
                return
            self._protocol.fail(error.code, reason)
            replies = self._protocol.data_to_send()
        self._failed_by_engine(None, error)
        self.sender.send_control(replies, discard=True)

    def _failed_by_engine(
        self, exc: BaseException | None, error: SocketsError | None = None
    ) -> None:
        """The engine failed the connection (its close frame is queued)."""
        if error is None:
            assert exc is not None
            error = parser_error(exc)
        close = self._protocol.close_sent
        code = close.code if close is not None else CloseCode.ABNORMAL_CLOSURE
        self._set_close_code(int(code), close.reason if close is not None else "")
        self._request_close(int(code), "")
        self._report_failure(error)
        self._closing_started()
        self.receiver.close()

    def _deliver(self, items: list[Any]) -> None:
        """Put ``items`` on ``receiver``, waking the view once; while it is
        full, stop reading (TCP pushes back) and stop the keepalive clock.
        Past the rate limit, wait for the bucket to refill (also paused)."""
        while self._bucket is not None and items:
            allowed = self._bucket.take(len(items))
            if allowed:
                self._put_on_receiver(items[:allowed])
                items = items[allowed:]
            elif not self._wait_for_token(self._bucket.wait_time()):
                return
        if items:
            self._put_on_receiver(items)

    def _stop_receiving(self) -> None:
        """Close ``receiver`` and wake a reader paused on it or on the rate
        limit: it must read on, for the peer's close frame or the EOF."""
        self.receiver.close()
        if self._unpause is not None:
            self._unpause.set()

    def _wait_for_token(self, seconds: float) -> bool:
        """Pause ``seconds`` for the rate limit (a paused reader is not a dead
        peer); False if the connection ended meanwhile."""
        self._paused = True
        try:
            assert self._unpause is not None  # a bucket comes with it
            self._unpause.wait(seconds)
            ended = self._ended or self.receiver.closed
        finally:
            self._paused = False
            self._last_alive = time.monotonic()
        return not ended

    def _put_on_receiver(self, items: list[Any]) -> None:
        try:
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
            self._last_alive = time.monotonic()
            self._paused = False

    def _lost(self, cause: OSError | None) -> None:
        """The socket hit EOF or an error: reported, unless the connection
        was closing anyway; a failure of the write path always is."""
        error = self._write_error
        if error is None:
            if self._close_request is not None or self._protocol.state is not State.OPEN:
                return
            error = vanished(cause, seconds(self.options.pong_wait))
            if error is None:
                error = ConnectionClosedError(CloseCode.ABNORMAL_CLOSURE, "connection lost")
                error.__cause__ = cause
        self._report_failure(error)


def _feed_size(protocol: Protocol, max_message_size: int | None) -> int:
    """How many bytes of a read to feed the engine at once.

    The engine parses, and inflates, every frame of what it is fed before
    the reader can hand any of it on. With permessage-deflate, one 64 KiB
    read can hold a thousand messages of 64 KiB each, 64 MiB to hold while
    ``receiver`` is full. Fed at most ``max_message_size / 1032`` bytes at
    a time, the engine inflates at most one message's worth before the
    reader waits for room on ``receiver``: the connection holds
    ``recv_channel_buffer`` messages, the one being assembled and at most
    one more (SPEC §10). Without compression, a read is fed whole.
    """
    if not protocol.extensions or max_message_size is None:
        return RECV_SIZE
    return max(MIN_FEED_SIZE, max_message_size // DEFLATE_MAX_RATIO)


class Receiver(Channel[Any]):
    """``receiver``: before a ``get`` waits, what ``sender`` held back for
    the view's next answer is written (the view has none coming)."""

    def __init__(self, maxsize: int, flush: Callable[[], None]) -> None:
        super().__init__(maxsize)
        self._flush = flush

    def _will_wait(self) -> None:
        self._flush()


_DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
_SKIP = object()
