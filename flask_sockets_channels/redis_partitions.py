"""How the hub's rooms are spread over the partitions of a Redis Cluster.

A partition is a stream and the keys that go with it (:class:`.Keys`), all
under one hash tag, so in one slot. The first process to use a cluster
picks one tag per master, each in a slot that master serves, and writes
the list to ``flask-sockets-channels:partitions``; every process reads it
from there, so all agree on it whatever the cluster looks like when they
start. A room belongs to the partition its name's CRC-32 picks.

A cluster that gains masters or moves slots later keeps the partitions it
had (and serves them from wherever their slots went): delete the key and
restart every process to spread the rooms over the new masters.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

__all__ = ["PARTITIONS_KEY", "partition_of", "partition_tags"]

PARTITIONS_KEY = "flask-sockets-channels:partitions"

# Tags tried for each master: "p0", "p1", ... until one is in its slots
# (a master of n serves about 1/n of them: a few tries each).
_MOST_TRIES = 1_000_000


def partition_of(room: str, partitions: int) -> int:
    """The index of ``room``'s partition (the same in every process)."""
    return zlib.crc32(room.encode()) % partitions


def partition_tags(cluster: Any) -> list[str]:
    """The partitions' tags of the cluster behind ``cluster`` (a redis-py
    ``RedisCluster``): read, or picked and written if no process has yet.

    Raises:
        redis.exceptions.RedisError: The cluster cannot be reached.
    """
    kept = cluster.get(PARTITIONS_KEY)
    if kept is None:
        cluster.set(PARTITIONS_KEY, json.dumps(_pick_tags(cluster)), nx=True)
        kept = cluster.get(PARTITIONS_KEY)  # ours, or another process's
    tags = json.loads(kept)
    if not isinstance(tags, list) or not tags or not all(isinstance(t, str) for t in tags):
        raise ValueError(f"{PARTITIONS_KEY} holds no list of tags: {kept!r}")
    return tags


def _pick_tags(cluster: Any) -> list[str]:
    """A tag in the slots of each master the cluster has now."""
    masters = {node.name for node in cluster.get_primaries()}
    picked: dict[str, str] = {}
    for number in range(_MOST_TRIES):
        tag = f"p{number}"
        master = cluster.get_node_from_key(tag).name
        if master in masters and master not in picked:
            picked[master] = tag
            if len(picked) == len(masters):
                break
    return sorted(picked.values(), key=lambda tag: int(tag[1:]))
