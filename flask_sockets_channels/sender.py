"""``sender`` and the one write path of a connection.

Every frame — data, ping, pong, close — reaches the socket through
:class:`Sender`, in this order of preference:

1. **In the caller's thread, without waiting**: when nobody is writing, the
   thread that has a frame (the view's ``put``, the hub's publisher, the
   reader's pong, the timer's ping) serialises it and sends it with
   ``MSG_DONTWAIT``. Most frames go out this way, with no thread switch.
2. **By a writer thread, started on demand**: what the kernel did not take at
   once (the rest of a frame, and everything queued behind it) is written by
   a thread that exists only while there is a backlog, with the
   ``write_wait`` deadline per frame counted from the start of its write; it
   ends when the backlog is empty.

A frame put while the view still has messages to read is **held back**
for the write of its next frame (at most ``HOLD_FRAMES`` small frames, at
most ``HOLD_SECONDS``; then the timer writes them, and a ``get`` that is
about to wait writes them first). A view answering a burst thus writes the
burst's answers in one ``send``, not one each; when it keeps up (the
receiver is empty), nothing is held and each frame goes out at once.

Order: data frames go out in the order they were put (they are serialised
under the lock in that order, when written or when held back, so
permessage-deflate's context stays in step). Pings and pongs jump the
data at the next frame boundary; at most sixteen wait (past that the oldest
is dropped, as RFC 6455 §5.5.3 allows), so a peer flooding pings cannot grow
the backlog. Close frames keep their place after the frames serialised
before them.

``put`` never waits on the socket: it waits only for room in the buffer
(``put_nowait`` and ``put(timeout=)`` never wait longer than they say).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Protocol

from .channels import Channel, Closed
from .engine import Outgoing

__all__ = ["EOF", "Sender", "Wire"]

#: Frames serialised into one write by the writer thread, at most.
WRITE_BATCH = 256
#: Bytes joined into one write by the writer thread, at most (a larger frame
#: is written alone).
WRITE_BATCH_BYTES = 1 << 16
#: Chunks a caller's thread writes for others before it hands over to a
#: writer thread (so a publisher is not kept writing for ever).
DIRECT_CHUNKS = 16
#: Frames held back for the next write, at most, while the view has
#: messages to read; only frames of at most HOLD_FRAME_BYTES are held.
HOLD_FRAMES = 16
HOLD_FRAME_BYTES = 1 << 12
#: How long a frame is held back at most (the connection's timer writes it).
HOLD_SECONDS = 0.001
#: Pings and pongs that wait at most (a peer flooding pings gets the newest).
MAX_CONTROL = 16
#: Marks where TCP is half-closed (the engine's SEND_EOF).
EOF = b""
_CLOSE, _PING, _PONG, _OPCODE = 0x8, 0x9, 0xA, 0x0F


class Wire(Protocol):
    """What :class:`Sender` needs of its connection's socket side
    (:class:`~.wire.SocketWire`)."""

    name: str

    def serialize(self, item: Any) -> bytes | None:
        """The frame bytes for ``item``, or ``None`` to drop it (closing).
        Called with the sender's mutex held."""

    def send_nowait(self, data: bytes | memoryview) -> int:
        """Send what the kernel takes at once; raise ``OSError`` on failure."""

    def send_within(self, data: bytes | memoryview, started: float) -> bool:
        """Send all of ``data`` by ``started + write_wait``; False when the
        write failed (the connection has then reported it and been cut)."""

    def write_failed(self, exc: OSError) -> None:
        """A write in a caller's thread failed: report it and cut TCP."""

    def writer_lost(self, exc: Exception) -> None:
        """No writer thread could start (``RuntimeError``: the process is at
        its thread limit), or it failed (a bug): what was queued is lost;
        cut TCP. Called with the sender's mutex held."""

    def shutdown_write(self) -> None:
        """Half-close TCP (the engine's EOF)."""

    def more_to_read(self) -> bool:
        """Whether the view has messages waiting on ``receiver`` (its next
        ``put`` is then near: a frame may be held back for it)."""

    def flush_by(self, due: float) -> None:
        """Make sure :meth:`Sender.flush` is called by monotonic time
        ``due`` (frames are held back)."""


class Sender(Channel[Any]):
    """``sender``: encodes each item at ``put`` time, in the caller's thread,
    and writes it at once when it can (see the module's docstring).

    It also takes frames from the hub (:meth:`offer`), which never wait:
    past the buffer they queue in a backlog of bounded length, in order.
    """

    def __init__(
        self,
        maxsize: int,
        encode: Callable[[Any], Any],
        wire: Wire,
        on_overflow: Callable[[], None],
    ) -> None:
        super().__init__(maxsize)
        self._encode = encode
        self._wire = wire
        self._on_overflow = on_overflow
        # All guarded by self.mutex:
        # Lists, not deques: both are short, and an idle connection keeps
        # them (an empty deque costs 760 bytes, a list 56).
        self._outbox: list[bytes] = []  # serialised, not begun
        # Pings and pongs waiting for the next frame boundary; bounded: past
        # MAX_CONTROL the oldest is dropped (RFC 6455 §5.5.3 lets us answer
        # only the latest ping).
        self._control: list[bytes] = []
        self._head: memoryview | None = None  # the rest of a frame whose write began
        self._head_started = 0.0
        self._busy = False  # a thread is writing; it alone touches the socket
        self._thread: threading.Thread | None = None  # the writer thread, while it runs
        self._retired: list[threading.Thread] = []  # writer threads on their way out
        self._dead = False  # a write failed or the connection ended: drop everything
        self._close_queued = False  # our close frame is serialised: no ping after it

    # -- what the view and the hub call ----------------------------------------

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Send ``item``: written at once when the socket is free and takes it
        whole; else queued, waiting only for room in the buffer.

        Raises:
            TypeError: ``item`` is not of the mode's type.
            Closed: The connection is closing or closed.
            queue.Full: ``block`` is false or ``timeout`` expired with no room.
        """
        frame = self._encode(item)
        if self._wire.more_to_read() and self._hold(frame):
            return
        data = self._claim(frame)
        if data is None:
            super().put(frame, block, timeout)
        else:
            self._write_from(data)

    def offer(self, frame: Any, max_backlog: int) -> bool:
        """Send a ready frame without waiting, even past the buffer, as long
        as at most ``max_backlog`` items wait beyond it; otherwise close the
        connection with 1008 ("slow consumer") and return False.

        Raises:
            Closed: The connection is closing or closed.
        """
        data = self._claim(frame)
        if data is not None:
            self._write_from(data)
            return True
        if self._put_past_limit((frame,), self.capacity + max_backlog):
            return True
        self._on_overflow()
        return False

    # -- what the connection calls ----------------------------------------------

    def send_if_idle(self, frame: Any) -> None:
        """Write ``frame`` now if nothing is queued or being written, else
        drop it (frames are flowing anyway). Never blocks, never queues."""
        try:
            data = self._claim(frame)
        except Closed:
            return
        if data is not None:
            self._write_from(data)

    def send_control(self, chunks: list[bytes], discard: bool = False) -> None:
        """Write frames the engine produced (pings, pongs, close frames,
        EOF) ahead of queued data; ``discard`` drops what is queued first
        (the connection is being closed or failed). Never blocks.

        A ping made before our close frame but handed over after it is
        dropped: nothing is sent after our close frame but the pongs that
        RFC 6455 §5.5.2 still asks for until the peer's close arrives.
        """
        with self.mutex:
            if discard:
                self._drop_queued()
            for chunk in chunks:
                opcode = chunk[0] & _OPCODE if chunk else None
                if opcode == _PING and self._close_queued:
                    continue
                if opcode in (_PING, _PONG):
                    self._control.append(chunk)
                    del self._control[:-MAX_CONTROL]
                else:
                    if opcode == _CLOSE:
                        self._close_queued = True
                    self._outbox.append(chunk)
            data = self._claim_next()
        if data is not None:
            self._write_from(data)

    def flush(self) -> None:
        """Write the frames held back, if nobody is writing. Never blocks."""
        with self.mutex:
            data = self._claim_next()
        if data is not None:
            self._write_from(data)

    def close_after_queued(self, close_item: Any) -> None:
        """Queue ``close_item`` after everything put so far, and refuse more
        puts (they raise :class:`Closed`)."""
        with self.mutex:
            if self._closed:
                return
            self._append((close_item,))
            self._closed = True
            self._notify("not_empty")
            self._notify("not_full")

    def shutdown(self) -> None:
        """Drop everything, refuse puts, and wait for the writer thread to
        end (the caller has shut the socket down, so a blocked write ends)."""
        with self.mutex:
            self._dead = True
            self._drop_queued()
            self._head = None
            threads = [*self._retired, self._thread]
        for thread in threads:
            if thread is not None and thread is not threading.current_thread():
                thread.join()

    @property
    def writing(self) -> bool:
        """Whether a backlog is being written (a writer thread may exist)."""
        with self.mutex:
            return self._busy

    # -- internals; "locked" means the caller holds self.mutex --------------------

    def _hold(self, frame: Outgoing) -> bool:
        """Serialise ``frame`` and hold it back for the next write, if it is
        small, nobody writes, nothing is queued and fewer than
        ``HOLD_FRAMES`` are held; else False: write or queue it."""
        if len(frame.data) > HOLD_FRAME_BYTES:
            return False
        with self.mutex:
            if self._busy or self.queue or self._dead or self._closed:
                return False
            if len(self._outbox) >= HOLD_FRAMES:
                return False
            data = self._wire.serialize(frame)
            if data is None:
                return False  # closing: put() finds out
            first = not self._outbox
            self._outbox.append(data)
        if first:
            self._wire.flush_by(time.monotonic() + HOLD_SECONDS)
        return True

    def _claim(self, frame: Any) -> bytes | None:
        """If nobody writes and nothing waits, serialise ``frame`` and become
        the writer: return its bytes, after the frames held back. Else
        ``None``: queue it."""
        with self.mutex:
            self._check_open()
            if self._busy or self.queue or self._dead:
                return None
            data = self._wire.serialize(frame)
            if data is None:
                return None  # closing: the reader is about to close the channel
            self._busy = True
            if self._outbox:  # held back: they go first, in the same write
                self._outbox.append(data)
                data = b"".join(self._outbox)
                self._outbox.clear()
            return data

    def _claim_next(self) -> bytes | None:
        """Locked: become the writer for the next chunk if nobody writes."""
        if self._busy or self._dead:
            return None
        data = self._next_chunk()
        if data is not None:
            self._busy = True
        return data

    def _appended(self) -> None:
        # Locked (Channel._append): a frame was queued; make sure someone
        # writes it.
        if not self._busy and not self._dead:
            self._busy = True
            self._start_thread()

    def _next_chunk(self) -> bytes | None:
        """Locked: the next bytes to write: control frames at this frame
        boundary, then serialised frames, then a batch from the queue."""
        if self._dead:
            return None
        if self._control:
            control = b"".join(self._control)
            self._control.clear()
            return control
        if self._outbox:
            if len(self._outbox) == 1 or not self._outbox[0]:
                return self._outbox.pop(0)
            held: list[bytes] = []  # frames held back, and what follows up to an EOF
            while self._outbox and self._outbox[0]:
                held.append(self._outbox.pop(0))
            return b"".join(held)
        while self.queue:
            parts: list[bytes] = []
            size = 0
            count = 0
            while self.queue and count < WRITE_BATCH and size < WRITE_BATCH_BYTES:
                item = self._take(1)[0]
                count += 1
                data = self._wire.serialize(item)
                if data is not None:
                    if data[0] & _OPCODE == _CLOSE:
                        self._close_queued = True
                    parts.append(data)
                    size += len(data)
            self._discard(count)  # taken for sending: done, for Queue.join()
            if parts:
                return parts[0] if len(parts) == 1 else b"".join(parts)
        return None

    def _drop_queued(self) -> None:
        """Locked: drop frames not begun; the rest of a begun frame stays
        (a close frame must not land in the middle of another frame)."""
        self._drop_items()
        # A close frame (and the EOF after it) already serialised stays: the
        # engine will not make another.
        kept = [chunk for chunk in self._outbox if not chunk or chunk[0] & _OPCODE == _CLOSE]
        self._outbox = kept
        self._control.clear()
        self._closed = True
        self._notify("not_empty")
        self._notify("not_full")

    def _write_from(self, data: bytes) -> None:
        """Write ``data`` and what follows it without waiting, in the
        caller's thread, which owns the socket (``_busy``) until it returns;
        what the kernel does not take goes to a writer thread."""
        chunk: bytes | None = data
        for _ in range(DIRECT_CHUNKS):
            assert chunk is not None
            if chunk is EOF or chunk == EOF:
                self._wire.shutdown_write()
                sent = 0
            else:
                started = time.monotonic()
                try:
                    sent = self._wire.send_nowait(chunk)
                except OSError as exc:
                    self._wire.write_failed(exc)
                    self._give_up()
                    return
            with self.mutex:
                if chunk and sent < len(chunk):
                    self._head = memoryview(chunk)[sent:]
                    self._head_started = started
                    self._start_thread()
                    return
                chunk = self._next_chunk()
                if chunk is None:
                    self._busy = False
                    return
        assert chunk is not None  # every pass that took None returned
        with self.mutex:
            self._outbox.insert(0, chunk)
            self._start_thread()

    def _start_thread(self) -> None:
        """Locked: hand the backlog to a writer thread (``_busy`` stays set)."""
        if self._dead:
            self._busy = False
            return
        if self._thread is not None:
            return  # it re-checks the backlog under the lock before it ends
        self._retired = [thread for thread in self._retired if thread.is_alive()]
        # a daemon for the reason the reader is one (connection.py)
        thread = threading.Thread(
            target=self._write_loop, name=f"{self._wire.name} writer", daemon=True
        )
        try:
            thread.start()
        except RuntimeError as exc:  # the process is at its thread limit
            self._stop_writing()
            self._wire.writer_lost(exc)
            return
        self._thread = thread

    def _write_loop(self) -> None:
        # Owns: the socket's writes while a backlog exists. Ends when the
        # backlog is empty, or a write fails, or the connection ends
        # (shutdown() sets _dead; the socket, shut down, ends a blocked send).
        try:
            self._write_backlog()
        except Exception as exc:  # a bug: the connection must not be left wedged
            with self.mutex:
                self._stop_writing()
                self._retire()
                self._wire.writer_lost(exc)

    def _write_backlog(self) -> None:
        while True:
            with self.mutex:
                if self._head is not None:
                    chunk: bytes | memoryview | None = self._head
                    started = self._head_started
                    self._head = None
                else:
                    chunk = self._next_chunk()
                    started = time.monotonic()
                if chunk is None:
                    self._retire()
                    return
            if len(chunk) == 0:
                self._wire.shutdown_write()
            elif not self._wire.send_within(chunk, started):
                self._give_up()
                with self.mutex:
                    self._retire()
                return

    def _retire(self) -> None:
        """Locked: the writer thread ends; a new one may start at once."""
        self._busy = False
        if self._thread is threading.current_thread():
            self._retired.append(self._thread)
            self._thread = None

    def _give_up(self) -> None:
        """A write failed: nothing more is written."""
        with self.mutex:
            self._stop_writing()

    def _stop_writing(self) -> None:
        """Locked: drop what waits and write nothing more."""
        self._dead = True
        self._drop_queued()
        self._head = None
        self._busy = False
