"""The first message after an idle spell, with parked sockets and with reader threads.

    python benchmarks/wake.py [--connections 20] [--rounds 8]
    python benchmarks/wake.py --quick    # 5 connections, 2 rounds (CI)

Ours in one gunicorn gthread worker (as benchmarks/hold.py starts it), twice
in turn: with a reader thread for each connection (``idle_reader_timeout``
``None``), then parked (the default), so an idle connection's socket waits
with the process's poller, which wakes the view's ``get`` to read it. A
light load: a websockets sync client opens the connections, and in each
round waits past the view's 50 ms read and ``idle_reader_timeout`` (every
socket parked, in the second server), then sends one message on each
connection in turn and times its echo ("after idle"), and a second one at
once ("awake": the view, back in its ``get``, reads the socket held for it).
Reported per server: the median and 90th percentile of both, in
microseconds, and the ratio of the parked server's "after idle" median to
the reader threads'.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from hold import PING_PERIOD, gone, start  # noqa: E402
from run import log  # noqa: E402

IDLE_READER_TIMEOUT = 1.0


def echo_time(ws: Any, message: str) -> float:
    """Seconds from sending ``message`` to its echo."""
    began = time.perf_counter()
    ws.send(message)
    answer = ws.recv(timeout=10)
    elapsed = time.perf_counter() - began
    assert answer == message, (answer, message)
    return elapsed


def measure(server_args: argparse.Namespace, args: argparse.Namespace) -> dict[str, Any]:
    logs = HERE / "logs"
    logs.mkdir(exist_ok=True)
    process, port, pid = start("ours", server_args, logs)
    after_idle: list[float] = []
    awake: list[float] = []
    try:
        with contextlib.ExitStack() as stack:
            url = f"ws://127.0.0.1:{port}/echo"
            sockets = [
                stack.enter_context(connect(url, open_timeout=10)) for _ in range(args.connections)
            ]
            for round_ in range(args.rounds):
                # The idle spell is what is measured, not a wait for an event.
                time.sleep(IDLE_READER_TIMEOUT * 1.5)
                for index, ws in enumerate(sockets):
                    after_idle.append(echo_time(ws, f"{round_}-{index}-idle"))
                    awake.append(echo_time(ws, f"{round_}-{index}-awake"))
    finally:
        process.stop()
        gone(pid)
    return {
        "parked": server_args.idle_reader_timeout != "none",
        "after_idle_us": percentiles(after_idle),
        "awake_us": percentiles(awake),
    }


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": round(statistics.median(ordered) * 1e6),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))] * 1e6),
        "n": len(ordered),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="5 connections, 2 rounds")
    args = parser.parse_args(argv)
    if args.quick:
        args.connections, args.rounds = 5, 2
    results = []
    for idle_reader_timeout in ("none", IDLE_READER_TIMEOUT):
        server_args = argparse.Namespace(
            connections=args.connections,
            ping_period=PING_PERIOD,
            switch_interval=None,
            idle_reader_timeout=idle_reader_timeout,
            timeout=30,
        )
        log(f"wake: {'a reader each' if idle_reader_timeout == 'none' else 'parked'}")
        results.append(measure(server_args, args))
        print(json.dumps(results[-1]), flush=True)
    kept, parked = results
    ratio = parked["after_idle_us"]["p50"] / kept["after_idle_us"]["p50"]
    print(json.dumps({"after_idle_p50_parked_over_kept": round(ratio, 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
