"""Many idle connections in one gunicorn gthread worker, keepalive pings on.

    python benchmarks/hold.py [--connections 10000] [--hold 60] [--servers ours,flask-sock]
    python benchmarks/hold.py --burst --hold 10 --timeout 900   # then all at once
    python benchmarks/hold.py --servers ours --idle-reader-timeout none   # a reader each
    python benchmarks/hold.py --quick    # ours, 200 connections, 5 s, pings every 2 s (CI)

Each server in turn, alone on the machine: one gunicorn gthread worker
(``--threads`` and ``--worker-connections`` the connections + 100,
``--timeout`` 30 s, gunicorn's default) serving the benchmark app's
``/echo`` (ours, flask-sock), or websockets' sync server (``websockets``: a
thread per connection). Pings every 20 s, ``pong_wait`` 30 s, for all
three. The load client (benchmarks/client.mjs, scenario ``hold``) opens
the connections (100 handshakes at a time), holds them for ``--hold``
seconds while the server pings them, then sends one message on each and
waits for its echo (100 in flight at a time; ``--burst``: on every
connection at once, at most 60 s), and closes them all.

Reported per server: connections opened and refused, how long opening
took, connections dropped during the hold (and with which close code),
pings received, echoes answered and how long they took; the worker's RSS
and threads per connection while held, and after every connection closed;
and, if the worker died (gunicorn's WORKER TIMEOUT, a crash), when and in
which phase, with the master's log lines that say why. Exits 1 if ours
dropped, refused or did not answer a connection, or was not pinged.

Process limits: each connection needs a file descriptor in the worker
(four in websockets' sync server) and one in the client, and two threads
in the worker (a thread is a PID: ``kernel.pid_max``). The benchmark
raises its own ``RLIMIT_NOFILE`` (the children inherit it), says which
system limit is too low rather than change it, and waits for a stopped
server's threads to be reaped before it starts the next;
docs/deploying.md lists the limits for operators.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from run import CLIENT, Process, children, free_port, http_ok, log  # noqa: E402

PING_PERIOD = 20.0
PONG_WAIT = 30.0
SERVERS = ("ours", "flask-sock", "websockets")


def raise_nofile(needed: int) -> str | None:
    """Raise RLIMIT_NOFILE (soft and, if need be, hard) to ``needed``; what is short."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft >= needed:
        return None
    if hard == resource.RLIM_INFINITY or hard >= needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))  # needs privilege
    except (ValueError, OSError):
        return f"RLIMIT_NOFILE hard limit {hard} < {needed}: ulimit -Hn {needed}"
    return None


#: File descriptors per connection in websockets' sync server: the socket, a
#: socketpair (``shutdown_watcher``, ``shutdown_notifier``), the reader's epoll.
WEBSOCKETS_FDS_PER_CONNECTION = 4


def raise_limits(connections: int, servers: list[str]) -> list[str]:
    """Raise RLIMIT_NOFILE for this process and its children; report what else is short."""
    problems: list[str] = []
    # Per process: the server's sockets, or the client's.
    per_connection = WEBSOCKETS_FDS_PER_CONNECTION if "websockets" in servers else 1
    if problem := raise_nofile(per_connection * connections + 1000):
        if per_connection > 1:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            most = (soft - 1000) // per_connection
            problem += (
                f" (websockets' sync server: {per_connection} per connection;"
                f" --connections {most} fits, or leave it out of --servers)"
            )
        problems.append(problem)
    threads = 2 * connections + 1000
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    if pid_max < threads + 1000:
        problems.append(f"kernel.pid_max {pid_max} < {threads + 1000}: sysctl kernel.pid_max=...")
    maps = int(Path("/proc/sys/vm/max_map_count").read_text())
    if maps < 2 * threads + 10000:  # a thread's stack and its guard page are two maps
        problems.append(f"vm.max_map_count {maps} < {2 * threads + 10000}")
    ephemeral = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    if int(ephemeral[1]) - int(ephemeral[0]) < connections + 1000:
        problems.append(f"net.ipv4.ip_local_port_range {ephemeral} holds fewer than {connections}")
    return problems


def start(server: str, args: argparse.Namespace, logs: Path) -> tuple[Process, int, int]:
    """Start one server; return it, its port and the PID that holds the connections."""
    port = free_port()
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        BENCH_PING_PERIOD=str(args.ping_period),
        BENCH_PONG_WAIT=str(args.ping_period * PONG_WAIT / PING_PERIOD),
    )
    if args.switch_interval:
        env["BENCH_SWITCH_INTERVAL"] = str(args.switch_interval)
    if args.idle_reader_timeout:
        env["BENCH_IDLE_READER_TIMEOUT"] = str(args.idle_reader_timeout)
    env.pop("SOCKETS_HUB_URL", None)
    if server == "websockets":
        argv = [sys.executable, str(HERE / "servers" / "websockets_server.py"), str(port)]
    else:
        app = "ours_app" if server == "ours" else "flask_sock_app"
        threads = str(args.connections + 100)
        argv = [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", "1",
                "--threads", threads, "--worker-connections", threads, "--backlog", "2048",
                "--graceful-timeout", "3", "--timeout", str(args.timeout), "--no-control-socket",
                "--bind", f"127.0.0.1:{port}", "--pythonpath", str(HERE / "servers"),
                f"{app}:app"]  # fmt: skip
    (logs / f"hold-{server}.log").unlink(missing_ok=True)
    process = Process(f"hold-{server}", argv, env, ROOT, logs)
    deadline = time.monotonic() + 30
    while not http_ok(port, 1):
        if process.popen.poll() is not None or time.monotonic() > deadline:
            process.stop()
            raise RuntimeError(f"{server} did not start:\n{process.tail()}")
        time.sleep(0.1)  # a server's only readiness signal is answering
    pid = process.pid
    if server != "websockets":
        (pid,) = children(process.pid)
        process.known_children.append(pid)
    return process, port, pid


def gone(pid: int, timeout: float = 120.0) -> None:
    """Wait until a stopped server's threads are all reaped: the next server
    needs their PIDs (``kernel.pid_max``)."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def hold(server: str, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    process, port, pid = start(server, args, logs)
    try:
        budget = args.connections / 50 + args.hold + 240
        config = {
            "scenario": "hold",
            "url": f"ws://127.0.0.1:{port}/echo",
            "pids": [pid],
            "count": args.connections,
            "concurrency": 100,
            "hold_s": args.hold,
            "sample_s": 2.0,
            "answer_concurrency": 0 if args.burst else 100,
            "answer_timeout_s": 60.0,
            "settle_s": 2.0,
            "clk_tck": os.sysconf("SC_CLK_TCK"),
            "hard_timeout_s": budget,
        }
        result = run_client(config, budget)
    finally:
        process.stop()
        gone(pid)
    result["server"] = server
    result["master_log"] = why_it_died(process)[:10]
    return result


def run_client(config: dict[str, Any], budget: float) -> dict[str, Any]:
    """Run the load client (benchmarks/client.mjs) with ``config``, for at
    most ``budget`` seconds and a margin; its JSON result."""
    done = subprocess.run(
        ["node", str(CLIENT), json.dumps(config)],
        capture_output=True, text=True, timeout=budget + 30, check=False,
    )  # fmt: skip
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"client failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def why_it_died(process: Process) -> list[str]:
    """The server's log lines that say why a worker died."""
    lines = process.tail(200).splitlines()
    signs = ("WORKER TIMEOUT", "SIGKILL", "Traceback", "Error")
    return [line for line in lines if any(sign in line for sign in signs)]


def summary(result: dict[str, Any]) -> dict[str, Any]:
    held = result.get("held") or {}
    after = result.get("after") or {}
    base = result["base"]
    return {
        "server": result["server"],
        "opened": result["opened"],
        "failed_opens": result["failed_opens"],
        "open_s": round(result["open_s"], 1),
        "dropped": result["dropped"],
        "drop_codes": result["drop_codes"],
        "pings": result["pings"],
        "answered": result["answered"],
        "answer_s": round(result["answer_s"], 2),
        "died": result["died"],
        "rss_kib_per_conn": round(result["rss_kib_per_conn"], 1)
        if result["rss_kib_per_conn"] is not None
        else None,
        "threads_per_conn": round(result["threads_per_conn"], 2)
        if result["threads_per_conn"] is not None
        else None,
        "rss_mib": {
            "base": round(base["rss_kib"] / 1024, 1),
            "held": round(held["rss_kib"] / 1024, 1) if held else None,
            "after_close": round(after["rss_kib"] / 1024, 1) if after else None,
        },
        "threads": {
            "base": base["threads"],
            "held": held.get("threads"),
            "after_close": after.get("threads"),
        },
        "master_log": result["master_log"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--hold", type=float, default=60.0, help="seconds")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--ping-period", type=float, default=PING_PERIOD, help="seconds")
    parser.add_argument(
        "--burst",
        action="store_true",
        help="after the hold, one message on every connection at once",
    )
    parser.add_argument("--timeout", type=int, default=30, help="gunicorn's --timeout")
    parser.add_argument(
        "--switch-interval", type=float, help="sys.setswitchinterval() in the server, seconds"
    )
    parser.add_argument(
        "--idle-reader-timeout",
        type=lambda value: value if value == "none" else float(value),
        help="ours: idle_reader_timeout in seconds, or 'none' for a reader thread "
        "per connection (default: the library's, parked sockets)",
    )
    parser.add_argument("--quick", action="store_true", help="200 connections, 5 s, ours only")
    parser.add_argument("--json", type=Path, help="also write every sample here")
    args = parser.parse_args(argv)
    if args.quick:
        args.connections, args.hold, args.servers, args.ping_period = 200, 5.0, "ours", 2.0
    problems = raise_limits(args.connections, args.servers.split(","))
    if problems:
        for problem in problems:
            log(f"hold: too low for {args.connections} connections: {problem}")
        return 2
    logs = HERE / "logs"
    logs.mkdir(exist_ok=True)
    results = []
    for server in args.servers.split(","):
        log(f"hold: {server}, {args.connections} connections, {args.hold:.0f} s")
        results.append(hold(server, args, logs))
        print(json.dumps(summary(results[-1]), indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    ours = [r for r in results if r["server"] == "ours"]
    bad = any(
        r["died"]
        or r["dropped"]
        or r["failed_opens"]
        or r["answered"] != r["opened"]
        # every connection pinged at least once when the hold spans two periods
        or (args.hold >= 2 * args.ping_period and r["pings"] < r["opened"])
        for r in ours
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
