"""Run the Autobahn TestSuite (RFC 6455 conformance) against the echo example.

usage: python autobahn/run.py [--server werkzeug|gunicorn|both] [--deflate]
           [--cases LIST] [--exclude LIST] [--report-dir DIR]
           [--case-timeout S] [--deadline S]

For each server asked for, this script
  1. binds a listening socket on 127.0.0.1, port 0 (loopback only), and
     starts the echo example's app (examples/echo/app.py) on it, in a
     subprocess: the werkzeug development server (threaded, as `flask run`
     and `app.run()` start it) or gunicorn (`-k gthread --threads 50 -w 1
     --bind fd://N`);
  2. runs the suite's fuzzing client (wstest, Python 2.7) against
     ws://127.0.0.1:PORT/echo/mixed, the endpoint that echoes each message
     in the type it came in (/echo/deflate with --deflate);
  3. stops the server by its PID, reads the report and prints a summary
     whose last line is `autobahn SERVER: N ok, N non-strict, N failed of N`.

A case counts as failed when its verdict (`behavior`) is FAILED or
UNIMPLEMENTED, when it did not run, or when its closing-handshake verdict
(`behaviorClose`) is not OK or INFORMATIONAL (strict close). The exit
status is 1 if any case failed on any server or a server did not start or
died, else 0. INFORMATIONAL verdicts (cases whose outcome the RFC leaves
open) are listed and count as passed; NON-STRICT ones are listed too.

Cases: by default all but 9.* (performance) and 12.*/13.*
(permessage-deflate). --deflate adds 12.* and 13.* and tests the
/echo/deflate endpoint, which accepts permessage-deflate. --cases runs the
given comma-separated patterns as they are (e.g. "1.*,5.*,7.1.1");
--exclude leaves patterns out in either case.

Time bounds: a case whose connection is still open after --case-timeout
seconds is aborted (and judged; default 15, 60 with --deflate or with
--cases naming 9, 12 or 13); the fuzzing client stops after --deadline
seconds per server (default 900, 2100 with --deflate), keeping the report
of the cases run so far, and is killed 60 s later.

Reports (index.html, index.json, one JSON and HTML file per case with its
wire log, wstest.log, server.log) go to --report-dir/SERVER/. Without
--report-dir they go to a temporary folder, deleted after a clean run and
kept (its path printed) after a failed one.

The servers import flask_sockets_channels the way the app's Python finds it
(the installed package in a tox env; set PYTHONPATH to test a source tree).
The Python 2.7 virtualenv for wstest is made on first use by setup.sh, in
${XDG_CACHE_HOME:-~/.cache}/flask-sockets-channels-autobahn, and reused.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP_DIR = HERE.parent / "examples" / "echo"

# Each server: how to start it on an inherited listening socket (fd), with
# APP_DIR as the working directory so that `app` is examples/echo/app.py.
WERKZEUG = (
    "import sys\n"
    "from werkzeug.serving import make_server\n"
    "from app import app\n"
    "make_server('127.0.0.1', 0, app, threaded=True, fd=int(sys.argv[1])).serve_forever()\n"
)


def server_command(server: str, fd: int) -> list[str]:
    if server == "werkzeug":
        return [sys.executable, "-c", WERKZEUG, str(fd)]
    return [
        sys.executable, "-m", "gunicorn",
        "-k", "gthread", "--threads", "50", "-w", "1",
        "--bind", f"fd://{fd}",
        "--graceful-timeout", "5",
        "app:app",
    ]


PASSED_CLOSE = ("OK", "INFORMATIONAL")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):  # show progress under tox, CI, tee
        sys.stdout.reconfigure(line_buffering=True)
    python27 = setup()
    if python27 is None:
        return 2
    library = check_app()
    if library is None:
        return 2
    print(f"autobahn: servers import {library}")

    keep = args.report_dir is not None
    report_root = Path(args.report_dir or tempfile.mkdtemp(prefix="autobahn-")).resolve()
    servers = ["werkzeug", "gunicorn"] if args.server == "both" else [args.server]
    lines, ok = [], True
    for server in servers:
        outdir = report_root / server
        outdir.mkdir(parents=True, exist_ok=True)
        for stale in outdir.glob("*.json"):
            stale.unlink()
        started = time.monotonic()
        problem = run_server(server, outdir, python27, args)
        if problem == "did not start":
            ok = False
            lines.append(f"autobahn {server}: the server did not start, no case ran")
            continue
        summary, cases_ok = summarize(server, outdir)
        ok = ok and problem is None and cases_ok
        lines.append(f"{summary} ({time.monotonic() - started:.0f} s)")

    if ok and not keep:
        shutil.rmtree(report_root, ignore_errors=True)
    else:
        print(f"autobahn: reports in {report_root}")
    for line in lines:
        print(line)
    return 0 if ok else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the Autobahn TestSuite against examples/echo/app.py.",
        epilog="See the module docstring for what counts as a failure.",
    )
    parser.add_argument("--server", choices=("werkzeug", "gunicorn", "both"), default="both")
    parser.add_argument("--deflate", action="store_true",
                        help="also run 12.* and 13.* against /echo/deflate")
    parser.add_argument("--cases", help='comma-separated case patterns, e.g. "1.*,7.1.1"')
    parser.add_argument("--exclude", default="", help="comma-separated patterns to leave out")
    parser.add_argument("--report-dir", help="keep the reports here (default: a temp dir)")
    parser.add_argument("--case-timeout", type=float, help="seconds per case (default 15 or 60)")
    parser.add_argument("--deadline", type=float,
                        help="seconds per server (default 900, 2100 with --deflate)")
    args = parser.parse_args(argv)

    def patterns(text: str) -> list[str]:
        return [p.strip() for p in text.split(",") if p.strip()]

    if args.cases:
        args.selected, excluded = patterns(args.cases), []
    else:
        args.selected, excluded = ["*"], ["9.*"]
        if not args.deflate:
            excluded += ["12.*", "13.*"]
    args.excluded = excluded + patterns(args.exclude)
    slow = args.deflate or (
        args.cases is not None
        and any(re.match(r"(\*|9|12|13)(\.|$)", p) for p in args.selected)
    )
    if args.case_timeout is None:
        args.case_timeout = 60.0 if slow else 15.0
    if args.deadline is None:
        args.deadline = 2100.0 if args.deflate else 900.0
    return args


def setup() -> str | None:
    """Make or reuse the Python 2.7 virtualenv; return its python."""
    try:
        result = subprocess.run(
            ["bash", str(HERE / "setup.sh")], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, timeout=900,
        )
    except subprocess.TimeoutExpired:
        print("autobahn: setup.sh did not finish in 900 s")
        return None
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines or not lines[-1].startswith("setup: ready: "):
        print(result.stdout, end="")
        print(f"autobahn: setup.sh failed (exit {result.returncode})")
        return None
    if len(lines) > 1:  # it built the venv: show how
        print("\n".join(lines))
    return lines[-1][len("setup: ready: "):]


def server_env() -> dict[str, str]:
    """The environment for the servers, PYTHONPATH made absolute (their cwd is APP_DIR)."""
    env = dict(os.environ)
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(
            os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep) if p
        )
    return env


def check_app() -> str | None:
    """Import the echo app as the servers will; return the library's location."""
    code = "import app, flask_sockets_channels as m; print(m.__file__)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=APP_DIR, env=server_env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60,
    )
    if result.returncode != 0:
        print(result.stdout, end="")
        print(f"autobahn: cannot import {APP_DIR / 'app.py'} (is the package installed?)")
        return None
    return str(Path(result.stdout.strip().splitlines()[-1]).parent)


def run_server(server: str, outdir: Path, python27: str,
               args: argparse.Namespace) -> str | None:
    """Start the server, run the fuzzing client against it, stop it.

    Returns None, or what went wrong with the server: "did not start" or
    "exited during the run".
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.set_inheritable(True)
    port = listener.getsockname()[1]
    with open(outdir / "server.log", "w") as log:
        process = subprocess.Popen(
            server_command(server, listener.fileno()), cwd=APP_DIR, env=server_env(),
            stdout=log, stderr=subprocess.STDOUT, pass_fds=(listener.fileno(),),
            start_new_session=True,
        )
    # Only the server holds the socket now: if it dies, connects are refused
    # instead of waiting in a backlog nobody accepts from.
    listener.close()
    try:
        if not wait_ready(process, port):
            print(f"autobahn {server}: the server did not start; see {outdir / 'server.log'}")
            return "did not start"
        endpoint = "/echo/deflate" if args.deflate else "/echo/mixed"
        url = f"ws://127.0.0.1:{port}{endpoint}"
        print(f"autobahn {server}: server pid {process.pid}, testing {url}")
        run_fuzzingclient(server, url, outdir, python27, args)
        if process.poll() is not None:
            print(f"autobahn {server}: the server exited during the run "
                  f"(status {process.returncode})")
            return "exited during the run"
        return None
    finally:
        stop(process)
        tracebacks = (outdir / "server.log").read_text(errors="replace").count("Traceback")
        if tracebacks:
            print(f"autobahn {server}: {tracebacks} traceback(s) in {outdir / 'server.log'}")


def wait_ready(process: subprocess.Popen[bytes], port: int, timeout: float = 30) -> bool:
    """Wait until the app answers a plain GET / (False if it dies first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server by its PID; SIGKILL its process group if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            pass
    # It was started in a session of its own: its group is its PID, and
    # holds its children (gunicorn's worker), whatever became of it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_fuzzingclient(server: str, url: str, outdir: Path, python27: str,
                      args: argparse.Namespace) -> None:
    spec = {
        "outdir": str(outdir),
        "servers": [{"agent": server, "url": url}],
        "cases": args.selected,
        "exclude-cases": args.excluded,
        "exclude-agent-cases": {},
    }
    spec_path = outdir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    print(f"autobahn {server}: cases {args.selected}, excluding {args.excluded or 'nothing'}; "
          f"case timeout {args.case_timeout:.0f} s, deadline {args.deadline:.0f} s")
    command = [
        python27, "-u", str(HERE / "fuzzingclient.py"), str(spec_path),
        "--case-timeout", str(args.case_timeout), "--deadline", str(args.deadline),
    ]
    started = time.monotonic()
    with open(outdir / "wstest.log", "w") as log:
        client = subprocess.Popen(command, cwd=outdir, stdout=log, stderr=subprocess.STDOUT)
        try:
            status: object = client.wait(timeout=args.deadline + 60)
        except subprocess.TimeoutExpired:
            client.kill()
            client.wait()
            status = "killed after the deadline"
    print(f"autobahn {server}: wstest ended ({status}) after {time.monotonic() - started:.0f} s")
    for line in (outdir / "wstest.log").read_text(errors="replace").splitlines():
        if line.startswith("fuzzingclient: ") or line.startswith("Traceback"):
            print(f"  {line}")


def summarize(server: str, outdir: Path) -> tuple[str, bool]:
    """Print the verdicts of one server's run; return its summary line and pass/fail."""
    results = {}
    index_path = outdir / "index.json"
    if index_path.exists():
        results = json.loads(index_path.read_text()).get(server, {})
    selected_path = outdir / "selected_cases.json"
    selected = json.loads(selected_path.read_text()) if selected_path.exists() else list(results)
    selected.sort(key=lambda case: [int(p) for p in case.split(".")])

    verdicts: dict[str, str] = {}
    failures, not_run = [], []
    for case in selected:
        result = results.get(case)
        if result is None:
            verdicts[case] = "failed"
            not_run.append(case)
            continue
        behavior, close = result.get("behavior"), result.get("behaviorClose")
        if behavior in ("OK", "NON-STRICT", "INFORMATIONAL") and close in PASSED_CLOSE:
            verdicts[case] = behavior.lower()
            continue
        verdicts[case] = "failed"
        detail = read_case(outdir / result.get("reportfile", ""))
        failures.append(
            f"{case}: behavior {behavior}, behaviorClose {close}, "
            f"remote close code {result.get('remoteCloseCode')}; "
            f"{detail.get('result', '')} / {detail.get('resultClose', '')} "
            f"({result.get('reportfile')})"
        )

    if not selected:
        print(f"autobahn {server}: no report (see {outdir / 'wstest.log'})")
    counts = Counter(verdicts.values())
    for verdict in ("non-strict", "informational"):
        cases = [case for case, v in verdicts.items() if v == verdict]
        if cases:
            print(f"autobahn {server}: {verdict} ({len(cases)}): {' '.join(cases)}")
    for failure in failures:
        print(f"autobahn {server}: FAILED {failure}")
    if not_run:
        print(f"autobahn {server}: FAILED, did not run ({len(not_run)}): {' '.join(not_run)}")
    line = (f"autobahn {server}: {counts['ok']} ok, {counts['non-strict']} non-strict, "
            f"{counts['failed']} failed of {len(selected)}")
    return line, bool(selected) and not failures and not not_run


def read_case(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


if __name__ == "__main__":
    sys.exit(main())
