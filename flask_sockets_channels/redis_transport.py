"""The hub's Redis transport: one stream for every room, one reader thread
per process.

What it keeps in Redis (``P`` is ``flask-sockets-channels:``)::

    P stream              every message: XADD MAXLEN ~ STREAM_LENGTH; fields
                          r (room), f (kind b"t"/b"b" + payload),
                          o (publishing process), x (members it excluded there)
    P history:<room>      the room's last messages (XADD MAXLEN N): i (stream
                          id), f; expires ROOM_TTL after its last message or member
    P history-length      the largest history a reading process keeps, so that
                          a publisher without one (a script) keeps as many
    P presence:<room>     hash: process -> JSON list of its members' presence
    P process:<process>   exists while the process lives (its heartbeat sets it
                          every HEARTBEAT_PERIOD, for PROCESS_TTL seconds)

``publish`` is one script (XADD to the stream and to the room's history, at
once: a replay that reads the history has every message up to its last id).
Each process's reader follows the stream with ``XREAD BLOCK`` from the last
id it delivered, and delivers every message, its own process's too, in
stream order. A reader that lost its connection reads on from that id when
it is back, so a blip loses nothing (unless STREAM_LENGTH messages came
meanwhile). A reply that does not come within READ_TIMEOUT means a dead
(half-open) connection: the reader drops it and connects again.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Collection, Iterable
from typing import Any, Generic, NoReturn, TypeVar, cast
from urllib.parse import urlsplit

from .engine import Outgoing
from .exceptions import HubUnavailable
from .transport import ROOM_TTL, EntryId, Sink, display_url, url_secrets

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "Hub.from_url('redis://...') needs redis-py: pip install flask-sockets-channels[redis]"
    ) from exc

__all__ = ["RedisTransport"]

T = TypeVar("T")

logger = logging.getLogger("flask_sockets_channels.hub")

PREFIX = "flask-sockets-channels:"
STREAM = PREFIX + "stream"
HISTORY_LENGTH = PREFIX + "history-length"
#: Messages the stream keeps for readers that come back from a blip (about).
STREAM_LENGTH = 10_000
#: How long one XREAD waits for a message.
READ_BLOCK = 5.0
#: No reply for this long: the reader's connection is dead.
READ_TIMEOUT = READ_BLOCK + 10.0
HEARTBEAT_PERIOD = 5.0
#: A process that stopped its heartbeat this long ago is gone from presence.
PROCESS_TTL = 20
#: How often a process keeps its rooms' history and presence from expiring.
ROOM_REFRESH_PERIOD = 60.0
CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 5.0
READ_COUNT = 1000
RECONNECT_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)
#: How long close() waits for the reader thread.
CLOSE_WAIT = 5.0

_PUBLISH = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
                      'r', ARGV[3], 'f', ARGV[4], 'o', ARGV[5], 'x', ARGV[6])
local keep = math.max(tonumber(ARGV[2]), tonumber(redis.call('GET', KEYS[3]) or '0') or 0)
if keep > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', keep, '*', 'i', id, 'f', ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[7])
end
return id
"""
_ADVERTISE_HISTORY = """
if tonumber(redis.call('GET', KEYS[1]) or '0') <= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
return 1
"""
_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
_REFUSED = (redis.exceptions.ResponseError, redis.exceptions.BusyLoadingError)
_TEXT, _BINARY = b"t", b"b"
# redis-py < 5.3 wants a command name here; later versions warn when given one.
_CHECKOUT_PARAMETER = inspect.signature(redis.ConnectionPool.get_connection).parameters.get(
    "command_name"
)
_CHECKOUT_NEEDS_NAME = (
    _CHECKOUT_PARAMETER is not None and _CHECKOUT_PARAMETER.default is inspect.Parameter.empty
)


class _Secret(Generic[T]):
    """A value kept out of ``repr`` and ``vars()`` dumps: the URL, its
    passwords, and redis-py clients (whose ``repr`` shows the password)."""

    def __init__(self, value: T) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<secret>"


class RedisTransport:
    """Publishes to the Redis stream and delivers what every process
    published to this process's hub.

    Raises:
        ValueError: ``url`` is malformed or not a Redis URL (the message
            never shows its password).
    """

    def __init__(self, url: str, history: int = 0) -> None:
        self.url: str | None = display_url(url)
        self.history_length = history
        self._url = _Secret(url)
        self._secrets = _Secret(url_secrets(url))
        self._check(url)
        self._start_afresh()

    def _start_afresh(self) -> None:
        """State of one process: a new identity, no thread, no connection."""
        self._origin = uuid.uuid4().hex[:16]
        self.reconnects = 0  # written by the reader thread only
        self._lock = threading.Lock()  # guards _thread, _reader, _unsynced
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._reader: _Secret[redis.Redis | None] = _Secret(None)
        self._position: tuple[int, int] | None = None
        self._unsynced: set[str] = set()  # rooms whose presence is to be written
        self._next_refresh = 0.0
        self._redis = self._new_client(
            f"publisher:{os.getpid()}:{self._origin}", COMMAND_TIMEOUT, override=False
        )

    @property
    def _client(self) -> redis.Redis:
        """The client for publishing, presence, history and the heartbeat."""
        return self._redis.value

    def after_fork(self) -> None:
        self._start_afresh()

    def __repr__(self) -> str:
        return f"<RedisTransport {self.url}>"

    # -- publishing ----------------------------------------------------------

    def publish(self, room: str, frame: Outgoing, exclude: Collection[int]) -> None:
        """Add ``frame`` to the stream and to the room's history.

        Raises:
            HubUnavailable: With ``maybe_delivered`` False when no
                connection could be made or Redis refused the script, True
                when it was sent and no reply came.
        """
        payload = (_TEXT if frame.text else _BINARY) + frame.data
        keys = (STREAM, PREFIX + "history:" + room, HISTORY_LENGTH)
        args = (STREAM_LENGTH, self.history_length, room, payload, self._origin)
        excluded = ",".join(map(str, sorted(exclude)))
        self._send_once("EVAL", _PUBLISH, len(keys), *keys, *args, excluded, int(ROOM_TTL))

    def _send_once(self, *command: Any) -> Any:
        """Run ``command`` once, never retried (a retry after a timeout could
        deliver it twice), and tell whether a failure may have delivered it."""
        pool = self._client.connection_pool
        try:
            connection = _checkout(pool)
        except _ERRORS as exc:
            self._raise(exc, maybe_delivered=False)
        try:
            try:
                connection.send_command(*command)
            except _ERRORS as exc:  # a partial command is never run
                connection.disconnect()
                self._raise(exc, maybe_delivered=False)
            try:
                return connection.read_response()
            except _REFUSED as exc:
                self._raise(exc, maybe_delivered=False)
            except _ERRORS as exc:
                connection.disconnect()
                self._raise(exc, maybe_delivered=True)
        finally:
            pool.release(connection)

    def history(self, room: str) -> list[tuple[EntryId, Outgoing]]:
        """The room's last ``history`` messages, oldest first, read once the
        reader is in the stream: every later message is then delivered.
        Blocks up to COMMAND_TIMEOUT for the reader, then for one read.

        Raises:
            HubUnavailable: Redis cannot be reached.
        """
        if not self.history_length:
            return []
        # Read before the reader has found its place in the stream, the
        # history could end before that place: what came in between would
        # be lost to the replaying member.
        if not self._ready.wait(COMMAND_TIMEOUT):
            raise HubUnavailable(f"hub at {self.url} is unavailable: the reader is not connected")
        try:
            entries: Any = self._client.xrevrange(
                PREFIX + "history:" + room, count=self.history_length
            )
        except (*_ERRORS, *_REFUSED) as exc:
            self._raise(exc)
        kept = []
        for _, fields in reversed(entries or []):
            try:
                kept.append((_parse_id(fields[b"i"]), _frame(fields[b"f"])))
            except (KeyError, ValueError) as exc:
                logger.warning("hub: dropped a malformed history entry of %r: %s", room, exc)
        return kept

    # -- presence ------------------------------------------------------------

    def set_presence(self, room: str, values: list[str]) -> None:
        """Write this process's presence in ``room`` now (one round trip);
        if that fails, the reader writes it later. Never raises."""
        key = PREFIX + "presence:" + room
        try:
            with self._client.pipeline(transaction=True) as pipe:
                if values:
                    pipe.hset(key, self._origin, "[" + ",".join(values) + "]")
                    pipe.expire(key, int(ROOM_TTL))
                else:
                    pipe.hdel(key, self._origin)
                # Others list this process's members only while this key lives.
                pipe.set(PREFIX + "process:" + self._origin, 1, ex=PROCESS_TTL)
                pipe.execute()
        except (*_ERRORS, *_REFUSED) as exc:
            self.presence_changed([room])
            logger.warning(
                "hub: presence in %r not written to %s (%s); retrying",
                room, self.url, self._scrub(exc),
            )  # fmt: skip

    def presence_changed(self, rooms: Iterable[str]) -> None:
        """Have the reader write this process's presence in ``rooms``
        (after its next read, or at its heartbeat). Never blocks."""
        with self._lock:
            self._unsynced.update(rooms)

    def presence(self, room: str) -> list[Any]:
        """The presence values of the other live processes' members.

        Raises:
            HubUnavailable: Redis cannot be reached.
        """
        key = PREFIX + "presence:" + room
        try:
            fields = cast("dict[Any, Any]", self._client.hgetall(key))
            others = {_text(k): v for k, v in fields.items() if _text(k) != self._origin}
            keys = [PREFIX + "process:" + p for p in others]
            alive = cast("list[Any]", self._client.mget(keys)) if others else []
        except (*_ERRORS, *_REFUSED) as exc:
            self._raise(exc)
        values: list[Any] = []
        dead = []
        for (process, encoded), live in zip(others.items(), alive):
            if live is None:
                dead.append(process)
                continue
            try:
                values.extend(json.loads(encoded))
            except (ValueError, TypeError) as exc:
                logger.warning("hub: malformed presence of %r in %r: %s", process, room, exc)
        if dead:
            try:
                self._client.hdel(key, *dead)
            except (*_ERRORS, *_REFUSED):
                logger.debug("hub: could not remove dead processes from %r", room)
        return values

    # -- the reader ----------------------------------------------------------

    def start(self, sink: Sink) -> None:
        """Start the reader thread, unless it runs (idempotent).

        The reader starts from the end the stream has now, asked of Redis
        before this returns (one round trip, at most COMMAND_TIMEOUT, on a
        process's first join): a message published once the first join has
        returned is delivered here, even if the reader connects later. If
        Redis cannot answer, the reader starts where the stream ends when
        it connects.
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
        position = self._stream_end()
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return  # another join started it meanwhile
            self._stop = threading.Event()
            self._position = position
            self._thread = threading.Thread(
                target=self._read_loop,
                args=(sink, self._stop),
                name="flask-sockets-channels hub",
                daemon=True,
            )
            self._thread.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Once the reader runs (a process that joined): wait until it has
        read the stream on a working connection. Before (a process that
        only publishes): whether Redis answers a PING, asked again until
        ``timeout``; with ``timeout`` None, asked once (at most
        CONNECT_TIMEOUT + COMMAND_TIMEOUT)."""
        with self._lock:
            reading = self._thread is not None and self._thread.is_alive()
        if reading:
            return self._ready.wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        attempt = 0
        while True:
            if self._answers(None if deadline is None else deadline - time.monotonic()):
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is None or left <= 0:
                return False
            time.sleep(min(RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)], left))
            attempt += 1

    def _answers(self, within: float | None) -> bool:
        """Whether Redis answers a PING within ``within`` seconds (None:
        CONNECT_TIMEOUT to connect, COMMAND_TIMEOUT for the answer)."""
        connect_timeout, timeout = CONNECT_TIMEOUT, COMMAND_TIMEOUT
        if within is not None:
            connect_timeout, timeout = (
                max(0.001, min(t, within)) for t in (connect_timeout, timeout)
            )
        client = None
        try:
            # Connects at once: a single-connection client.
            client = self._new_client(
                f"ping:{os.getpid()}:{self._origin}", timeout, True, connect_timeout
            ).value
            return bool(client.ping())
        except (*_ERRORS, *_REFUSED):
            return False
        finally:
            if client is not None:
                _dispose(client)

    def close(self) -> None:
        """Stop the reader and wait for it (at most CLOSE_WAIT seconds)."""
        with self._lock:
            thread, self._thread = self._thread, None
            reader = self._reader.value
            self._stop.set()
        if reader is not None:
            _interrupt(reader)
        if thread is not None and thread is not threading.current_thread():
            thread.join(CLOSE_WAIT)
            if thread.is_alive():
                logger.warning("hub: the reader of %s did not stop in time", self.url)
        self._ready.clear()
        _dispose(self._client)

    def _read_loop(self, sink: Sink, stop: threading.Event) -> None:
        # Owns: the reader connection, the position in the stream, the
        # heartbeat. Ends when close() sets `stop`; close() also shuts the
        # connection's socket, which ends a blocked XREAD at once.
        failures = 0
        while not stop.is_set():
            client = None
            try:
                client = self._new_client(
                    f"reader:{os.getpid()}:{self._origin}", READ_TIMEOUT, override=True
                ).value
                with self._lock:
                    self._reader = _Secret(client)
                if stop.is_set():
                    break
                self._resume(client)
                if failures:
                    # Counted before anything is delivered on the new
                    # connection: whoever got a message sees the reconnect.
                    self.reconnects += 1
                    logger.info("hub: reconnected to %s", self.url)
                self._read(client, sink, block=None)
                self._heartbeat(sink, resync=True)
                self._ready.set()
                failures = 0
                next_heartbeat = time.monotonic() + HEARTBEAT_PERIOD
                while not stop.is_set():
                    # Wake for the heartbeat: PROCESS_TTL must never lapse.
                    until_heartbeat = next_heartbeat - time.monotonic()
                    self._read(client, sink, block=min(READ_BLOCK, max(0.01, until_heartbeat)))
                    if time.monotonic() >= next_heartbeat:
                        self._heartbeat(sink)
                        next_heartbeat = time.monotonic() + HEARTBEAT_PERIOD
                    elif self._unsynced:
                        sink.write_presence(self._take_unsynced())
            except (*_ERRORS, *_REFUSED) as exc:
                self._ready.clear()
                if stop.is_set():
                    break
                delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                failures += 1
                if failures == 1:
                    logger.warning("hub: lost %s (%s); reconnecting", self.url, self._scrub(exc))
                stop.wait(delay)
            except Exception:  # a bug: log it, never end the reader
                self._ready.clear()
                logger.exception("hub: reader error; reconnecting")
                stop.wait(RECONNECT_DELAYS[-1])
            finally:
                with self._lock:
                    if self._reader.value is client:
                        self._reader = _Secret(None)
                if client is not None:
                    _dispose(client)
        self._ready.clear()

    def _stream_end(self) -> tuple[int, int] | None:
        """The id of the stream's last message now ((0, 0): no stream yet,
        read it from its start); ``None`` if Redis does not answer."""
        try:
            info = _stream_info(self._client)
        except (*_ERRORS, *_REFUSED):
            return None
        return _parse_id(info["last-generated-id"]) if info else (0, 0)

    def _resume(self, client: redis.Redis) -> None:
        """Find where to read from: where this reader left off, unless
        Redis lost the stream meanwhile."""
        info = _stream_info(client)
        last = _parse_id(info["last-generated-id"]) if info else (0, 0)
        if self._position is None:
            self._position = last
            return
        if last < self._position:
            logger.warning(
                "hub: %s lost its stream (restarted empty?): what it had not delivered"
                " here is lost",
                self.url,
            )
            self._position = (0, 0)
            return
        deleted = info.get("max-deleted-entry-id")
        if deleted is not None and _parse_id(deleted) > self._position:
            logger.warning(
                "hub: more than %d messages were published while this process was"
                " away from %s: the oldest of them are lost here",
                STREAM_LENGTH, self.url,
            )  # fmt: skip

    def _read(self, client: redis.Redis, sink: Sink, block: float | None) -> None:
        """Read the next messages (waiting up to ``block`` seconds for one)
        and deliver them, in stream order."""
        assert self._position is not None
        position = "{}-{}".format(*self._position)
        reply = client.xread(
            {STREAM: position},
            count=READ_COUNT,
            block=None if block is None else int(block * 1000),
        )
        for raw_id, fields in _entries(reply):
            self._position = _parse_id(raw_id)
            self._dispatch(self._position, fields, sink)

    def _dispatch(self, entry_id: tuple[int, int], fields: dict[bytes, bytes], sink: Sink) -> None:
        """Deliver one stream entry; log and drop a malformed one."""
        try:
            room = fields[b"r"].decode()
            frame = _frame(fields[b"f"])
            ours = fields.get(b"o", b"").decode() == self._origin
            excluded = fields.get(b"x", b"").decode()
            exclude = {int(n) for n in excluded.split(",") if n} if ours else set()
        except (KeyError, ValueError) as exc:  # UnicodeDecodeError included
            logger.warning("hub: dropped malformed message %d-%d: %s", *entry_id, exc)
            return
        sink.deliver(room, entry_id, frame, exclude)

    def _heartbeat(self, sink: Sink, resync: bool = False) -> None:
        """Keep this process in presence; every ROOM_REFRESH_PERIOD, keep
        its rooms from expiring; write the presence that changed, and all
        of it if Redis lost it. Runs on the publishing connections: the
        reader's only reads."""
        sink.sweep()
        now = time.monotonic()
        refresh = resync or now >= self._next_refresh
        with self._client.pipeline(transaction=False) as pipe:
            pipe.set(PREFIX + "process:" + self._origin, 1, ex=PROCESS_TTL, get=True)
            if refresh:
                self._next_refresh = now + ROOM_REFRESH_PERIOD
                for room in sink.rooms():
                    pipe.expire(PREFIX + "history:" + room, int(ROOM_TTL))
                    pipe.expire(PREFIX + "presence:" + room, int(ROOM_TTL))
                if self.history_length:
                    pipe.eval(
                        _ADVERTISE_HISTORY, 1, HISTORY_LENGTH,
                        self.history_length, int(3 * ROOM_REFRESH_PERIOD),
                    )  # fmt: skip
            was_alive = pipe.execute()[0] is not None
        rooms = self._take_unsynced()
        if resync or not was_alive:
            sink.resync_presence(rooms)
        elif rooms:
            sink.write_presence(rooms)

    def _take_unsynced(self) -> set[str]:
        """The rooms whose presence is to be written, now marked written:
        a change after this is marked again."""
        with self._lock:
            rooms, self._unsynced = self._unsynced, set()
        return rooms

    # -- helpers -------------------------------------------------------------

    def _new_client(
        self,
        role: str,
        timeout: float,
        override: bool,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> _Secret[redis.Redis]:
        """A client named after ``role`` (CLIENT LIST shows it), never
        retrying by itself. With ``override`` (the reader, a PING), its own
        timeouts whatever the URL says: the reader must wait out a
        READ_BLOCK."""
        pool = redis.ConnectionPool.from_url(
            self._url.value,
            socket_connect_timeout=connect_timeout,
            socket_timeout=timeout,
            client_name=PREFIX + role,
            retry=Retry(NoBackoff(), 0),
        )
        if override:
            pool.connection_kwargs.update(
                socket_timeout=timeout, socket_connect_timeout=connect_timeout
            )
        return _Secret(redis.Redis(connection_pool=pool, single_connection_client=override))

    def _check(self, url: str) -> None:
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"unsupported hub URL {self.url}: use redis://, rediss:// or unix://")
        try:
            redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
            path = urlsplit(url).path.strip("/")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"invalid hub URL {self.url}: {self._scrub(exc)}") from None
        if scheme != "unix" and path and not path.isdigit():
            raise ValueError(f"invalid hub URL {self.url}: the path must be a database number")

    def _scrub(self, error: BaseException) -> str:
        text = str(error) or type(error).__name__
        for secret in self._secrets.value:
            text = text.replace(secret, "***")
        return text

    def _raise(self, error: BaseException, maybe_delivered: bool | None = None) -> NoReturn:
        """Raise HubUnavailable for ``error``, keeping it as the cause unless
        its text shows a password."""
        detail = self._scrub(error)
        if maybe_delivered:
            message = f"hub at {self.url} did not answer ({detail}): the message may be delivered"
        elif maybe_delivered is None:
            message = f"hub at {self.url} is unavailable ({detail})"
        else:
            message = f"hub at {self.url} is unavailable ({detail}): the message was not sent"
        cause = error if detail == (str(error) or type(error).__name__) else None
        raise HubUnavailable(message, bool(maybe_delivered)) from cause


def _interrupt(client: redis.Redis) -> None:
    """End a blocked read on ``client``'s connection from another thread."""
    sock = getattr(getattr(client, "connection", None), "_sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)


def _checkout(pool: redis.ConnectionPool) -> Any:
    """A connected connection of ``pool``.

    Raises:
        redis.exceptions.ConnectionError: None could be made.
    """
    return pool.get_connection("EVAL") if _CHECKOUT_NEEDS_NAME else pool.get_connection()


def _dispose(client: redis.Redis) -> None:
    """Close ``client`` and its pool's sockets (the pool is ours: a client
    given a pool leaves it open)."""
    client.close()
    client.connection_pool.disconnect()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse_id(raw: Any) -> tuple[int, int]:
    milliseconds, _, sequence = _text(raw).partition("-")
    return int(milliseconds), int(sequence or 0)


def _frame(data: bytes) -> Outgoing:
    kind, payload = data[:1], data[1:]
    if kind == _TEXT:
        payload.decode()  # a text frame must be UTF-8
        return Outgoing(True, payload)
    if kind == _BINARY:
        return Outgoing(False, payload)
    raise ValueError(f"unknown kind {kind!r}")


def _stream_info(client: redis.Redis) -> dict[str, Any]:
    """``XINFO STREAM`` of the hub's stream; empty when there is none yet
    (nothing published)."""
    try:
        stream = cast("dict[Any, Any]", client.xinfo_stream(STREAM))
    except redis.exceptions.ResponseError:  # no such key
        return {}
    return {_text(k): v for k, v in stream.items()}


def _entries(reply: Any) -> Iterable[tuple[Any, dict[bytes, bytes]]]:
    """The entries of an XREAD reply, in RESP2 (a list of [stream, entries])
    or RESP3 (a map of stream to entries) form."""
    if not reply:
        return []
    streams = reply.values() if isinstance(reply, dict) else [item[1] for item in reply]
    found = []
    for entries in streams:
        for entry in entries:
            if isinstance(entry[0], list):  # RESP3 nests one level deeper in some versions
                entry = entry[0]
            raw_id, fields = entry[0], entry[1]
            if not isinstance(fields, dict):
                fields = dict(zip(fields[::2], fields[1::2]))
            found.append((raw_id, fields))
    return found
