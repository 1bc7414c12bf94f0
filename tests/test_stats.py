"""Sockets.stats() and the Prometheus metrics: figures after known
sequences of connections, refusals, messages and closes."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection

import flask_sockets_channels as sockets
from flask_sockets_channels import Connection, metrics
from tests.capacity_app import create_app
from tests.client import connect
from tests.conftest import (
    Server,
    capacity_server,
    gunicorn_server,
    released,
    serve_app,
    wait_time,
)
from tests.wire import RawClient

T = wait_time(5)


def extension(app: Flask) -> sockets.Sockets:
    return app.extensions["sockets_channels"]  # type: ignore[no-any-return]


@contextlib.contextmanager
def opened(
    server: Server, ext: sockets.Sockets, path: str, **kwargs: Any
) -> Iterator[tuple[ClientConnection, Connection]]:
    """A client connection and its server side; on exit, the client closes
    (if it has not) and the server side is done."""
    before = ext.connections
    with connect(f"{server.ws}{path}", open_timeout=T, **kwargs) as ws:
        (connection,) = ext.connections - before
        try:
            yield ws, connection
        finally:
            ws.close()
    assert released(ext, connection, T)


def refused(server: Server, path: str, **kwargs: Any) -> int:
    try:
        with connect(f"{server.ws}{path}", open_timeout=T, **kwargs):
            pass
    except InvalidStatus as exc:
        return exc.response.status_code
    raise AssertionError(f"{path}: the handshake was accepted")


def closed_by_server(ws: ClientConnection) -> int | None:
    """The code of the server's close frame, after the messages before it."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=T)
    return closed.value.rcvd.code if closed.value.rcvd else None


def reset(server: Server, ext: sockets.Sockets, path: str) -> Connection:
    """Open a connection to ``path`` (a view that sends "ready"), cut it
    with a TCP reset, wait until it is done; return its server side."""
    before = ext.connections
    with RawClient(server.port) as raw:
        raw.open(path)
        (connection,) = ext.connections - before
        assert raw.read_frame().text == "ready"
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert released(ext, connection, T)
    return connection


def known_sequence(server: Server, ext: sockets.Sockets) -> int | None:
    """Connections ended by every cause, and refusals with 403, 429, 503.
    Returns the close code the reset connection reported."""
    with opened(server, ext, "/echo") as (ws, _):  # the client closes: 1000
        ws.send("hello")
        assert ws.recv(timeout=T) == "hello"
    with opened(server, ext, "/one") as (ws, _):  # the view returns: 1000
        ws.send("return")
        assert closed_by_server(ws) == 1000
    with opened(server, ext, "/one") as (ws, _):  # the view raises: 1011
        ws.send("raise")
        assert closed_by_server(ws) == 1011
    with opened(server, ext, "/one") as (ws, _):  # too big: 1009
        ws.send("x" * 17)
        assert closed_by_server(ws) == 1009
    reset_code = reset(server, ext, "/one").close_code  # TCP reset: 1006
    with opened(server, ext, "/echo") as (ws, _):  # the client closes with 4000
        ws.close(4000)
    with opened(server, ext, "/one"):  # 503 while it is open
        assert refused(server, "/one") == 503
    with opened(server, ext, "/per-client"), opened(server, ext, "/per-client"):
        assert refused(server, "/per-client") == 429
    assert refused(server, "/echo", origin="http://elsewhere.example") == 403
    return reset_code


def test_stats_count_connections_close_codes_and_refusals(tmp_path: Path) -> None:
    app = create_app()
    ext = extension(app)
    with serve_app(app, tmp_path / "log") as server:
        reset_code = known_sequence(server, ext)
    figures = ext.stats()
    assert figures["open"] == 0
    assert figures["open_by_endpoint"] == {"echo": 0, "one": 0, "per_client": 0}
    assert (figures["opened"], figures["closed"]) == (9, 9)
    # Counted as the connection reported it: 1006 (see the next test).
    expected: dict[int | str, int] = {1000: 5, 1011: 1, 1009: 1, "application": 1}
    assert reset_code is not None
    expected[reset_code] = expected.get(reset_code, 0) + 1
    assert figures["close_codes"] == expected
    assert figures["rejected"] == {503: 1, 429: 1, 403: 1}
    assert figures["hub"] == {
        "rooms": 0,
        "members": 0,
        "published": 0,
        "delivered": 0,
        "slow_consumers_closed": 0,
        "reconnects": 0,
        "messages_lost": 0,
    }


def test_a_tcp_reset_is_counted_as_1006(tmp_path: Path) -> None:
    app = create_app()
    ext = extension(app)
    with serve_app(app, tmp_path / "log") as server:
        codes = [reset(server, ext, "/one").close_code for _ in range(10)]
    assert codes == [1006] * 10
    assert ext.stats()["close_codes"] == {1006: 10}


def test_stats_count_errors_by_type(tmp_path: Path) -> None:
    app = create_app()
    ext = extension(app)
    with serve_app(app, tmp_path / "log") as server:
        known_sequence(server, ext)
    # 1009 and the reset and the peer's 4000; the view's exception is
    # logged, not put on `errors`.
    assert ext.stats()["errors"] == {"MessageTooBig": 1, "ConnectionClosedError": 2}


def test_stats_count_messages_and_payload_bytes_both_ways(tmp_path: Path) -> None:
    app = create_app()
    ext = extension(app)
    with serve_app(app, tmp_path / "log") as server:
        with opened(server, ext, "/echo") as (ws, _):
            for message in ("hello", "wörld"):  # 5 and 6 bytes of UTF-8
                ws.send(message)
                assert ws.recv(timeout=T) == message
            while_open = ext.stats()
        after = ext.stats()
    for figures in (while_open, after):  # open ones counted, then closed ones
        assert (figures["messages_in"], figures["messages_out"]) == (2, 2)
        assert (figures["bytes_in"], figures["bytes_out"]) == (11, 11)


def test_stats_show_open_connections_by_endpoint(tmp_path: Path) -> None:
    app = create_app()
    ext = extension(app)
    with serve_app(app, tmp_path / "log") as server:
        with (
            opened(server, ext, "/held"),
            opened(server, ext, "/held"),
            opened(server, ext, "/echo"),
        ):
            figures = ext.stats()
            assert figures["open"] == 3
            assert figures["open_by_endpoint"] == {"held": 2, "echo": 1}
            figures["open_by_endpoint"]["held"] = 99  # a copy: changes nothing
        assert ext.stats()["open_by_endpoint"] == {"held": 0, "echo": 0}


def test_stats_show_the_hubs_rooms_and_members(tmp_path: Path) -> None:
    app = create_app()
    ext = extension(app)
    with serve_app(app, tmp_path / "log") as server:
        with (
            opened(server, ext, "/member") as (first, _),
            opened(server, ext, "/member") as (
                second,
                _,
            ),
        ):
            for ws in (first, second):
                assert ws.recv(timeout=T) == "ready"
            assert ext.hub.publish("lobby", "news") == 2
            for ws in (first, second):
                assert ws.recv(timeout=T) == "news"
            hub = ext.stats()["hub"]
            assert (hub["rooms"], hub["members"]) == (1, 2)
            # Counters the hub may keep (0 when it does not).
            assert hub["published"] == 1
            assert hub["delivered"] == 2
        # Members leave as their views return, just after the clients closed.
        deadline = time.monotonic() + T
        while (figures := ext.stats()["hub"])["members"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (figures["rooms"], figures["members"]) == (0, 0)


def test_a_refusal_by_an_access_check_is_counted_by_status() -> None:
    from flask_sockets_channels.testing import HandshakeRejected, WebSocketTestClient

    app = create_app()

    @app.before_request
    def deny_sockets() -> Any:
        from flask import abort, request

        if request.path == "/echo":
            abort(401)
        return None

    client = WebSocketTestClient(app)
    with pytest.raises(HandshakeRejected):
        client.connect("/echo")
    app.test_client().get("/no-such-page")  # plain HTTP errors are not refusals
    assert extension(app).stats()["rejected"] == {401: 1}


# -- Prometheus ---------------------------------------------------------------


def scraped(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> (sorted labels -> value), from the text exposition."""
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def test_prometheus_exposition_has_every_figure_read_at_scrape_time(tmp_path: Path) -> None:
    app = create_app()
    ext = extension(app)
    registry = CollectorRegistry()
    metrics.register(ext, registry)
    with serve_app(app, tmp_path / "log") as server:
        with opened(server, ext, "/echo") as (ws, _):
            ws.send("hi")
            assert ws.recv(timeout=T) == "hi"
            during = scraped(generate_latest(registry).decode())
        assert refused(server, "/echo", origin="http://elsewhere.example") == 403
    after = scraped(generate_latest(registry).decode())
    assert during["fsc_connections_open"] == {(): 1.0}
    assert during["fsc_connections_open_by_endpoint"] == {(("endpoint", "echo"),): 1.0}
    assert after["fsc_connections_open"] == {(): 0.0}
    assert after["fsc_connections_opened_total"] == {(): 1.0}
    assert after["fsc_connections_closed_total"] == {(): 1.0}
    assert after["fsc_close_codes_total"] == {(("code", "1000"),): 1.0}
    assert after["fsc_handshakes_rejected_total"] == {(("status", "403"),): 1.0}
    assert after["fsc_hub_rooms"] == {(): 0.0}
    figures = ext.stats()
    for name in ("messages_in", "messages_out", "bytes_in", "bytes_out"):
        assert after[f"fsc_{name}_total"] == {(): float(figures[name])}
    families = {
        family.name: family.type
        for family in text_string_to_metric_families(generate_latest(registry).decode())
    }
    assert families == {metric.name: metric.kind for metric in metrics.METRICS}
    assert all(name.startswith("fsc_") for name in families)


def test_registering_twice_in_one_registry_raises() -> None:
    ext = sockets.Sockets(Flask(__name__))
    registry = CollectorRegistry()
    metrics.register(ext, registry)
    with pytest.raises(ValueError, match="Duplicated"):
        metrics.register(ext, registry)


def test_prometheus_multiprocess_mode_sums_gunicorn_workers(tmp_path: Path) -> None:
    """Two workers, PROMETHEUS_MULTIPROC_DIR set: each worker copies its
    figures into prometheus-client's files; /metrics, in whichever worker,
    sums them."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "FSC_CAP_METRICS": "1",
        "FSC_CAP_METRICS_INTERVAL": "0.1",
    }
    app_spec = "tests.capacity_app:create_app()"

    def figures_become(expected: dict[str, float]) -> None:
        # Other processes' figures: no event reaches this one, so poll the
        # scrape until it shows them.
        deadline = time.monotonic() + T
        while True:
            status, body = server.get("/metrics")
            assert status == 200
            samples = scraped(body)
            seen = {name: samples.get(name, {}).get((), 0.0) for name in expected}
            if seen == expected:
                return
            assert time.monotonic() < deadline, f"metrics {seen}, expected {expected}"
            time.sleep(0.05)

    with (
        gunicorn_server(tmp_path / "log", extra=("-w", "2"), env=env, app_spec=app_spec) as server,
        contextlib.ExitStack() as stack,
    ):
        clients = [
            stack.enter_context(connect(f"{server.ws}/crowd", open_timeout=T)) for _ in range(6)
        ]
        for ws in clients:
            assert ws.recv(timeout=T) == "ready"
        figures_become({"fsc_connections_open": 6.0, "fsc_connections_opened_total": 6.0})
        stack.close()
        figures_become(
            {
                "fsc_connections_open": 0.0,
                "fsc_connections_opened_total": 6.0,
                "fsc_connections_closed_total": 6.0,
            }
        )
        pids = {path.name.rsplit("_", 1)[-1] for path in directory.glob("counter_*.db")}
        assert pids, json.dumps(sorted(p.name for p in directory.iterdir()))


# -- what a client can make the figures count --------------------------------


@pytest.fixture(scope="module", params=["werkzeug", "gunicorn"])
def stats_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The capacity app with its Prometheus metrics at /metrics."""
    log_path = tmp_path_factory.mktemp("stats-" + request.param) / "server.log"
    with capacity_server(request.param, log_path, metrics=True) as server:
        yield server


def served_stats(server: Server) -> dict[str, Any]:
    status, body = server.get("/_stats")
    assert status == 200
    return json.loads(body)  # type: ignore[no-any-return]


def wait_idle(server: Server) -> None:
    status, _ = server.get(f"/_wait_idle?timeout={T}", timeout=T + 5)
    assert status == 200, "connections still open on the server"


def grown(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: count - before.get(key, 0) for key, count in after.items()
            if count != before.get(key, 0)}  # fmt: skip


def test_close_codes_a_peer_picks_are_one_bounded_series(stats_server: Server) -> None:
    """100 connections closed by the peer with 100 codes of 3000-4999: one
    ``application`` key in stats, one series in the metrics."""
    before = served_stats(stats_server)["close_codes"]
    for code in [*range(3000, 3050), *range(4000, 4050)]:
        with connect(f"{stats_server.ws}/echo", open_timeout=T) as ws:
            ws.close(code)
    wait_idle(stats_server)
    after = served_stats(stats_server)["close_codes"]
    assert grown(before, after) == {"application": 100}
    status, text = stats_server.get("/metrics")
    assert status == 200
    series = scraped(text)["fsc_close_codes_total"]
    codes = {dict(labels)["code"] for labels in series}
    assert "application" in codes
    assert all(code == "application" or int(code) < 3000 for code in codes), codes


def test_only_refused_upgrades_to_socket_views_are_counted(stats_server: Server) -> None:
    """An upgrade request to a URL that is no socket view's (404, a plain
    route's 405 or 400) is not a refused handshake; a socket view's 405 (a
    method other than GET) and 403 (origin) are."""
    before = served_stats(stats_server)["rejected"]
    attempts = [
        ("GET", "/nope", {}, 404),
        ("DELETE", "/_stats", {}, 405),
        ("GET", "/_stats", {}, 400),
        ("POST", "/echo", {}, 405),
        ("GET", "/echo", {"Origin": "http://elsewhere.example"}, 403),
    ]
    for method, path, headers, expected in attempts:
        with RawClient(stats_server.port) as client:
            status, _, _ = client.handshake(path, headers, method=method)
            assert status == expected, (method, path)
    after = served_stats(stats_server)["rejected"]
    assert grown(before, after) == {"405": 1, "403": 1}


def metrics_thread_in_a_forked_child() -> bool:
    """Whether a child forked now runs the exporter's thread."""
    reading, writing = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() of a threaded process
        pid = os.fork()
    if pid == 0:  # the child: answer through the pipe, and no more
        names = [thread.name for thread in threading.enumerate()]
        os.write(writing, b"1" if "flask-sockets-channels metrics" in names else b"0")
        os._exit(0)
    os.close(writing)
    try:
        answer = os.read(reading, 1)
    finally:
        os.close(reading)
        os.waitpid(pid, 0)
    return answer == b"1"


def test_a_closed_exporter_starts_no_thread_in_a_child_forked_later() -> None:
    ext = sockets.Sockets(Flask(__name__))
    exporter = metrics.MultiProcessExporter(ext, 60.0)
    exporter.start()
    try:
        assert metrics_thread_in_a_forked_child()  # a --preload app's worker
    finally:
        exporter.close()
    assert not metrics_thread_in_a_forked_child()


def test_the_multiprocess_collector_reads_past_a_file_still_empty(tmp_path: Path) -> None:
    # A worker's file as prometheus-client leaves it between creating and
    # sizing it (or for good, if the worker is killed then), beside a file
    # that holds a figure.
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    written = MmapedDict(str(tmp_path / "counter_101.db"))
    written.write_value(
        mmap_key("fsc_messages_in_total", "fsc_messages_in_total", (), (), "messages received"),
        7.0,
        0.0,
    )
    written.close()
    (tmp_path / "counter_102.db").touch()

    ours = CollectorRegistry()
    metrics.MultiProcessCollector(ours, path=str(tmp_path))
    assert "fsc_messages_in_total 7.0" in generate_latest(ours).decode()
