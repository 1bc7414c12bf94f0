"""Following the hub's Redis stream: where a process's reader is, how its
entries become frames, and what the reader missed.

The reader reads with the READ script (:mod:`.redis_scripts`), which gives
the entries after its position together with the stream's state at that
instant. From that state it tells two losses apart from normal reading:

* the stream's last id is behind the position, or the entry at the
  position, or the last one this process published, is no longer there:
  Redis lost its last messages (restarted from an older snapshot or empty,
  or failed over to a replica that had not received them: replication is
  asynchronous);
* entries after the position were trimmed before the reader read them
  (past STREAM_LENGTH or STREAM_BYTES, while it was behind or away). Redis 7
  counts the entries ever added to a stream; the reader counts those up to
  its position, so the difference is what it lost.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any, NamedTuple

from .engine import Outgoing
from .redis_scripts import READ, ROTATE_EPOCH, Keys, run_script
from .transport import Sink

if TYPE_CHECKING:
    import redis

__all__ = [
    "READ_COUNT",
    "STREAM_BYTES",
    "STREAM_LENGTH",
    "StreamFollower",
    "StreamState",
    "format_id",
    "frame_of",
    "new_epoch",
    "parse_id",
    "payload_of",
    "read_stream",
    "text_of",
]

logger = logging.getLogger("flask_sockets_channels.hub")

# Read when used: set them before the hub starts.
#: At most this many messages in the stream, for readers that come back from
#: a blip or fall behind.
STREAM_LENGTH = 10_000
#: At most this many bytes of messages in the stream (their payloads, rooms
#: and ids, as the publish script counts them).
STREAM_BYTES = 64 * 1024 * 1024
#: The most entries one read takes.
READ_COUNT = 1000

EntryId = tuple[int, int]  # (milliseconds, sequence)
_TEXT, _BINARY, _JSON = b"t", b"b", b"j"


class StreamState(NamedTuple):
    """The stream at one instant, as the READ script gives it."""

    last: EntryId  # the id of the last entry ever added ((0, 0): none)
    added: int | None  # how many entries were ever added (None: Redis < 7)
    length: int
    first: EntryId | None  # the oldest entry's id (None: empty)
    # Whether the entries at the position and at the id published last are
    # still there (or older than the first, which cannot be told).
    position_kept: bool = True
    published_kept: bool = True


def read_stream(
    client: redis.Redis,
    stream: str,
    position: EntryId,
    count: int,
    published: EntryId | None = None,
) -> tuple[StreamState, list[tuple[Any, dict[bytes, bytes]]]]:
    """The stream's state and up to ``count`` entries after ``position``,
    read at one instant.

    Raises:
        redis.exceptions.RedisError: Redis cannot be reached or refused it.
    """
    mine = "" if published is None else format_id(published)
    last, added, length, first, raw, position_kept, published_kept = run_script(
        client, READ, (stream,), (format_id(position), count, mine)
    )
    state = StreamState(
        parse_id(last),
        None if added is None or int(added) < 0 else int(added),
        int(length),
        parse_id(first) if first else None,
        bool(int(position_kept)),
        bool(int(published_kept)),
    )
    entries = []
    for raw_id, fields in raw:
        if not isinstance(fields, dict):
            fields = dict(zip(fields[::2], fields[1::2]))
        entries.append((raw_id, fields))
    return state, entries


class StreamFollower:
    """Where one process's reader is in a partition's stream; delivers what
    it reads to the sink. Used by the reader thread only, but
    :attr:`published`.

    Attributes:
        position: The id of the last entry delivered (or skipped); None
            before the reader knows where the stream ends.
        published: The id of the last message this process published to
            the stream (set by the publishing thread), checked at each read.
        messages_lost: Entries trimmed before this reader read them.
    """

    def __init__(self, url: str | None, origin: str, keys: Keys | None = None) -> None:
        self.url = url
        self.origin = origin
        self.keys = keys or Keys()
        self.position: EntryId | None = None
        self.published: EntryId | None = None
        self.messages_lost = 0
        # How many entries the stream had added up to the position, as Redis
        # counts them (None: not known).
        self._seen: int | None = None

    def start_at(self, state: StreamState) -> None:
        """Follow the stream from its end in ``state``."""
        self.position, self._seen = state.last, state.added

    def catch_up(self, client: redis.Redis, sink: Sink) -> bool:
        """Deliver, in stream order, up to READ_COUNT entries after the
        position, and say what was lost before them. True once at the
        stream's end. Blocks for one read (the client's timeout).

        Raises:
            redis.exceptions.RedisError: Redis cannot be reached or refused it.
        """
        assert self.position is not None
        published = self.published
        state, entries = read_stream(client, self.keys.stream, self.position, READ_COUNT, published)
        if state.last < self.position or not state.position_kept or not state.published_kept:
            self._lost_by_redis(state, published, client, sink)
            return False
        self._count_trimmed(state)
        for raw_id, fields in entries:
            self.position = parse_id(raw_id)
            if self._seen is not None:
                self._seen += 1
            self._dispatch(self.position, fields, sink)
        if len(entries) == READ_COUNT:
            return False
        if self.position == state.last:
            self._seen = state.added  # exact again, whatever happened before
        return True

    def wait(self, client: redis.Redis, block: float) -> None:
        """Wait up to ``block`` seconds for an entry after the position.

        What this read returns is not delivered: :meth:`catch_up` reads it
        again, with the stream's state, so that nothing escapes the check
        that the stream still had everything before it.

        Raises:
            redis.exceptions.RedisError: Redis cannot be reached or refused it.
        """
        assert self.position is not None
        client.xread({self.keys.stream: format_id(self.position)}, count=1, block=int(block * 1000))

    def _lost_by_redis(
        self,
        state: StreamState,
        published: EntryId | None,
        client: redis.Redis,
        sink: Sink,
    ) -> None:
        """Redis lost entries it had acknowledged: the stream went back, or
        the entry at the position or the last one published here is gone.
        Read on from the last entry still there up to the position, under a
        new epoch.

        Redis makes each new id above the stream's last one, so the entries
        still there up to the position were delivered here already, and
        those after it are new (with Redis hosts' clocks within the time a
        failover takes). A position a page received before (an id of the
        lost entries, or one Redis will make again) names nothing of what
        Redis keeps now: the epoch changes, so that a resume from it is
        told so, and this process forgets what it knew of the rooms'
        histories.

        Raises:
            redis.exceptions.RedisError: Redis cannot be reached or refused it.
        """
        assert self.position is not None
        if state.last < self.position:
            what = f"went back from {format_id(self.position)} to {format_id(state.last)}"
        elif not state.position_kept:
            what = f"no longer has {format_id(self.position)}, which this process read"
        else:
            assert published is not None
            what = f"no longer has {format_id(published)}, which this process published"
        logger.warning(
            "hub: the stream at %s %s: Redis restarted from an older snapshot or empty, or"
            " failed over to a lagging replica (replication is asynchronous); messages"
            " published in between that Redis no longer keeps are lost here",
            self.url, what,
        )  # fmt: skip
        run_script(client, ROTATE_EPOCH, (self.keys.epoch,), (new_epoch(),))
        sink.history_broken()
        if self.published == published:
            self.published = None
        if state.last < self.position:
            self.start_at(state)
            return
        before: Any = client.xrevrange(self.keys.stream, format_id(self.position), "-", count=1)
        self.position = parse_id(before[0][0]) if before else (0, 0)
        self._seen = None  # exact again at the stream's end

    def _count_trimmed(self, state: StreamState) -> None:
        """Count and log the entries after the position that the stream
        trimmed before this reader read them."""
        assert self.position is not None
        if state.added is None or self._seen is None:
            return
        if state.first is not None and state.first <= self.position:
            return  # the stream trims its oldest first: none after us yet
        lost = state.added - state.length - self._seen
        if lost <= 0:
            return
        self._seen += lost
        self.messages_lost += lost
        logger.warning(
            "hub: %d messages published to %s after %d-%d were trimmed from its stream before"
            " this process read them (the stream keeps %d messages and %d bytes; the reader was"
            " behind or away): they are lost here",
            lost, self.url, *self.position, STREAM_LENGTH, STREAM_BYTES,
        )  # fmt: skip

    def _dispatch(self, entry_id: EntryId, fields: dict[bytes, bytes], sink: Sink) -> None:
        """Deliver one entry; log and drop a malformed one."""
        try:
            room = fields[b"r"].decode()
            frame = frame_of(fields[b"f"])
            ours = fields.get(b"o", b"").decode() == self.origin
            excluded = fields.get(b"x", b"").decode()
            exclude = {int(n) for n in excluded.split(",") if n} if ours else set()
            epoch = fields.get(b"e", b"").decode()
        except (KeyError, ValueError) as exc:  # UnicodeDecodeError included
            logger.warning("hub: dropped malformed message %d-%d: %s", *entry_id, exc)
            return
        sink.deliver(room, entry_id, frame, exclude, epoch)


def new_epoch() -> str:
    """A fresh epoch: random, short (it travels with every position)."""
    return uuid.uuid4().hex[:12]


def payload_of(frame: Outgoing) -> bytes:
    """What the stream keeps of ``frame``: its kind, then its payload."""
    return (_JSON if frame.json else _TEXT if frame.text else _BINARY) + frame.data


def frame_of(data: bytes) -> Outgoing:
    """The frame a stream entry's ``f`` field holds.

    Raises:
        ValueError: An unknown kind, or text that is not UTF-8.
    """
    kind, payload = data[:1], data[1:]
    if kind in (_TEXT, _JSON):
        payload.decode()  # a text frame must be UTF-8
        return Outgoing(True, payload, json=kind == _JSON)
    if kind == _BINARY:
        return Outgoing(False, payload)
    raise ValueError(f"unknown kind {kind!r}")


def text_of(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def format_id(entry_id: EntryId) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"


def parse_id(raw: Any) -> EntryId:
    milliseconds, _, sequence = text_of(raw).partition("-")
    return int(milliseconds), int(sequence or 0)
