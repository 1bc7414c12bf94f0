"""Round trips through a thin client: what the server adds to one message.

    python benchmarks/rtt_raw.py [--pairs 10] [--seconds 3]
    python benchmarks/rtt_raw.py --quick    # 1 pair, 0.3 s each (CI)

run.py's ``rtt`` scenario times a round trip with Node's ``ws`` client, whose
own event loop, parser and callbacks are a large share of it (a trivial
single-threaded Python echo, no library, measured 86-97 µs p50 through it,
against 110-150 µs for ours and websockets'). Does that share hide how the
servers differ? This client is one blocking socket in Python: it writes a
masked 32-byte text frame whose bytes are made once, reads the 34-byte
answer, and times that with ``perf_counter_ns``; no parsing beyond counting
bytes, no event loop.

Ours (one gunicorn gthread worker, ``/echo`` of benchmarks/servers/ours_app.py)
and websockets' sync server (benchmarks/servers/websockets_server.py), in
pairs, each server started for its turn and stopped after it, the order of
each pair alternating. Per turn: p50 and p99 of the round trip, and the
server's CPU time and context switches (voluntary and not, every thread)
per round trip, read from /proc. Printed as JSON lines, then the median of
the pairs' ratios (ours ÷ websockets) and their range.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from hold import PING_PERIOD, gone, start  # noqa: E402
from run import cpu_seconds, log  # noqa: E402

PAYLOAD = b"a" * 32
#: A masked text frame (a zero mask: the payload is sent as it is).
FRAME = bytes([0x81, 0x80 | len(PAYLOAD)]) + bytes(4) + PAYLOAD
ANSWER_SIZE = 2 + len(PAYLOAD)
WARMUP = 1000


def server_cpu_and_switches(pid: int) -> tuple[float, int]:
    """The process's CPU seconds and its threads' context switches so far."""
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        for line in status.splitlines():
            if "ctxt_switches:" in line:
                switches += int(line.split()[1])
    return cpu_seconds(pid), switches


def open_socket(port: int) -> socket.socket:
    """A WebSocket to ``/echo``, opened by hand."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("the server closed during the handshake")
        head += chunk
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"no upgrade: {head[:200]!r}")
    if head.index(b"\r\n\r\n") + 4 != len(head):
        raise RuntimeError("bytes after the handshake")
    return sock


def round_trip(sock: socket.socket) -> None:
    sock.sendall(FRAME)
    read_answer(sock)


def read_answer(sock: socket.socket) -> None:
    """Read the server's answer to :data:`FRAME` (its bytes only counted)."""
    received = 0
    while received < ANSWER_SIZE:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        received += len(chunk)


def measure(server: str, seconds: float) -> dict[str, Any]:
    server_args = argparse.Namespace(
        connections=10, ping_period=PING_PERIOD, switch_interval=None,
        idle_reader_timeout=os.environ.get("BENCH_IDLE_READER_TIMEOUT"), timeout=30,
    )  # fmt: skip
    logs = HERE / "logs"
    logs.mkdir(exist_ok=True)
    process, port, pid = start(server, server_args, logs)
    try:
        with open_socket(port) as sock:
            for _ in range(WARMUP):
                round_trip(sock)
            samples: list[int] = []
            cpu_before, switches_before = server_cpu_and_switches(pid)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                began = time.perf_counter_ns()
                round_trip(sock)
                samples.append(time.perf_counter_ns() - began)
            cpu_after, switches_after = server_cpu_and_switches(pid)
    finally:
        process.stop()
        gone(pid)
    samples.sort()
    count = len(samples)
    return {
        "server": server,
        "round_trips": count,
        "p50_us": round(samples[count // 2] / 1000, 1),
        "p99_us": round(samples[int(count * 0.99)] / 1000, 1),
        "server_cpu_us": round((cpu_after - cpu_before) / count * 1e6, 1),
        "server_switches": round((switches_after - switches_before) / count, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0, help="per server and pair")
    parser.add_argument("--quick", action="store_true", help="1 pair of 0.3 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.seconds = 1, 0.3
    ratios: dict[str, list[float]] = {"p50_us": [], "p99_us": [], "server_cpu_us": []}
    for pair in range(args.pairs):
        order = ("ours", "websockets") if pair % 2 == 0 else ("websockets", "ours")
        log(f"rtt_raw: pair {pair + 1} of {args.pairs}")
        results = {server: measure(server, args.seconds) for server in order}
        for result in results.values():
            print(json.dumps(result), flush=True)
        for key, values in ratios.items():
            values.append(results["ours"][key] / results["websockets"][key])
    summary = {
        f"{key}_ours_over_websockets": {
            "median": round(statistics.median(values), 2),
            "min": round(min(values), 2),
            "max": round(max(values), 2),
        }
        for key, values in ratios.items()
    }
    print(json.dumps({"pairs": args.pairs, **summary}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
