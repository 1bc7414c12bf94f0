"""The hub's Redis transport: one stream for every room, one reader thread
per process.

What it keeps in Redis, and the scripts that change it, are in
:mod:`.redis_scripts`. ``publish`` is one script: it adds the message to the
stream and to the room's history at once (a replay that reads the history
has every message up to its last id), and trims the stream to
STREAM_LENGTH messages and STREAM_BYTES bytes.

Each process's reader follows the stream from the last id it delivered and
delivers every message, its own process's too, in stream order. A reader
that lost its connection reads on from that id when it is back, so a blip
loses nothing unless the stream's bounds were passed meanwhile; what it
missed then, or while it fell behind, it counts and logs. A reply that does
not come within READ_TIMEOUT means a dead (half-open) connection: the reader
drops it and connects again.
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

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import redis_stream
from .engine import Outgoing
from .exceptions import HubUnavailable
from .redis_scripts import (
    ADVERTISE_HISTORY,
    EPOCH,
    HEARTBEAT,
    HISTORY,
    HISTORY_LENGTH,
    PREFIX,
    PROCESSES,
    PUBLISH,
    SET_PRESENCE,
    STREAM,
    STREAM_BYTES_KEY,
    STREAM_SINCE,
    run_script,
    script_sha,
)
from .redis_stream import (
    StreamFollower,
    frame_of,
    new_epoch,
    parse_id,
    payload_of,
    read_stream,
    text_of,
)
from .resume import Kept
from .transport import ROOM_TTL, Sink, display_url, url_secrets

__all__ = ["RedisTransport"]

T = TypeVar("T")

logger = logging.getLogger("flask_sockets_channels.hub")

# Read when used: set them before the hub starts. The stream's bounds are
# in redis_stream.
#: How long one XREAD waits for a message.
READ_BLOCK = 5.0
#: No reply for this long: the reader's connection is dead.
READ_TIMEOUT = READ_BLOCK + 10.0
HEARTBEAT_PERIOD = 5.0
#: A process that stopped its heartbeat this long ago is gone from presence.
PROCESS_TTL = 20
#: How many dead processes one heartbeat removes from presence at most.
REAP_LIMIT = 100
#: How often a process keeps its rooms' history and presence from expiring.
ROOM_REFRESH_PERIOD = 60.0
CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 5.0
RECONNECT_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)
#: How long close() waits for the reader thread.
CLOSE_WAIT = 5.0

_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
_REFUSED = (redis.exceptions.ResponseError, redis.exceptions.BusyLoadingError)
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

    Attributes:
        reconnects: How many times the reader lost its connection and made
            it again.

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
        self._follower = StreamFollower(self.url, self._origin)  # the reader's
        self._unsynced: set[str] = set()  # rooms whose presence is to be written
        self._next_refresh = 0.0
        self._last_heartbeat: float | None = None
        self._redis = self._new_client(
            f"publisher:{os.getpid()}:{self._origin}", COMMAND_TIMEOUT, override=False
        )

    @property
    def messages_lost(self) -> int:
        """Messages the reader never read: trimmed from the stream (past its
        bounds) while it was behind or away. Counted with Redis 7 and later."""
        return self._follower.messages_lost

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
        """Add ``frame`` to the stream and to the room's history, and trim
        the stream to its bounds.

        Raises:
            HubUnavailable: With ``maybe_delivered`` False when no
                connection could be made or Redis refused the script, True
                when it was sent and no reply came.
        """
        payload = payload_of(frame)
        history = PREFIX + "history:" + room
        keys = (STREAM, STREAM_BYTES_KEY, STREAM_SINCE, history, HISTORY_LENGTH, EPOCH)
        excluded = ",".join(map(str, sorted(exclude)))
        args = (room, payload, self._origin, excluded, self.history_length, int(ROOM_TTL))
        bounds = (redis_stream.STREAM_LENGTH, redis_stream.STREAM_BYTES)
        self._send_once(keys, (*args, *bounds, new_epoch()))

    def _send_once(self, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
        """Run the publish script once, never retried (a retry after a
        timeout could deliver it twice), and tell whether a failure may
        have delivered it. Sends the script itself only when Redis does
        not know it yet (NOSCRIPT: nothing was run)."""
        pool = self._client.connection_pool
        try:
            connection = _checkout(pool)
        except _ERRORS as exc:
            self._raise(exc, maybe_delivered=False)
        try:
            for command in (("EVALSHA", script_sha(PUBLISH)), ("EVAL", PUBLISH)):
                try:
                    connection.send_command(*command, len(keys), *keys, *args)
                except _ERRORS as exc:  # a partial command is never run
                    connection.disconnect()
                    self._raise(exc, maybe_delivered=False)
                try:
                    return connection.read_response()
                except redis.exceptions.NoScriptError:
                    continue
                except _REFUSED as exc:
                    self._raise(exc, maybe_delivered=False)
                except _ERRORS as exc:
                    connection.disconnect()
                    self._raise(exc, maybe_delivered=True)
        finally:
            pool.release(connection)

    def history(self, room: str) -> Kept:
        """The room's last ``history`` messages, oldest first, with the
        stream's epoch, read once the reader is in the stream: every later
        message is then delivered. Blocks up to COMMAND_TIMEOUT for the
        reader, then for one read.

        Raises:
            HubUnavailable: Redis cannot be reached.
        """
        # Read before the reader has found its place in the stream, the
        # history could end before that place: what came in between would
        # be lost to the replaying member.
        if not self._ready.wait(COMMAND_TIMEOUT):
            raise HubUnavailable(f"hub at {self.url} is unavailable: the reader is not connected")
        keys = (PREFIX + "history:" + room, EPOCH)
        try:
            epoch, added, length, entries = run_script(
                self._client, HISTORY, keys, (self.history_length, new_epoch())
            )
        except (*_ERRORS, *_REFUSED) as exc:
            self._raise(exc)
        kept = []
        for raw_id, fields in reversed(entries or []):
            if not isinstance(fields, dict):
                fields = dict(zip(fields[::2], fields[1::2]))
            try:
                kept.append((parse_id(raw_id), frame_of(fields[b"f"])))
            except (KeyError, ValueError) as exc:
                logger.warning("hub: dropped a malformed history entry of %r: %s", room, exc)
        complete = int(added) >= 0 and int(added) == int(length) == len(entries or [])
        return Kept(text_of(epoch), kept, complete, kept[-1][0] if kept else None)

    # -- presence ------------------------------------------------------------

    def set_presence(self, room: str, values: list[str]) -> None:
        """Write this process's presence in ``room`` now (one round trip);
        if that fails, the reader writes it later. Never raises."""
        keys = (
            PREFIX + "presence:" + room,
            PREFIX + "rooms:" + self._origin,
            PREFIX + "process:" + self._origin,
            PROCESSES,
        )
        value = "[" + ",".join(values) + "]" if values else ""
        args = (self._origin, room, value, PROCESS_TTL, int(ROOM_TTL))
        try:
            run_script(self._client, SET_PRESENCE, keys, args)
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
            others = {text_of(k): v for k, v in fields.items() if text_of(k) != self._origin}
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
        try:
            state = read_stream(self._client, (0, 0), 0)[0]
        except (*_ERRORS, *_REFUSED):
            state = None
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return  # another join started it meanwhile
            self._stop = threading.Event()
            if state is None:
                self._follower.position = None
            else:
                self._follower.start_at(state)
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
                if self._follower.position is None:  # Redis did not answer at start()
                    self._follower.start_at(read_stream(client, (0, 0), 0)[0])
                if failures:
                    # Counted before anything is delivered on the new
                    # connection: whoever got a message sees the reconnect.
                    self.reconnects += 1
                    logger.info("hub: reconnected to %s", self.url)
                while not self._follower.catch_up(client, sink):
                    pass
                self._heartbeat(sink, resync=True)
                self._ready.set()
                failures = 0
                self._follow(client, sink, stop)
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

    def _follow(self, client: redis.Redis, sink: Sink, stop: threading.Event) -> None:
        """Deliver the stream's messages as they come, and keep the
        heartbeat, until ``stop`` (or a Redis error, which it raises)."""
        next_heartbeat = time.monotonic() + HEARTBEAT_PERIOD
        while not stop.is_set():
            if time.monotonic() >= next_heartbeat:
                self._heartbeat(sink)
                next_heartbeat = time.monotonic() + HEARTBEAT_PERIOD
            elif self._unsynced:
                sink.write_presence(self._take_unsynced())
            if not self._follower.catch_up(client, sink):
                continue  # more to read, or read again from where the stream went back
            # Wakes for the heartbeat: PROCESS_TTL must never lapse.
            block = min(READ_BLOCK, max(0.01, next_heartbeat - time.monotonic()))
            self._follower.wait(client, block)

    def _heartbeat(self, sink: Sink, resync: bool = False) -> None:
        """Keep this process alive in Redis and remove the presence of the
        processes whose heartbeat stopped; every ROOM_REFRESH_PERIOD, keep
        its rooms from expiring; write the presence that changed, and all
        of it if Redis may have lost it. Runs on the publishing
        connections: the reader's only reads."""
        sink.sweep()
        now = time.monotonic()
        # Late enough that the others may have taken this process for dead
        # and removed its presence (also when its `process:` key lives:
        # a presence write sets it too).
        late = self._last_heartbeat is None or (
            now - self._last_heartbeat > PROCESS_TTL - COMMAND_TIMEOUT
        )
        refresh = resync or now >= self._next_refresh
        keys = (PROCESSES, PREFIX + "process:" + self._origin, PREFIX + "rooms:" + self._origin)
        with self._client.pipeline(transaction=False) as pipe:
            args = (self._origin, PROCESS_TTL, int(ROOM_TTL), PREFIX, REAP_LIMIT)
            pipe.eval(HEARTBEAT, len(keys), *keys, *args)
            if refresh:
                self._next_refresh = now + ROOM_REFRESH_PERIOD
                for room in sink.rooms():
                    pipe.expire(PREFIX + "history:" + room, int(ROOM_TTL))
                    pipe.expire(PREFIX + "presence:" + room, int(ROOM_TTL))
                if self.history_length:
                    pipe.eval(
                        ADVERTISE_HISTORY, 1, HISTORY_LENGTH,
                        self.history_length, int(3 * ROOM_REFRESH_PERIOD),
                    )  # fmt: skip
            was_alive, reaped = pipe.execute()[0]
        self._last_heartbeat = now
        if reaped:
            logger.debug("hub: removed %d dead processes from presence", reaped)
        rooms = self._take_unsynced()
        if resync or late or not was_alive:
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
