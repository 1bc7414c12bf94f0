"""The app of the capacity, stats and metrics tests, under werkzeug (in
process) and gunicorn (``tests.capacity_app:create_app()``).

Settings come from arguments, or, under gunicorn, from the environment:
``FSC_CAP_MAX_TOTAL`` (``Sockets(app, max_total_connections=...)``) and
``FSC_CAP_METRICS=1`` (register the Prometheus metrics, serve /metrics) and
``FSC_CAP_METRICS_INTERVAL`` (seconds between copies in multi-process mode).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from flask import Flask, Response, abort, jsonify, request

import flask_sockets_channels as sockets

#: How many times each view has started, to show that a refusal runs none.
view_runs: dict[str, int] = {}
_runs_lock = threading.Lock()
#: /lingering views whose connection has ended, still running (by key).
_lingering: dict[str, int] = {}
_lingering_changed = threading.Condition()
_releases: dict[str, threading.Event] = {}


def _ran(name: str) -> None:
    with _runs_lock:
        view_runs[name] = view_runs.get(name, 0) + 1


def _log_to(path: str | None) -> None:
    """Send the library's log records to the file ``path`` (once per file)."""
    if not path:
        return
    logger = logging.getLogger("flask_sockets_channels")
    logger.setLevel(logging.DEBUG)
    if not any(getattr(h, "baseFilename", None) == os.path.abspath(path) for h in logger.handlers):
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)


def create_app(
    max_total: int | None = None, metrics: bool | None = None, log_path: str | None = None
) -> Flask:
    _log_to(log_path or os.environ.get("FSC_TEST_LOG"))
    if max_total is None and os.environ.get("FSC_CAP_MAX_TOTAL"):
        max_total = int(os.environ["FSC_CAP_MAX_TOTAL"])
    if metrics is None:
        metrics = os.environ.get("FSC_CAP_METRICS") == "1"
    app = Flask(__name__)
    app.config["SOCKETS_CLOSE_TIMEOUT"] = 2
    ext = sockets.Sockets(app, max_total_connections=max_total)

    @app.route("/")
    def index() -> str:
        return "capacity app\n"

    @app.route("/_stats")
    def stats() -> Any:
        figures = ext.stats()
        return jsonify({**figures, "view_runs": dict(view_runs)})

    @app.route("/_wait_idle")
    def wait_idle() -> Any:
        """200 once every connection open now is done and its view has
        returned (its place given back); 504 after ``timeout``."""
        deadline = time.monotonic() + float(request.args.get("timeout", 10))
        for connection in ext.connections:
            if not connection.wait_closed(max(0.0, deadline - time.monotonic())):
                abort(504)
        # The view returns, and gives its place back, just after `done`: no
        # event says when; poll the registry.
        while ext.stats()["open"]:
            if time.monotonic() > deadline:
                abort(504)
            time.sleep(0.005)
        return jsonify(0)

    @app.route("/held")
    @sockets.messages(max_connections=3)
    def held(receiver: Any, sender: Any) -> None:
        _ran("held")
        sender.put("ready")
        for _ in receiver:
            pass

    @app.route("/crowd")
    @sockets.messages()
    def crowd(receiver: Any, sender: Any) -> None:
        sender.put("ready")
        for _ in receiver:
            pass

    @app.route("/per-client")
    @sockets.messages(max_connections_per_client=2)
    def per_client(receiver: Any, sender: Any) -> None:
        _ran("per-client")
        sender.put("ready")
        for _ in receiver:
            pass

    @app.route("/one")
    @sockets.messages(max_connections=1, max_message_size=16)
    def one(receiver: Any, sender: Any) -> None:
        """Echoes; "return" makes it return, "raise" makes it raise."""
        sender.put("ready")
        for message in receiver:
            if message == "return":
                return
            if message == "raise":
                raise RuntimeError("asked to raise")
            sender.put(message)

    @app.route("/lingering")
    @sockets.messages(max_connections=2)
    def lingering(receiver: Any, sender: Any) -> None:
        """Reads until its connection ends, then goes on running (as a view
        that works on a request does) until ``/_release/<id>``."""
        key = request.args.get("id", "")
        with _lingering_changed:
            release = _releases.setdefault(key, threading.Event())
        sender.put("ready")
        for _ in receiver:
            pass
        with _lingering_changed:
            _lingering[key] = _lingering.get(key, 0) + 1
            _lingering_changed.notify_all()
        release.wait(30)
        with _lingering_changed:
            _lingering[key] -= 1

    @app.route("/_lingering/<key>")
    def wait_lingering(key: str) -> Any:
        """200 once ``count`` /lingering views of ``key`` run with their
        connection ended; 504 after ``timeout``."""
        count = int(request.args.get("count", 1))
        timeout = float(request.args.get("timeout", 10))
        with _lingering_changed:
            if not _lingering_changed.wait_for(lambda: _lingering.get(key, 0) >= count, timeout):
                abort(504)
            return jsonify(_lingering[key])

    @app.route("/_release/<key>")
    def release(key: str) -> str:
        with _lingering_changed:
            _releases.setdefault(key, threading.Event()).set()
        return "released\n"

    @app.route("/echo")
    @sockets.messages()
    def echo(receiver: Any, sender: Any) -> None:
        for message in receiver:
            sender.put(message)

    @app.route("/member")
    @sockets.messages()
    def member(receiver: Any, sender: Any) -> None:
        with ext.hub.join("lobby", sender):
            sender.put("ready")
            for _ in receiver:
                pass

    @app.route("/rate/below-one")
    @sockets.messages(rate_limit=(0.5, 1.0))
    def rate_below_one(receiver: Any, sender: Any) -> None:
        for message in receiver:
            sender.put(message)

    @app.route("/rate/one-then-return")
    @sockets.messages(rate_limit=(1, 60.0))
    def rate_one_then_return(receiver: Any, sender: Any) -> None:
        """Echoes the first message and returns, while the reader waits a
        minute for the rate to allow the next one."""
        sender.put(receiver.get())

    @app.route("/rate")
    @sockets.messages(rate_limit=(200, 1.0), recv_channel_buffer=10)
    def rate(receiver: Any, sender: Any) -> None:
        for message in receiver:
            sender.put(message)

    if metrics:
        from prometheus_client import (
            CONTENT_TYPE_LATEST,
            CollectorRegistry,
            generate_latest,
        )

        from flask_sockets_channels import metrics as fsc_metrics

        interval = float(os.environ.get("FSC_CAP_METRICS_INTERVAL", "5"))
        registry = CollectorRegistry()
        exporter = fsc_metrics.register(ext, registry, interval=interval)

        @app.route("/metrics")
        def scrape() -> Response:
            if isinstance(exporter, fsc_metrics.MultiProcessExporter):
                # Multi-process mode: every worker's files, read afresh.
                scraped = CollectorRegistry()
                fsc_metrics.MultiProcessCollector(scraped)
                return Response(generate_latest(scraped), content_type=CONTENT_TYPE_LATEST)
            return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    return app
