"""Resuming hub rooms by position (``Hub.join(since=...)``), and messages
delivered with their positions (``envelope=True``), in process and through
a real redis-server."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import flask_sockets_channels as sockets
from flask_sockets_channels.resume import Position
from tests.conftest import Inbox, RedisServer, free_port, redis_server, wait_time
from tests.test_hub_hostile import SnapshotRedis, admin_of
from tests.test_hub_redis import hub_at, new_room, sender_channel, wait_for

T = wait_time(5)


class Hubs:
    """Makes hubs of one kind, closed at the end: in process, or through
    Redis, where each is a process of its own as far as the hub can tell."""

    def __init__(self, stack: contextlib.ExitStack, redis: RedisServer | None) -> None:
        self._stack, self._redis = stack, redis

    def __call__(self, **kwargs: Any) -> sockets.Hub:
        if self._redis is None:
            return sockets.Hub(**kwargs)
        return self._stack.enter_context(hub_at(self._redis.url, **kwargs))

    def peer(self, hub: sockets.Hub) -> sockets.Hub:
        """A hub of another process that publishes to ``hub``'s rooms (in
        process: ``hub`` itself)."""
        return hub if self._redis is None else self(history=hub.history)


@pytest.fixture(params=["in-process", "redis"])
def make_hub(request: pytest.FixtureRequest) -> Iterator[Hubs]:
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_server()) if request.param == "redis" else None
        yield Hubs(stack, redis)


def frames(inbox: Inbox, count: int) -> list[dict[str, Any]]:
    """The next ``count`` envelopes or notices an enveloped member got."""
    return [json.loads(inbox.get(timeout=T).data) for _ in range(count)]


def data_of(envelopes: list[dict[str, Any]]) -> list[Any]:
    assert all("position" in e and "data" in e for e in envelopes), envelopes
    return [e["data"] for e in envelopes]


def test_a_member_gets_each_message_with_its_position(make_hub: Hubs) -> None:
    hub, room, inbox = make_hub(history=10), new_room(), sender_channel()
    with hub.join(room, inbox, envelope=True) as member:
        (notice,) = frames(inbox, 1)
        assert notice == {"room": room, "position": member.position, "recovered": None,
                          "reason": None}  # fmt: skip
        hub.publish(room, {"text": "a"})
        hub.publish(room, "b")
        hub.publish(room, b"\x00c")
        got = frames(inbox, 3)
    assert [e["room"] for e in got] == [room] * 3
    assert data_of(got) == [{"text": "a"}, "b", "AGM="]
    assert got[2]["binary"] is True
    positions = [Position.parse(e["position"]) for e in got]
    assert all(p is not None for p in positions)
    assert len({p.epoch for p in positions if p}) == 1
    offsets = [p.offset for p in positions if p]
    assert offsets == sorted(offsets) and len(set(offsets)) == 3


def test_a_member_that_comes_back_gets_what_it_missed_then_live_ones(make_hub: Hubs) -> None:
    hub, room = make_hub(history=50), new_room()
    publisher = make_hub.peer(hub)
    first = sender_channel()
    with hub.join(room, first, envelope=True):
        frames(first, 1)
        for number in range(3):
            publisher.publish(room, number)
        seen = frames(first, 3)
    last = seen[-1]["position"]
    for number in range(3, 8):
        publisher.publish(room, number)
    again = sender_channel()
    with hub.join(room, again, since=last, envelope=True) as member:
        notice, *missed = frames(again, 6)
        publisher.publish(room, 8)
        (live,) = frames(again, 1)
    assert (member.recovered, member.reason) == (True, None)
    assert notice["recovered"] is True and notice["position"] == last  # what follows comes after
    assert member.position == missed[-1]["position"]  # where the room stood
    assert data_of(missed) == [3, 4, 5, 6, 7]
    assert data_of([live]) == [8]


def test_a_position_from_before_the_first_message_covers_the_whole_room(make_hub: Hubs) -> None:
    hub, room, inbox = make_hub(history=50), new_room(), sender_channel()
    with hub.join(room, inbox, envelope=True) as member:
        start = member.position
    assert start is not None and start.endswith(":0")
    for number in range(4):
        hub.publish(room, number)
    back = sender_channel()
    with hub.join(room, back, since=start, envelope=True) as member:
        notice, *missed = frames(back, 5)
    assert member.recovered is True and notice["recovered"] is True
    assert data_of(missed) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("history", "missed", "since", "reason"),
    [
        (5, 10, "kept", "too old"),  # the history lost what came after
        (50, 10, "other-epoch", "epoch changed"),
        (50, 10, "made-up", "unknown position"),
        (50, 10, "garbage", "unknown position"),
        (50, 10, "start-trimmed", "too old"),
    ],
)
def test_a_member_that_cannot_resume_is_told_why_before_any_live_message(
    make_hub: Hubs, history: int, missed: int, since: str, reason: str
) -> None:
    hub, room = make_hub(history=history), new_room()
    first = sender_channel()
    with hub.join(room, first, envelope=True) as member:
        frames(first, 1)
        epoch = Position.parse(member.position or "")
        assert epoch is not None
        hub.publish(room, "seen")
        position = frames(first, 1)[0]["position"]
    if since == "start-trimmed":  # the room's start, once its history lost some
        for number in range(history + 1):
            hub.publish(room, number)
    else:
        for number in range(missed):
            hub.publish(room, number)
    seen = Position.parse(position)
    assert seen is not None
    beyond = seen.offset + 10**9 if isinstance(seen.offset, int) else (seen.offset[0] + 10**9, 0)
    given = {
        "kept": position,
        "other-epoch": f"not-{epoch.epoch}:1",
        "made-up": str(Position(seen.epoch, beyond)),  # never given out
        "garbage": "no position",
        "start-trimmed": f"{epoch.epoch}:0",
    }[since]
    back = sender_channel()
    with hub.join(room, back, since=given, envelope=True) as again:
        (notice,) = frames(back, 1)
        hub.publish(room, "live")
        (live,) = frames(back, 1)
    assert (again.recovered, again.reason) == (False, reason)
    assert notice["recovered"] is False and notice["reason"] == reason
    assert data_of([live]) == ["live"]


def test_with_replay_a_member_that_cannot_resume_gets_the_kept_messages(make_hub: Hubs) -> None:
    hub, room = make_hub(history=3), new_room()
    for number in range(10):
        hub.publish(room, number)
    inbox = sender_channel()
    with hub.join(room, inbox, since=f"{'x' * 12}:1", replay=True, envelope=True) as member:
        notice, *kept = frames(inbox, 4)
    assert (member.recovered, notice["reason"]) == (False, "epoch changed")
    assert data_of(kept) == [7, 8, 9]


def test_a_resume_past_max_resume_is_not_recovered(make_hub: Hubs) -> None:
    hub, room = make_hub(history=100, max_resume=3), new_room()
    first = sender_channel()
    with hub.join(room, first, envelope=True) as member:
        start = member.position
    for number in range(4):
        hub.publish(room, number)
    back = sender_channel()
    with hub.join(room, back, since=start, envelope=True) as again:
        (notice,) = frames(back, 1)
    assert (again.recovered, again.reason, notice["reason"]) == (False, "too many", "too many")


def test_the_browser_clients_since_parameter_names_each_room(make_hub: Hubs) -> None:
    hub, room, other = make_hub(history=10), new_room(), new_room()
    first = sender_channel()
    with hub.join(room, first, envelope=True) as member:
        start = member.position
    hub.publish(room, "missed")
    since = json.dumps({room: start})
    back, elsewhere = sender_channel(), sender_channel()
    with hub.join(room, back, since=since, envelope=True) as resumed:
        _, missed = frames(back, 2)
    with hub.join(other, elsewhere, since=since, envelope=True) as fresh:
        (first_notice,) = frames(elsewhere, 1)
    assert resumed.recovered is True and data_of([missed]) == ["missed"]
    assert fresh.recovered is None and first_notice["recovered"] is None


def test_members_resuming_while_a_publisher_never_pauses_miss_nothing(make_hub: Hubs) -> None:
    """A join racing a publish: each member that resumes from the position
    of the last message it got receives every later message once."""
    hub, room = make_hub(history=5000, max_resume=5000), new_room()
    publisher_hub = make_hub.peer(hub)
    stop, published = threading.Event(), [0]

    def publish() -> None:
        while not stop.wait(0.0005):  # a busy room, not a flood
            publisher_hub.publish(room, published[0])
            published[0] += 1

    thread = threading.Thread(target=publish, name="test publisher")
    thread.start()
    try:
        position, got = None, []
        for _ in range(10):
            inbox = sender_channel()
            with hub.join(room, inbox, since=position, envelope=True) as member:
                notice = frames(inbox, 1)[0]
                assert member.recovered in (None, True), member.reason
                until = published[0] + 50
                while not got or got[-1] < until:
                    envelope_ = frames(inbox, 1)[0]
                    got.append(envelope_["data"])
                    position = envelope_["position"]
            assert notice["recovered"] == member.recovered
    finally:
        stop.set()
        thread.join(T)
    assert got == list(range(got[0], got[-1] + 1))


# -- through Redis -------------------------------------------------------------


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as running:
        yield running


def test_five_hundred_resumes_of_a_room_read_its_history_once(redis: RedisServer) -> None:
    """What a deploy does to a busy room: every page comes back at once.
    One process reads the room's history from Redis once, for all."""
    room = new_room()
    with hub_at(redis.url, history=100) as hub, admin_of(redis.url) as admin:
        first = sender_channel()
        with hub.join(room, first, envelope=True) as member:
            start = member.position
        for number in range(50):
            hub.publish(room, number)
        admin.config_resetstat()
        inboxes = [sender_channel() for _ in range(500)]
        members = []
        errors: list[BaseException] = []

        def resume(inbox: Inbox) -> None:
            try:
                members.append(hub.join(room, inbox, since=start, envelope=True))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=resume, args=(i,)) for i in inboxes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(T * 4)
        stats = admin.info("commandstats")
        for member in members:
            member.leave()
    assert not errors and len(members) == 500
    assert all(member.recovered for member in members)
    assert all(data_of(frames(inbox, 51)[1:]) == list(range(50)) for inbox in inboxes)
    # The history script reads with one XREVRANGE (the publish script uses
    # it too, but nothing was published meanwhile).
    assert stats.get("cmdstat_xrevrange", {}).get("calls") == 1, stats.get("cmdstat_xrevrange")


def test_after_redis_restarts_from_an_older_snapshot_a_resume_is_told_and_gets_nothing_twice(
    tmp_path: Path,
) -> None:
    room = new_room()
    server = SnapshotRedis(free_port(), tmp_path)
    server.start()
    try:
        with (
            hub_at(server.url, history=100) as hub,
            hub_at(server.url, history=100) as outside,
            admin_of(server.url) as admin,
        ):
            first = sender_channel()
            with hub.join(room, first, envelope=True):
                frames(first, 1)
                for number in range(10):
                    outside.publish(room, number)
                admin.save()
                for number in range(10, 15):
                    outside.publish(room, number)
                seen = frames(first, 15)
            server.kill()
            server.start()
            wait_for(lambda: hub.reconnects == 1 and hub.wait_ready(0), T, "the reader is back")
            for number in range(15, 18):
                outside.publish(room, number)
            back = sender_channel()
            with hub.join(room, back, since=seen[-1]["position"], envelope=True) as member:
                notice = frames(back, 1)[0]
                outside.publish(room, "live")
                (live,) = frames(back, 1)
    finally:
        server.stop()
    assert member.recovered is False
    assert notice["reason"] in ("epoch changed", "unknown position")
    assert data_of([live]) == ["live"]
