"""The read half of a connection: what its reader thread does.

:class:`Reader` reads the socket, feeds the engine, hands the engine's
replies (pongs, close frames) to the write path and the complete messages to
``receiver``, with one wake-up of the view per read. It is given what it
reads and writes to at construction, and tells its connection what the peer
did through :class:`ReadEvents`, the narrow interface the connection
implements (as :class:`~.sender.Sender` writes through a
:class:`~.wire.Wire`). When it ends, it says so (``reader_ended``): the
connection's teardown runs in the reader thread.
"""

from __future__ import annotations

import enum
import select
import socket
import threading
import time
import typing
from typing import TYPE_CHECKING, Any, Callable

from . import engine
from .assembler import Assembler, Raw
from .channels import Closed
from .engine import Frame, Opcode, State, parser_error
from .exceptions import CloseCode, DecodeError, ProtocolError, SocketsError
from .ratelimit import TokenBucket
from .receiver import Receiver

if TYPE_CHECKING:
    from .engine import Protocol
    from .options import Options
    from .sender import Sender

__all__ = ["InView", "ReadEvents", "Reader"]

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


class InView(enum.Enum):
    """How a read in the view's thread ended (:meth:`Reader.read_while_waiting`)."""

    #: A message is on ``receiver``, or ``receiver`` is closed.
    DELIVERED = enum.auto()
    #: Nothing came in time.
    TIMED_OUT = enum.auto()
    #: A reader must go on at once: input is left to deliver, or the
    #: socket shows an EOF or an error.
    FOR_A_READER = enum.auto()


class ReadEvents(typing.Protocol):
    """What :class:`Reader` tells its connection, in the reader thread."""

    def close_received(self, code: int, reason: str, by_peer: bool) -> None:
        """A close frame arrived: the peer's (``by_peer``: it started the
        closing handshake, ``code`` and ``reason`` are its), or its reply to
        ours."""

    def failed_by_peer(self, error: SocketsError, code: int, reason: str) -> None:
        """The peer broke the protocol; the engine's close frame with
        ``code`` is queued or sent."""

    def undecodable(self, error: DecodeError) -> None:
        """A message did not decode; the connection goes on."""

    def lost(self, cause: OSError | None) -> None:
        """The socket hit EOF (``None``) or an error."""

    def reader_crashed(self) -> None:
        """The reader met a bug (logged with its traceback): the connection
        ends abnormally."""

    def idle(self) -> bool:
        """No input for ``idle_reader_timeout``: True if the connection
        parked its socket (this reader thread ends; another reads on at the
        next input), False to read on in this one."""

    def reader_ended(self) -> None:
        """The reader ends: the connection's teardown, in its thread."""


class Reader:
    """The read half of a connection (see the module's docstring).

    ``last_alive`` and ``paused`` are the keepalive clock's: when the peer
    last showed it is alive, and whether the reader is waiting for room on
    ``receiver`` or for the rate limit (the peer's silence is then ours).
    """

    # An idle connection is kept by the thousand: no __dict__.
    __slots__ = (
        "_assembler",
        "_bucket",
        "_decode_item",
        "_events",
        "_feed",
        "_in_view",
        "_protocol",
        "_protocol_lock",
        "_read_error",
        "_sender",
        "_sock",
        "_undelivered",
        "_unpause",
        "_view_read_size",
        "_waiter",
        "buffered",
        "last_alive",
        "messages_in",
        "paused",
        "receiver",
    )

    def __init__(
        self,
        sock: socket.socket,
        protocol: Protocol,
        protocol_lock: threading.Lock,
        receiver: Receiver,
        sender: Sender,
        decode: Callable[[Raw], Any],
        options: Options,
        events: ReadEvents,
    ) -> None:
        self._sock = sock
        self._protocol = protocol
        self._protocol_lock = protocol_lock
        self.receiver = receiver
        self._sender = sender
        self._decode_item = decode
        self._events = events
        self._assembler = Assembler()
        rate_limit = options.rate_limit
        self._bucket = TokenBucket(*rate_limit) if rate_limit else None
        #: Set to end a pause for the rate limit early (the end).
        self._unpause = threading.Event() if rate_limit else None
        self._feed = _feed_size(protocol, options.max_message_size)
        #: Bytes the server read past the handshake, parsed first.
        self.buffered = b""
        #: When the peer last showed it is alive (a read, or the writer's
        #: progress); the timer declares it dead ``pong_wait`` later.
        self.last_alive = time.monotonic()
        self.paused = False
        #: How many data messages were received.
        self.messages_in = 0
        # Reading in the view's thread (read_while_waiting): then what does
        # not fit on receiver, and a read's error, are left for a reader.
        self._in_view = False
        self._undelivered: list[Any] = []
        self._read_error: OSError | None = None
        # The view's poll of the socket, made at its first read, and the
        # size of its next read.
        self._waiter: select.poll | None = None
        self._view_read_size = RECV_IDLE_SIZE

    @property
    def bytes_in(self) -> int:
        """Payload bytes of the data frames received (inflated)."""
        return self._assembler.bytes_in

    def read_loop(self, flags: int = 0) -> None:
        """The reader thread: parse ``buffered``, then read until EOF or a
        socket error, then end the connection (``reader_ended``). Or, idle,
        until the connection parks the socket (``idle``): a worker of the
        poller runs this again at the next input, with ``MSG_DONTWAIT`` in
        ``flags``: it reads what came and parks again at once, so that a
        pong costs a worker microseconds, not ``idle_reader_timeout``."""
        # Owns: every read of the socket, the engine's parser, and the end of
        # the connection. Ends at EOF or a socket error; every close path ends
        # in one, since the peer closes TCP or the close timer cuts it.
        parked = False
        try:
            if self._undelivered:  # left by the view's reads: before what follows
                items, self._undelivered = self._undelivered, []
                self._put_on_receiver(items)
            data, self.buffered = self.buffered, b""
            size = RECV_IDLE_SIZE
            feed = self._feed
            while True:
                if len(data) > feed:
                    self._receive_in_pieces(data, feed)
                elif data:
                    self._receive(data)
                try:
                    if self._read_error is not None:  # met by the view's reads
                        error, self._read_error = self._read_error, None
                        raise error
                    data = self._sock.recv(size, flags)
                except BlockingIOError:  # idle_reader_timeout passed, or MSG_DONTWAIT
                    data = b""
                    if self._events.idle():
                        parked = True
                        return
                    continue
                except OSError as exc:
                    self._events.lost(exc)
                    return
                if not data:
                    self._events.lost(None)
                    return
                flowing = len(data) == size or engine.mid_frame(self._protocol)
                size = RECV_SIZE if flowing else RECV_IDLE_SIZE
                self.last_alive = time.monotonic()
        except Exception:  # a bug, never peer input
            self._events.reader_crashed()
        finally:
            if not parked:
                self._events.reader_ended()

    def read_while_waiting(self, until: float) -> InView:
        """Read in the view's thread, whose ``get`` is about to wait on an
        empty ``receiver``, the socket being taken back from the poller by
        the caller: until a message is on ``receiver``, ``receiver`` closes,
        ``until`` (monotonic time) passes, or the socket shows an EOF or an
        error (left for a reader, which ends the connection). Nothing here
        waits on ``receiver``: what does not fit is left for a reader.
        """
        receiver = self.receiver
        size = self._view_read_size
        self._in_view = True
        try:
            while not receiver.has_items and not receiver.closed:
                remaining = until - time.monotonic()
                if remaining <= 0:
                    return InView.TIMED_OUT
                data_came = self._data_within(remaining)
                if not data_came:
                    return InView.TIMED_OUT if data_came is False else InView.FOR_A_READER
                try:
                    data = self._sock.recv(size, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                except OSError as exc:  # between the poll and the read
                    self._read_error = exc
                    return InView.FOR_A_READER
                if not data:  # an EOF after the poll: a reader sees it
                    return InView.FOR_A_READER
                self.last_alive = time.monotonic()
                # Sized as read_loop's reads: small unless data flows (this
                # read filled its buffer) or a message is only partly in
                # (the loop goes on).
                self._view_read_size = RECV_SIZE if len(data) == size else RECV_IDLE_SIZE
                size = RECV_SIZE
                if len(data) > self._feed:
                    self._receive_in_pieces(data, self._feed)
                else:
                    self._receive(data)
                if self._undelivered or self.buffered:
                    return InView.FOR_A_READER
            return InView.DELIVERED
        finally:
            self._in_view = False

    def _data_within(self, timeout: float) -> bool | None:
        """Whether data arrives on the socket within ``timeout`` seconds;
        ``None`` for an EOF or an error (a reader's to see)."""
        waiter = self._waiter
        try:
            if waiter is None:
                waiter = self._waiter = select.poll()  # not select(): fds past 1023
                waiter.register(self._sock, _INPUT_WATCHED)
            ready = waiter.poll(max(1, int(timeout * 1000)))
        except (OSError, ValueError):  # closed meanwhile
            return None
        if not ready:
            return False
        return True if ready[0][1] == _INPUT else None

    def stop(self) -> None:
        """Close ``receiver`` and wake a reader paused on it or on the rate
        limit: it must read on, for the peer's close frame or the EOF."""
        self.receiver.close()
        if self._unpause is not None:
            self._unpause.set()

    def _receive_in_pieces(self, data: bytes, feed: int) -> None:
        """Feed ``data`` to the engine ``feed`` bytes at a time, delivering
        what each piece completes before the next: while ``receiver`` is
        full, nothing more is inflated (see :func:`_feed_size`). In the
        view's thread, the pieces after one that left messages undelivered
        are left for a reader."""
        for start in range(0, len(data), feed):
            if self._undelivered:
                self.buffered = data[start:]
                return
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
            frames: list[Frame] = protocol.events_received()  # type: ignore[assignment]
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
                self._closed(protocol)
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
            self._failed(parser_error(failure))
        if replies or closing:
            # The close reply goes out before the view is woken by the
            # sender's close; what was queued cannot be sent any more.
            self._sender.send_control(replies, discard=closing)
        if items:
            self._deliver(items)

    def _decode(self, message: Raw) -> Any:
        """The mode's item for ``message``; ``_SKIP`` if it does not decode
        (reported as a ``DecodeError``); a ``ProtocolError`` to fail with."""
        self.messages_in += 1
        try:
            return self._decode_item(message)
        except ProtocolError as exc:
            return exc
        except DecodeError as exc:
            error = exc
        except Exception as exc:  # whatever a user's model raises
            error = DecodeError(f"message does not decode: {type(exc).__name__}: {exc}", message)
            error.__cause__ = exc
        # Reported out of the except clause: a callback's own exception is
        # not chained to the decode error.
        self._events.undecodable(error)
        return _SKIP

    def _closed(self, protocol: Protocol) -> None:
        """A close frame arrived: the peer's, or its reply to ours."""
        close = protocol.close_rcvd
        if close is not None:
            by_peer = bool(protocol.close_rcvd_then_sent)
            self._events.close_received(int(close.code), close.reason, by_peer)

    def _fail_by_peer(self, error: ProtocolError) -> None:
        """Fail the connection for the peer's fault (1002, 1007, 1009): send
        the close frame and close TCP at once (RFC 6455 §7.1.7)."""
        reason = str(error).encode()[:120].decode(errors="ignore")
        with self._protocol_lock:
            if self._protocol.state is not State.OPEN:
                return
            self._protocol.fail(error.code, reason)
            replies = self._protocol.data_to_send()
        self._failed(error)
        self._sender.send_control(replies, discard=True)

    def _failed(self, error: SocketsError) -> None:
        """The engine failed the connection (its close frame is queued)."""
        close = self._protocol.close_sent
        if close is None:
            self._events.failed_by_peer(error, CloseCode.ABNORMAL_CLOSURE, "")
        else:
            self._events.failed_by_peer(error, int(close.code), close.reason)
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

    def _wait_for_token(self, seconds: float) -> bool:
        """Pause ``seconds`` for the rate limit (a paused reader is not a dead
        peer); False if the view reads no more meanwhile (:meth:`stop`)."""
        self.paused = True
        try:
            assert self._unpause is not None  # a bucket comes with it
            self._unpause.wait(seconds)
        finally:
            self.paused = False
            self.last_alive = time.monotonic()
        return not self.receiver.closed

    def _put_on_receiver(self, items: list[Any]) -> None:
        if self._in_view:  # the reading get takes the first itself
            items = self.receiver.keep_for_view(items)
            if not items:
                return
        try:
            start = self.receiver._put_available(items)
        except Closed:
            return  # closing: the view reads no more
        if start == len(items):
            return
        if self._in_view:  # the view cannot wait for itself to get them
            self._undelivered = items[start:]
            return
        self.paused = True
        try:
            self.receiver._put_all(items[start:])
        except Closed:
            pass
        finally:
            self.last_alive = time.monotonic()
            self.paused = False


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


#: What ``poll`` says of a socket with only data to read.
_INPUT = select.POLLIN if hasattr(select, "poll") else 0
_INPUT_WATCHED = _INPUT | getattr(select, "POLLRDHUP", 0)


_DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
_SKIP = object()
