"""The Redis hub past one Redis, on real servers: a master, a replica and
three sentinels; a cluster of three masters with a replica each
(tests/redis_topologies.py). Masters are killed mid-run (SIGKILL): what
arrives, in order, once, and what the members are told."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import redis as redis_py

import flask_sockets_channels as sockets
from flask_sockets_channels.redis_partitions import PARTITIONS_KEY, partition_of
from tests.conftest import wait_time
from tests.redis_topologies import RedisClusterSet, redis_cluster, sentinel_set
from tests.test_hub_redis import (
    Collector,
    drain,
    hub_app_server,
    hub_at,
    members_on_each_worker,
    new_room,
    open_member,
    presence_of,
    presence_query,
    publishing,
    sender_channel,
    wait_for,
    wait_until_every_member_hears,
)
from tests.test_resume import data_of, frames

T = wait_time(5)


def replica_caught_up(master_port: int, replica_port: int) -> bool:
    """Whether the replica has every byte the master has written."""
    with (
        contextlib.closing(redis_py.Redis(port=master_port)) as master,
        contextlib.closing(redis_py.Redis(port=replica_port)) as replica,
    ):
        offset = master.info("replication")["master_repl_offset"]
        got = replica.info("replication")
        return bool(got.get("master_link_status") == "up" and got["slave_repl_offset"] >= offset)


# -- Sentinel ------------------------------------------------------------------


def test_sentinel_failover_loses_nothing_and_publishing_resumes(tmp_path: Path) -> None:
    """1,000 messages from a process of its own to members on two gunicorn
    workers; the master is killed (SIGKILL) after 300, once the replica has
    them. Every member gets every message once, in order; publishing is
    refused (nothing sent) until the sentinels have promoted the replica."""
    name, count = new_room(), 1000
    with sentinel_set(tmp_path / "redis") as redis, contextlib.ExitStack() as stack:
        server = stack.enter_context(
            hub_app_server(tmp_path, "sentinel", redis.url, "--workers", "2")
        )
        prober = stack.enter_context(hub_at(redis.url))
        members = [ws for group in members_on_each_worker(stack, server, name, 2, 2).values()
                   for ws in group]  # fmt: skip
        wait_until_every_member_hears(prober, name, members)
        collectors = [Collector(ws, f"n-{count - 1}") for ws in members]
        with publishing(redis.url, name, count, 0.003, retry=True, pause_at=300) as publisher:
            publisher.wait_until_paused()  # no publish in flight
            master = redis.master_port()
            replica = redis.replica_port()
            wait_for(lambda: replica_caught_up(master, replica), T, "the replica caught up")
            redis.kill_master()
            publisher.resume()
            publisher.wait_for(None)
        for collector in collectors:
            assert collector.numbers() == list(range(count))
        for ws in members:
            assert drain(ws) == []  # and nothing twice
    assert publisher.maybe == []
    assert len(publisher.outages) == 1, publisher.outages
    print(f"publishing refused for {publisher.outages[0]:.2f} s")
    assert publisher.outages[0] < wait_time(20)


class LaggingFailover:
    """What the members of ``room`` see when a failover loses messages:
    ``cut`` stops replication, 20 messages are published and read, then
    ``fail_over`` kills the master and waits for the sentinels or the
    cluster to promote the replica, which never had them."""

    def __init__(
        self,
        url: str,
        room: str,
        replica_ready: Callable[[], bool],
        cut: Callable[[], None],
        fail_over: Callable[[], None],
    ) -> None:
        with hub_at(url, history=100) as hub, hub_at(url, history=100) as outside:
            first = sender_channel()
            with hub.join(room, first, envelope=True):
                frames(first, 1)  # the join notice
                for number in range(10):
                    outside.publish(room, number)
                self.seen = frames(first, 10)
                wait_for(replica_ready, T, "the replica caught up")
                cut()
                for number in range(10, 30):
                    outside.publish(room, number)
                self.seen += frames(first, 20)
                fail_over()
                deadline = time.monotonic() + wait_time(30)
                while True:  # until the new master takes it
                    try:
                        outside.publish(room, 30)
                        break
                    except sockets.HubUnavailable as exc:
                        assert not exc.maybe_delivered
                        assert time.monotonic() < deadline, "publishing never resumed"
                        time.sleep(0.05)
                self.seen += frames(first, 1)
                outside.publish(room, 31)
                self.seen += frames(first, 1)
            back = sender_channel()
            with hub.join(room, back, since=self.seen[20]["position"], envelope=True) as member:
                self.notice = frames(back, 1)[0]
                outside.publish(room, "live")
                self.live = frames(back, 1)
            self.member = member

    def check(self, caplog: pytest.LogCaptureFixture) -> None:
        """Nothing twice, the resume told, the loss logged."""
        assert data_of(self.seen) == list(range(32))  # once each, in order
        assert self.member.recovered is False
        assert self.notice["reason"] in ("epoch changed", "unknown position")
        assert data_of(self.live) == ["live"]
        lost = [r for r in caplog.records if "no longer has" in r.getMessage() or
                "went back from" in r.getMessage()]  # fmt: skip
        assert lost and all(r.levelno == logging.WARNING for r in lost)
        assert "lagging replica" in lost[0].getMessage()


def test_sentinel_failover_to_a_lagging_replica_changes_the_epoch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing arrives twice; the reader says what happened; a member
    resuming from one of the lost positions is told the epoch changed."""
    with sentinel_set(tmp_path / "redis") as redis:
        master, replica = redis.master_port(), redis.replica_port()

        def fail_over() -> None:
            redis.kill_master()
            redis.wait_for_failover(master, wait_time(30))

        LaggingFailover(
            redis.url,
            new_room(),
            lambda: replica_caught_up(master, replica),
            redis.cut_replication,
            fail_over,
        ).check(caplog)


# -- Cluster -------------------------------------------------------------------


def rooms_on_every_partition(partitions: int) -> list[str]:
    """One new room in each partition."""
    found: dict[int, str] = {}
    while len(found) < partitions:
        room = new_room()
        found.setdefault(partition_of(room, partitions), room)
    return [found[index] for index in range(partitions)]


def partition_masters(cluster: RedisClusterSet) -> list[int]:
    """The port of each partition's master, once a hub has picked them."""
    with hub_at(cluster.url) as hub:
        hub.publish("warm-up", "x")  # the first use picks the partitions
    admin = redis_py.RedisCluster(host="127.0.0.1", port=cluster.master_ports()[0])
    with contextlib.closing(admin):
        tags = json.loads(admin.get(PARTITIONS_KEY))
        return [int(admin.get_node_from_key(tag).port) for tag in tags]


def test_cluster_rooms_spread_evenly_over_the_masters(tmp_path: Path) -> None:
    with redis_cluster(tmp_path / "redis", masters=3, replicas=0) as cluster:
        masters = partition_masters(cluster)
    assert len(masters) == 3 and len(set(masters)) == 3  # one partition on each master
    rooms = [f"room-{number}" for number in range(300)]
    per_partition = [0, 0, 0]
    for room in rooms:
        per_partition[partition_of(room, 3)] += 1
    assert max(per_partition) <= 1.2 * 100, per_partition


def test_cluster_delivers_history_and_presence_across_two_workers_through_a_master_kill(
    tmp_path: Path,
) -> None:
    """Two gunicorn workers with members of a room on every master; 2,000
    messages over the three rooms from a process of its own; a master is
    killed after 700, once its replica has them. Every member gets its
    room's messages once, in order; presence and history are per room."""
    count = 2000
    with (
        redis_cluster(tmp_path / "redis", masters=3, replicas=1) as cluster,
        contextlib.ExitStack() as stack,
    ):
        server = stack.enter_context(
            hub_app_server(tmp_path, "cluster", cluster.url, "--workers", "2", history=50)
        )
        prober = stack.enter_context(hub_at(cluster.url))
        rooms = rooms_on_every_partition(3)
        members: dict[str, list[Any]] = {}
        for index, room in enumerate(rooms):
            query = presence_query(f"in-{index}")
            for group in members_on_each_worker(stack, server, room, 2, 1).values():
                members.setdefault(room, []).extend(group)
            members[room].append(open_member(stack, server, room, query)[0])
            wait_until_every_member_hears(prober, room, members[room])
        for index, room in enumerate(rooms):
            assert presence_of(server, room) == [f"in-{index}"]
        last = {room: max(n for n in range(count) if n % 3 == i) for i, room in enumerate(rooms)}
        collectors = {
            room: [Collector(ws, f"n-{last[room]}") for ws in members[room]] for room in rooms
        }
        with publishing(
            cluster.url, ",".join(rooms), count, 0.002, retry=True, pause_at=700
        ) as publisher:
            publisher.wait_until_paused()  # no publish in flight
            victim = cluster.master_ports()[1]
            replica = cluster.replica_of(victim)
            wait_for(lambda: replica_caught_up(victim, replica), T, "the replica caught up")
            cluster.kill(victim)
            publisher.resume()
            cluster.wait_for_failover(victim, wait_time(30))
            publisher.wait_for(None)
        # The killed master's room's publishes waited for the failover.
        assert len(publisher.outages) == 1, publisher.outages
        print(f"publishing refused for {publisher.outages[0]:.2f} s")
        for index, room in enumerate(rooms):
            expected = [n for n in range(count) if n % 3 == index]
            for collector in collectors[room]:
                assert collector.numbers() == expected, room
            for ws in members[room]:
                assert drain(ws) == []
        for index, room in enumerate(rooms):  # the killed master's room's too
            replayed: list[str] = []
            open_member(stack, server, room, "?replay=1", replayed)
            assert replayed == [f"n-{n}" for n in range(count) if n % 3 == index][-50:]
            assert presence_of(server, room) == [f"in-{index}"]
    assert publisher.maybe == []


def test_cluster_failover_to_a_lagging_replica_changes_the_epoch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same on a cluster, with the master of the room's partition."""
    room = new_room()
    with redis_cluster(tmp_path / "redis", masters=3, replicas=1) as cluster:
        masters = partition_masters(cluster)
        master = masters[partition_of(room, len(masters))]
        replica = cluster.replica_of(master)

        def fail_over() -> None:
            cluster.kill(master)
            cluster.wait_for_failover(master, wait_time(30))

        LaggingFailover(
            cluster.url,
            room,
            lambda: replica_caught_up(master, replica),
            lambda: cluster.cut_replication(master),
            fail_over,
        ).check(caplog)


def test_a_cluster_hub_made_while_the_cluster_is_down_refuses_publishing_without_sending(
    tmp_path: Path,
) -> None:
    """``from_url`` connects on first use, so it works with no cluster;
    ``publish`` then says nothing was sent."""
    with redis_cluster(tmp_path / "redis", masters=3, replicas=0) as cluster:
        ports = cluster.master_ports()
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)
    hub = sockets.Hub.from_url(url)  # nothing listens: no error yet
    try:
        with pytest.raises(sockets.HubUnavailable) as raised:
            hub.publish("lobby", "nobody")
        assert raised.value.maybe_delivered is False
        assert hub.wait_ready(0.1) is False
    finally:
        hub.close()


def test_sentinel_and_cluster_urls_hide_their_passwords() -> None:
    for url in (
        "redis+sentinel://:s3cret@127.0.0.1:1,127.0.0.1:2/mymaster/0",
        "redis+cluster://user:s3cret@127.0.0.1:1,127.0.0.1:2",
        "redis+sentinel://127.0.0.1:1/mymaster?sentinel_password=s3cret",
    ):
        hub = sockets.Hub.from_url(url)
        assert "s3cret" not in repr(hub._transport) and "s3cret" not in (hub.url or "")
        with pytest.raises(sockets.HubUnavailable) as raised:
            hub.publish("lobby", "x")
        assert "s3cret" not in str(raised.value)
        hub.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://127.0.0.1:1",  # no service
        "redis+sentinel://127.0.0.1/mymaster",  # no port
        "redis+sentinel://127.0.0.1:1/mymaster/x",  # not a database
        "redis+sentinel://127.0.0.1:1/mymaster?socket_timeout=1",  # not an option here
        "redis+cluster://127.0.0.1:1/3",  # a cluster has database 0 only
    ],
)
def test_malformed_sentinel_and_cluster_urls_are_refused_at_once(url: str) -> None:
    with pytest.raises(ValueError, match="invalid hub URL"):
        sockets.Hub.from_url(url)
