# ruff: noqa: RUF001 - the tables use the multiplication sign and dashes on purpose
"""Tables and the chart of benchmarks/run.py's results.

``python benchmarks/report.py benchmarks/results.json [--chart PATH]`` prints
the Markdown table again (and redraws the chart) from a saved run.
"""

from __future__ import annotations

import argparse
import json
import linecache
import re
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

SERVERS = [
    "ours-werkzeug",
    "ours-gunicorn",
    "flask-sock-werkzeug",
    "flask-sock-gunicorn",
    "websockets-sync",
]


class Metric(NamedTuple):
    scenario: str
    key: str
    label: str
    better: str | None  # "up", "down" or None (information only)
    fmt: str
    scale: float = 1.0
    chart: bool = False


METRICS = [
    Metric("echo", "msgs_per_s", "echo: messages/s", "up", ",.0f", chart=True),
    Metric("echo", "p50_us", "echo: p50 latency, ms", "down", ".1f", 1e-3, chart=True),
    Metric("echo", "p99_us", "echo: p99 latency, ms", "down", ".1f", 1e-3),
    Metric(
        "echo", "server_cpu_us_per_msg", "echo: server CPU µs/message", "down", ".1f", chart=True
    ),
    Metric("echo", "server_sys_share_pct", "echo: kernel share of server CPU, %", None, ".0f"),
    Metric(
        "echo", "server_switches_per_msg", "echo: server context switches/message", "down", ".2f"
    ),
    Metric("echo", "client_cpu_pct", "echo: client CPU, % of a core", None, ".0f"),
    Metric("rtt", "p50_us", "rtt: p50 µs", "down", ".0f", chart=True),
    Metric("rtt", "p99_us", "rtt: p99 µs", "down", ".0f"),
    Metric("large", "mb_per_s", "large (1 MiB): MB/s", "up", ".0f", chart=True),
    Metric("large", "server_cpu_us_per_msg", "large: server CPU ms/message", "down", ".2f", 1e-3),
    Metric("large", "client_cpu_pct", "large: client CPU, % of a core", None, ".0f"),
    Metric("deflate", "msgs_per_s", "echo + deflate: messages/s", "up", ",.0f", chart=True),
    Metric(
        "deflate", "server_cpu_us_per_msg", "echo + deflate: server CPU µs/message", "down", ".1f"
    ),
    Metric("deflate", "client_cpu_pct", "echo + deflate: client CPU, %", None, ".0f"),
    Metric("idle", "threads_per_conn", "idle: threads per connection", "down", ".2f", chart=True),
    Metric("idle", "rss_kib_per_conn", "idle: RSS KiB per connection", "down", ".1f", chart=True),
    Metric("idle", "threads_residual", "idle: threads after close − baseline", None, ".0f"),
    Metric("idle", "threads_growth_last_round", "idle: growth of that in round 2", None, ".0f"),
    Metric("fanout", "deliveries_per_s", "fanout ×100: deliveries/s", "up", ",.0f", chart=True),
    Metric(
        "fanout",
        "server_cpu_us_per_delivery",
        "fanout: server CPU µs/delivery",
        "down",
        ".2f",
        chart=True,
    ),
    Metric(
        "fanout",
        "server_switches_per_delivery",
        "fanout: server context switches/delivery",
        "down",
        ".2f",
    ),
    Metric("fanout", "p50_us", "fanout: p50 publish→delivery, ms", "down", ".1f", 1e-3),
    Metric("fanout", "client_cpu_pct", "fanout: client CPU, %", None, ".0f"),
    Metric(
        "fanout-redis",
        "deliveries_per_s",
        "fanout via Redis (2 procs): deliveries/s",
        "up",
        ",.0f",
        chart=True,
    ),
    Metric(
        "fanout-redis",
        "server_cpu_us_per_delivery",
        "fanout via Redis: server CPU µs/delivery",
        "down",
        ".2f",
        chart=True,
    ),
    Metric(
        "fanout-redis",
        "aux_cpu_us_per_delivery",
        "fanout via Redis: redis-server µs/delivery",
        None,
        ".2f",
    ),
]

#: (name, ours, peer): the ratios ours ÷ peer the table shows.
COMPARISONS = [
    ("÷ flask-sock (werkzeug)", "ours-werkzeug", "flask-sock-werkzeug"),
    ("÷ flask-sock (gunicorn)", "ours-gunicorn", "flask-sock-gunicorn"),
    ("÷ websockets (ours on gunicorn)", "ours-gunicorn", "websockets-sync"),
    ("÷ websockets (ours on werkzeug)", "ours-werkzeug", "websockets-sync"),
]


class Target(NamedTuple):
    name: str
    scenario: str
    key: str
    ours: str
    peer: str | None  # None: an absolute bound on ours
    op: str  # ">=" or "<=" or "=="
    bound: float


def _both_servers() -> list[Target]:
    """The targets of the speed issue, for ours on each WSGI server."""
    targets = []
    for server in ("gunicorn", "werkzeug"):
        ours, ws = f"ours-{server}", "websockets-sync"
        targets += [
            Target(f"echo ≥ 1.0× websockets sync ({server})",
                   "echo", "msgs_per_s", ours, ws, ">=", 1.0),
            Target(f"server CPU per echoed message ≤ websockets' ({server})",
                   "echo", "server_cpu_us_per_msg", ours, ws, "<=", 1.0),
            Target(f"large ≥ 1.0× websockets sync ({server})",
                   "large", "mb_per_s", ours, ws, ">=", 1.0),
            Target(f"rtt p50 ≤ 1.0× websockets sync ({server})",
                   "rtt", "p50_us", ours, ws, "<=", 1.0),
            Target(f"idle ≤ 2 threads per connection incl. the request thread ({server})",
                   "idle", "threads_per_conn", ours, None, "<=", 2.0),
            Target(f"idle RSS per connection ≤ websockets' ({server})",
                   "idle", "rss_kib_per_conn", ours, ws, "<=", 1.0),
            Target(f"echo with deflate ≥ 1.0× websockets sync ({server})",
                   "deflate", "msgs_per_s", ours, ws, ">=", 1.0),
        ]  # fmt: skip
    return targets


TARGETS = [
    *_both_servers(),
    Target(
        "idle (werkzeug): thread count back to baseline after close",
        "idle",
        "threads_residual",
        "ours-werkzeug",
        None,
        "==",
        0,
    ),
    Target(
        "fanout in-process: server CPU per delivery ≤ flask-sock's loop",
        "fanout",
        "server_cpu_us_per_delivery",
        "ours-gunicorn",
        "flask-sock-gunicorn",
        "<=",
        1.0,
    ),
    Target(
        "fanout in-process: ≤ 0.1 context switches per delivery",
        "fanout",
        "server_switches_per_delivery",
        "ours-gunicorn",
        None,
        "<=",
        0.1,
    ),
]


# -- numbers ----------------------------------------------------------------------


def median(data: dict[str, Any], scenario: str, server: str, key: str) -> float | None:
    runs = data["results"].get(scenario, {}).get(server, [])
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def ratio(
    data: dict[str, Any],
    scenario: str,
    key: str,
    ours: str,
    peer: str,
    peer_scenario: str | None = None,
) -> float | None:
    """The median over runs of ours ÷ peer, each run's two numbers taken
    seconds apart; the ratio of the medians if the runs do not pair up."""
    results = data["results"]
    mine = results.get(scenario, {}).get(ours, [])
    theirs = results.get(peer_scenario or scenario, {}).get(peer, [])

    def by_run(runs: list[dict[str, Any]]) -> dict[int, float]:
        return {r.get("run", i + 1): r[key] for i, r in enumerate(runs) if r.get(key) is not None}

    a, b = by_run(mine), by_run(theirs)
    paired = [a[run] / b[run] for run in a.keys() & b.keys() if b[run]]
    if paired:
        return statistics.median(paired)
    x, y = median(data, scenario, ours, key), median(data, peer_scenario or scenario, peer, key)
    if x is None or y is None or y == 0:
        return None
    return x / y


def fmt(value: float | None, spec: str, scale: float = 1.0) -> str:
    return "–" if value is None else format(value * scale, spec)


def summary(scenario: str, result: dict[str, Any]) -> str:
    """One line for the progress log."""
    cpu = result.get("client_cpu_pct")
    client = f", client CPU {cpu:.0f}%" if cpu is not None else ""
    if scenario == "idle":
        return (
            f"{result['threads_per_conn']:.2f} threads/conn, "
            f"{result['rss_kib_per_conn']:.1f} KiB/conn, "
            f"threads after close {result['threads_after_close']} "
            f"(baseline {result['threads_base']})"
        )
    if scenario.startswith("fanout"):
        return (
            f"{result['deliveries_per_s']:,.0f} deliveries/s, "
            f"{result['server_cpu_us_per_delivery']:.2f} µs CPU/delivery{client}"
        )
    if scenario == "rtt":
        return f"p50 {result['p50_us']:.0f} µs, p99 {result['p99_us']:.0f} µs{client}"
    if scenario == "large":
        return f"{result['mb_per_s']:.0f} MB/s{client}"
    return (
        f"{result['msgs_per_s']:,.0f} msg/s, p50 {result['p50_us'] / 1000:.1f} ms, "
        f"{result['server_cpu_us_per_msg']:.1f} µs CPU/msg{client}"
    )


# -- Markdown ---------------------------------------------------------------------


def table(data: dict[str, Any]) -> str:
    head = ["metric", *SERVERS, *(name for name, _, _ in COMPARISONS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in METRICS:
        if m.scenario not in data["results"]:
            continue
        arrow = {"up": " ↑", "down": " ↓", None: ""}[m.better]
        cells = [m.label + arrow]
        cells += [fmt(median(data, m.scenario, s, m.key), m.fmt, m.scale) for s in SERVERS]
        for _, ours, peer in COMPARISONS:
            if m.scenario == "fanout-redis" and peer != "flask-sock-gunicorn":
                cells.append("–")
                continue
            peer_scenario = "fanout" if m.scenario == "fanout-redis" else m.scenario
            r = ratio(data, m.scenario, m.key, ours, peer, peer_scenario)
            cells.append("–" if r is None or m.better is None else f"{r:.2f}×")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def target_rows(data: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for t in TARGETS:
        if t.peer is None:
            value = median(data, t.scenario, t.ours, t.key)
            shown = fmt(value, ".2f")
        else:
            value = ratio(data, t.scenario, t.key, t.ours, t.peer)
            shown = fmt(value, ".2f") + ("×" if value is not None else "")
        if value is None:
            rows.append((t.name, shown, "not measured", ""))
            continue
        value = round(value, 2)  # judged at the precision shown
        if t.op == ">=":
            met = value >= t.bound
            margin = (value / t.bound - 1) if met else (1 - value / t.bound)
        elif t.op == "<=":
            met = value <= t.bound
            margin = (1 - value / t.bound) if met else (value / t.bound - 1)
        else:
            met = value == t.bound
            margin = None
        if margin is None:
            how = "" if met else f"off by {value - t.bound:+.0f}"
        elif met:
            how = f"with {100 * margin:.0f}% to spare"
        else:
            how = f"missed by {100 * margin:.0f}%"
        rows.append((t.name, shown, "**met**" if met else "**missed**", how))
    return rows


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    out = [
        f"Run of {data['date']}: `{data['command']}` ({data['wall_s']:.0f} s wall), "
        f"ours = {data['ours']}.",
        f"Machine: {m['nproc']} CPUs, {m['cpu']}, Python {m['python']}, Node {m['node']}, "
        f"Linux {m['kernel']}, load average at start {m['loadavg_at_start'][0]:.2f}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        "",
        f"Medians of {data['profile']['runs']} run(s). ↑ higher is better, ↓ lower is better. "
        "The ratio columns are ours ÷ peer: in each run, ours and the peer are measured one "
        "right after the other; the column is the median of the runs' ratios.",
        "",
        table(data),
        "",
        f"Load client CPU: at most {data['client_cpu_max_pct']:.0f}% of one core in any "
        "measuring window (the server has the other core and more).",
        "",
        "| target | measured | verdict | margin |",
        "|---|---|---|---|",
    ]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in target_rows(data)]
    if data["failures"]:
        out += ["", "Failed steps:", *(f"- {f}" for f in data["failures"])]
    return "\n".join(out)


# -- chart -------------------------------------------------------------------------


def chart(data: dict[str, Any], path: Path) -> None:
    """Horizontal bars: for each charted metric, ours vs each peer, as the
    factor by which ours is better (> 1) or worse (< 1), on a log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comparisons = COMPARISONS[:3]
    colors = ["#4C72B0", "#DD8452", "#55A868"]
    rows: list[tuple[str, list[float | None]]] = []
    for m in METRICS:
        if not m.chart or m.scenario not in data["results"]:
            continue
        factors: list[float | None] = []
        for _, ours, peer in comparisons:
            if m.scenario == "fanout-redis" and peer != "flask-sock-gunicorn":
                factors.append(None)  # as in the table: only flask-sock's broadcast
                continue
            peer_scenario = "fanout" if m.scenario == "fanout-redis" else m.scenario
            r = ratio(data, m.scenario, m.key, ours, peer, peer_scenario)
            if not r:
                factors.append(None)
            else:
                factors.append(r if m.better == "up" else 1 / r)
        if any(f is not None for f in factors):
            arrow = "↑" if m.better == "up" else "↓"
            rows.append((f"{m.label} {arrow}", factors))
    height = 0.9 + 0.42 * len(rows) * len(comparisons) / 2
    fig, ax = plt.subplots(figsize=(10, height))
    bar = 0.8 / len(comparisons)
    for i, (_, factors) in enumerate(rows):
        for j, f in enumerate(factors):
            if f is None:
                continue
            y = i + (j - (len(comparisons) - 1) / 2) * bar
            ax.barh(y, f - 1 if f >= 1 else -(1 - f), left=1, height=bar * 0.9, color=colors[j])
            ax.text(
                f * (1.03 if f >= 1 else 0.97),
                y,
                f"{f:.2f}×",
                va="center",
                ha="left" if f >= 1 else "right",
                fontsize=7,
            )
    # Targets set as ratios to a peer, as the same factor (◆).
    for i, (label, _) in enumerate(rows):
        for t in TARGETS:
            m = next((m for m in METRICS if f"{m.label} " in label + " "), None)
            if t.peer is None or m is None or (t.scenario, t.key) != (m.scenario, m.key):
                continue
            for j, (_, ours, peer) in enumerate(comparisons):
                if (ours, peer) == (t.ours, t.peer):
                    y = i + (j - (len(comparisons) - 1) / 2) * bar
                    goal = t.bound if m.better == "up" else 1 / t.bound
                    ax.plot([goal], [y], marker="D", color="black", markersize=4)
    ax.set_xscale("log")
    ax.axvline(1, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=8)
    ax.invert_yaxis()
    lo = min([f for _, fs in rows for f in fs if f] + [0.5])
    hi = max([f for _, fs in rows for f in fs if f] + [2])
    ax.set_xlim(lo / 1.6, hi * 1.6)
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ticks = [
        t
        for t in (0.1, 0.2, 0.25, 0.33, 0.5, 0.67, 1, 1.5, 2, 3, 4, 5, 10)
        if lo / 1.6 <= t <= hi * 1.6
    ]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("how many times better ours is (right of 1: ours better; log scale)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors]
    handles.append(plt.Line2D([], [], marker="D", color="black", linestyle="", markersize=4))
    names = [
        f"ours vs {peer}" + (f" ({ours.split('-')[1]})" if peer.startswith("websockets") else "")
        for _, ours, peer in comparisons
    ]
    ax.legend(handles, [*names, "target"], fontsize=8, loc="lower right")
    ax.set_title(
        f"flask-sockets-channels vs peers, medians of {data['profile']['runs']} runs, "
        f"{data['date'][:10]}\nbar = ours ÷ peer for ↑ metrics, peer ÷ ours for ↓ metrics: "
        "right of 1× ours is better",
        fontsize=10,
    )
    ax.grid(axis="x", which="both", alpha=0.2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- profile -----------------------------------------------------------------------

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^()]*?(?::\d+)?)\)$")


def _function(frame: str, line: bool = False) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match["file"] if line else match["file"].rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3", "flask_sockets_channels/"):
        if marker in file:
            file = (
                file.split(marker, 1)[1]
                if marker != "flask_sockets_channels/"
                else ("flask_sockets_channels/" + file.split(marker, 1)[1])
            )
            break
    return f"{match['func']} ({file})"


def activity(raw: list[str]) -> str:
    """What a sampled stack was doing, from its innermost frame's source
    line (when the file is still there) and the frames above it."""
    leaf = _FRAME.match(raw[-1].strip())
    source, file = "", ""
    if leaf:
        file, _, number = leaf["file"].rpartition(":")
        if number.isdigit():
            source = linecache.getline(file, int(number))
    stack = ";".join(raw)
    if ("sock" in source and ".recv" in source) or re.search(r"read_loop|sock\.recv", raw[-1]):
        return "socket recv() (the syscall, with the GIL released around it)"
    sends = r"_send_within|send_nowait|send_all"
    if ("sock" in source and (".send" in source)) or re.search(sends, raw[-1]):
        return "socket send() (the syscall, with the GIL released around it)"
    if file.endswith("threading.py") or "Channel._wait" in raw[-1]:
        return "thread hand-offs: Condition/Event wait and notify (threading.py)"
    if "wsproto" in stack:
        parsing = ("receive_data", "Connection.events", "received_frames", "_parse_more")
        if any(p in stack for p in parsing):
            return "wsproto: parsing inbound frames (header, unmasking, UTF-8)"
        return "wsproto: building outbound frames"
    if "websockets/" in raw[-1] or "websockets\\" in raw[-1]:
        parsing = ("receive_data", "Protocol.parse", "Frame.parse", "read_exact")
        if any(p in stack for p in parsing):
            return "websockets' engine: parsing inbound frames (header, unmasking)"
        return "websockets' engine: building outbound frames"
    if "channels.py" in raw[-1]:
        return "Channel (queue) bookkeeping"
    if "flask_sockets_channels" in raw[-1]:
        return "flask_sockets_channels: the rest of its own code"
    if "simple_websocket" in raw[-1]:
        return "simple_websocket: the rest of its own code"
    return "other (Flask, gunicorn, the view, interpreter)"


def profile_table(lines: list[str], top: int = 25) -> str:
    """Shares by activity, and self and inclusive shares of the functions,
    in py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    activities: Counter[str] = Counter()
    total = 0
    for line in lines:
        match = _LINE.match(line.strip())
        if not match:
            continue
        count = int(match[2])
        raw = [f for f in match[1].split(";") if f]
        if not raw:
            continue
        frames = [_function(f) for f in raw]
        total += count
        own[_function(raw[-1], line=True)] += count
        activities[activity(raw)] += count
        for name in set(frames):
            if not name.startswith(("Thread.run ", "Thread._bootstrap")):
                inclusive[name] += count
    if not total:
        return "(no samples)"
    out = [f"{total} samples", "", "| share % | activity |", "|---:|---|"]
    out += [f"| {100 * n / total:.1f} | {name} |" for name, n in activities.most_common()]
    out += ["", "| self % | function (line) |", "|---:|---|"]
    out += [f"| {100 * n / total:.1f} | `{name}` |" for name, n in own.most_common(top)]
    out += ["", "| inclusive % | function |", "|---:|---|"]
    out += [f"| {100 * n / total:.1f} | `{name}` |" for name, n in inclusive.most_common(top)]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--chart", type=Path)
    args = parser.parse_args()
    data = json.loads(args.results.read_text())
    print(markdown(data))
    if args.chart:
        chart(data, args.chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
