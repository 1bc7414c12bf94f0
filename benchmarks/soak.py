"""A soak: many connections held for minutes with churn, keepalive pings on.
Does memory stay flat, do the library's threads go back to none, is
anything lost?

    python benchmarks/soak.py [--connections 1000] [--minutes 10] [--json FILE]
    python benchmarks/soak.py --quick      # 50 connections, 20 s (CI's smoke)

One gunicorn gthread worker (``--threads`` connections + 100) serves the
benchmark app's ``/echo`` with pings every 5 s (``pong_wait`` 10 s), and
``/threads`` (the library's threads, counted inside). ``--server
flask-sock``: the same with flask-sock's app (pings every 5 s too), the
peer to compare memory with (its threads are not named apart: the
library's count is not reported).
The client, asyncio and websockets in this process, keeps ``connections``
sessions open at all times: each opens ``/echo``, sends a numbered message
every second (with a random start) and checks that each comes back, in
order, then closes after a random lifetime of 5-30 s (1-4 s with
``--quick``) and is replaced by a new one: about 60 new connections a
second for 1,000. Every 5 s the worker's RSS, thread count and open fds are
sampled.

Reported: connections opened, messages sent and echoed (lost = the
difference, and any echo out of order); RSS after the first minute (the
first fifth with ``--quick``) and at the end, and its slope over the rest
(KiB per minute: flat is near 0); the worker's threads and fds at the
baseline (one connection opened and closed), at the peak and after every
session has closed, and the library's own threads then (0: every reader,
writer and timer thread ended; gthread's pool keeps its threads). Exits 1
if anything was lost or a library thread is left.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from run import Process, children, free_port, http_ok, log  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

SAMPLE_PERIOD = 5.0
MESSAGE_PERIOD = 1.0


@dataclass
class Totals:
    opened: int = 0
    failed_opens: int = 0
    sent: int = 0
    echoed: int = 0
    out_of_order: int = 0
    dropped: int = 0  # sessions whose connection ended before they closed it
    samples: list[dict[str, float]] = field(default_factory=list)


def status(pid: int) -> dict[str, float]:
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "Threads"):
            fields[name] = float(value.split()[0])
    fields["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return fields


def inside(port: int) -> dict[str, int]:
    """The worker's own count of the library's threads."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/threads", timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


async def session(url: str, lifetime: float, totals: Totals) -> None:
    try:
        ws = await connect(url, open_timeout=30, close_timeout=10, ping_interval=None)
    except (OSError, asyncio.TimeoutError, ConnectionClosed) as exc:
        totals.failed_opens += 1
        log(f"open failed: {exc!r}")
        return
    totals.opened += 1
    ends = time.monotonic() + lifetime
    await asyncio.sleep(random.uniform(0, MESSAGE_PERIOD))
    number = 0
    try:
        while time.monotonic() < ends:
            await ws.send(str(number))
            totals.sent += 1
            reply = await asyncio.wait_for(ws.recv(), 30)
            if reply == str(number):
                totals.echoed += 1
            else:
                totals.out_of_order += 1
            number += 1
            await asyncio.sleep(MESSAGE_PERIOD)
        await ws.close()
    except (ConnectionClosed, asyncio.TimeoutError):
        totals.dropped += 1


async def keep(url: str, until: float, lifetimes: tuple[float, float], totals: Totals) -> None:
    """One slot: sessions one after the other until ``until``."""
    while time.monotonic() < until:
        lifetime = min(random.uniform(*lifetimes), max(0.0, until - time.monotonic()))
        await session(url, lifetime, totals)


async def sample(pid: int, until: float, totals: Totals) -> None:
    started = time.monotonic()
    while time.monotonic() < until:
        totals.samples.append({"t": time.monotonic() - started, **status(pid)})
        await asyncio.sleep(SAMPLE_PERIOD)


async def soak(
    url: str, pid: int, connections: int, seconds: float, lifetimes: tuple[float, float]
) -> Totals:
    totals = Totals()
    until = time.monotonic() + seconds
    slots = []
    for _ in range(connections):  # opened over the first seconds, not all at once
        slots.append(asyncio.create_task(keep(url, until, lifetimes, totals)))
        await asyncio.sleep(0.002)
    await asyncio.gather(sample(pid, until, totals), *slots)
    return totals


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return 60 * sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="50 connections, 20 s (smoke)")
    parser.add_argument(
        "--server", choices=["ours", "flask-sock"], default="ours", help="the app to soak"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    connections = 50 if args.quick else args.connections
    seconds = 20.0 if args.quick else args.minutes * 60
    lifetimes = (1.0, 4.0) if args.quick else (5.0, 30.0)
    logs = HERE / "logs"
    logs.mkdir(exist_ok=True)
    port = free_port()
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        BENCH_PING_PERIOD="5",
        BENCH_PONG_WAIT="10",
    )
    app = "ours_app" if args.server == "ours" else "flask_sock_app"
    gunicorn = Process(
        f"soak-{args.server}",
        [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", "1",
         "--threads", str(connections + 100), "--worker-connections", str(connections + 100),
         "--bind", f"127.0.0.1:{port}", "--pythonpath", str(HERE / "servers"), f"{app}:app"],
        env, ROOT, logs,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not http_ok(port, 1):
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start:\n{gunicorn.tail()}")
            time.sleep(0.1)  # gunicorn's only readiness signal is answering
        (pid,) = children(gunicorn.pid)
        gunicorn.known_children.append(pid)
        url = f"ws://127.0.0.1:{port}/echo"
        asyncio.run(session(url, 0.1, Totals()))  # warm-up: imports, the timer thread
        baseline = status(pid)
        log(f"soak: {connections} connections for {seconds:.0f} s, worker {pid}")
        totals = asyncio.run(soak(url, pid, connections, seconds, lifetimes))
        library = {"library_threads": 0}  # flask-sock's threads are not named apart
        deadline = time.monotonic() + 30
        while args.server == "ours" and time.monotonic() < deadline:
            library = inside(port)
            if not library["library_threads"]:
                break
            time.sleep(0.2)  # the last close handshakes end on the server's side
        after = status(pid)
    finally:
        gunicorn.stop()
    settle = seconds / 5 if args.quick else 60.0
    settled = [s for s in totals.samples if s["t"] >= settle]
    rss = [(s["t"], s["VmRSS"]) for s in settled]
    result: dict[str, Any] = {
        "server": args.server,
        "connections": connections,
        "seconds": seconds,
        "opened": totals.opened,
        "failed_opens": totals.failed_opens,
        "sent": totals.sent,
        "echoed": totals.echoed,
        "lost": totals.sent - totals.echoed,
        "out_of_order": totals.out_of_order,
        "dropped_sessions": totals.dropped,
        "rss_kib": {
            "baseline": baseline["VmRSS"],
            "settled": rss[0][1] if rss else None,
            "end": rss[-1][1] if rss else None,
            "after_close": after["VmRSS"],
            "slope_per_min": round(slope_per_minute(rss), 1),
        },
        "threads": {
            "baseline": baseline["Threads"],
            "peak": max(s["Threads"] for s in totals.samples),
            "after_close": after["Threads"],
            "library_after_close": library["library_threads"],
        },
        "fds": {
            "baseline": baseline["fds"],
            "peak": max(s["fds"] for s in totals.samples),
            "after_close": after["fds"],
        },
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps({**result, "samples": totals.samples}, indent=1) + "\n")
    bad = result["lost"] or result["out_of_order"] or library["library_threads"]
    return 1 if bad or totals.failed_opens else 0


if __name__ == "__main__":
    sys.exit(main())
