"""Where a hub message stands in its room, resuming from there, and the
frames that carry both to a browser.

Every message has a :class:`Position` in its room: the room's **epoch**
and the message's **offset**. Offsets grow in publish order within an
epoch (an ``int`` in process, a Redis stream id ``(milliseconds,
sequence)`` across processes); the epoch changes whenever what is kept can
no longer continue what came before (another process's in-process hub, a
Redis that lost its data). A position is sent as text,
``"<epoch>:<offset>"``, with the offset as ``17`` or ``1733310000000-3``.

A member that comes back with the last position it received is given the
kept messages after it, or told why that is not possible
(:func:`plan_resume`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Union

from .engine import Outgoing

__all__ = [
    "EPOCH_CHANGED",
    "START",
    "TOO_MANY",
    "TOO_OLD",
    "UNKNOWN_POSITION",
    "Kept",
    "Position",
    "Resume",
    "envelope",
    "join_notice",
    "parse_since",
    "plan_resume",
]

#: An offset: an ``int`` in process, ``(milliseconds, sequence)`` in Redis.
Offset = Union[int, tuple[int, int]]

#: Why a member could not resume (``Member.reason``).
TOO_OLD = "too old"  # the room's history no longer holds what came after
EPOCH_CHANGED = "epoch changed"  # the history started over
UNKNOWN_POSITION = "unknown position"  # not a position of this room's history
TOO_MANY = "too many"  # more missed messages than one resume may replay


#: The offset before a room's first message.
START: Offset = 0


class Position(NamedTuple):
    """A message's place in its room."""

    epoch: str
    offset: Offset

    def __str__(self) -> str:
        offset = self.offset
        text = f"{offset[0]}-{offset[1]}" if isinstance(offset, tuple) else str(offset)
        return f"{self.epoch}:{text}"

    @classmethod
    def parse(cls, text: str) -> Position | None:
        """The position ``text`` names; ``None`` if it is malformed."""
        epoch, colon, offset = text.rpartition(":")
        if not colon or not epoch:
            return None
        try:
            if "-" in offset:
                milliseconds, sequence = offset.split("-")
                return cls(epoch, (int(milliseconds), int(sequence)))
            return cls(epoch, int(offset))
        except ValueError:
            return None


class Kept(NamedTuple):
    """A room's kept messages (its history) at one instant."""

    epoch: str
    entries: Sequence[tuple[Any, Outgoing]]  # (offset, frame), oldest first
    #: Whether they are every message since the room began (none trimmed).
    complete: bool
    #: The room's last offset, kept or not (None: none known).
    last: Any = None


class Resume(NamedTuple):
    """What a member coming back gets."""

    recovered: bool
    reason: str | None  # why not (``None`` when recovered)
    entries: Sequence[tuple[Any, Outgoing]]  # to deliver before the live ones


def plan_resume(kept: Kept, since: Position, limit: int) -> Resume:
    """The kept messages after ``since``, or why there can be none.

    Recovered only when the history provably holds every message after
    ``since``: ``since`` is one of its messages, or the start of a room
    whose history lost nothing. A position the history does not hold
    (trimmed, from before Redis lost its data, made up) is never guessed at.
    More than ``limit`` messages to replay is a failure too (the page
    reloads its state instead).
    """
    if since.epoch != kept.epoch:
        return Resume(False, EPOCH_CHANGED, ())
    if since.offset == kept.last:
        return Resume(True, None, ())  # nothing was missed, kept or not
    entries = kept.entries
    if _is_start(since.offset):
        if not kept.complete:
            return Resume(False, TOO_OLD, ())
        after: Sequence[tuple[Any, Outgoing]] = entries
    else:
        offsets = [offset for offset, _ in entries]
        index = _find(offsets, since.offset)
        if index is None:
            too_old = (
                bool(offsets)
                and _comparable(since.offset, offsets[0])
                and since.offset < offsets[0]
            )
            return Resume(False, TOO_OLD if too_old else UNKNOWN_POSITION, ())
        after = entries[index + 1 :]
    if len(after) > limit:
        return Resume(False, TOO_MANY, ())
    return Resume(True, None, after)


def parse_since(since: Any, room: str) -> tuple[bool, Position | None]:
    """Whether ``since`` names a position for ``room``, and which (``None``
    when it is malformed). ``since`` may be a position (text or
    :class:`Position`), or, as the browser client sends it, JSON text of an
    object ``{room: position}``, or such a mapping; ``None``, or a mapping
    without the room, names none (a first join)."""
    if since is None or isinstance(since, Position):
        return since is not None, since
    if isinstance(since, str) and since.lstrip().startswith("{"):
        try:
            since = json.loads(since)
        except ValueError:
            return True, None
    if isinstance(since, Mapping):
        since = since.get(room)
        if since is None:
            return False, None
    if not isinstance(since, str):
        return True, None
    return True, Position.parse(since)


def envelope(room: str, position: Position, frame: Outgoing) -> Outgoing:
    """``frame`` as the browser client receives a hub message: JSON text
    ``{"room": ..., "position": ..., "data": ...}``, the data as it was
    published (JSON as it is, text as a JSON string, bytes as base64 with
    ``"binary": true``)."""
    head = json.dumps({"room": room, "position": str(position)})[:-1]
    if frame.json:
        data = frame.data
    elif frame.text:
        data = json.dumps(frame.data.decode()).encode()
    else:
        data = json.dumps(base64.b64encode(frame.data).decode()).encode() + b', "binary": true'
    return Outgoing(True, head.encode() + b', "data": ' + data + b"}", json=True)


def join_notice(
    room: str, position: Position, recovered: bool | None, reason: str | None
) -> Outgoing:
    """What the browser client is told as its member joins: the position
    after which the messages that follow come (where the page is now), and
    whether the messages it missed follow (``recovered``; ``None`` for a
    first join)."""
    notice = {"room": room, "position": str(position), "recovered": recovered, "reason": reason}
    return Outgoing(True, json.dumps(notice).encode(), json=True)


def _is_start(offset: Offset) -> bool:
    return offset == 0 or offset == (0, 0)


def _comparable(a: Offset, b: Offset) -> bool:
    return isinstance(a, tuple) == isinstance(b, tuple)


def _find(offsets: list[Any], offset: Offset) -> int | None:
    """The index of ``offset`` in the ascending ``offsets``, or ``None``."""
    low, high = 0, len(offsets)
    while low < high:
        middle = (low + high) // 2
        if not _comparable(offsets[middle], offset):
            return None
        if offsets[middle] < offset:
            low = middle + 1
        else:
            high = middle
    if low < len(offsets) and offsets[low] == offset:
        return low
    return None
