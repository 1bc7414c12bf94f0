"""Redis topologies on loopback for the hub's tests: a master with a replica
watched by three sentinels, and a Redis Cluster. Every process is started
in a directory of its own, persistence off, and stopped by the context
manager that started it."""

from __future__ import annotations

import contextlib
import functools
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import die_with_parent, free_port, have, require, wait_time

SERVICE = "fsc"
# The user the replica replicates as (its password the same).
REPLICATOR = "replicator"
# How long a sentinel waits before taking a silent master for down.
DOWN_AFTER_MS = 1000
# How long a cluster node waits before taking a silent node for failing.
NODE_TIMEOUT_MS = 1000


def _admin(port: int) -> Any:
    import redis

    return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=1)


def _poll(predicate: Any, timeout: float, what: str) -> float:
    """Wait until ``predicate()`` is true (Redis errors count as false);
    return how long it took."""
    import redis

    started = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - started
        except (redis.exceptions.RedisError, OSError):
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.05)  # Redis offers no event for these: polled


def _answers(port: int) -> bool:
    """PING answered on ``port``. A raw socket, so that a port some other
    server took (which may never answer) costs one short timeout, not a
    client's retries."""
    with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
        conn.sendall(b"PING\r\n")
        return conn.recv(7).startswith(b"+PONG")


def _answers_or_exited(process: subprocess.Popen[bytes], port: int) -> bool:
    return process.poll() is not None or _answers(port)


class _Processes:
    """redis-server processes by port."""

    def __init__(self, directory: Path) -> None:
        require(have("redis-server"), "redis-server is missing (apt-get install redis-server)")
        self.directory = directory
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(self, port: int, *arguments: str, new_port: Any = None) -> int:
        """Start a redis-server on ``port`` and wait until it answers; the
        port it runs on. A port found free can be taken before the server
        binds it (by another test's connection): then, given ``new_port``,
        another is tried."""
        for _ in range(5):
            home = self.directory / str(port)
            home.mkdir(parents=True, exist_ok=True)
            process = subprocess.Popen(
                ["redis-server", *arguments, "--port", str(port), "--bind", "127.0.0.1",
                 "--protected-mode", "no", "--loglevel", "warning", "--logfile", "redis.log"],
                cwd=home,
                stdout=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )  # fmt: skip
            self.processes[port] = process
            _poll(functools.partial(_answers_or_exited, process, port), wait_time(10),
                  f"redis-server on {port} started")  # fmt: skip
            if process.poll() is None:
                return port
            del self.processes[port]
            log = (home / "redis.log").read_text(errors="replace")
            if new_port is None or "in use" not in log:
                raise AssertionError(f"redis-server on {port} exited:\n{log}")
            port = new_port()
        raise AssertionError("redis-server found no free port in 5 tries")

    def kill(self, port: int) -> None:
        """SIGKILL the server on ``port``: no FIN to its peers' pending writes."""
        process = self.processes[port]
        process.kill()
        process.wait(wait_time(10))

    def pause(self, port: int) -> None:
        self.processes[port].send_signal(signal.SIGSTOP)

    def resume(self, port: int) -> None:
        self.processes[port].send_signal(signal.SIGCONT)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(wait_time(10))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(wait_time(10))


class SentinelSet(_Processes):
    """A master, a replica, and three sentinels watching them as ``fsc``."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.data_ports: list[int] = []

    @property
    def url(self) -> str:
        """The hub's URL: the sentinels, the service."""
        sentinels = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{sentinels}/{SERVICE}/0"

    def start(self) -> None:
        # No 5 s wait before a replica's first sync (Redis 7's default).
        persistence = ("--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0")
        master = self.spawn(free_port(), *persistence, new_port=free_port)
        with contextlib.closing(_admin(master)) as client:
            _add_replicator(client)
        replica = self.spawn(free_port(), *persistence, "--replicaof", "127.0.0.1", str(master),
                             "--masteruser", REPLICATOR, "--masterauth", REPLICATOR,
                             new_port=free_port)  # fmt: skip
        self.data_ports = [master, replica]
        _poll(lambda: self._link_up(replica), wait_time(10), "the replica's link is up")
        for index, port in enumerate(self.sentinel_ports):
            config = self.directory / f"sentinel-{index}.conf"  # a sentinel rewrites its own
            config.write_text(
                f"sentinel monitor {SERVICE} 127.0.0.1 {master} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            self.sentinel_ports[index] = self.spawn(
                port, str(config), "--sentinel", new_port=free_port
            )
        _poll(self._sentinels_know_everyone, wait_time(20), "the sentinels know each other")

    def _link_up(self, replica: int) -> bool:
        with contextlib.closing(_admin(replica)) as client:
            return bool(client.info("replication").get("master_link_status") == "up")

    def _sentinels_know_everyone(self) -> bool:
        for port in self.sentinel_ports:
            with contextlib.closing(_admin(port)) as sentinel:
                replicas = sentinel.execute_command("SENTINEL", "REPLICAS", SERVICE)
                others = sentinel.execute_command("SENTINEL", "SENTINELS", SERVICE)
                if len(replicas) < 1 or len(others) < 2:
                    return False
        return True

    def master_port(self) -> int:
        """The master's port, as the first sentinel that answers names it."""
        for port in self.sentinel_ports:
            with contextlib.suppress(Exception), contextlib.closing(_admin(port)) as sentinel:
                address = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
                return int(address[1])
        raise AssertionError("no sentinel answered")

    def replica_port(self) -> int:
        master = self.master_port()
        return next(port for port in self.data_ports if port != master)

    def cut_replication(self) -> None:
        """Disconnect the replica from the master and keep it out: what the
        master writes from now on, it never gets."""
        _cut_replication(self.master_port(), self.replica_port())

    def kill_master(self) -> int:
        """SIGKILL the master; its port."""
        master = self.master_port()
        self.kill(master)
        return master

    def wait_for_failover(self, old_master: int, timeout: float) -> float:
        """Until the sentinels name another master and it says it is one."""

        def promoted() -> bool:
            port = self.master_port()
            if port == old_master:
                return False
            with contextlib.closing(_admin(port)) as client:
                if client.execute_command("ROLE")[0] != b"master":
                    return False
            # What redis-py's Sentinel reads (SENTINEL MASTERS) can still show
            # the old master, failing over, for a moment after the winner
            # names the new one.
            for sentinel_port in self.sentinel_ports:
                with contextlib.closing(_admin(sentinel_port)) as sentinel:
                    state = sentinel.execute_command("SENTINEL", "MASTER", SERVICE)
                    if not isinstance(state, dict):  # a flat list before redis-py 8
                        state = dict(zip(state[::2], state[1::2]))
                    flags = set(state[b"flags"].decode().split(","))
                    if int(state[b"port"]) != port or flags - {"master"}:
                        return False
            return True

        return _poll(promoted, timeout, "the sentinels promoted the replica")


class RedisClusterSet(_Processes):
    """A Redis Cluster of ``masters`` masters with ``replicas`` replicas each."""

    def __init__(self, directory: Path, masters: int, replicas: int) -> None:
        super().__init__(directory)
        require(have("redis-cli"), "redis-cli is missing (apt-get install redis-tools)")
        self.ports = [_cluster_port() for _ in range(masters * (1 + replicas))]
        self.masters = masters
        self.replicas = replicas

    @property
    def url(self) -> str:
        """The hub's URL: the nodes that start as masters."""
        return "redis+cluster://" + ",".join(
            f"127.0.0.1:{port}" for port in self.ports[: self.masters]
        )

    def start(self) -> None:
        for index, port in enumerate(self.ports):
            port = self.ports[index] = self.spawn(
                port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--save", "",
                "--appendonly", "no", "--repl-diskless-sync-delay", "0",
                "--masteruser", REPLICATOR, "--masterauth", REPLICATOR,
                new_port=_cluster_port,
            )  # fmt: skip
            with contextlib.closing(_admin(port)) as client:  # any node may become a master
                _add_replicator(client)
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{port}" for port in self.ports),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=wait_time(30),
        )  # fmt: skip
        _poll(self._formed, wait_time(30), "the cluster is formed")

    def _ready(self) -> bool:
        for port in self.live_ports():
            with contextlib.closing(_admin(port)) as client:
                if b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                    return False
                role = client.info("replication")
                if role["role"] == "slave" and role.get("master_link_status") != "up":
                    return False
        masters = self._nodes()
        return len([n for n in masters if "master" in n["flags"] and n["slots"]]) == self.masters

    def _formed(self) -> bool:
        """Ready, and every node sees every replica: a node learns by gossip
        that another became a replica, and replica_of() reads one node's view."""
        return self._ready() and all(self._whole(self._nodes(p)) for p in self.live_ports())

    def _whole(self, nodes: list[dict[str, Any]]) -> bool:
        masters = {n["id"] for n in nodes if "master" in n["flags"] and n["slots"]}
        replicas = [n for n in nodes if "slave" in n["flags"] and n["master"] in masters]
        return len(masters) == self.masters and len(replicas) == self.masters * self.replicas

    def live_ports(self) -> list[int]:
        return [port for port, process in self.processes.items() if process.poll() is None]

    def _nodes(self, port: int | None = None) -> list[dict[str, Any]]:
        """CLUSTER NODES as ``port`` (or the first live node) sees it."""
        with contextlib.closing(_admin(port or self.live_ports()[0])) as client:
            text = client.execute_command("CLUSTER", "NODES").decode()
        nodes = []
        for line in text.splitlines():
            fields = line.split()
            nodes.append({
                "id": fields[0],
                "port": int(fields[1].split("@")[0].rsplit(":", 1)[1]),
                "flags": fields[2].split(","),
                "master": fields[3],
                "slots": fields[8:],
            })  # fmt: skip
        return nodes

    def master_ports(self) -> list[int]:
        """The ports of the masters serving slots, by their first slot."""
        masters = [n for n in self._nodes() if "master" in n["flags"] and n["slots"]
                   and "fail" not in n["flags"]]  # fmt: skip
        masters.sort(key=lambda n: int(n["slots"][0].split("-")[0]))
        return [n["port"] for n in masters]

    def replica_of(self, master_port: int) -> int:
        nodes = self._nodes()
        master = next(n for n in nodes if n["port"] == master_port)
        return int(next(n["port"] for n in nodes if n["master"] == master["id"]))

    def cut_replication(self, master_port: int) -> None:
        """Disconnect the master's replica and keep it out: what the master
        writes from now on, it never gets."""
        _cut_replication(master_port, self.replica_of(master_port))

    def wait_for_failover(self, old_master: int, timeout: float) -> float:
        """Until another node serves the killed master's slots and every live
        node says the cluster is ok."""

        def failed_over() -> bool:
            ports = self.master_ports()
            return old_master not in ports and len(ports) == self.masters and self._ready()

        return _poll(failed_over, timeout, "a replica took over the master's slots")

    def cpu_seconds(self, port: int) -> float:
        """The CPU time the node on ``port`` has used (user + system)."""
        import os

        fields = (
            Path(f"/proc/{self.processes[port].pid}/stat").read_text().rsplit(")", 1)[1].split()
        )
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _add_replicator(client: Any) -> None:
    """The user replicas replicate as (see :func:`_cut_replication`)."""
    client.execute_command("ACL", "SETUSER", REPLICATOR, "on", ">" + REPLICATOR, "+@all", "~*")


def _cut_replication(master: int, replica: int) -> None:
    """Turn the replicas' user off on ``master`` and disconnect them."""
    with contextlib.closing(_admin(master)) as client:
        client.execute_command("ACL", "SETUSER", REPLICATOR, "off")
        client.execute_command("CLIENT", "KILL", "USER", REPLICATOR)

    def link_down() -> bool:
        with contextlib.closing(_admin(replica)) as client:
            return bool(client.info("replication").get("master_link_status") != "up")

    _poll(link_down, wait_time(10), "the replication link is cut")


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(1000):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
            if port + 10000 > 65535:
                continue
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise AssertionError("no free pair of ports")


@contextlib.contextmanager
def sentinel_set(directory: Path) -> Iterator[SentinelSet]:
    """A started :class:`SentinelSet`, stopped on leaving."""
    topology = SentinelSet(directory)
    try:
        topology.start()
        yield topology
    finally:
        topology.stop()


@contextlib.contextmanager
def redis_cluster(
    directory: Path, masters: int = 3, replicas: int = 1
) -> Iterator[RedisClusterSet]:
    """A started :class:`RedisClusterSet`, stopped on leaving."""
    topology = RedisClusterSet(directory, masters, replicas)
    try:
        topology.start()
        yield topology
    finally:
        topology.stop()
