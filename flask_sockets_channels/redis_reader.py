"""One partition's reader: the thread that follows the partition's stream
for this process, and keeps the process alive there (its heartbeat, its
presence in the partition's rooms).

A reader that lost its connection reads on from the last id it delivered
when it is back, so a blip loses nothing unless the stream's bounds were
passed meanwhile (see redis_stream.py). A reply that does not come within
READ_TIMEOUT means a dead (half-open) connection: the reader drops it and
connects again, asking anew where the partition's master is.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Callable

import redis

from . import redis_timing as timing
from .exceptions import HubUnavailable
from .redis_location import Secret, dispose, interrupt
from .redis_scripts import ADVERTISE_HISTORY, HEARTBEAT, PREFIX, Keys
from .redis_stream import StreamFollower, read_stream
from .transport import ROOM_TTL, Sink

__all__ = ["ERRORS", "REFUSED", "PartitionReader"]

logger = logging.getLogger("flask_sockets_channels.hub")

#: A connection that failed or timed out.
ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
#: A command Redis refused (a script error, loading, read-only after a
#: failover, a slot that moved).
REFUSED = (redis.exceptions.ResponseError, redis.exceptions.BusyLoadingError)


class PartitionReader:
    """Follows one partition's stream and delivers its messages to the sink.

    Args:
        keys: The partition's keys.
        url: The hub's URL without its password (for logs).
        origin: This process's identity.
        history_length: The history this process keeps (advertised).
        connect: Makes the reader's own connection (one, with READ_TIMEOUT),
            to where the partition's master is now.
        commands: The client for the partition's other commands (the
            heartbeat, presence).
        scrub: An error's text without passwords.
        failed: Called after a Redis error (a cluster learns its slots again).

    Attributes:
        follower: Where the reader is in the stream.
        reconnects: How many times it lost its connection and made it again.
        ready: Set while it has read the stream on a working connection.
    """

    def __init__(
        self,
        keys: Keys,
        url: str | None,
        origin: str,
        history_length: int,
        connect: Callable[[], redis.Redis],
        commands: Callable[[], redis.Redis],
        scrub: Callable[[BaseException], str],
        failed: Callable[[], None],
    ) -> None:
        self.keys = keys
        self.url = url
        self.origin = origin
        self.history_length = history_length
        self.follower = StreamFollower(url, origin, keys)
        self.reconnects = 0  # written by the reader thread only
        self.ready = threading.Event()
        self._connect = connect
        self._commands = commands
        self._scrub = scrub
        self._failed = failed
        self._lock = threading.Lock()  # guards _thread, _reader, _unsynced
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._reader: Secret[redis.Redis | None] = Secret(None)
        self._unsynced: set[str] = set()  # rooms whose presence is to be written
        self._next_refresh = 0.0
        self._last_heartbeat: float | None = None

    def running(self) -> bool:
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def start(self, sink: Sink, belongs: Callable[[str], bool]) -> None:
        """Start the thread, unless it runs, from the end the stream has
        now, asked of Redis before this returns (one round trip, at most
        COMMAND_TIMEOUT): a message published once this returned is
        delivered. If Redis cannot answer, from where the stream ends when
        the reader connects. ``belongs`` tells this partition's rooms."""
        if self.running():
            return
        try:
            state = read_stream(self._commands(), self.keys.stream, (0, 0), 0)[0]
        except (*ERRORS, *REFUSED, HubUnavailable):
            self._failed()
            state = None
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return  # another join started it meanwhile
            self._stop = threading.Event()
            if state is None:
                self.follower.position = None
            else:
                self.follower.start_at(state)
            self._thread = threading.Thread(
                target=self._read_loop,
                args=(sink, belongs, self._stop),
                name="flask-sockets-channels hub",
                daemon=True,
            )
            self._thread.start()

    def stop(self) -> threading.Thread | None:
        """Tell the thread to stop and end its blocked read; the thread,
        for the caller to join."""
        with self._lock:
            thread, self._thread = self._thread, None
            reader = self._reader.value
            self._stop.set()
        if reader is not None:
            interrupt(reader)
        return thread

    def presence_changed(self, rooms: Iterable[str]) -> None:
        """Write this process's presence in ``rooms`` after the next read,
        or at the heartbeat. Never blocks."""
        with self._lock:
            self._unsynced.update(rooms)

    def _read_loop(self, sink: Sink, belongs: Callable[[str], bool], stop: threading.Event) -> None:
        # Owns: the reader connection, the position in the stream, the
        # heartbeat. Ends when stop() sets `stop`; stop() also shuts the
        # connection's socket, which ends a blocked XREAD at once.
        failures = 0
        while not stop.is_set():
            client = None
            try:
                client = self._connect()
                with self._lock:
                    self._reader = Secret(client)
                if stop.is_set():
                    break
                if self.follower.position is None:  # Redis did not answer at start()
                    self.follower.start_at(read_stream(client, self.keys.stream, (0, 0), 0)[0])
                if failures:
                    # Counted before anything is delivered on the new
                    # connection: whoever got a message sees the reconnect.
                    self.reconnects += 1
                    logger.info("hub: reconnected to %s", self.url)
                while not self.follower.catch_up(client, sink):
                    pass
                self._heartbeat(sink, belongs, resync=True)
                self.ready.set()
                failures = 0
                self._follow(client, sink, belongs, stop)
            except (*ERRORS, *REFUSED, HubUnavailable) as exc:
                self.ready.clear()
                if stop.is_set():
                    break
                self._failed()
                delay = timing.RECONNECT_DELAYS[min(failures, len(timing.RECONNECT_DELAYS) - 1)]
                failures += 1
                if failures == 1:
                    logger.warning("hub: lost %s (%s); reconnecting", self.url, self._scrub(exc))
                stop.wait(delay)
            except Exception:  # a bug: log it, never end the reader
                self.ready.clear()
                logger.exception("hub: reader error; reconnecting")
                stop.wait(timing.RECONNECT_DELAYS[-1])
            finally:
                with self._lock:
                    if self._reader.value is client:
                        self._reader = Secret(None)
                if client is not None:
                    dispose(client)
        self.ready.clear()

    def _follow(
        self,
        client: redis.Redis,
        sink: Sink,
        belongs: Callable[[str], bool],
        stop: threading.Event,
    ) -> None:
        """Deliver the stream's messages as they come, and keep the
        heartbeat, until ``stop`` (or a Redis error, which it raises)."""
        next_heartbeat = time.monotonic() + timing.HEARTBEAT_PERIOD
        while not stop.is_set():
            if time.monotonic() >= next_heartbeat:
                self._heartbeat(sink, belongs)
                next_heartbeat = time.monotonic() + timing.HEARTBEAT_PERIOD
            elif self._unsynced:
                sink.write_presence(self._take_unsynced())
            if not self.follower.catch_up(client, sink):
                continue  # more to read, or read again from where the stream lost entries
            # Wakes for the heartbeat: PROCESS_TTL must never lapse.
            block = min(timing.READ_BLOCK, max(0.01, next_heartbeat - time.monotonic()))
            self.follower.wait(client, block)

    def _heartbeat(self, sink: Sink, belongs: Callable[[str], bool], resync: bool = False) -> None:
        """Keep this process alive in the partition and remove the presence
        of the processes whose heartbeat stopped; every ROOM_REFRESH_PERIOD,
        keep its rooms from expiring; write the presence that changed, and
        all of it if Redis may have lost it. Runs on the command
        connections: the reader's only reads."""
        sink.sweep()
        now = time.monotonic()
        # Late enough that the others may have taken this process for dead
        # and removed its presence (also when its `process:` key lives:
        # a presence write sets it too).
        late = self._last_heartbeat is None or (
            now - self._last_heartbeat > timing.PROCESS_TTL - timing.COMMAND_TIMEOUT
        )
        refresh = resync or now >= self._next_refresh
        keys = (self.keys.processes, self.keys.process(self.origin), self.keys.rooms(self.origin))
        with self._commands().pipeline(transaction=False) as pipe:
            args = (self.origin, timing.PROCESS_TTL, int(ROOM_TTL), self.keys.prefix,
                    timing.REAP_LIMIT)  # fmt: skip
            pipe.eval(HEARTBEAT, len(keys), *keys, *args)
            if refresh:
                self._next_refresh = now + timing.ROOM_REFRESH_PERIOD
                for room in sink.rooms():
                    if belongs(room):
                        pipe.expire(self.keys.history(room), int(ROOM_TTL))
                        pipe.expire(self.keys.presence(room), int(ROOM_TTL))
                if self.history_length:
                    pipe.eval(
                        ADVERTISE_HISTORY, 1, self.keys.history_length,
                        self.history_length, int(3 * timing.ROOM_REFRESH_PERIOD),
                    )  # fmt: skip
            was_alive, reaped = pipe.execute()[0]
        self._last_heartbeat = now
        if reaped:
            logger.debug("hub: removed %d dead processes from presence", reaped)
        rooms = self._take_unsynced()
        if resync or late or not was_alive:
            sink.resync_presence(rooms, belongs)
        elif rooms:
            sink.write_presence(rooms)

    def _take_unsynced(self) -> set[str]:
        """The rooms whose presence is to be written, now marked written:
        a change after this is marked again."""
        with self._lock:
            rooms, self._unsynced = self._unsynced, set()
        return rooms


def reader_name(origin: str) -> str:
    """The name a reader's connection has in CLIENT LIST."""
    return f"{PREFIX}reader:{os.getpid()}:{origin}"
