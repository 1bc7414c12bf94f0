"""Hub fan-out through one Redis and through a Redis Cluster of three
masters: deliveries per second, and each Redis's CPU time per delivery.

    python benchmarks/hub_cluster.py [--rooms 30] [--members 20] [--messages 6000]
                                     [--readers 2] [--publishers 2] [--runs 3] [--quick]

One run per topology, the two in turn, ``--runs`` times: the topology
(tests/redis_topologies.py: one redis-server, or three masters without
replicas); ``--readers`` processes that each join every room with
``--members`` members (objects that count what the hub offers them: no
sockets, so that what is measured is the hub and Redis); then
``--publishers`` processes that publish ``--messages`` messages between
them, round-robin over the rooms, as fast as Redis takes them. Measured:
deliveries per second, from the first publish until every reader has every
message; each Redis server's CPU time (INFO cpu) over the run, per master,
in µs per delivery. Ratios are cluster / one Redis in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

import flask_sockets_channels as sockets  # noqa: E402
from tests.conftest import RedisServer, free_port  # noqa: E402
from tests.redis_topologies import redis_cluster  # noqa: E402

TIMEOUT = 120.0


class CountingMember:
    """A hub member that counts what it is offered (``offer`` and ``closed``
    are all a hub asks of a socket view's ``sender``)."""

    closed = False

    def __init__(self, counter: Counter) -> None:
        self.counter = counter

    def offer(self, frame: Any, max_backlog: int) -> bool:
        self.counter.add()
        return True


class Counter:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.last = 0.0
        self.done = threading.Event()
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.count += 1
            self.last = time.time()
            if self.count >= self.expected:
                self.done.set()


def reader(url: str, rooms: int, members: int, messages: int) -> None:
    """A reading process: joins, says ``ready``, then ``done <count> <last>``."""
    hub = sockets.Hub.from_url(url)
    counter = Counter(messages * members)
    # The hub holds its members' senders weakly, as a view holds its own.
    senders = [CountingMember(counter) for _ in range(rooms * members)]
    joined = [hub.join(f"room-{index % rooms}", sender) for index, sender in enumerate(senders)]
    assert hub.wait_ready(30), "the readers did not connect"
    print("ready", flush=True)
    counter.done.wait(TIMEOUT)
    print(f"done {counter.count} {counter.last}", flush=True)
    for member in joined:
        member.leave()
    hub.close()


def publisher(url: str, rooms: int, first: int, count: int, step: int) -> None:
    """A publishing process: messages ``first``, ``first + step``, ..."""
    hub = sockets.Hub.from_url(url)
    hub.publish("warm-up", "x")
    print("ready", flush=True)
    sys.stdin.readline()  # go
    print(f"start {time.time()}", flush=True)
    for number in range(first, first + count * step, step):
        hub.publish(f"room-{number % rooms}", "m" * 64)
    print("finished", flush=True)
    hub.close()


def spawn(*arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def expect(process: subprocess.Popen[str], word: str) -> list[str]:
    assert process.stdout is not None
    line = process.stdout.readline().split()
    assert line and line[0] == word, f"expected {word!r}, got {line!r}"
    return line


def redis_cpu(port: int) -> float:
    with contextlib.closing(redis.Redis(port=port)) as client:
        info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def one_run(url: str, ports: list[int], options: argparse.Namespace) -> dict[str, Any]:
    readers = [spawn("--reader", url, str(options.rooms), str(options.members),
                     str(options.messages)) for _ in range(options.readers)]  # fmt: skip
    publishers = []
    try:
        for process in readers:
            expect(process, "ready")
        share = options.messages // options.publishers
        for index in range(options.publishers):
            publishers.append(spawn("--publisher", url, str(options.rooms), str(index), str(share),
                                    str(options.publishers)))  # fmt: skip
        for process in publishers:
            expect(process, "ready")
        cpu_before = [redis_cpu(port) for port in ports]
        for process in publishers:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        started = min(float(expect(process, "start")[1]) for process in publishers)
        for process in publishers:
            expect(process, "finished")
        results = [expect(process, "done") for process in readers]
        cpu = [redis_cpu(port) - before for port, before in zip(ports, cpu_before)]
    finally:
        for process in readers + publishers:
            process.wait(TIMEOUT)
    delivered = sum(int(result[1]) for result in results)
    expected = options.messages * options.members * options.readers
    seconds = max(float(result[2]) for result in results) - started
    return {
        "delivered": delivered,
        "expected": expected,
        "seconds": seconds,
        "deliveries_per_s": delivered / seconds,
        "redis_cpu_us_per_delivery": [c / delivered * 1e6 for c in cpu],
    }


def single(options: argparse.Namespace, directory: Path) -> dict[str, Any]:
    server = RedisServer(free_port())
    server.start()
    try:
        return one_run(server.url, [server.port], options)
    finally:
        server.stop()


def cluster(options: argparse.Namespace, directory: Path) -> dict[str, Any]:
    with redis_cluster(directory, masters=3, replicas=0) as topology:
        return one_run(topology.url, topology.master_ports(), options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rooms", type=int, default=30)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--messages", type=int, default=6000)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one small run of each")
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    if options.quick:
        options.runs, options.messages, options.members = 1, 600, 5
    runs: dict[str, list[dict[str, Any]]] = {"one Redis": [], "cluster of 3": []}
    with tempfile.TemporaryDirectory() as scratch:
        for run in range(options.runs):
            for name, topology in (("one Redis", single), ("cluster of 3", cluster)):
                result = topology(options, Path(scratch) / f"{run}-{len(runs[name])}")
                assert result["delivered"] == result["expected"], result
                runs[name].append(result)
                cpu = ", ".join(f"{c:.2f}" for c in result["redis_cpu_us_per_delivery"])
                print(f"run {run + 1} {name}: {result['deliveries_per_s']:,.0f} deliveries/s,"
                      f" Redis CPU µs/delivery per server: {cpu}", flush=True)  # fmt: skip
    base = statistics.median(r["deliveries_per_s"] for r in runs["one Redis"])
    other = statistics.median(r["deliveries_per_s"] for r in runs["cluster of 3"])
    busiest = statistics.median(max(r["redis_cpu_us_per_delivery"]) for r in runs["cluster of 3"])
    one = statistics.median(r["redis_cpu_us_per_delivery"][0] for r in runs["one Redis"])
    print(f"medians: deliveries/s cluster/one = {other / base:.2f}x;"
          f" busiest master's CPU per delivery / one Redis's = {busiest / one:.2f}x")  # fmt: skip
    if options.json:
        options.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--reader"]:
        reader(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif sys.argv[1:2] == ["--publisher"]:
        publisher(sys.argv[2], *(int(a) for a in sys.argv[3:7]))
    else:
        main()
