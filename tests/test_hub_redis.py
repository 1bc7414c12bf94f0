"""The Redis hub against a real redis-server: workers that fork after the
hub is made, secrets, half-open connections, what ``HubUnavailable`` says,
presence, history, and no loss across connection blips.

Faults are injected with Redis itself (``CLIENT KILL``, ``CLIENT PAUSE``,
ACLs) or with a TCP proxy on loopback that can stop forwarding without
closing (what a NAT that forgot the connection does).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py
from websockets.sync.client import ClientConnection

import flask_sockets_channels as sockets
from tests.client import connect
from tests.conftest import (
    ROOT,
    Inbox,
    RedisServer,
    Server,
    die_with_parent,
    free_port,
    gunicorn_server,
    redis_server,
    wait_time,
)

T = wait_time(5)
HUB_CLIENTS = "flask-sockets-channels:"


def new_room() -> str:
    return "room-" + uuid.uuid4().hex[:8]


def sender_channel(maxsize: int = 10_000) -> Inbox:
    """A real socket view's ``sender`` with nothing behind it."""
    return Inbox(maxsize)


def receive(channel: Inbox, timeout: float = T) -> str:
    return channel.get(timeout=timeout).data.decode()  # type: ignore[no-any-return]


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as running:
        yield running


@contextlib.contextmanager
def hub_at(url: str, **kwargs: Any) -> Iterator[sockets.Hub]:
    hub = sockets.Hub.from_url(url, **kwargs)
    try:
        yield hub
    finally:
        hub.close()


def client_list(url: str) -> list[dict[str, str]]:
    client = redis_py.Redis.from_url(url, decode_responses=True)
    try:
        return [{k: str(v) for k, v in c.items()} for c in client.client_list()]
    finally:
        client.close()


def hub_connections(url: str, kind: str, pid: int | None = None) -> list[dict[str, str]]:
    """The hub's connections to Redis of ``kind`` ("reader" or "publisher"),
    found by the client name the hub sets."""
    prefix = f"{HUB_CLIENTS}{kind}:" + (f"{pid}:" if pid is not None else "")
    return [c for c in client_list(url) if c.get("name", "").startswith(prefix)]


def the_reader(url: str) -> dict[str, str]:
    """This process's one hub reader connection. A closed hub's connection
    may stay in Redis's list for a moment (Redis drops it when it reads the
    close), so wait until one is left."""
    found: list[dict[str, str]] = []

    def one() -> bool:
        found[:] = hub_connections(url, "reader", os.getpid())
        return len(found) == 1

    wait_for(one, 10, "one reader connection")
    return found[0]


def wait_for(predicate: Any, timeout: float, what: str) -> float:
    """Poll ``predicate`` (Redis state has no event to wait on); return how
    long it took."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started


class Proxy:
    """A TCP proxy on loopback to ``port`` that can stop forwarding on the
    connections it holds, without closing them: a half-open connection as
    the client sees it."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._changed = threading.Condition()  # guards the sets and lists below
        self._held: set[socket.socket] = set()  # sources not read from
        self._parked: set[socket.socket] = set()  # sources whose pump honours the hold
        self._sockets: list[socket.socket] = []
        self._upstreams: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._accepting = threading.Thread(target=self._accept, name="test-proxy")
        self._accepting.start()

    def url(self, path: str = "/0") -> str:
        return f"redis://127.0.0.1:{self.port}{path}"

    def hold_all(self) -> None:
        """Stop forwarding on every connection open now."""
        self._hold(self._sockets)

    def hold_replies(self) -> None:
        """Stop forwarding what Redis sends on every connection open now
        (what the client sends still reaches Redis)."""
        self._hold(self._upstreams)

    def _hold(self, sources: list[socket.socket]) -> None:
        """Hold ``sources``; return once no byte of theirs moves any more."""
        with self._changed:
            chosen = set(sources)
            self._held |= chosen
            assert self._changed.wait_for(lambda: chosen <= self._parked, T)

    def release(self) -> None:
        with self._changed:
            self._held.clear()
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._held.clear()
            self._changed.notify_all()
            open_sockets = list(self._sockets)
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.listener.close()
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in [self._accepting, *self._threads]:
            thread.join(T)
            assert not thread.is_alive(), thread

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=T)
            except OSError:
                client.close()
                continue
            with self._changed:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
                self._upstreams.append(upstream)
            for source, target in ((client, upstream), (upstream, client)):
                # Short reads, so that a hold takes effect at once.
                source.settimeout(0.05)
                thread = threading.Thread(
                    target=self._pump, args=(source, target), name="test-proxy pump"
                )
                self._threads.append(thread)
                thread.start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                with self._changed:
                    if source in self._held:
                        self._parked.add(source)
                        self._changed.notify_all()
                    self._changed.wait_for(lambda: self._closed or source not in self._held)
                    self._parked.discard(source)
                    if self._closed:
                        return
                try:
                    data = source.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    target.shutdown(socket.SHUT_WR)
                    return
                target.sendall(data)
        except OSError:
            return
        finally:
            with self._changed:  # a pump that ended moves nothing
                self._parked.add(source)
                self._changed.notify_all()


@pytest.fixture
def proxy(redis: RedisServer) -> Iterator[Proxy]:
    running = Proxy(redis.port)
    try:
        yield running
    finally:
        running.close()


# -- A.1: a hub made before gunicorn forks its workers -----------------------


def open_member(
    stack: contextlib.ExitStack,
    server: Server,
    room: str,
    query: str = "",
    replayed: list[str] | None = None,
) -> tuple[ClientConnection, int]:
    """A member of ``room``, closed with ``stack``; and its worker's pid.
    What arrives before ``joined`` (a replay) goes to ``replayed``."""
    ws = stack.enter_context(connect(f"{server.ws}/member/{room}{query}", open_timeout=T))
    while True:
        message = ws.recv(timeout=T)
        assert isinstance(message, str)
        if message.startswith("joined "):
            return ws, int(message.split()[1])
        assert replayed is not None, f"{message!r} came before joining"
        replayed.append(message)


def members_on_each_worker(
    stack: contextlib.ExitStack, server: Server, room: str, workers: int, each: int
) -> dict[int, list[ClientConnection]]:
    """Open members until each of ``workers`` processes holds ``each``. Tried
    until a deadline, not a number of times: a worker still booting on a
    loaded machine accepts nothing, and its sibling takes every attempt."""
    by_pid: dict[int, list[ClientConnection]] = {}
    deadline = time.monotonic() + 4 * T
    while time.monotonic() < deadline:
        with contextlib.ExitStack() as attempt:
            ws, pid = open_member(attempt, server, room)
            if len(by_pid.get(pid, [])) >= each:
                continue  # a surplus member: closed on leaving the block
            stack.enter_context(attempt.pop_all())
        by_pid.setdefault(pid, []).append(ws)
        if len(by_pid) == workers and all(len(v) == each for v in by_pid.values()):
            return by_pid
    raise AssertionError(f"connections did not spread over {workers} workers: {by_pid}")


def drain(ws: ClientConnection) -> list[Any]:
    found = []
    with contextlib.suppress(TimeoutError):
        while True:
            found.append(ws.recv(timeout=0.2))
    return found


def wait_until_every_member_hears(hub: sockets.Hub, room: str, members: list[Any]) -> None:
    """Publish probes until each member got one: every process's reader is
    running. Then drop the probes."""
    deadline = time.monotonic() + T
    heard = [False] * len(members)
    while not all(heard):
        assert time.monotonic() < deadline, f"probes not heard: {heard}"
        hub.publish(room, "probe")
        for index, ws in enumerate(members):
            with contextlib.suppress(TimeoutError):
                if ws.recv(timeout=0.1) == "probe":
                    heard[index] = True
    for ws in members:
        drain(ws)


def test_a_hub_made_before_gunicorn_forks_delivers_in_every_worker(
    redis: RedisServer, tmp_path: Path
) -> None:
    name = new_room()
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(
            gunicorn_server(
                tmp_path / "preload.log",
                threads=20,
                extra=("-w", "2", "--preload"),
                env={"FSC_TEST_HUB_URL": redis.url},
                app_spec="tests.hub_app:app",
            )
        )
        by_pid = members_on_each_worker(stack, server, name, workers=2, each=2)
        members = [ws for group in by_pid.values() for ws in group]
        publisher = stack.enter_context(hub_at(redis.url))
        wait_until_every_member_hears(publisher, name, members)
        for index, ws in enumerate(members):
            ws.send(f"from {index}")
        expected = sorted(f"from {index}" for index in range(len(members)))
        for ws in members:
            assert sorted(ws.recv(timeout=T) for _ in members) == expected
        # Members of both workers share the first member numbers: an
        # exclusion made in one worker must not apply in the other.
        for index, ws in enumerate(members):
            ws.send(f"exclude-member:{index}")
        for index, ws in enumerate(members):
            got = sorted(ws.recv(timeout=T) for _ in range(len(members) - 1))
            assert got == sorted(
                f"exclude-member:{other}" for other in range(len(members)) if other != index
            )
        for ws in members:
            assert drain(ws) == []


# -- A.2: secrets -----------------------------------------------------------

SECRET = "s3cr%t-pw"
QUOTED_SECRET = "s3cr%25t-pw"


def secret_urls(port: int) -> list[str]:
    return [
        f"redis://:{QUOTED_SECRET}@127.0.0.1:{port}/0",
        f"redis://someone:{QUOTED_SECRET}@127.0.0.1:{port}/0",
        f"redis://127.0.0.1:{port}/0?password={QUOTED_SECRET}",
        f"redis://127.0.0.1:{port}/0?db=0&password={QUOTED_SECRET}&socket_timeout=2",
        f"redis://:{QUOTED_SECRET}@[::1]:{port}/0",
        # TLS to a port with nothing behind it (a plain Redis would hold the
        # handshake until a timeout).
        f"rediss://:{QUOTED_SECRET}@127.0.0.1:{free_port()}/0",
        f"unix://:{QUOTED_SECRET}@/nonexistent/redis.sock?db=0",
    ]


def mistyped_urls(port: int) -> list[str]:
    return [
        f"reddis://:{QUOTED_SECRET}@127.0.0.1:{port}/0",
        f"redis//:{QUOTED_SECRET}@127.0.0.1:{port}/0",
        f"http://someone:{QUOTED_SECRET}@127.0.0.1:{port}/0",
        f"redis://someone:{QUOTED_SECRET}/0",  # no '@': the password reads as a port
        f"redis://:{QUOTED_SECRET}@[::1:{port}/0",  # unclosed IPv6 bracket
        f"redis://:{QUOTED_SECRET}@127.0.0.1:{port}/zero",
    ]


def texts_of(exc: BaseException) -> list[str]:
    return ["".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), repr(exc)]


@contextlib.contextmanager
def redis_requiring(password: str) -> Iterator[int]:
    """A redis-server that requires ``password``; yields its port."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--requirepass", password, "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )  # fmt: skip
    try:
        client = redis_py.Redis(port=port, password=password, socket_connect_timeout=1)
        deadline = time.monotonic() + T
        while True:
            try:
                client.ping()
                break
            except redis_py.exceptions.ConnectionError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.02)  # redis-server offers no readiness signal but PING
        client.close()
        yield port
    finally:
        process.terminate()
        process.wait(T)


def record_texts(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(
        record.getMessage()
        + ("".join(traceback.format_exception(*record.exc_info)) if record.exc_info else "")
        for record in caplog.records
    )


def failing_hub_texts(url: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Everything a hub for ``url`` that cannot reach Redis shows: its repr,
    url and attributes, the exceptions of publish and presence, and what the
    reader logs."""
    hub = sockets.Hub.from_url(url)
    texts = [repr(hub), str(hub.url), str(vars(hub)), repr(vars(hub._transport))]
    try:
        for call in (lambda: hub.publish(new_room(), "x"), lambda: hub.presence(new_room())):
            with pytest.raises(sockets.HubUnavailable) as unavailable:
                call()
            texts += texts_of(unavailable.value)
        with hub.join(new_room(), sender_channel()):
            wait_for(
                lambda: "reconnecting" in record_texts(caplog), T, "the reader's failure logged"
            )
    finally:
        hub.close()
    texts.append(record_texts(caplog))
    caplog.clear()
    return texts


@pytest.mark.parametrize("listening", [True, False], ids=["wrong-password", "nothing-listening"])
def test_no_password_in_exceptions_logs_or_reprs(
    caplog: pytest.LogCaptureFixture, listening: bool
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with redis_requiring("another-password") as port:
        port = port if listening else free_port()
        for url in mistyped_urls(port):
            with pytest.raises(ValueError) as raised:
                sockets.Hub.from_url(url)
            texts += texts_of(raised.value)
        for url in secret_urls(port):
            texts += failing_hub_texts(url, caplog)
    assert len(texts) > 40
    assert [text for text in texts if SECRET in text or QUOTED_SECRET in text] == []


def test_no_password_in_what_a_working_hub_logs_or_shows(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    name, channel = new_room(), sender_channel()
    with redis_requiring(SECRET) as port:
        url = f"redis://:{QUOTED_SECRET}@127.0.0.1:{port}/0"
        with hub_at(url, history=5) as hub, hub.join(name, channel, presence="me"):
            assert hub.wait_ready(T)
            hub.publish(name, "works")
            assert receive(channel) == "works"
            assert hub.presence(name) == ["me"]
            (reader,) = hub_connections(f"redis://:{QUOTED_SECRET}@127.0.0.1:{port}/0", "reader")
            texts = [
                repr(hub),
                str(hub.url),
                str(vars(hub)),
                repr(vars(hub._transport)),
                str(reader),
            ]
    texts.append(record_texts(caplog))
    assert [text for text in texts if SECRET in text or QUOTED_SECRET in text] == []


def test_hub_url_and_repr_name_the_server_without_the_password() -> None:
    hub = sockets.Hub.from_url(f"redis://someone:{QUOTED_SECRET}@[::1]:6390/2?password=x")
    assert hub.url == "redis://someone:***@[::1]:6390/2?password=***"
    assert "[::1]:6390" in repr(hub) and SECRET not in repr(hub)


# -- A.3: half-open connections, and what wait_ready() means -----------------


def test_wait_ready_is_false_until_the_reader_reads(redis: RedisServer) -> None:
    admin = redis_py.Redis.from_url(redis.url)
    admin.execute_command(
        "ACL", "SETUSER", "hub", "on", ">hub-pw", "~*", "&*", "+@all", "-xread", "-evalsha", "-eval"
    )
    url = f"redis://hub:hub-pw@127.0.0.1:{redis.port}/0"
    try:
        with hub_at(url) as hub, hub.join(new_room(), sender_channel()):
            assert not hub.wait_ready(wait_time(1))
            admin.execute_command("ACL", "SETUSER", "hub", "+xread", "+evalsha", "+eval")
            assert hub.wait_ready(wait_time(10))
    finally:
        admin.close()


def test_a_killed_reader_connection_is_replaced_and_nothing_is_lost(redis: RedisServer) -> None:
    name = new_room()
    channel = sender_channel()
    with hub_at(redis.url) as hub, hub_at(redis.url) as publisher, hub.join(name, channel):
        assert hub.wait_ready(T)
        reader = the_reader(redis.url)
        admin = redis_py.Redis.from_url(redis.url)
        try:
            admin.execute_command("CLIENT", "KILL", "ID", reader["id"])
            publisher.publish(name, "while it was away")
            assert receive(channel) == "while it was away"
            replacement = the_reader(redis.url)
            assert replacement["id"] != reader["id"]
            assert hub.reconnects == 1  # Sockets.stats()["hub"]["reconnects"]
        finally:
            admin.close()


@pytest.mark.slow
def test_a_half_open_reader_connection_is_detected_within_30_seconds(
    redis: RedisServer, proxy: Proxy
) -> None:
    name = new_room()
    channel = sender_channel()
    with hub_at(proxy.url()) as hub, hub_at(redis.url) as publisher, hub.join(name, channel):
        assert hub.wait_ready(T)
        publisher.publish(name, "before")
        assert receive(channel) == "before"
        reader = the_reader(redis.url)
        proxy.hold_all()  # the reader's connection stays open and carries nothing
        started = time.monotonic()
        publisher.publish(name, "during")
        assert receive(channel, timeout=30) == "during"
        assert time.monotonic() - started < 30
        proxy.release()
        # The hub closed its end of the dead connection; the proxy, released,
        # passes that on to Redis, which then drops the client: soon, not at
        # once. A hub that kept the connection would fail this.
        wait_for(
            lambda: (
                reader["id"]
                not in [r["id"] for r in hub_connections(redis.url, "reader", os.getpid())]
            ),
            10,
            "the half-open reader connection was closed",
        )


# -- A.4: HubUnavailable says whether the message may have gone ---------------


def test_publish_with_no_connection_raises_not_delivered() -> None:
    with (
        hub_at(f"redis://127.0.0.1:{free_port()}/0") as hub,
        pytest.raises(sockets.HubUnavailable) as raised,
    ):
        hub.publish(new_room(), "lost")
    assert raised.value.maybe_delivered is False
    assert "not sent" in str(raised.value)
    assert isinstance(raised.value, sockets.SocketsError)


def test_publish_that_times_out_after_writing_may_still_be_delivered(
    redis: RedisServer, proxy: Proxy
) -> None:
    name = new_room()
    channel = sender_channel()
    with (
        hub_at(redis.url) as subscriber,
        subscriber.join(name, channel),
        hub_at(proxy.url() + "?socket_timeout=0.5") as hub,
    ):
        assert subscriber.wait_ready(T)
        hub.publish(name, "warm")  # the publisher's connection is open
        assert receive(channel) == "warm"
        proxy.hold_replies()  # Redis runs what it gets; its answers never come
        with pytest.raises(sockets.HubUnavailable) as raised:
            hub.publish(name, "maybe")
        assert raised.value.maybe_delivered is True
        assert "may be delivered" in str(raised.value)
        assert "not sent" not in str(raised.value)
        assert receive(channel) == "maybe"  # and so it was


# -- B: presence across processes --------------------------------------------


def hub_app_server(tmp_path: Path, name: str, url: str, *extra: str, history: int = 0) -> Any:
    """tests/hub_app.py under gunicorn gthread, sharing the hub at ``url``."""
    env = {"FSC_TEST_HUB_URL": url}
    if history:
        env["FSC_TEST_HUB_HISTORY"] = str(history)
    return gunicorn_server(
        tmp_path / f"{name}.log", threads=20, extra=extra, env=env, app_spec="tests.hub_app:app"
    )


def presence_query(value: Any) -> str:
    return "?presence=" + urllib.parse.quote(json.dumps(value))


def presence_of(server: Server, room: str) -> Any:
    status, body = server.get(f"/presence/{room}")
    assert status == 200, body
    return json.loads(body)


def test_presence_lists_the_members_of_every_process(redis: RedisServer, tmp_path: Path) -> None:
    name = new_room()
    with (
        contextlib.ExitStack() as stack,
        hub_app_server(tmp_path, "first", redis.url) as first,
        hub_app_server(tmp_path, "second", redis.url) as second,
        hub_at(redis.url) as outside,
    ):
        ann, _ = open_member(stack, first, name, presence_query("ann"))
        open_member(stack, second, name, presence_query({"name": "bob"}))
        open_member(stack, second, name)  # no presence: not listed
        expected = sorted(["ann", {"name": "bob"}], key=json.dumps)
        assert presence_of(first, name) == expected
        assert presence_of(second, name) == expected
        assert sorted(outside.presence(name), key=json.dumps) == expected
        ann.close()  # leaving takes ann out at once, in every process
        wait_for(lambda: presence_of(second, name) == [{"name": "bob"}], T, "ann gone")
        assert outside.presence(name) == [{"name": "bob"}]


@pytest.mark.slow
def test_a_process_killed_without_leaving_drops_out_of_presence_within_30_seconds(
    redis: RedisServer, tmp_path: Path
) -> None:
    name = new_room()
    with (
        contextlib.ExitStack() as stack,
        hub_app_server(tmp_path, "survivor", redis.url) as survivor,
        hub_app_server(tmp_path, "victim", redis.url) as victim,
        hub_at(redis.url) as outside,
    ):
        open_member(stack, survivor, name, presence_query("stays"))
        _, pid = open_member(stack, victim, name, presence_query("killed"))
        assert sorted(outside.presence(name)) == ["killed", "stays"]
        os.kill(pid, signal.SIGKILL)  # no leave, no clean-up: gone
        took = wait_for(lambda: outside.presence(name) == ["stays"], 30, "killed member gone")
        assert took < 30
        assert presence_of(survivor, name) == ["stays"]


# -- B: history across processes ----------------------------------------------


class Publisher:
    """tests/hub_publisher.py in a process of its own."""

    def __init__(
        self,
        url: str,
        room: str,
        count: int,
        pace: float,
        history: int = 0,
        prefix: tuple[str, ...] = (),
        retry: bool = False,
        pause_at: int | None = None,
    ) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        pause = ["--pause-at", str(pause_at)] if pause_at is not None else []
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "tests.hub_publisher", url, room, str(count),
             str(pace), str(history), *(["--retry"] if retry else []), *pause],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        self.published = 0
        self.done = False
        self.outages: list[float] = []  # with retry: how long each publish was refused
        self.maybe: list[int] = []  # with retry: numbers that may have been delivered
        self.paused = False  # with pause_at: waiting for resume()
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="test publisher output")
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.strip())
        self._lines.put("")  # the process ended

    def wait_for(self, count: int | None, timeout: float = 60) -> int:
        """Wait until ``count`` messages are out (None: all); return how
        many are."""
        deadline = time.monotonic() + wait_time(timeout)
        while not self.done and (count is None or self.published < count):
            self._take(deadline)
        return self.published

    def wait_until_paused(self, timeout: float = 60) -> None:
        """Wait for ``pause_at``: that many published, none in flight."""
        deadline = time.monotonic() + wait_time(timeout)
        while not self.paused:
            assert not self.done, "the publisher ended without pausing"
            self._take(deadline)

    def _take(self, deadline: float) -> None:
        """Read one line of the publisher's output."""
        line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        assert line, f"the publisher ended early: {self.process.wait(T)}"
        if line == "done":
            self.done = True
        elif line.startswith("outage "):
            self.outages.append(float(line.split()[1]))
        elif line.startswith("maybe "):
            self.maybe.append(int(line.split()[1]))
        elif line.startswith("paused "):
            self.paused = True
        else:
            self.published = int(line)

    def resume(self) -> None:
        """Go on after ``pause_at`` (see tests/hub_publisher.py)."""
        assert self.paused and self.process.stdin is not None
        self.paused = False
        self.process.stdin.write("\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(T)
        self._reader.join(T)
        assert self.process.stdout is not None
        self.process.stdout.close()


@contextlib.contextmanager
def publishing(url: str, room: str, count: int, pace: float, **options: Any) -> Iterator[Publisher]:
    """A started :class:`Publisher` (``room``: one, or several joined by
    commas; ``options``: ``history``, ``prefix`` (``ip netns exec NS``),
    ``retry``), stopped on leaving."""
    publisher = Publisher(url, room, count, pace, **options)
    try:
        yield publisher
    finally:
        publisher.stop()


class Collector:
    """Receives a member's messages in a thread of its own (so that the
    member never backs up) until ``last`` arrives."""

    def __init__(self, ws: ClientConnection, last: str, first: list[str] | None = None) -> None:
        self.ws = ws
        self.last = last
        self.messages: list[str] = list(first or [])
        self._thread = threading.Thread(target=self._run, name="test collector")
        self._thread.start()

    def _run(self) -> None:
        if self.last in self.messages:
            return  # it came before the collector: in a replay that had every message
        deadline = time.monotonic() + wait_time(60)  # well inside the test timeout
        while time.monotonic() < deadline:
            try:
                message = self.ws.recv(timeout=1)
            except TimeoutError:
                continue
            except Exception:  # the connection ended: the test sees what came
                return
            assert isinstance(message, str)
            self.messages.append(message)
            if message == self.last:
                return

    def numbers(self, timeout: float = 60) -> list[int]:
        """The numbers of the ``n-<number>`` messages received, once done."""
        self._thread.join(wait_time(timeout))
        assert not self._thread.is_alive(), (
            f"{self.last} never came: {len(self.messages)} messages, the last {self.messages[-3:]}"
        )
        return [int(m[2:]) for m in self.messages if m.startswith("n-")]


def test_what_is_published_once_a_process_first_join_returned_reaches_its_members(
    redis: RedisServer,
) -> None:
    """A process's first join starts its reader, which connects a moment
    later: a message published once ``join`` has returned, by this process
    or another, still reaches the new member. Twenty fresh hubs."""
    name = new_room()
    with hub_at(redis.url) as elsewhere:
        for attempt in range(20):
            inbox = sender_channel()
            with hub_at(redis.url) as hub, hub.join(name, inbox):
                hub.publish(name, f"own-{attempt}")
                elsewhere.publish(name, f"other-{attempt}")
                assert [receive(inbox), receive(inbox)] == [f"own-{attempt}", f"other-{attempt}"]


def test_the_first_member_of_a_new_hub_joining_with_replay_misses_nothing(
    redis: RedisServer,
) -> None:
    """A process's first join starts its reader, which picks where in the
    stream to read from. The replay must meet the live messages however
    late the reader starts: what is published between the history read and
    the reader's first read is neither lost nor sent twice. A publisher
    publishes without pause while fresh hubs join, twenty times."""
    name, stop = new_room(), threading.Event()
    published = [0]

    def publish() -> None:
        with hub_at(redis.url, history=5000) as publisher:
            while not stop.is_set():
                publisher.publish(name, f"n-{published[0]}")
                published[0] += 1

    thread = threading.Thread(target=publish, name="test publisher")
    thread.start()
    try:
        for _ in range(20):
            inbox = sender_channel()
            with hub_at(redis.url, history=5000) as hub, hub.join(name, inbox, replay=True):
                until = published[0] + 200  # well past the reader's start
                numbers: list[int] = []
                while not numbers or numbers[-1] < until:
                    numbers.append(int(receive(inbox)[2:]))
            assert numbers == list(range(numbers[0], numbers[-1] + 1)), [
                (a, b) for a, b in zip(numbers, numbers[1:]) if b != a + 1
            ]
    finally:
        stop.set()
        thread.join(T)


def test_members_joining_with_replay_while_another_process_publishes_miss_nothing(
    redis: RedisServer, tmp_path: Path
) -> None:
    name, count, history = new_room(), 1000, 300
    joined: list[tuple[int, Collector]] = []
    with (
        contextlib.ExitStack() as stack,
        hub_app_server(tmp_path, "replay", redis.url, "-w", "2", history=history) as server,
        publishing(redis.url, name, count, 0.003, history=history) as publisher,
    ):
        for mark in (100, 250, 400, 550, 700, 850):
            published_before = publisher.wait_for(mark)
            for _ in range(2):
                replayed: list[str] = []
                ws, _ = open_member(stack, server, name, "?replay=1", replayed)
                joined.append((published_before, Collector(ws, f"n-{count - 1}", replayed)))
        publisher.wait_for(None)
        for published_before, collector in joined:
            numbers = collector.numbers()
            # A gap-free, duplicate-free run to the end, that starts with
            # messages published before the member even connected.
            assert numbers == list(range(numbers[0], count))
            assert numbers[0] <= published_before


def test_a_publisher_without_history_keeps_what_the_readers_ask_for(redis: RedisServer) -> None:
    name = new_room()
    keeping = sender_channel()
    with hub_at(redis.url, history=3) as reader, reader.join(new_room(), keeping):
        assert reader.wait_ready(T)  # its first heartbeat says "keep 3"
        with hub_at(redis.url) as script:  # history=0, as a plain script has
            for number in range(5):
                script.publish(name, f"m{number}")
        late = sender_channel()
        with reader.join(name, late, replay=True):
            assert [receive(late) for _ in range(3)] == ["m2", "m3", "m4"]


def test_room_keys_in_redis_are_bounded_and_expire(redis: RedisServer) -> None:
    from flask_sockets_channels.transport import ROOM_TTL

    name = new_room()
    with hub_at(redis.url, history=4) as hub:
        for number in range(50):
            hub.publish(name, f"m{number}")
    client = redis_py.Redis.from_url(redis.url)
    try:
        key = f"flask-sockets-channels:history:{name}"
        assert client.xlen(key) == 4
        assert 0 < client.ttl(key) <= ROOM_TTL
    finally:
        client.close()


# -- B: no loss across blips --------------------------------------------------


def test_every_member_gets_every_message_once_in_order_across_three_connection_kills(
    redis: RedisServer, tmp_path: Path
) -> None:
    name, count = new_room(), 2000
    with (
        contextlib.ExitStack() as stack,
        hub_app_server(tmp_path, "blips", redis.url) as server,
        hub_at(redis.url) as prober,
    ):
        members = [open_member(stack, server, name)[0] for _ in range(4)]
        wait_until_every_member_hears(prober, name, members)
        pid = int(server.get("/pid")[1])
        collectors = [Collector(ws, f"n-{count - 1}") for ws in members]
        admin = stack.enter_context(contextlib.closing(redis_py.Redis.from_url(redis.url)))
        with publishing(redis.url, name, count, 0.002) as publisher:
            for mark in (500, 1000, 1500):
                publisher.wait_for(mark)
                killed = hub_connections(redis.url, "reader", pid)
                killed += hub_connections(redis.url, "publisher", pid)
                assert killed
                for client in killed:
                    admin.execute_command("CLIENT", "KILL", "ID", client["id"])
                wait_for(
                    lambda k=killed: [  # type: ignore[misc]
                        c
                        for c in hub_connections(redis.url, "reader", pid)
                        if c["id"] not in {x["id"] for x in k}
                    ],
                    30,
                    "the reader came back",
                )
            publisher.wait_for(None)
        for collector in collectors:
            assert collector.numbers() == list(range(count))
        for ws in members:
            assert drain(ws) == []  # and nothing twice


# -- B: publish from anywhere -------------------------------------------------


def run_publish_script(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """examples/publish.py, as its docstring runs it."""
    return subprocess.run(
        [sys.executable, "examples/publish.py", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=wait_time(30),
        check=False,
    )


def test_the_publish_script_reaches_the_members_of_every_worker(
    redis: RedisServer, tmp_path: Path
) -> None:
    name = new_room()
    with (
        contextlib.ExitStack() as stack,
        hub_app_server(tmp_path, "script", redis.url, "-w", "2", "--preload") as server,
        hub_at(redis.url) as prober,
    ):
        by_pid = members_on_each_worker(stack, server, name, workers=2, each=1)
        members = [ws for group in by_pid.values() for ws in group]
        wait_until_every_member_hears(prober, name, members)
        done = run_publish_script("--url", redis.url, name, "from a script")
        assert done.returncode == 0, done.stderr
        lines = '{"text": "one"}\n{"text": "two"}\n'
        done = run_publish_script("--url", redis.url, "--json", name, stdin=lines)
        assert done.returncode == 0, done.stderr
        for ws in members:
            assert [ws.recv(timeout=T) for _ in range(3)] == [
                "from a script",
                '{"text": "one"}',
                '{"text": "two"}',
            ]


def test_the_publish_script_says_when_nothing_was_sent() -> None:
    url = f"redis://:{QUOTED_SECRET}@127.0.0.1:{free_port()}/0"
    done = run_publish_script("--url", url, "lobby", "lost")
    assert done.returncode == 1
    assert "was not sent" in done.stderr and SECRET not in done.stderr


def test_after_redis_restarts_empty_delivery_resumes_and_presence_is_written_again(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    name, channel = new_room(), sender_channel()
    with (
        hub_at(redis.url) as hub,
        hub.join(name, channel, presence="me"),
        hub_at(redis.url) as outside,
    ):
        assert hub.wait_ready(T)
        outside.publish(name, "before")
        assert receive(channel) == "before"
        redis.stop()
        with pytest.raises(sockets.HubUnavailable) as raised:
            outside.publish(name, "during")
        assert raised.value.maybe_delivered is False
        redis.start()  # empty: no stream, no presence
        wait_for(lambda: hub.wait_ready(0), wait_time(15), "the reader is back")
        wait_for(lambda: outside.presence(name) == ["me"], wait_time(15), "presence written again")
        outside.publish(name, "after")
        assert receive(channel) == "after"
        assert channel.empty()  # "during" was never sent; nothing came twice
    assert "went back from" in caplog.text
