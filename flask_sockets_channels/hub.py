"""Rooms and broadcast: a message published to a room reaches every member.

``Hub()`` fans out within the process. ``Hub.from_url("redis://...")`` carries
each message through a Redis stream to the hubs of every process (gunicorn
workers, hosts, a script), which deliver it to their own members.

A member is a socket view's ``sender``. Publishing never blocks on a
member: a message is encoded to a frame once and offered to each member's
``sender``, where it waits beside the view's own messages, in a backlog of
at most ``max_backlog`` frames past the buffer. A member whose backlog is
full is closed with 1008 ("slow consumer") and removed; the others go on.

Members may say who they are (``presence``), and a room may keep its last
messages (``history``) for those who join with ``replay=True``, or who come
back from the position of the last message they received (``since=``; see
:mod:`.resume`), with each message's position, for a browser, if they ask
(``envelope=True``). How the messages travel is the transport's business
(:mod:`.transport`).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import weakref
from collections.abc import Callable, Collection, Iterable
from typing import Any

from .channels import Channel
from .engine import Outgoing, with_plain_frame
from .exceptions import HubUnavailable
from .member import Member
from .modes import to_frame
from .resume import (
    START,
    UNKNOWN_POSITION,
    Position,
    Resume,
    envelope,
    join_notice,
    parse_since,
)
from .resume import plan_resume as _plan_resume
from .roomlog import RoomLog
from .transport import EntryId, InProcessTransport, Transport

__all__ = ["MAX_MESSAGE_SIZE", "MAX_RESUME", "Hub", "Member"]

logger = logging.getLogger("flask_sockets_channels.hub")

#: The largest message (its encoded payload, in bytes) a hub publishes by
#: default: what a socket view accepts by default (``Options.max_message_size``).
MAX_MESSAGE_SIZE = 65536
#: The most messages one resume replays by default (past it, the member is
#: told it did not recover: its page reloads its state instead).
MAX_RESUME = 1000
#: How long a join waits for another join's read of the room's history.
HISTORY_WAIT = 10.0


class Hub:
    """Rooms of senders, in this process and, through Redis, in others.

    Use :meth:`Hub.from_url` for a hub that spans processes; ``Hub()`` is
    in-process only. Thread-safe; a hub made before the process forks
    (``gunicorn --preload``) starts afresh in each child.

    Args:
        history: How many of each room's last messages to keep for
            ``join(..., replay=True)`` (0: none).
        max_message_size: The largest message :meth:`publish` takes, in
            bytes of its encoded payload. A room's history holds at most
            ``history * max_message_size`` bytes.
        max_resume: The most messages one ``join(since=...)`` replays; a
            member that missed more is told it did not recover.
        transport: How messages travel (internal; :meth:`from_url` picks it).

    Raises:
        ValueError: ``history`` or ``max_resume`` is negative, or
            ``max_message_size`` is not a positive int.
    """

    def __init__(
        self,
        history: int = 0,
        *,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_resume: int = MAX_RESUME,
        transport: Transport | None = None,
    ) -> None:
        _check_sizes(history, max_message_size, max_resume)
        self.history = history
        self.max_message_size = max_message_size
        self.max_resume = max_resume
        self._transport: Transport = transport or InProcessTransport(history)
        self._reset()
        _hubs.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()  # guards _rooms and the counters
        self._rooms: dict[str, dict[int, Member]] = {}
        self._logs: dict[str, RoomLog] = {}  # rooms whose kept messages are copied here
        self.published = 0  #: messages this process published
        self.delivered = 0  #: messages queued for this process's members
        self.slow_consumers_closed = 0  #: members closed with 1008
        self._numbers = itertools.count(1)
        # Each presence write sends a room's whole list: one at a time, so
        # that an older list never lands after a newer one.
        self._presence_lock = threading.Lock()

    @classmethod
    def from_url(
        cls,
        url: str | None,
        history: int = 0,
        *,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_resume: int = MAX_RESUME,
    ) -> Hub:
        """A hub for ``url``: ``None`` or ``"memory://"`` for in-process,
        ``redis://``, ``rediss://`` or ``unix://`` for one Redis,
        ``redis+sentinel://host:port[,...]/service[/db]`` for the master
        Redis Sentinel names, ``redis+cluster://host:port[,...]`` for a
        Redis Cluster (all need the ``redis`` extra:
        ``pip install flask-sockets-channels[redis]``).
        Connects on first use, not now. ``history``, ``max_message_size``
        and ``max_resume`` as for :class:`Hub`.

        Raises:
            ValueError: The URL is malformed or its scheme is not supported
                (the message never shows its password); ``history`` or
                ``max_message_size`` is out of range.
            ImportError: ``redis`` is not installed.
        """
        if url is None or url == "memory://":
            return cls(history, max_message_size=max_message_size, max_resume=max_resume)
        _check_sizes(history, max_message_size, max_resume)  # before making connections
        try:
            from .redis_transport import RedisTransport
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] != "redis":
                raise
            raise ImportError(
                "Hub.from_url('redis://...') needs redis-py:"
                " pip install flask-sockets-channels[redis]"
            ) from exc

        transport = RedisTransport(url, history)
        return cls(
            history, max_message_size=max_message_size, max_resume=max_resume, transport=transport
        )

    @property
    def url(self) -> str | None:
        """The Redis URL without its password; ``None`` in-process."""
        return self._transport.url

    def join(
        self,
        room: str,
        sender: Channel[Any],
        max_backlog: int = 1000,
        presence: Any = None,
        replay: bool = False,
        since: Any = None,
        envelope: bool = False,
    ) -> Member:
        """Add ``sender`` to ``room`` now; use the result as a context
        manager (``with hub.join(room, sender): ...``) to leave on exit,
        also when the view raises. A member whose connection has ended is
        removed without it. What is published once this returns reaches
        the member (a process's first join asks Redis where the stream
        ends: one round trip).

        Args:
            presence: Any JSON value that describes the member (a name, a
                dict), listed by :meth:`presence` in every process; ``None``
                is not listed. Across processes, blocks for one Redis write.
            replay: First deliver the room's kept messages (see ``history``),
                oldest first, then the live ones: none twice, none missed in
                between.
            since: The position of the last message the member's client
                received (text, as the member's ``Member.position`` or
                an envelope gave it, or the browser client's ``since``
                query parameter as it came: JSON of ``{room: position}``).
                First deliver every kept message after it, then the live
                ones; or, when the history cannot cover it, none (and, with
                ``replay``, the kept messages). ``Member.recovered``
                and ``Member.reason`` say which. ``None`` (or a mapping
                without this room): a first join.
            envelope: Deliver each hub message as JSON text ``{"room",
                "position", "data"}``, after a first one that says where the
                room stands and whether the member recovered (the browser
                client's protocol, docs/browser-client.md).

        ``replay``, ``since`` and ``envelope`` read the room's kept messages
        once per process (across processes: one Redis read, shared by the
        joins of the room that come while it is in flight), then keep them
        up to date here while the room has members.

        Raises:
            TypeError: ``sender`` is not a socket view's ``sender``, or
                ``presence`` is not JSON.
            ValueError: ``max_backlog`` is negative, or ``presence`` holds
                NaN or infinity.
            HubUnavailable: The history was needed and cannot be read; the
                member did not join.
        """
        if not callable(getattr(sender, "offer", None)):
            raise TypeError("hub members are a socket view's `sender` channel")
        if max_backlog < 0:
            raise ValueError(f"max_backlog must be >= 0, not {max_backlog}")
        encoded = None if presence is None else json.dumps(presence, allow_nan=False)
        member = Member(self, room, sender, max_backlog, encoded, next(self._numbers), envelope)
        resuming, position = parse_since(since, room)
        self._transport.start(self)
        log = self._log(room) if replay or resuming or envelope else None
        if log is not None:
            member._held = []
            try:
                log.wait(HISTORY_WAIT)
            except HubUnavailable:
                self._done_joining(room, log)
                raise
        with self._lock:
            self._rooms.setdefault(room, {})[member._number] = member
            if log is not None:
                kept, here = log.kept(), log.position()
                log.joining -= 1
        if encoded is not None:
            self._sync_presence([room])
        if log is None:
            return member
        entries: Any = kept.entries if replay else ()
        if resuming:
            plan = _plan_resume(kept, position, self.max_resume) if position else None
            resumed = plan or Resume(False, UNKNOWN_POSITION, ())
            member.recovered, member.reason = resumed.recovered, resumed.reason
            if resumed.recovered:
                entries = resumed.entries
        member.position = str(here)
        frames = [
            log.as_sent(room, kept.epoch, offset, frame, envelope) for offset, frame in entries
        ]
        if envelope:
            # The notice says after which position the messages that follow
            # come: what the page had (a resume), or the room's start (a
            # replay), or where the room stands (nothing follows).
            if not entries:
                after = here
            elif member.recovered and position is not None:
                after = position
            else:
                after = Position(kept.epoch, START)
            frames.insert(0, join_notice(room, after, member.recovered, member.reason))
        if not member._catch_up(frames, kept.last):
            self._remove([member])
        return member

    def publish(self, room: str, message: Any, exclude: Any = None) -> int:
        """Send ``message`` to every member of ``room``, in every process.

        ``message`` is sent as a text frame for ``str``, a binary frame for
        bytes-like objects, and JSON text for anything else (dicts,
        dataclasses, pydantic-style models, lists...). ``exclude`` is a
        sender or a :class:`Member` (or a collection of them) not to send
        to, typically the publisher's own. Never blocks on a member; across
        processes, blocks for one Redis write.

        Returns:
            How many members of this process it is for.

        Raises:
            TypeError: ``message`` cannot be serialised.
            ValueError: ``message`` encodes to more than
                ``max_message_size`` bytes; nothing was sent.
            HubUnavailable: Redis cannot be reached; ``maybe_delivered``
                tells whether it may still have taken the message.
        """
        frame = to_frame(message)
        if len(frame.data) > self.max_message_size:
            raise ValueError(
                f"a message of {len(frame.data)} bytes is larger than the hub's"
                f" max_message_size ({self.max_message_size} bytes)"
            )
        self.sweep(room)
        with self._lock:
            members = dict(self._rooms.get(room, {}))
        excluded = _numbers(members, exclude)
        self._transport.publish(room, frame, excluded)
        with self._lock:
            self.published += 1
        return len(members) - len(excluded)

    @property
    def reconnects(self) -> int:
        """How many times the connection to Redis was lost and made again."""
        return int(getattr(self._transport, "reconnects", 0))

    @property
    def messages_lost(self) -> int:
        """How many messages published through Redis never reached this
        process: the stream dropped them (past its bounds) before this
        process's reader read them, while it was behind or away. Each loss
        is also logged as a warning."""
        return int(getattr(self._transport, "messages_lost", 0))

    def presence(self, room: str) -> list[Any]:
        """The ``presence`` values of the members of ``room`` in every
        process (members that gave none are not listed); this process's
        first. A process that died without leaving drops out within 30 s.
        Across processes, blocks for two Redis reads.

        Raises:
            HubUnavailable: Redis cannot be reached.
        """
        self.sweep(room)
        with self._lock:
            local = [m.presence for m in self._rooms.get(room, {}).values()]
        return [value for value in local if value is not None] + self._transport.presence(room)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Whether the hub works, waiting up to ``timeout`` seconds for it.

        Once this process has joined: wait until the Redis reader (started
        by the first :meth:`join`) has read the stream on a working
        connection (messages published since the first join are being
        delivered here); ``timeout`` None waits for as long as that takes.
        In a process that has not joined (one that only publishes): whether
        Redis answers a PING, asked again until ``timeout``; with
        ``timeout`` None asked once, which takes at most 7 s. False when
        Redis cannot be reached in time. True at once in-process.
        """
        return self._transport.wait_ready(timeout)

    def members(self, room: str) -> list[Member]:
        """The members of ``room`` in this process. Never waits for Redis."""
        self.sweep(room)
        with self._lock:
            return list(self._rooms.get(room, {}).values())

    def rooms(self) -> list[str]:
        """The rooms that have members in this process. Never waits for Redis."""
        self.sweep()
        with self._lock:
            return list(self._rooms)

    def close(self) -> None:
        """Stop the Redis reader thread (waits up to a few seconds for it);
        the hub stays usable and restarts it on the next join."""
        self._transport.close()

    def sweep(self, room: str | None = None) -> None:
        """Remove the members (of ``room``, or of every room) whose
        connection has ended. Never waits for Redis: their presence is
        removed there by the reader, soon."""
        with self._lock:
            rooms = [self._rooms.get(room, {})] if room is not None else self._rooms.values()
            gone = [member for members in rooms for member in members.values() if member.gone]
        if gone:
            self._remove(gone)

    def deliver(
        self,
        room: str,
        entry_id: EntryId,
        frame: Outgoing,
        exclude: Collection[int],
        epoch: str,
    ) -> None:
        """Offer a published message to this process's members (the
        transport calls it, in publish order); never blocks, never raises:
        a member that is gone, too slow, or whose sender raised is removed."""
        with self._lock:
            log = self._logs.get(room)
            if log is not None:
                log.add(entry_id, frame, epoch)
            members = [m for n, m in self._rooms.get(room, {}).items() if n not in exclude]
        enveloped = [member for member in members if member.envelope]
        plain = [member for member in members if not member.envelope]
        failed = []
        for group, group_frame in (
            (plain, frame),
            (enveloped, envelope(room, Position(epoch, entry_id), frame) if enveloped else frame),
        ):
            if len(group) > 1:
                group_frame = with_plain_frame(group_frame)  # serialised once, not per member
            failed += [member for member in group if not member._offer(entry_id, group_frame)]
        with self._lock:
            self.delivered += len(members) - len(failed)
            self.slow_consumers_closed += sum(member.too_slow for member in failed)
        if failed:
            self._remove(failed)

    def history_broken(self) -> None:
        """The broker lost data: the copies of the rooms' kept messages no
        longer continue it (the transport calls it)."""
        with self._lock:
            for log in self._logs.values():
                log.broken()

    def _log(self, room: str) -> RoomLog:
        """The room's log, made and filled by one read of the transport
        if this process has none. Counted as joining until
        :meth:`_done_joining` (or the join takes its copy)."""
        with self._lock:
            log = self._logs.get(room)
            made = log is None
            if log is None:
                log = self._logs[room] = RoomLog(self.history)
            log.joining += 1
        if made:
            try:
                kept = self._transport.history(room)
            except HubUnavailable as exc:
                with self._lock:
                    log.failed(exc)
                    if self._logs.get(room) is log:
                        del self._logs[room]
            else:
                with self._lock:
                    log.loaded(kept)
        return log

    def _done_joining(self, room: str, log: RoomLog) -> None:
        with self._lock:
            log.joining -= 1
            if not self._rooms.get(room) and not log.joining and self._logs.get(room) is log:
                del self._logs[room]

    def resync_presence(
        self, rooms: Iterable[str] = (), within: Callable[[str], bool] | None = None
    ) -> None:
        """Write this process's presence again, for every room that has
        some and for ``rooms``, of those only the rooms ``within`` accepts
        (the transport calls it after a reconnect, for a partition's rooms)."""
        with self._lock:
            present = {r for r, ms in self._rooms.items() if any(m.presence for m in ms.values())}
        rooms = present | set(rooms)
        self.write_presence(rooms if within is None else filter(within, rooms))

    def write_presence(self, rooms: Iterable[str]) -> None:
        """Write this process's presence in ``rooms`` (the transport calls
        it, from its own thread, for the rooms whose members changed)."""
        self._sync_presence(rooms)

    def _sync_presence(self, rooms: Iterable[str]) -> None:
        with self._presence_lock:
            for room in rooms:
                with self._lock:
                    members = self._rooms.get(room, {}).values()
                    values = [m._encoded_presence for m in members if m._encoded_presence]
                self._transport.set_presence(room, values)

    def _remove(self, members: Iterable[Member], write_presence: bool = False) -> None:
        """Take ``members`` out of their rooms. Their presence is written
        now with ``write_presence`` (one Redis write per room), otherwise
        later by the transport's thread."""
        changed = set()
        with self._lock:
            for member in members:
                room = self._rooms.get(member.room)
                if room is None or room.get(member._number) is not member:
                    continue
                del room[member._number]
                if not room:
                    del self._rooms[member.room]
                    log = self._logs.get(member.room)
                    if log is not None and not log.joining:
                        del self._logs[member.room]
                if member._encoded_presence is not None:
                    changed.add(member.room)
        if changed and write_presence:
            self._sync_presence(changed)
        elif changed:
            self._transport.presence_changed(changed)

    def __repr__(self) -> str:
        return f"<Hub {self.url or 'in-process'} history={self.history}>"


def _check_sizes(history: Any, max_message_size: Any, max_resume: Any) -> None:
    """Raise ValueError unless ``history`` and ``max_resume`` are ints >= 0
    and ``max_message_size`` an int >= 1."""
    checks = (
        ("history", history, 0),
        ("max_message_size", max_message_size, 1),
        ("max_resume", max_resume, 0),
    )
    for name, value, least in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an int >= {least}, not {value!r}")


def _numbers(members: dict[int, Member], exclude: Any) -> frozenset[int]:
    """The numbers of the ``members`` that ``exclude`` names: senders or
    members, one or a collection."""
    if exclude is None:
        return frozenset()
    single = isinstance(exclude, Member) or callable(getattr(exclude, "offer", None))
    items = [exclude] if single else list(exclude)
    numbers = set()
    for item in items:
        if isinstance(item, Member):
            if members.get(item._number) is item:
                numbers.add(item._number)
        else:
            numbers.update(n for n, m in members.items() if m._sender() is item)
    return frozenset(numbers)


# A child process (gunicorn --preload forks after the app, and its hub, were
# made) must not share the parent's members, locks, connections or identity.
_hubs: weakref.WeakSet[Hub] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for hub in list(_hubs):
        hub._reset()
        hub._transport.after_fork()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent on Windows only
    os.register_at_fork(after_in_child=_after_fork_in_child)
