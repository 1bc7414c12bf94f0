"""Self-tests of tests/redis_topologies.py: the Sentinel set and the Redis
Cluster start, take writes, and fail over when a master is killed (SIGKILL),
with nothing that had reached a replica lost. Skipped (failed, in CI) when
redis-server or redis-cli is missing."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis as redis_py
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from tests.conftest import wait_time
from tests.redis_topologies import SERVICE, RedisClusterSet, redis_cluster, sentinel_set

T = wait_time(5)


def keys(count: int) -> dict[str, str]:
    """``count`` keys (spread over the slots by their hash) and values."""
    prefix = uuid.uuid4().hex[:8]
    return {f"{prefix}-{n}": f"value-{n}" for n in range(count)}


@contextlib.contextmanager
def node(port: int) -> Iterator[Any]:
    """A redis-py client of the server on ``port`` (typed ``Any``: redis-py
    types its replies as maybe awaitable)."""
    with contextlib.closing(redis_py.Redis(port=port, socket_timeout=2)) as client:
        yield client


@contextlib.contextmanager
def sentinel_master(sentinel_ports: list[int]) -> Iterator[Any]:
    """A redis-py client of the ``fsc`` master, found through the
    sentinels; it and the sentinels' clients closed on leaving."""
    make: Any = Sentinel  # untyped in redis-py
    addresses = [("127.0.0.1", port) for port in sentinel_ports]
    sentinel = make(addresses, socket_timeout=2, socket_connect_timeout=1)
    master = sentinel.master_for(SERVICE, socket_timeout=2, socket_connect_timeout=1)
    try:
        yield master
    finally:
        master.close()
        for client in sentinel.sentinels:
            client.close()


def replica_has_everything(master_port: int, replica_port: int) -> bool:
    """Whether the replica's link is up and it has every byte the master
    has written."""
    with node(master_port) as master, node(replica_port) as replica:
        offset = master.info("replication")["master_repl_offset"]
        got = replica.info("replication")
        return bool(got.get("master_link_status") == "up" and got["slave_repl_offset"] >= offset)


def replicated(cluster: RedisClusterSet, masters: list[int]) -> bool:
    """Whether each master's replica has everything its master has."""
    return all(replica_has_everything(m, cluster.replica_of(m)) for m in masters)


def sentinels_switched(sentinel_ports: list[int], master_port: int) -> bool:
    """Whether every sentinel's SENTINEL MASTERS (what redis-py's
    ``Sentinel.discover_master`` reads) lists ``master_port`` as the
    service's master, up and with no failover in progress. The leader names
    the promoted replica in GET-MASTER-ADDR-BY-NAME a little before that,
    while it still lists the old master as down."""
    for port in sentinel_ports:
        with node(port) as sentinel:
            state = sentinel.sentinel_masters().get(SERVICE)
        flags = set(str(state["flags"]).split(",")) if state else set()
        if not state or int(state["port"]) != master_port or "master" not in flags:
            return False
        if flags & {"s_down", "o_down", "failover_in_progress"}:
            return False
    return True


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Until ``predicate()``; how long it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.02)  # Redis has no event for these: polled
    return time.monotonic() - started


def test_sentinel_failover_keeps_a_replicated_key(tmp_path: Path) -> None:
    """A key written through the sentinels and acknowledged by the replica
    (WAIT) is read from the replica the sentinels promote once the master
    is killed; the failover takes well under 15 s."""
    with sentinel_set(tmp_path) as redis:
        assert redis.url == (
            "redis+sentinel://"
            + ",".join(f"127.0.0.1:{port}" for port in redis.sentinel_ports)
            + f"/{SERVICE}/0"
        )
        with (
            sentinel_master(redis.sentinel_ports) as master,
            master.pipeline(transaction=False) as pipe,  # one connection: WAIT sees the SET
        ):
            pipe.set("fsc-key", "kept")
            pipe.execute_command("WAIT", 1, 1000)
            _, acknowledged = pipe.execute()
        assert acknowledged == 1, "the replica did not acknowledge the write"
        old = redis.master_port()
        replica = redis.replica_port()
        assert redis.kill_master() == old
        took = redis.wait_for_failover(old, wait_time(15))
        took += wait_for(lambda: sentinels_switched(redis.sentinel_ports, replica), T,
                         "every sentinel switched to the promoted replica")  # fmt: skip
        assert took < wait_time(15)
        assert redis.master_port() == replica
        with node(replica) as promoted:
            assert promoted.execute_command("ROLE")[0] == b"master"
            assert promoted.get("fsc-key") == b"kept"
        with sentinel_master(redis.sentinel_ports) as master:  # found afresh
            assert master.get("fsc-key") == b"kept"


def test_cluster_spreads_keys_over_the_masters(tmp_path: Path) -> None:
    """100 keys set and read through RedisCluster; every master holds some."""
    with redis_cluster(tmp_path) as cluster:
        masters = cluster.master_ports()
        assert len(masters) == 3
        assert cluster.url == "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in masters)
        assert {cluster.replica_of(m) for m in masters} == set(cluster.ports) - set(masters)
        written = keys(100)
        client = RedisCluster(host="127.0.0.1", port=masters[0], socket_timeout=2)
        try:
            for key, value in written.items():
                assert client.set(key, value)
            assert {k: client.get(k) for k in written} == {
                k: v.encode() for k, v in written.items()
            }
        finally:
            client.close()
        held = []
        for port in masters:
            with node(port) as master:
                held.append(int(master.dbsize()))
        assert all(count > 0 for count in held), held
        assert sum(held) == len(written)


def test_cluster_failover_keeps_every_key(tmp_path: Path) -> None:
    """A master killed once its replica has its keys: its replica takes over
    its slots, and a fresh client reads every key again."""
    with redis_cluster(tmp_path) as cluster:
        masters = cluster.master_ports()
        written = keys(100)
        client = RedisCluster(host="127.0.0.1", port=masters[0], socket_timeout=2)
        try:
            for key, value in written.items():
                client.set(key, value)
        finally:
            client.close()
        wait_for(lambda: replicated(cluster, masters), T, "the replicas caught up")
        victim = masters[1]
        heir = cluster.replica_of(victim)
        cluster.kill(victim)
        took = cluster.wait_for_failover(victim, wait_time(15))
        assert took < wait_time(15)
        now = cluster.master_ports()
        assert victim not in now and heir in now
        survivor = next(port for port in now if port != heir)
        client = RedisCluster(host="127.0.0.1", port=survivor, socket_timeout=2)
        try:
            assert {k: client.get(k) for k in written} == {
                k: v.encode() for k, v in written.items()
            }
        finally:
            client.close()
