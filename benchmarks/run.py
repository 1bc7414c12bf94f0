#!/usr/bin/env python3
"""Benchmark flask-sockets-channels against flask-sock and websockets.

One command::

    python benchmarks/run.py            # full run: 3 runs of every scenario (~7 min)
    python benchmarks/run.py --quick    # smoke: 1 short run of each (~20 s)
    python benchmarks/run.py --profile  # py-spy profile of ours under the echo load (~20 s)
    python benchmarks/run.py --profile flask-sock-gunicorn --profile-scenario large

Needs the peers (``pip install -r benchmarks/requirements.txt``), Node >= 18
with npm (the load client, benchmarks/client.mjs, uses the ``ws`` package;
``npm ci`` runs in benchmarks/ when node_modules is missing) and, for the
Redis fan-out, ``redis-server`` on PATH (else that scenario is skipped).

One run: every server is started on a free loopback port, every scenario
runs against each server in turn (ours next to its peer on the same WSGI
server, so that a ratio compares numbers taken seconds apart; the order is
reversed every other run), and every server is stopped by its PID. The full
benchmark does three runs, each with fresh server processes, and reports the
median of the three. The table gives, for each metric, the ratio of ours to
each peer.

Scenarios (full / --quick):

* ``idle``: 1000 / 20 connections opened and left idle, in two rounds: threads
  and RSS per connection (from /proc/PID/status deltas over the baseline
  taken after one warm-up connection), and the thread count after they
  close. Under gunicorn gthread the pool keeps its threads, so the count
  stays at baseline + pool size after round 1 and must not grow in round 2;
  under werkzeug and websockets' sync server (a thread per connection) it
  must come back to the baseline.
* ``echo``: 16 / 4 connections, each keeping 64 / 16 messages of 32 bytes
  (text) in flight, 5 / 0.5 s: messages/s, p50/p99 latency, server CPU per
  message (/proc/PID/stat utime+stime over the window).
* ``rtt``: one connection, one 32-byte message at a time: p50/p99 round trip.
* ``large``: one connection, 4 binary messages of 1 MiB in flight: MB/s.
* ``deflate``: ``echo`` with permessage-deflate offered by the client (ours:
  an endpoint with ``compression=True``; flask-sock accepts it always;
  websockets: its default deflate settings, accepted on that path only).
* ``fanout``: one publisher, 100 / 20 members; the client keeps 16 / 8
  published messages in flight (not yet received by every member):
  deliveries/s and server CPU per delivery. Ours through the app's ``Hub``
  in-process; ``fanout-redis``: two gunicorn processes sharing a Redis hub,
  half of the members on each, the publisher on the first (server CPU is
  both processes; redis-server's own is reported apart). flask-sock and
  websockets: a hand-written broadcast (a set of connections and a loop of
  ``ws.send`` in the publisher's thread).

Servers: ours and flask-sock 0.7 on the werkzeug dev server and on gunicorn
``-k gthread -w 1 --threads 1100``, and websockets' sync server. All with
compression off (except in ``deflate``), no keepalive pings in the window, an
inbound limit of 4 MiB, TCP_NODELAY.

The results (benchmarks/RESULTS.md) are written by hand from the printed
tables; a full run also saves benchmarks/results.json and the chart
benchmarks/results.png (``report.py`` redraws both from the JSON).

Every load is bounded in count and time; the client has a hard timeout. Only
loopback addresses are used. Processes started here are stopped by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVERS = HERE / "servers"
CLIENT = HERE / "client.mjs"

sys.path.insert(0, str(HERE))
import report  # noqa: E402


@dataclass(frozen=True)
class Profile:
    """How long and how big each scenario is."""

    runs: int
    warmup: float
    echo_s: float
    echo_connections: int
    echo_window: int
    rtt_s: float
    large_s: float
    deflate_s: float
    fanout_s: float
    fanout_members: int
    fanout_window: int
    idle_connections: int
    idle_rounds: int
    idle_settle: float


FULL = Profile(
    runs=3,
    warmup=0.5,
    echo_s=5.0,
    echo_connections=16,
    echo_window=64,
    rtt_s=1.5,
    large_s=2.0,
    deflate_s=1.5,
    fanout_s=2.0,
    fanout_members=100,
    fanout_window=16,
    idle_connections=1000,
    idle_rounds=2,
    idle_settle=1.0,
)
QUICK = Profile(
    runs=1,
    warmup=0.05,
    echo_s=0.3,
    echo_connections=4,
    echo_window=16,
    rtt_s=0.2,
    large_s=0.2,
    deflate_s=0.2,
    fanout_s=0.3,
    fanout_members=20,
    fanout_window=8,
    idle_connections=20,
    idle_rounds=2,
    idle_settle=0.15,
)

#: label -> (kind, app module). kind: werkzeug | gunicorn | websockets.
SERVER_KINDS = {
    "ours-werkzeug": ("werkzeug", "ours_app"),
    "ours-gunicorn": ("gunicorn", "ours_app"),
    "flask-sock-werkzeug": ("werkzeug", "flask_sock_app"),
    "flask-sock-gunicorn": ("gunicorn", "flask_sock_app"),
    "websockets-sync": ("websockets", "websockets_server"),
}
#: Scenarios run against each server (in the order of ALL_SCENARIOS: idle
#: first, as it measures RSS, best done on a fresh process).
SESSION_SCENARIOS = {
    "ours-werkzeug": ["idle", "echo", "rtt", "large", "deflate"],
    "flask-sock-werkzeug": ["idle", "echo", "rtt", "large", "deflate"],
    "ours-gunicorn": ["idle", "echo", "rtt", "large", "deflate", "fanout"],
    "flask-sock-gunicorn": ["idle", "echo", "rtt", "large", "deflate", "fanout"],
    "websockets-sync": ["idle", "echo", "rtt", "large", "deflate", "fanout"],
}
ALL_SCENARIOS = ["idle", "echo", "rtt", "large", "deflate", "fanout", "fanout-redis"]
GUNICORN_THREADS = 1100


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- processes ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def http_ok(port: int, timeout: float) -> bool:
    """Whether GET / on the port gets any HTTP response."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/")
    except OSError:
        return False


class Process:
    """A process we started; stopped by its PID (and its known children's)."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        logs: Path,
        stop_signal: int = signal.SIGTERM,
    ):
        self.name = name
        self.stop_signal = stop_signal
        self.log_path = logs / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C on the terminal reaches only us
        )
        self.pid = self.popen.pid
        self.known_children: list[int] = []

    def stop(self, timeout: float = 5.0) -> None:
        """``stop_signal`` to the PID; SIGKILL to it and its known children
        if they are still there after ``timeout``."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, self.stop_signal)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        for child in self.known_children:
            deadline = time.monotonic() + 2
            while alive(child) and time.monotonic() < deadline:
                time.sleep(0.05)
            if alive(child):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
        self._log.close()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Server:
    label: str
    port: int
    process: Process
    measured_pids: list[int]
    extra: list[Process] = field(default_factory=list)
    other_ports: list[int] = field(default_factory=list)  # more servers of one hub
    aux_pids: list[int] = field(default_factory=list)  # measured apart (redis-server)

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        for process in [self.process, *self.extra]:
            process.stop()


class Bench:
    def __init__(self, args: argparse.Namespace, profile: Profile, ours_root: Path, logs: Path):
        self.args = args
        self.profile = profile
        self.ours_root = ours_root
        self.logs = logs
        self.clk_tck = os.sysconf("SC_CLK_TCK")
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ours_root), self.env.get("PYTHONPATH", "")) if p
        )
        self.env["PYTHONUNBUFFERED"] = "1"
        self.env.pop("SOCKETS_HUB_URL", None)
        self.results: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.failures: list[str] = []
        self.client_cpu_max = 0.0
        self.started = time.monotonic()
        self.step = 0
        self.steps = 0

    # -- servers -----------------------------------------------------------

    def start_server(
        self, label: str, env: dict[str, str] | None = None, name: str | None = None
    ) -> Server:
        kind, module = SERVER_KINDS[label]
        port = free_port()
        env = env or self.env
        if kind == "gunicorn":
            argv = [
                sys.executable,
                "-m",
                "gunicorn",
                "-k",
                "gthread",
                "-w",
                "1",
                "--threads",
                str(GUNICORN_THREADS),
                "--worker-connections",
                str(2 * GUNICORN_THREADS),
                "--backlog",
                "2048",
                "--graceful-timeout",
                "3",
                "--log-level",
                "warning",
                "--no-control-socket",
                "--chdir",
                str(self.ours_root),
                "--pythonpath",
                str(SERVERS),
                "-b",
                f"127.0.0.1:{port}",
                f"{module}:app",
            ]
        else:
            argv = [sys.executable, str(SERVERS / f"{module}.py"), str(port)]
        # gunicorn: SIGINT is its quick shutdown (no graceful wait); every
        # connection is closed by then anyway.
        stop_signal = signal.SIGINT if kind == "gunicorn" else signal.SIGTERM
        process = Process(name or label, argv, env, self.ours_root, self.logs, stop_signal)
        try:
            deadline = time.monotonic() + 30
            measured = process.pid
            while True:
                if process.popen.poll() is not None:
                    raise RuntimeError(f"{label} exited at start:\n{process.tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{label} did not start in 30 s:\n{process.tail()}")
                if kind == "gunicorn":
                    workers = children(process.pid)
                    if not workers:
                        time.sleep(0.05)
                        continue
                    measured = workers[0]
                    process.known_children = workers
                if http_ok(port, timeout=5):
                    break
                time.sleep(0.05)
        except BaseException:
            process.stop()
            raise
        return Server(label, port, process, [measured])

    @contextlib.contextmanager
    def redis(self) -> Iterator[tuple[str, Process]]:
        port = free_port()
        argv = [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ]
        process = Process("redis-server", argv, self.env, self.logs, self.logs)
        try:
            deadline = time.monotonic() + 10
            while True:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), timeout=1) as s,
                ):
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
                if process.popen.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start:\n{process.tail()}")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0", process
        finally:
            process.stop()

    # -- the client ----------------------------------------------------------

    def client(self, config: dict[str, Any], budget: float) -> dict[str, Any]:
        config = {"clk_tck": self.clk_tck, "hard_timeout_s": budget + 30, **config}
        try:
            done = subprocess.run(
                ["node", str(CLIENT), json.dumps(config)],
                capture_output=True,
                text=True,
                timeout=budget + 40,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"client timed out after {budget + 40:.0f} s") from exc
        if done.returncode != 0:
            raise RuntimeError(f"client failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    # -- scenarios -----------------------------------------------------------

    def planned_seconds(self, scenario: str) -> float:
        p = self.profile
        return {
            "idle": p.idle_rounds * (p.idle_connections / 400 + p.idle_settle + 1.5) + 1,
            "echo": p.warmup + p.echo_s + 0.5,
            "rtt": p.warmup + p.rtt_s + 0.3,
            "large": p.warmup + p.large_s + 0.5,
            "deflate": p.warmup + p.deflate_s + 0.5,
            "fanout": p.warmup + p.fanout_s + 1.0,
            "fanout-redis": p.warmup + p.fanout_s + 3.0,
        }[scenario]

    def run_scenario(self, scenario: str, server: Server) -> dict[str, Any]:
        p = self.profile
        base = {"pids": server.measured_pids, "warmup_s": p.warmup}
        budget = self.planned_seconds(scenario) + 10
        if scenario == "echo":
            config = {
                **base,
                "scenario": "echo",
                "url": server.url("/echo"),
                "connections": p.echo_connections,
                "window": p.echo_window,
                "size": 32,
                "binary": False,
                "duration_s": p.echo_s,
            }
        elif scenario == "deflate":
            config = {
                **base,
                "scenario": "echo",
                "url": server.url("/echo/deflate"),
                "connections": p.echo_connections,
                "window": p.echo_window,
                "size": 32,
                "binary": False,
                "deflate": True,
                "duration_s": p.deflate_s,
            }
        elif scenario == "rtt":
            config = {
                **base,
                "scenario": "rtt",
                "url": server.url("/echo"),
                "size": 32,
                "duration_s": p.rtt_s,
            }
        elif scenario == "large":
            config = {
                **base,
                "scenario": "echo",
                "url": server.url("/echo"),
                "connections": 1,
                "window": 4,
                "size": 1 << 20,
                "binary": True,
                "duration_s": p.large_s,
            }
        elif scenario == "idle":
            config = {
                **base,
                "scenario": "idle",
                "url": server.url("/echo"),
                "count": p.idle_connections,
                "concurrency": 16,
                "rounds": p.idle_rounds,
                "settle_s": p.idle_settle,
            }
            budget += p.idle_rounds * 25
        elif scenario in ("fanout", "fanout-redis"):
            subs = [server.url("/fanout/sub")]
            subs += [f"ws://127.0.0.1:{port}/fanout/sub" for port in server.other_ports]
            config = {
                **base,
                "scenario": "fanout",
                "pub_url": server.url("/fanout/pub"),
                "sub_urls": subs,
                "members": p.fanout_members,
                "window": p.fanout_window,
                "size": 32,
                "duration_s": p.fanout_s,
            }
            if server.aux_pids:
                config["aux_pids"] = server.aux_pids
        else:
            raise ValueError(scenario)
        result = self.client(config, budget)
        if scenario == "deflate" and "permessage-deflate" not in (result.get("extensions") or ""):
            raise RuntimeError(f"permessage-deflate not negotiated: {result.get('extensions')!r}")
        if result.get("mismatches"):
            raise RuntimeError(f"{result['mismatches']} echoes of the wrong type or size")
        if result.get("lost"):
            raise RuntimeError(f"{result['lost']} messages never came back")
        if scenario == "idle":
            answered = [r["answered"] for r in result["rounds"]]
            if any(a != p.idle_connections for a in answered):
                raise RuntimeError(f"idle connections did not all answer: {answered}")
        return result

    def record(self, scenario: str, label: str, run: int, result: dict[str, Any]) -> None:
        result = {"run": run, **result}
        self.results.setdefault(scenario, {}).setdefault(label, []).append(result)
        pct = result.get("client_cpu_pct")
        if pct is not None:
            self.client_cpu_max = max(self.client_cpu_max, pct)
        self.step += 1
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.step * (self.steps - self.step) if self.step else 0
        log(
            f"[{self.step:3}/{self.steps} {elapsed:5.0f}s, ~{eta:4.0f}s left] "
            f"run {run}: {scenario:12} {label:20} {report.summary(scenario, result)}"
        )

    def fail(self, scenario: str, label: str, run: int, error: BaseException) -> None:
        self.step += 1
        message = f"run {run}: {scenario} on {label}: {error}"
        self.failures.append(message)
        log(f"[{self.step:3}/{self.steps}] FAILED {message}")

    # -- the plan ------------------------------------------------------------

    def sessions(self) -> list[tuple[str, list[str]]]:
        wanted = set(self.args.scenarios)
        plan = []
        for label, scenarios in SESSION_SCENARIOS.items():
            if label not in self.args.servers:
                continue
            chosen = [s for s in scenarios if s in wanted]
            if chosen:
                plan.append((label, chosen))
        if "fanout-redis" in wanted and "ours-gunicorn" in self.args.servers:
            if shutil.which("redis-server"):
                plan.append(("ours-gunicorn+redis", ["fanout-redis"]))
            else:
                log("redis-server is not on PATH: fanout-redis is skipped")
        return plan

    def run(self) -> None:
        """Each run starts every server, then runs each scenario against
        every server in turn (ours next to its peer on the same server, the
        order reversed every other run), then stops them all: a ratio
        compares numbers taken seconds apart, in the same conditions."""
        plan = dict(self.sessions())
        self.steps = self.profile.runs * sum(len(s) for s in plan.values())
        planned = self.profile.runs * (
            3 * len(plan) + sum(self.planned_seconds(s) for v in plan.values() for s in v)
        )
        log(
            f"{self.steps} steps ({self.profile.runs} run(s) of {len(plan)} servers), "
            f"about {planned / 60:.1f} min; server logs in {self.logs}"
        )
        for run in range(1, self.profile.runs + 1):
            order = list(plan) if run % 2 else list(reversed(plan))
            with contextlib.ExitStack() as stack:
                servers: dict[str, Server] = {}
                for label in order:
                    try:
                        t0 = time.monotonic()
                        if label == "ours-gunicorn+redis":
                            servers[label] = self.start_redis_pair(stack, run)
                        else:
                            servers[label] = self.start_server(label, name=f"{label}-{run}")
                            stack.callback(servers[label].stop)
                        log(f"run {run}: started {label} in {time.monotonic() - t0:.1f} s")
                    except Exception as exc:
                        for scenario in plan[label]:
                            self.fail(scenario, label, run, exc)
                for scenario in ALL_SCENARIOS:
                    for label in order:
                        if scenario not in plan[label] or label not in servers:
                            continue
                        server = servers[label]
                        try:
                            result = self.run_scenario(scenario, server)
                            self.record(scenario, server.label, run, result)
                        except Exception as exc:
                            self.fail(scenario, label, run, exc)
                            log(server.process.tail(15))

    def start_redis_pair(self, stack: contextlib.ExitStack, run: int) -> Server:
        """redis-server and two gunicorn processes of ours sharing a Redis hub."""
        url, redis_process = stack.enter_context(self.redis())
        env = {**self.env, "SOCKETS_HUB_URL": url}
        first = self.start_server("ours-gunicorn", env, name=f"ours-gunicorn-redis-a-{run}")
        stack.callback(first.stop)
        second = self.start_server("ours-gunicorn", env, name=f"ours-gunicorn-redis-b-{run}")
        stack.callback(second.stop)
        return Server(
            "ours-gunicorn",
            first.port,
            first.process,
            first.measured_pids + second.measured_pids,
            other_ports=[second.port],
            aux_pids=[redis_process.pid],
        )


# -- environment -----------------------------------------------------------


def check_environment() -> None:
    missing = []
    for module in ("flask", "flask_sock", "simple_websocket", "websockets", "gunicorn", "redis"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        sys.exit(
            f"missing Python packages: {', '.join(missing)}; "
            f"pip install -r {HERE / 'requirements.txt'}"
        )
    node = shutil.which("node")
    if node is None:
        sys.exit("node (>= 18) is not on PATH: the load client runs on Node")
    if not (HERE / "node_modules" / "ws" / "package.json").exists():
        npm = shutil.which("npm")
        if npm is None:
            sys.exit("benchmarks/node_modules is missing and npm is not on PATH")
        log("installing the load client's packages (npm ci in benchmarks/)")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, check=True
        )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


def ours_snapshot(ref: str, into: Path) -> Path:
    """Export flask_sockets_channels/ at git ``ref`` into ``into``."""
    archive = subprocess.run(
        ["git", "archive", ref, "flask_sockets_channels"], cwd=ROOT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    versions = {}
    for dist in (
        "flask",
        "werkzeug",
        "flask-sock",
        "simple-websocket",
        "wsproto",
        "websockets",
        "gunicorn",
        "redis",
    ):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[dist] = version(dist)
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "node": node,
        "kernel": platform.release(),
        "loadavg_at_start": os.getloadavg(),
        "versions": versions,
    }


def git_describe(ref: str | None) -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    if ref:
        return f"{ref} = {git('rev-parse', '--short', ref)}"
    dirty = git("status", "--porcelain", "--", "flask_sockets_channels")
    return f"working tree at {git('rev-parse', '--short', 'HEAD')}" + (
        " (flask_sockets_channels/ has uncommitted changes)" if dirty else ""
    )


# -- profile -----------------------------------------------------------------


def profile_load(bench: Bench, seconds: float, label: str, scenario: str) -> None:
    """Record a server under the echo (or large) load with py-spy: a flame
    graph (benchmarks/profile-SCENARIO[-LABEL].svg), the collapsed stacks
    (.txt) and the top functions on stdout."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        sys.exit("py-spy is not on PATH: pip install py-spy")
    stem = f"profile-{scenario}" + ("" if label == "ours-gunicorn" else f"-{label}")
    svg, raw = HERE / f"{stem}.svg", HERE / f"{stem}.txt"
    server = bench.start_server(label)
    try:
        config = {
            "clk_tck": bench.clk_tck,
            "hard_timeout_s": seconds + 30,
            "scenario": "echo",
            "pids": server.measured_pids,
            "warmup_s": 0.5,
            "url": server.url("/echo"),
            "connections": bench.profile.echo_connections,
            "window": bench.profile.echo_window,
            "size": 32,
            "binary": False,
            "duration_s": seconds + 2,
        }
        if scenario == "large":
            config.update(connections=1, window=4, size=1 << 20, binary=True)
        elif scenario == "rtt":
            config.update(scenario="rtt")
        client = subprocess.Popen(
            ["node", str(CLIENT), json.dumps(config)], stdout=subprocess.PIPE, text=True
        )
        time.sleep(1.0)  # connected and warmed up
        common = [
            "record",
            "--pid",
            str(server.measured_pids[0]),
            "--duration",
            str(int(seconds)),
            "--rate",
            "200",
            # Sample without stopping the process (stopping it 200 times a
            # second halves its throughput) ...
            "--nonblocking",
            # ... and only the thread that holds the GIL: these servers are
            # bound by it, so its holder's stack is where the time goes.
            "--gil",
        ]
        # Relative names, run from the repository root: py-spy writes its
        # command line into the SVG, which should not name this machine's paths.
        root = Path(__file__).resolve().parent.parent
        svg_name, raw_name = (os.path.relpath(path, root) for path in (svg, raw))
        path = os.pathsep.join([os.path.dirname(py_spy), os.environ.get("PATH", "")])
        spy_env = dict(os.environ, PATH=path)
        spies = [
            subprocess.Popen(
                ["py-spy", *common, *output], stdout=subprocess.DEVNULL, cwd=root, env=spy_env
            )
            for output in (["--output", svg_name], ["--format", "raw", "--output", raw_name])
        ]
        for spy in spies:
            try:
                spy.wait(seconds + 30)
            except subprocess.TimeoutExpired:
                spy.terminate()
                spy.wait(5)
        out, _ = client.communicate(timeout=seconds + 40)
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        server.stop()
    print(f"{label} under py-spy (--gil --nonblocking, {seconds:g} s of the {scenario} load):")
    print(report.summary(scenario, result))
    print()
    print(report.profile_table(raw.read_text().splitlines(), top=25))
    print(f"\nflame graph: {svg}\ncollapsed stacks: {raw}")


# -- main ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 short run of each (smoke)")
    parser.add_argument("--runs", type=int, help="runs of each scenario (default 3; --quick 1)")
    parser.add_argument(
        "--scenarios", default=",".join(ALL_SCENARIOS), help="comma-separated subset"
    )
    parser.add_argument("--servers", default=",".join(SERVER_KINDS), help="comma-separated subset")
    parser.add_argument(
        "--ours",
        metavar="REF",
        help="benchmark flask_sockets_channels/ as of this git ref (exported to a "
        "temporary directory) instead of the working tree",
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="write raw results here (full run default: benchmarks/results.json)",
    )
    parser.add_argument(
        "--chart",
        type=Path,
        help="write the ratio chart here (full run "
        "default: benchmarks/results.png; needs matplotlib)",
    )
    parser.add_argument("--no-write", action="store_true", help="write no file")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="ours-gunicorn",
        metavar="SERVER",
        help="instead: py-spy profile of SERVER (default ours-gunicorn) under the echo load",
    )
    parser.add_argument("--profile-seconds", type=float, default=15.0)
    parser.add_argument("--profile-scenario", choices=["echo", "large", "rtt"], default="echo")
    args = parser.parse_args(argv)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    args.servers = [s for s in args.servers.split(",") if s]
    for s in args.scenarios:
        if s not in ALL_SCENARIOS:
            parser.error(f"unknown scenario {s}; choose from {ALL_SCENARIOS}")
    for s in args.servers:
        if s not in SERVER_KINDS:
            parser.error(f"unknown server {s}; choose from {list(SERVER_KINDS)}")
    profile = QUICK if args.quick else FULL
    if args.runs:
        profile = Profile(**{**asdict(profile), "runs": args.runs})
    if not args.quick and not args.no_write:
        args.json = args.json or HERE / "results.json"
        args.chart = args.chart or HERE / "results.png"
    if args.no_write:
        args.json = args.chart = None

    check_environment()
    started_at = datetime.datetime.now(datetime.timezone.utc)
    wall0 = time.monotonic()
    ours = git_describe(args.ours)
    command = "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="fsc-bench-") as tmp:
        logs = Path(tmp)
        ours_root = ROOT
        if args.ours:
            ours_root = ours_snapshot(args.ours, Path(tempfile.mkdtemp(prefix="ours-", dir=tmp)))
        bench = Bench(args, profile, ours_root, logs)
        if args.profile:
            if args.profile not in SERVER_KINDS:
                parser.error(f"unknown server {args.profile}; choose from {list(SERVER_KINDS)}")
            profile_load(bench, args.profile_seconds, args.profile, args.profile_scenario)
            return 0
        try:
            bench.run()
        except KeyboardInterrupt:
            log("interrupted: reporting what was measured")
        wall = time.monotonic() - wall0
        data = {
            "date": started_at.isoformat(timespec="seconds"),
            "command": command.strip(),
            "wall_s": wall,
            "ours": ours,
            "machine": machine(),
            "profile": asdict(profile),
            "client_cpu_max_pct": bench.client_cpu_max,
            "failures": bench.failures,
            "results": bench.results,
        }
        print(report.markdown(data))
        if args.json:
            args.json.write_text(json.dumps(data, indent=1) + "\n")
            log(f"raw results: {args.json}")
        if args.chart:
            try:
                report.chart(data, args.chart)
                log(f"chart: {args.chart}")
            except ImportError:
                log("matplotlib is not installed: no chart (pip install matplotlib)")
        log(f"wall time {wall:.0f} s")
        if bench.failures:
            log(f"{len(bench.failures)} step(s) failed:\n  " + "\n  ".join(bench.failures))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
