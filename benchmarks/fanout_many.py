"""Fan-out to one room of many members in one gunicorn gthread worker.

    python benchmarks/fanout_many.py [--connections 10000] [--rounds 10] [--servers ours,websockets]
    python benchmarks/fanout_many.py --connections 4500 --close-burst   # then close all at once
    python benchmarks/fanout_many.py --quick   # both, 200 members, 5 rounds, ~7 s (CI)

Each server in turn, alone on the machine. Ours: one gunicorn gthread worker
(``--threads`` and ``--worker-connections`` the connections + 100,
``--timeout`` 30 s, gunicorn's default) serving
benchmarks/servers/fanout_many_ours.py, whose ``/room`` view joins the
in-process ``Hub`` room and whose ``GET /publish`` calls ``hub.publish``.
The peer: websockets' sync server (a thread per connection) serving
benchmarks/servers/fanout_many_websockets.py, the same two endpoints, its
publish a loop of ``ws.send`` over a set of connections. Keepalive pings and
compression off on both.

The load client (benchmarks/client.mjs, scenario ``fanout-many``) opens the
connections (100 handshakes at a time), waits until every one has joined
(each member's first message says so), then publishes ``--rounds`` times,
one round after the other: one GET ``/publish`` (on a new HTTP connection),
one message of ``--size`` bytes to the whole room, and the round waits
until every member has it (at most ``--round-timeout`` seconds). Then it
closes the connections, 100 closing handshakes at a time (``--close-burst``:
all at once), and watches the worker until it has settled (thread count
steady for 2 s, ``GET /`` answered within 1 s) or died, at most gunicorn's
``--timeout`` + 30 s.

Reported per server: connections opened and refused; per round, the time
from the publish request until the first and the last member had the
message, deliveries/s (members ÷ time to the last) and when the publish
request was answered; over the rounds, deliveries/s, the p50 and p99 of the
time until the last member had the message (and of every delivery), members
that missed a message; the worker's RSS and threads once all joined and at
the peak while publishing, its CPU seconds during the publishes; how long
closing took and when the worker had settled; and, if the worker died
(gunicorn's WORKER TIMEOUT: thousands of threads waking at once can starve
its heartbeat, docs/deploying.md), when, in which phase (open, join,
publish, close) and round, and how many messages had been delivered, with
the master's log lines that say why. Then the ratios ours ÷ websockets of
the same run. Exits 1 if ours died, refused or dropped a connection, a
member of ours did not join, missed a message or got one twice, or a round
did not run.

Process limits as in benchmarks/hold.py (whose ``raise_limits`` this uses):
a file descriptor per connection in the worker and in the client, two
threads per connection in either server (pings off), and a stopped server's
threads reaped before the next starts. websockets' sync server needs four
file descriptors per connection (the socket, a socketpair to wake its
reader, and the reader's epoll), so with it in ``--servers`` the benchmark
raises ``RLIMIT_NOFILE`` to 4 per connection (past the hard limit when it
may: it needs CAP_SYS_RESOURCE), or says it cannot and how many
connections the limit allows: at 20,000 the server stops at about 5,000
connections ("Too many open files" in a reader thread, then resets, and
the server shuts down, closing every connection with 1001).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from hold import gone, raise_limits, run_client, why_it_died  # noqa: E402
from run import Process, children, free_port, http_ok, log  # noqa: E402

SERVERS = ("ours", "websockets")
QUICK_CONNECTIONS = 200
QUICK_ROUNDS = 5


def start(server: str, args: argparse.Namespace, logs: Path) -> tuple[Process, int, int]:
    """Start one server; return it, its port and the PID that holds the connections."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.pop("SOCKETS_HUB_URL", None)
    if server == "websockets":
        argv = [sys.executable, str(HERE / "servers" / "fanout_many_websockets.py"), str(port)]
    else:
        threads = str(args.connections + 100)
        argv = [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", "1",
                "--threads", threads, "--worker-connections", threads, "--backlog", "2048",
                "--graceful-timeout", "3", "--timeout", str(args.timeout), "--no-control-socket",
                "--bind", f"127.0.0.1:{port}", "--pythonpath", str(HERE / "servers"),
                "fanout_many_ours:app"]  # fmt: skip
    name = f"fanout-many-{server}"
    (logs / f"{name}.log").unlink(missing_ok=True)
    process = Process(name, argv, env, ROOT, logs)
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


def fanout(server: str, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    process, port, pid = start(server, args, logs)
    try:
        budget = args.connections / 50 + args.rounds * (args.round_timeout + 5) + 240
        config = {
            "scenario": "fanout-many",
            "url": f"ws://127.0.0.1:{port}/room",
            "publish_url": f"http://127.0.0.1:{port}/publish",
            "pids": [pid],
            "count": args.connections,
            "concurrency": 100,
            "rounds": args.rounds,
            "size": args.size,
            "join_timeout_s": 60.0,
            "round_timeout_s": args.round_timeout,
            "sample_s": 0.5,
            "close_watch_s": args.timeout + 30.0,
            "close_concurrency": 0 if args.close_burst else 100,
            "clk_tck": os.sysconf("SC_CLK_TCK"),
            "hard_timeout_s": budget,
        }
        result = run_client(config, budget)
    finally:
        process.stop()
        gone(pid)
    why = why_it_died(process)
    result["server"] = server
    result["master_log"] = why[:10]
    if result["died"] is None and any("WORKER TIMEOUT" in line for line in why):
        # killed after the client stopped watching: say so rather than nothing
        result["died"] = {"phase": "after the client's watch (the master's log)"}
    return result


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _mib(status: dict[str, int] | None) -> float | None:
    return None if status is None else round(status["rss_kib"] / 1024, 1)


def summary(result: dict[str, Any]) -> dict[str, Any]:
    window = result["publish_window"] or {}
    joined = result["joined_status"]
    peak = result["peak_publishing"]
    return {
        "server": result["server"],
        "opened": result["opened"],
        "failed_opens": result["failed_opens"],
        "open_s": round(result["open_s"], 1),
        "joined": result["joined"],
        "not_joined": result["not_joined"],
        "join_s": round(result["join_s"], 2),
        "dropped": result["dropped"],
        "drop_codes": result["drop_codes"],
        "rounds": [
            {
                "got": r["got"],
                "of": r["expected"],
                "first_ms": _round(r["first_ms"]),
                "last_ms": _round(r["last_ms"]),
                "deliveries_per_s": round(r["deliveries_per_s"]),
                "answered_ms": _round(r["publish_answer_ms"]),
                "cpu_s": _round(r["server_cpu_s"], 2),
            }
            for r in result["rounds"]
        ],
        "deliveries_per_s": _round(result["deliveries_per_s"], 0),
        "last_p50_ms": _round(result["last_p50_ms"]),
        "last_p99_ms": _round(result["last_p99_ms"]),
        "delivery_p50_ms": _round(result["delivery_p50_ms"]),
        "delivery_p99_ms": _round(result["delivery_p99_ms"]),
        "complete_rounds": f"{result['complete_rounds']} of {result['rounds_asked']}",
        "delivered": result["delivered"],
        "missed_members": result["missed_members"],
        "missed_deliveries": result["missed_deliveries"],
        "late": result["late"],
        "duplicates": result["duplicates"],
        "died": result["died"],
        "rss_mib": {
            "base": _mib(result["base"]),
            "joined": _mib(joined),
            "peak_publishing": _mib(peak),
        },
        "threads": {
            "base": result["base"]["threads"],
            "joined": joined["threads"] if joined else None,
        },
        "close_s": round(result["close_s"], 1),
        "settled_s": round(result["settle_s"], 1) if result["settled"] else None,
        "threads_after_close": (result["after_close"] or {}).get("threads"),
        "cpu_s_publishing": _round(window.get("server_cpu_s"), 2),
        "cpu_us_per_delivery": _round(result["server_cpu_us_per_delivery"]),
        "client_cpu_pct": _round(window.get("client_cpu_pct")),
        "master_log": result["master_log"],
    }


#: The ratios printed: (label, summary key, inside a dict of the summary).
RATIOS = (
    ("deliveries/s", "deliveries_per_s", None),
    ("last member p50", "last_p50_ms", None),
    ("last member p99", "last_p99_ms", None),
    ("RSS once joined", "joined", "rss_mib"),
    ("threads once joined", "joined", "threads"),
    ("CPU s while publishing", "cpu_s_publishing", None),
)


def ratios(ours: dict[str, Any], peer: dict[str, Any]) -> dict[str, float | None]:
    table: dict[str, float | None] = {}
    for label, key, inside in RATIOS:
        a = ours[inside][key] if inside else ours[key]
        b = peer[inside][key] if inside else peer[key]
        table[label] = round(a / b, 2) if a is not None and b else None
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--size", type=int, default=64, help="bytes per message, at least 10")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--round-timeout", type=float, default=60.0, help="seconds")
    parser.add_argument("--timeout", type=int, default=30, help="gunicorn's --timeout")
    parser.add_argument(
        "--close-burst",
        action="store_true",
        help="close every connection at once (default: 100 closing handshakes at a time)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_CONNECTIONS} connections, {QUICK_ROUNDS} rounds (--servers still applies)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.connections, args.rounds, args.round_timeout = QUICK_CONNECTIONS, QUICK_ROUNDS, 10.0
    servers = args.servers.split(",")
    if unknown := set(servers) - set(SERVERS):
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    if args.size < 10:
        parser.error("--size must be at least 10 (the message's number)")
    problems = raise_limits(args.connections, servers)
    if problems:
        for problem in problems:
            log(f"fanout_many: too low for {args.connections} connections: {problem}")
        return 2
    logs = HERE / "logs"
    logs.mkdir(exist_ok=True)
    results = []
    summaries: dict[str, dict[str, Any]] = {}
    for server in servers:
        log(f"fanout_many: {server}, {args.connections} members, {args.rounds} rounds")
        results.append(fanout(server, args, logs))
        summaries[server] = summary(results[-1])
        print(json.dumps(summaries[server], indent=1), flush=True)
    if "ours" in summaries and "websockets" in summaries:
        table = ratios(summaries["ours"], summaries["websockets"])
        print(json.dumps({"ours / websockets": table}, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    bad = any(
        r["died"]
        or r["failed_opens"]
        or r["dropped"]
        or r["opened"] != args.connections
        or r["not_joined"]
        or r["missed_deliveries"]
        or r["duplicates"]
        or len(r["rounds"]) != args.rounds
        for r in results
        if r["server"] == "ours"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
