"""Pages coming back after a deploy: how long until every page has resumed
its room, what it missed (nothing, when it resumes), and what a burst of
resumes costs the server and Redis.

    python benchmarks/resume.py [--pages 200,500] [--runs 3] [--quick] [--json FILE]

For each number of pages and each mode, one run is: redis-server; gunicorn
(one gthread worker, examples/gunicorn.conf.py's SIGTERM hook, the benchmark
app's ``/resume/<room>``: ``hub.join(room, sender, since=..., envelope=True)``
with a history of 5,000); a publisher in this process that publishes
``{"text": "n-<number>"}`` to the room every 5 ms throughout; and the pages:
the library's own browser client (static/client.js) under Node
(benchmarks/resume.mjs). Once every page has joined, the worker is replaced
(SIGHUP: the old one closes its sockets with 1001, a new one takes over) and
each page comes back by itself, with its default backoff (a random wait of up
to 0.5 s, then more for a refused attempt).

Modes: ``resume`` (the pages send their last positions, ``since``) and
``plain`` (the same pages and server, ``?plain=1``: they join afresh, and
miss what was published while they were away), measured one after the
other in the same run: the cost of resuming is their difference.

Reported per run: the time from the signal until each page is back (median,
p99, max), how many pages recovered, the messages pages missed or got twice,
the Redis history reads during the burst (XREVRANGE calls, less the one each
publish makes) and Redis's CPU time, and the new worker's CPU time from its
start until every page was back.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import redis  # noqa: E402
from run import Process, children, cpu_seconds, free_port, http_ok, log  # noqa: E402

import flask_sockets_channels as sockets  # noqa: E402

HISTORY = 5000
PUBLISH_PERIOD = 0.005
CONFIG = ROOT / "examples" / "gunicorn.conf.py"


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class Publisher(threading.Thread):
    def __init__(self, url: str, room: str) -> None:
        super().__init__(name="publisher", daemon=True)
        self.hub = sockets.Hub.from_url(url, history=HISTORY)
        self.room = room
        self.count = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(PUBLISH_PERIOD):
            self.hub.publish(self.room, {"text": f"n-{self.count}"})
            self.count += 1


def one_run(pages: int, mode: str, logs: Path) -> dict[str, Any]:
    redis_port, port = free_port(), free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    started = []
    try:
        server = Process(
            "redis", ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly",
                      "no", "--loglevel", "warning"], env, ROOT, logs,
        )  # fmt: skip
        started.append(server)
        url = f"redis://127.0.0.1:{redis_port}/0"
        admin = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                admin.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # redis-server's only readiness signal is PING
        gunicorn = Process(
            "gunicorn",
            [sys.executable, "-m", "gunicorn", "-c", str(CONFIG), "-w", "1",
             "--threads", str(pages + 100), "--bind", f"127.0.0.1:{port}",
             "--graceful-timeout", "10", "--pythonpath", str(HERE / "servers"), "ours_app:app"],
            dict(env, SOCKETS_HUB_URL=url, SOCKETS_HUB_HISTORY=str(HISTORY)), ROOT, logs,
        )  # fmt: skip
        started.append(gunicorn)
        deadline = time.monotonic() + 20
        while not http_ok(port, 1):
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start:\n{gunicorn.tail()}")
            time.sleep(0.1)  # gunicorn's only readiness signal is answering
        room = "bench-" + uuid.uuid4().hex[:8]
        publisher = Publisher(url, room)
        publisher.start()
        query = "?plain=1" if mode == "plain" else ""
        config = {
            "url": f"ws://127.0.0.1:{port}/resume/{room}{query}",
            "pages": pages,
            "master_pid": gunicorn.pid,
            "hard_timeout_s": 120,
        }
        old_workers = children(gunicorn.pid)
        client = subprocess.Popen(
            ["node", str(HERE / "resume.mjs"), json.dumps(config)],
            cwd=HERE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert client.stdout is not None and client.stdin is not None
        assert json.loads(client.stdout.readline()) == {"ready": True}
        admin.config_resetstat()
        publishes_before, cpu_before = publisher.count, redis_cpu(admin)
        client.stdin.write("go\n")  # resume.mjs sends the SIGHUP
        client.stdin.flush()
        result = json.loads(client.stdout.readline())
        client.wait(10)
        publishes = publisher.count - publishes_before
        stats = admin.info("commandstats")
        reads = int(stats.get("cmdstat_xrevrange", {}).get("calls", 0)) - publishes
        new_workers = [pid for pid in children(gunicorn.pid) if pid not in old_workers]
        publisher.stop.set()
        publisher.join(5)
        publisher.hub.close()
        result.update(
            mode=mode,
            redis_history_reads=max(reads, 0),
            redis_cpu_s=round(redis_cpu(admin) - cpu_before, 3),
            new_worker_cpu_s=round(sum(cpu_seconds(pid) for pid in new_workers), 3),
        )
        admin.close()
        return result
    finally:
        for process in reversed(started):
            process.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", default="200,500", help="comma-separated page counts")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20 pages, one run (smoke)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    counts = [20] if args.quick else [int(n) for n in args.pages.split(",")]
    runs = 1 if args.quick else args.runs
    logs = HERE / "logs"
    logs.mkdir(exist_ok=True)
    results = []
    for pages in counts:
        for run in range(runs):
            for mode in ("resume", "plain"):
                log(f"resume benchmark: {pages} pages, {mode}, run {run + 1}/{runs}")
                result = one_run(pages, mode, logs)
                log(json.dumps(result))
                results.append(result)
    for pages in counts:
        for mode in ("resume", "plain"):
            mine = [r for r in results if r["pages"] == pages and r["mode"] == mode]

            def median(read: Any, runs: list[dict[str, Any]] = mine) -> float:
                return float(statistics.median(read(r) for r in runs))

            print(
                f"{pages} pages, {mode}:"
                f" back in {median(lambda r: r['back_ms']['median']):.0f} ms (median),"
                f" {median(lambda r: r['back_ms']['p99']):.0f} ms (p99);"
                f" recovered {median(lambda r: r['recovered']):.0f};"
                f" missed {sum(r['missed'] for r in mine)}, twice {sum(r['twice'] for r in mine)};"
                f" Redis history reads {median(lambda r: r['redis_history_reads']):.0f},"
                f" Redis CPU {median(lambda r: r['redis_cpu_s']):.3f} s;"
                f" new worker CPU {median(lambda r: r['new_worker_cpu_s']):.2f} s"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    failed = [r for r in results if r["mode"] == "resume" and (r["missed"] or r["twice"])]
    return 1 if failed else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
