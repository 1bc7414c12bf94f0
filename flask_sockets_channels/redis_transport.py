"""The hub's Redis transport: a stream per partition of the rooms (one on
a single Redis, one per master of a cluster), read by one thread per
partition in each process (redis_reader.py).

What it keeps in Redis, and the scripts that change it, are in
:mod:`.redis_scripts`; where Redis is (one server, the master Sentinel
names, a cluster), in :mod:`.redis_location`. ``publish`` is one script:
it adds the message to its room's partition stream and to the room's
history at once (a replay that reads the history has every message up to
its last id), and trims the stream to STREAM_LENGTH messages and
STREAM_BYTES bytes. Each process's readers deliver every message, its own
process's too, in stream order within each partition.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Collection, Iterable
from typing import Any, NoReturn, cast

import redis

from . import redis_stream
from . import redis_timing as timing
from .engine import Outgoing
from .exceptions import HubUnavailable
from .redis_location import (
    ClusterLocation,
    Secret,
    dispose,
    location_of,
)
from .redis_partitions import partition_of, partition_tags
from .redis_reader import ERRORS, REFUSED, PartitionReader, reader_name
from .redis_scripts import (
    HISTORY,
    PREFIX,
    PUBLISH,
    SET_PRESENCE,
    Keys,
    run_script,
    script_sha,
)
from .redis_stream import frame_of, new_epoch, parse_id, payload_of, text_of
from .resume import Kept
from .transport import ROOM_TTL, Sink, display_url, url_secrets

__all__ = ["RedisTransport"]

logger = logging.getLogger("flask_sockets_channels.hub")

# redis-py < 5.3 wants a command name here; later versions warn when given one.
_CHECKOUT_PARAMETER = inspect.signature(redis.ConnectionPool.get_connection).parameters.get(
    "command_name"
)
_CHECKOUT_NEEDS_NAME = (
    _CHECKOUT_PARAMETER is not None and _CHECKOUT_PARAMETER.default is inspect.Parameter.empty
)


class RedisTransport:
    """Publishes to the rooms' Redis streams and delivers what every process
    published to this process's hub.

    Raises:
        ValueError: ``url`` is malformed or not a Redis URL (the message
            never shows its password).
    """

    def __init__(self, url: str, history: int = 0) -> None:
        self.url: str | None = display_url(url)
        self.history_length = history
        self._secrets = Secret(url_secrets(url))
        try:
            self._location = Secret(location_of(url))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"invalid hub URL {self.url}: {self._scrub(exc)}") from None
        self._start_afresh()

    def _start_afresh(self) -> None:
        """State of one process: a new identity, no thread, no connection."""
        self._origin = uuid.uuid4().hex[:16]
        self._lock = threading.Lock()  # guards _readers, _sink, _finding
        self._partitions_known = threading.Event()
        self._sink: Sink | None = None  # once started
        self._finding: threading.Thread | None = None
        self._stopping = threading.Event()
        self._redis: Secret[Any] = Secret(None)  # made on first use
        if isinstance(self._location.value, ClusterLocation):
            self._readers: list[PartitionReader] = []
        else:
            self._readers = [self._new_reader(Keys())]
            self._partitions_known.set()

    @property
    def reconnects(self) -> int:
        """How many times a reader lost its connection and made it again."""
        return sum(reader.reconnects for reader in self._readers)

    @property
    def messages_lost(self) -> int:
        """Messages the readers never read: trimmed from a stream (past its
        bounds) while they were behind or away. Counted with Redis 7 and
        later."""
        return sum(reader.follower.messages_lost for reader in self._readers)

    def after_fork(self) -> None:
        self._start_afresh()

    def __repr__(self) -> str:
        return f"<RedisTransport {self.url}>"

    # -- partitions ----------------------------------------------------------

    def _client(self) -> Any:
        """The client for publishing, presence, history and the heartbeats
        (a cluster's: one that routes each command to its key's node).

        Raises:
            HubUnavailable: A cluster client could not learn the cluster.
        """
        client = self._redis.value
        if client is not None:
            return client
        location = self._location.value
        name = f"{PREFIX}publisher:{os.getpid()}:{self._origin}"
        with self._lock:
            if self._redis.value is None:
                made: Any
                if isinstance(location, ClusterLocation):
                    try:  # connects to learn the slots
                        made = location.cluster(
                            name, timing.COMMAND_TIMEOUT, timing.CONNECT_TIMEOUT
                        )
                    except (*ERRORS, *REFUSED, redis.exceptions.RedisClusterException) as exc:
                        self._raise(exc, maybe_delivered=False)
                else:
                    made = location.client(
                        name, timing.COMMAND_TIMEOUT, False, timing.CONNECT_TIMEOUT
                    )
                self._redis = Secret(made)
            return self._redis.value

    def _new_reader(self, keys: Keys) -> PartitionReader:
        return PartitionReader(
            keys,
            self.url,
            self._origin,
            self.history_length,
            connect=lambda: self._reader_client(keys),
            commands=lambda: self._commands(keys),
            scrub=self._scrub,
            failed=self._learn_slots,
        )

    def _partitions(self) -> list[PartitionReader]:
        """The partitions, learnt from the cluster on first use.

        Raises:
            HubUnavailable: The cluster cannot be reached.
        """
        if self._partitions_known.is_set():
            return self._readers
        try:
            tags = partition_tags(self._client())
        except (*ERRORS, *REFUSED, redis.exceptions.RedisClusterException, ValueError) as exc:
            self._raise(exc)
        with self._lock:
            if not self._partitions_known.is_set():
                self._readers = [self._new_reader(Keys(tag)) for tag in tags]
                self._partitions_known.set()
        return self._readers

    def _partition(self, room: str) -> PartitionReader:
        """The partition of ``room``.

        Raises:
            HubUnavailable: The cluster cannot be reached.
        """
        partitions = self._partitions()
        return partitions[partition_of(room, len(partitions)) if len(partitions) > 1 else 0]

    def _commands(self, keys: Keys) -> redis.Redis:
        """The client for the commands on ``keys``' partition (on a cluster,
        of the node serving its slot now).

        Raises:
            HubUnavailable: The cluster serves no node for the slot now.
        """
        client = self._client()
        if isinstance(self._location.value, ClusterLocation):
            try:
                node = client.get_node_from_key(keys.stream)
            except redis.exceptions.RedisClusterException as exc:
                self._raise(exc, maybe_delivered=False)
            return cast("redis.Redis", client.get_redis_connection(node))
        return cast("redis.Redis", client)

    def _reader_client(self, keys: Keys) -> redis.Redis:
        """A reader's own connection, to where ``keys``' partition is now.

        Raises:
            HubUnavailable: The cluster serves no node for the slot now.
        """
        location = self._location.value
        name = reader_name(self._origin)
        if isinstance(location, ClusterLocation):
            node = self._commands(keys).get_connection_kwargs()
            return location.node_client(
                (node["host"], node["port"]), name, timing.READ_TIMEOUT, timing.CONNECT_TIMEOUT
            )
        return location.client(name, timing.READ_TIMEOUT, True, timing.CONNECT_TIMEOUT)

    def _learn_slots(self) -> None:
        """After a failure: a cluster client asks again which node serves
        which slots (a failover moves them), at its next command."""
        client = self._redis.value
        if client is not None and isinstance(self._location.value, ClusterLocation):
            try:
                client.nodes_manager.initialize()
            except (*ERRORS, *REFUSED, redis.exceptions.RedisClusterException):
                logger.debug("hub: the cluster at %s did not tell its slots", self.url)

    # -- publishing ----------------------------------------------------------

    def publish(self, room: str, frame: Outgoing, exclude: Collection[int]) -> None:
        """Add ``frame`` to its partition's stream and to the room's
        history, and trim the stream to its bounds.

        Raises:
            HubUnavailable: With ``maybe_delivered`` False when no
                connection could be made or Redis refused the script, True
                when it was sent and no reply came.
        """
        partition = self._partition(room)
        k = partition.keys
        keys = (
            k.stream,
            k.stream_bytes,
            k.stream_since,
            k.history(room),
            k.history_length,
            k.epoch,
        )
        excluded = ",".join(map(str, sorted(exclude)))
        args = (room, payload_of(frame), self._origin, excluded, self.history_length,
                int(ROOM_TTL))  # fmt: skip
        bounds = (redis_stream.STREAM_LENGTH, redis_stream.STREAM_BYTES)
        try:
            entry_id = self._send_once(self._commands(k), keys, (*args, *bounds, new_epoch()))
        except HubUnavailable:
            self._learn_slots()
            raise
        # The reader checks that Redis still has it (a failover to a replica
        # that never received it would lose it silently).
        partition.follower.published = parse_id(entry_id)

    def _send_once(self, client: redis.Redis, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
        """Run the publish script once, never retried (a retry after a
        timeout could deliver it twice), and tell whether a failure may
        have delivered it. Sends the script itself only when Redis does
        not know it yet (NOSCRIPT: nothing was run)."""
        pool = client.connection_pool
        try:
            connection = _checkout(pool)
        except ERRORS as exc:
            self._raise(exc, maybe_delivered=False)
        try:
            for command in (("EVALSHA", script_sha(PUBLISH)), ("EVAL", PUBLISH)):
                try:
                    connection.send_command(*command, len(keys), *keys, *args)
                except ERRORS as exc:  # a partial command is never run
                    connection.disconnect()
                    self._raise(exc, maybe_delivered=False)
                try:
                    return connection.read_response()
                except redis.exceptions.NoScriptError:
                    continue
                except REFUSED as exc:
                    self._raise(exc, maybe_delivered=False)
                except ERRORS as exc:
                    connection.disconnect()
                    self._raise(exc, maybe_delivered=True)
        finally:
            pool.release(connection)

    def history(self, room: str) -> Kept:
        """The room's last ``history`` messages, oldest first, with its
        partition's epoch, read once the partition's reader is in the
        stream: every later message is then delivered. Blocks up to
        COMMAND_TIMEOUT for the reader, then for one read.

        Raises:
            HubUnavailable: Redis cannot be reached.
        """
        partition = self._partition(room)
        # Read before the reader has found its place in the stream, the
        # history could end before that place: what came in between would
        # be lost to the replaying member.
        if not partition.ready.wait(timing.COMMAND_TIMEOUT):
            raise HubUnavailable(f"hub at {self.url} is unavailable: the reader is not connected")
        keys = (partition.keys.history(room), partition.keys.epoch)
        try:
            epoch, added, length, entries = run_script(
                self._commands(partition.keys), HISTORY, keys, (self.history_length, new_epoch())
            )
        except (*ERRORS, *REFUSED) as exc:
            self._learn_slots()
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
        value = "[" + ",".join(values) + "]" if values else ""
        args = (self._origin, room, value, timing.PROCESS_TTL, int(ROOM_TTL))
        try:
            k = self._partition(room).keys
            keys = (k.presence(room), k.rooms(self._origin), k.process(self._origin), k.processes)
            run_script(self._commands(k), SET_PRESENCE, keys, args)
        except (*ERRORS, *REFUSED, HubUnavailable) as exc:
            self._learn_slots()
            self.presence_changed([room])
            logger.warning(
                "hub: presence in %r not written to %s (%s); retrying",
                room, self.url, self._scrub(exc),
            )  # fmt: skip

    def presence_changed(self, rooms: Iterable[str]) -> None:
        """Have the readers write this process's presence in ``rooms``
        (after their next read, or at their heartbeat). Never blocks: a
        cluster whose partitions are not known yet has them written once
        they are (every reader writes all its rooms when it connects)."""
        readers = self._readers if self._partitions_known.is_set() else []
        if len(readers) == 1:
            readers[0].presence_changed(rooms)
            return
        for room in rooms:
            if readers:
                readers[partition_of(room, len(readers))].presence_changed([room])

    def presence(self, room: str) -> list[Any]:
        """The presence values of the other live processes' members.

        Raises:
            HubUnavailable: Redis cannot be reached.
        """
        k = self._partition(room).keys
        key = k.presence(room)
        client = self._commands(k)
        try:
            fields = cast("dict[Any, Any]", client.hgetall(key))
            others = {text_of(f): v for f, v in fields.items() if text_of(f) != self._origin}
            alive = cast("list[Any]", client.mget([k.process(p) for p in others])) if others else []
        except (*ERRORS, *REFUSED) as exc:
            self._learn_slots()
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
                client.hdel(key, *dead)
            except (*ERRORS, *REFUSED):
                logger.debug("hub: could not remove dead processes from %r", room)
        return values

    # -- the readers ---------------------------------------------------------

    def start(self, sink: Sink) -> None:
        """Start the partitions' readers, unless they run (idempotent).

        Each reader starts from the end its stream has now, asked of Redis
        before this returns (one round trip per partition, at most
        COMMAND_TIMEOUT each, on a process's first join): a message
        published once the first join has returned is delivered here, even
        if the reader connects later. If Redis cannot answer, a reader
        starts where its stream ends when it connects; a cluster whose
        partitions cannot be learnt now has them learnt by a thread that
        then starts the readers.
        """
        with self._lock:
            self._sink = sink
            self._stopping.clear()
        try:
            readers = self._partitions()
        except HubUnavailable:
            self._find_partitions_later()
            return
        self._start_readers(readers, sink)

    def _start_readers(self, readers: list[PartitionReader], sink: Sink) -> None:
        for index, reader in enumerate(readers):
            reader.start(sink, self._belongs_to(index, len(readers)))

    @staticmethod
    def _belongs_to(index: int, count: int) -> Any:
        if count == 1:
            return lambda room: True
        return lambda room: partition_of(room, count) == index

    def _find_partitions_later(self) -> None:
        """Learn a cluster's partitions in a thread, then start the readers
        (unless closed meanwhile)."""
        with self._lock:
            if self._finding is not None and self._finding.is_alive():
                return
            stopping = self._stopping
            self._finding = threading.Thread(
                target=self._find_partitions,
                args=(stopping,),
                name="flask-sockets-channels hub",
                daemon=True,
            )
            self._finding.start()

    def _find_partitions(self, stopping: threading.Event) -> None:
        # Owns: nothing but the wait; ends once the partitions are known or close() is called.
        attempt = 0
        while not stopping.is_set():
            try:
                readers = self._partitions()
            except HubUnavailable as exc:
                if attempt == 0:
                    logger.warning("hub: %s; retrying", exc)
                delays = timing.RECONNECT_DELAYS
                stopping.wait(delays[min(attempt, len(delays) - 1)])
                attempt += 1
                continue
            with self._lock:
                sink = self._sink
            if sink is not None and not stopping.is_set():
                self._start_readers(readers, sink)
            return

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Once the readers run (a process that joined): wait until each has
        read its stream on a working connection. Before (a process that
        only publishes): whether Redis answers a PING, asked again until
        ``timeout``; with ``timeout`` None, asked once (at most
        CONNECT_TIMEOUT + COMMAND_TIMEOUT)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            started = self._sink is not None
        if started:
            if not self._partitions_known.wait(timeout):
                return False
            for reader in self._readers:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not reader.ready.wait(left):
                    return False
            return True
        attempt = 0
        while True:
            if self._answers(None if deadline is None else deadline - time.monotonic()):
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is None or left <= 0:
                return False
            delays = timing.RECONNECT_DELAYS
            time.sleep(min(delays[min(attempt, len(delays) - 1)], left))
            attempt += 1

    def _answers(self, within: float | None) -> bool:
        """Whether Redis answers a PING within ``within`` seconds (None:
        CONNECT_TIMEOUT to connect, COMMAND_TIMEOUT for the answer)."""
        connect_timeout, timeout = timing.CONNECT_TIMEOUT, timing.COMMAND_TIMEOUT
        if within is not None:
            connect_timeout, timeout = (
                max(0.001, min(t, within)) for t in (connect_timeout, timeout)
            )
        location = self._location.value
        name = f"{PREFIX}ping:{os.getpid()}:{self._origin}"
        client: Any = None
        try:
            if isinstance(location, ClusterLocation):
                client = location.cluster(name, timeout, connect_timeout)  # connects at once
                return bool(client.ping(target_nodes=redis.RedisCluster.PRIMARIES))
            client = location.client(name, timeout, True, connect_timeout)  # connects at once
            return bool(client.ping())
        except (*ERRORS, *REFUSED, redis.exceptions.RedisClusterException):
            return False
        finally:
            if client is not None:
                dispose(client)

    def close(self) -> None:
        """Stop the readers and wait for them (at most CLOSE_WAIT seconds)."""
        with self._lock:
            self._sink = None
            self._stopping.set()
            self._stopping = threading.Event()
            finding, self._finding = self._finding, None
        threads = [finding] + [reader.stop() for reader in self._readers]
        deadline = time.monotonic() + timing.CLOSE_WAIT
        for thread in threads:
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
                if thread.is_alive():
                    logger.warning("hub: a reader of %s did not stop in time", self.url)
        for reader in self._readers:
            reader.ready.clear()
        with self._lock:
            client, self._redis = self._redis.value, Secret(None)
        if client is not None:
            dispose(client)

    # -- helpers -------------------------------------------------------------

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


def _checkout(pool: redis.ConnectionPool) -> Any:
    """A connected connection of ``pool``.

    Raises:
        redis.exceptions.ConnectionError: None could be made.
    """
    return pool.get_connection("EVAL") if _CHECKOUT_NEEDS_NAME else pool.get_connection()
