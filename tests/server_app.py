"""The app the tests serve, under werkzeug (in-process) and gunicorn.

Views that observe something record it in a journal, read back over HTTP
(``GET /_journal/<id>`` waits until the entry exists), so the same test runs
against an in-process server and a gunicorn subprocess alike. A client picks
the journal id with ``?id=...``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, abort, g, jsonify, request

import flask_sockets_channels as sockets
from flask_sockets_channels import Connection, parking


class Journal:
    """Entries recorded by views, waited on by tests."""

    def __init__(self) -> None:
        self._entries: dict[str, Any] = {}
        self._changed = threading.Condition()

    def record(self, key: str | None, value: Any) -> None:
        if key:
            with self._changed:
                self._entries[key] = value
                self._changed.notify_all()

    def wait(self, key: str, timeout: float) -> Any:
        with self._changed:
            if self._changed.wait_for(lambda: key in self._entries, timeout):
                return self._entries.pop(key)
        return None


journal = Journal()
releases: dict[str, threading.Event] = {}
releases_lock = threading.Lock()


def release_event(key: str) -> threading.Event:
    with releases_lock:
        return releases.setdefault(key, threading.Event())


@dataclass
class ChatMessage:
    user: str
    text: str


class Fussy:
    """A model whose constructor raises anything for some input."""

    def __init__(self, name: str) -> None:
        if name == "boom":
            raise RuntimeError("the model refused")
        self.name = name


@dataclass
class Checked:
    name: str

    def __post_init__(self) -> None:
        if self.name == "boom":
            raise LookupError("refused in __post_init__")


def _entry_id() -> str | None:
    return request.args.get("id")


def _report(
    connection: sockets.Connection, errors: sockets.Channel[Any], key: str | None, **extra: Any
) -> None:
    """Record how the connection ended, once `done` is set."""
    done = connection.done.wait(30)
    found = []
    for error in errors:
        found.append(
            {
                "type": type(error).__name__,
                "code": getattr(error, "code", None),
                "raw": getattr(error, "raw", None)
                if isinstance(getattr(error, "raw", None), str)
                else None,
            }
        )
    alive = [t.name for t in threading.enumerate() if t.name.startswith(connection.name + " ")]
    journal.record(
        key,
        {
            "done": done,
            "errors": found,
            "close_code": connection.close_code,
            "close_reason": connection.close_reason,
            "threads_alive": alive,
            **extra,
        },
    )


#: A thread stack larger than the machine's memory: ``pthread_create``
#: refuses it, as in a process at its thread limit (where the kernel maps
#: any size, ``vm.overcommit_memory=1``, threads still start: tests skip).
STACK_LARGER_THAN_MEMORY = 1 << 42


class ThreadsCanStartAgain(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The logger of the views that stop threads from starting. The library
    logs its error-level line before it cuts TCP: from that line on, threads
    can start again, so the client's next request is served (werkzeug and
    gunicorn's pool start threads for it; a pool that cannot kills the
    worker)."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level >= logging.ERROR and "stack_size" in g:
            threading.stack_size(g.pop("stack_size"))
        super().log(level, msg, *args, **kwargs)


threads_restoring_logger = ThreadsCanStartAgain(logging.getLogger("flask_sockets_channels"), {})


def no_thread_can_start() -> None:
    """From now until :class:`ThreadsCanStartAgain` logs an error or the
    request ends, no thread can start (a stack larger than the machine's
    memory)."""
    g.stack_size = threading.stack_size(STACK_LARGER_THAN_MEMORY)


def threads_can_start() -> None:
    if "stack_size" in g:
        threading.stack_size(g.pop("stack_size"))


def create_app(extension: bool = True) -> Flask:
    app = Flask(__name__)
    app.config["SOCKETS_CLOSE_TIMEOUT"] = 2
    log_path = os.environ.get("FSC_TEST_LOG")
    if log_path:
        logger = logging.getLogger("flask_sockets_channels")
        path = os.path.abspath(log_path)
        if not any(getattr(h, "baseFilename", None) == path for h in logger.handlers):
            handler = logging.FileHandler(path)
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
            logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    app.config["SOCKETS_HUB_URL"] = os.environ.get("FSC_TEST_HUB_URL") or None
    # A test publishes 32 MiB at once: more than the kernel takes in one write.
    app.config["SOCKETS_HUB_MAX_MESSAGE_SIZE"] = 64 << 20
    if extension:
        sockets.Sockets(app)
    websocket = not extension  # without the extension, rules must say so

    @app.route("/")
    def index() -> str:
        return "test app\n"

    @app.route("/_journal/<key>")
    def read_journal(key: str) -> Any:
        entry = journal.wait(key, float(request.args.get("timeout", 10)))
        if entry is None:
            abort(404)
        return jsonify(entry)

    @app.route("/_threads")
    def threads() -> Any:
        return jsonify(sorted(t.name for t in threading.enumerate()))

    @app.route("/_connections")
    def connections() -> Any:
        ext = app.extensions.get("sockets_channels")
        return jsonify(len(ext.connections) if ext else -1)

    @app.route("/_close_all")
    def close_all() -> Any:
        ext = app.extensions["sockets_channels"]
        count = len(ext.connections)
        ext.close_all()
        return jsonify(count)

    @app.route("/echo", websocket=websocket)
    @sockets.messages()
    def echo(receiver, sender):  # type: ignore[no-untyped-def]
        for message in receiver:
            sender.put(message)

    @app.route("/echo/bytes", websocket=websocket)
    @sockets.byte_messages()
    def echo_bytes(receiver, sender):  # type: ignore[no-untyped-def]
        for message in receiver:
            sender.put(message)

    @app.route("/echo/json", websocket=websocket)
    @sockets.json_messages()
    def echo_json(receiver, sender, errors, connection):  # type: ignore[no-untyped-def]
        for message in receiver:
            sender.put(message)
            while not errors.empty():
                error = errors.get()
                sender.put({"error": type(error).__name__, "raw": error.raw})

    @app.route("/echo/chat", websocket=websocket)
    @sockets.json_messages(ChatMessage)
    def echo_chat(receiver, sender, errors):  # type: ignore[no-untyped-def]
        for message in receiver:
            assert isinstance(message, ChatMessage)
            # The errors of the messages before this one are on `errors`
            # before this one is on `receiver`: report them first.
            while not errors.empty():
                error = errors.get()
                sender.put({"error": type(error).__name__, "raw": error.raw})
            sender.put(ChatMessage(user=message.user.upper(), text=message.text))

    @app.route("/echo/mixed", websocket=websocket)
    @sockets.mixed_messages(max_message_size=None)
    def echo_mixed(receiver, sender):  # type: ignore[no-untyped-def]
        for message in receiver:
            sender.put(message)

    @app.route("/probe", websocket=websocket)
    @sockets.messages(max_message_size=1024)
    def probe(receiver, sender, errors, connection):  # type: ignore[no-untyped-def]
        """Echo; after the end, record errors and close code."""
        for message in receiver:
            sender.put(message)
        _report(connection, errors, _entry_id())

    @app.route("/probe/json", websocket=websocket)
    @sockets.json_messages(ChatMessage)
    def probe_json(receiver, errors, connection):  # type: ignore[no-untyped-def]
        received = [message.text for message in receiver]
        _report(connection, errors, _entry_id(), received=received)

    @app.route("/return-after/<int:count>", websocket=websocket)
    @sockets.messages()
    def return_after(count, receiver, sender, errors, connection):  # type: ignore[no-untyped-def]
        """Reply `count` times to the first message, then return."""
        first = receiver.get()
        for index in range(count):
            sender.put(f"{first}-{index}")
        threading.Thread(target=_report, args=(connection, errors, _entry_id())).start()

    @app.route("/raise", websocket=websocket)
    @sockets.messages()
    def raises(receiver, sender, errors, connection):  # type: ignore[no-untyped-def]
        threading.Thread(target=_report, args=(connection, errors, _entry_id())).start()
        receiver.get()
        sender.put("queued before the error")
        raise RuntimeError("view failed on purpose")

    @app.route("/disconnect/<int:code>", websocket=websocket)
    @sockets.messages()
    def disconnect_view(code, receiver, sender, disconnect, errors, connection):  # type: ignore[no-untyped-def]
        receiver.get()
        sender.put("before close")
        disconnect.put((code, "bye"))
        started = time.monotonic()
        disconnect.put(4999)  # ignored, and must not block
        second_put = time.monotonic() - started
        try:
            sender.put("after close")
            put_after = "accepted"
        except sockets.Closed:
            put_after = "Closed"
        _report(connection, errors, _entry_id(), second_put=second_put, put_after=put_after)

    @app.route("/close/<int:code>", websocket=websocket)
    @sockets.messages()
    def close_view(code, receiver, connection, errors):  # type: ignore[no-untyped-def]
        receiver.get()
        connection.close(code, "closing on purpose")
        connection.close(4000, "ignored")
        _report(connection, errors, _entry_id())

    @app.route("/push/<int:count>", websocket=websocket)
    @sockets.messages(send_channel_buffer=4)
    def push(count, sender):  # type: ignore[no-untyped-def]
        for index in range(count):
            sender.put(str(index))

    @app.route("/kwargs/<name>/<int:number>", websocket=websocket)
    @sockets.messages()
    def all_kwargs(name, number, **kwargs):  # type: ignore[no-untyped-def]
        kwargs["sender"].put(json.dumps({"name": name, "number": number, "kwargs": sorted(kwargs)}))
        kwargs["receiver"].get()

    @app.route("/only-sender", websocket=websocket)
    @sockets.messages()
    def only_sender(sender):  # type: ignore[no-untyped-def]
        sender.put("hello")

    @app.route("/wrong-type/<mode>", websocket=websocket)
    @sockets.mixed_messages()
    def wrong_type(mode, sender):  # type: ignore[no-untyped-def]
        try:
            sender.put(12345)
        except TypeError as exc:
            sender.put(f"TypeError: {exc}")

    @app.route("/wrong-type-text", websocket=websocket)
    @sockets.messages()
    def wrong_type_text(sender):  # type: ignore[no-untyped-def]
        for item in (b"bytes", 1, None):
            try:
                sender.put(item)
                sender.put("accepted")
            except TypeError:
                sender.put("TypeError")

    @app.route("/subprotocols", websocket=websocket)
    @sockets.messages(subprotocols=("chat.v2", "chat.v1"))
    def subprotocols(sender, connection):  # type: ignore[no-untyped-def]
        sender.put(str(connection.subprotocol))

    @app.route("/any-origin", websocket=websocket)
    @sockets.messages(allowed_origin=None)
    def any_origin(sender):  # type: ignore[no-untyped-def]
        sender.put("ok")

    @app.route("/origin-list", websocket=websocket)
    @sockets.messages(allowed_origin=[r"https://example\.com", r"https://.*\.example\.com"])
    def origin_list(sender):  # type: ignore[no-untyped-def]
        sender.put("ok")

    @app.route("/origin-callable", websocket=websocket)
    @sockets.messages(allowed_origin=lambda origin, req: origin.endswith(".trusted.test"))
    def origin_callable(sender):  # type: ignore[no-untyped-def]
        sender.put("ok")

    @app.route("/_parked")
    def parked() -> Any:
        return jsonify(len(parking.lot))

    @app.route("/parking/<key>", websocket=websocket)
    @sockets.messages(idle_reader_timeout=0.1)
    def parking_echo(key, receiver, sender, errors, connection):  # type: ignore[no-untyped-def]
        """An echo whose reader parks after 0.1 s without input."""
        for message in receiver:
            sender.put(message)
        _report(connection, errors, key)

    @app.route("/parking-pinged/<key>", websocket=websocket)
    @sockets.messages(idle_reader_timeout=0.1, ping_period=0.2, pong_wait=0.8)
    def parking_pinged(key, receiver, sender, errors, connection):  # type: ignore[no-untyped-def]
        """The same, pinged every 0.2 s: a pong wakes the parked reader."""
        for message in receiver:
            sender.put(message)
        _report(connection, errors, key)

    @app.route("/wait-done", websocket=websocket)
    @sockets.messages()
    def wait_done(receiver, sender, done, errors, connection):  # type: ignore[no-untyped-def]
        """A view that only waits for the peer to go away."""
        sender.put("ready")
        done.wait(30)
        _report(connection, errors, _entry_id())

    @app.route("/wait-done/reader", websocket=websocket)
    @sockets.messages(idle_reader_timeout=None)
    def wait_done_reader(sender, done):  # type: ignore[no-untyped-def]
        """``/wait-done`` with a reader thread for the connection's life."""
        sender.put("ready")
        done.wait(30)

    @app.route("/misrouted")  # a plain rule: needs the extension
    @sockets.messages()
    def misrouted(sender):  # type: ignore[no-untyped-def]
        sender.put("routed")

    @app.route("/_release/<key>")
    def release(key: str) -> str:
        release_event(key).set()
        return "released\n"

    @app.route("/_rss")
    def rss() -> Any:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return jsonify(int(line.split()[1]))
        abort(500)

    @app.route("/keepalive", websocket=websocket)
    @sockets.messages(ping_period=0.3, pong_wait=0.9, close_timeout=0.5)
    def keepalive(receiver, sender, errors, connection):  # type: ignore[no-untyped-def]
        sender.put("ready")
        for message in receiver:
            sender.put(message)
        _report(connection, errors, _entry_id())

    @app.route("/vanish/<mode>", websocket=websocket)
    @sockets.messages(ping_period=0.5, pong_wait=1.5, close_timeout=0.5, rate_limit=(1, 60))
    def vanish(mode, receiver, sender, done, errors, connection):  # type: ignore[no-untyped-def]
        """A peer about to vanish without FIN or RST (tests/netns.py). The
        view only reads, only writes, or only waits; or the reader is
        paused for the rate limit (one message a minute; the client sends
        two)."""
        sender.put("ready")
        if mode == "writes":
            with contextlib.suppress(sockets.Closed):
                while True:
                    sender.put("x" * 1024)
        elif mode == "waits":
            done.wait()
        else:  # "reads", "paused"
            if mode == "paused":
                sender.put(f"got {receiver.get(timeout=10)}")  # the second waits
            for _ in receiver:
                pass
        _report(connection, errors, _entry_id(), ended_at=time.time())

    @app.route("/heartbeat", websocket=websocket)
    @sockets.messages(ping_period=0.3, pong_wait=0.9, heartbeat=True)
    def heartbeat(receiver, sender):  # type: ignore[no-untyped-def]
        sender.put("ready")
        for message in receiver:
            sender.put(message)

    @app.route("/put-after-close", websocket=websocket)
    @sockets.messages()
    def put_after_close(receiver, sender, done, errors, connection):  # type: ignore[no-untyped-def]
        """Lets `Closed` escape, as a plain echo loop does when the peer leaves."""
        for _ in receiver:
            pass
        done.wait(10)
        _report(connection, errors, _entry_id())
        sender.put("too late")  # raises Closed

    @app.route("/wait-done-fast", websocket=websocket)
    @sockets.messages(ping_period=0.3, pong_wait=0.9)
    def wait_done_fast(sender, done, errors, connection):  # type: ignore[no-untyped-def]
        """Never reads: only waits for the connection to end."""
        sender.put("ready")
        done.wait(30)
        _report(connection, errors, _entry_id())

    @app.route("/stall", websocket=websocket)
    @sockets.byte_messages(ping_period=0.3, pong_wait=0.9)
    def stall(receiver, sender, errors, connection):  # type: ignore[no-untyped-def]
        """Read nothing until released, then count what arrives in order."""
        key = _entry_id()
        sender.put(b"ready")
        release_event(key or "").wait(60)
        count, in_order = 0, True
        for message in receiver:
            in_order = in_order and message[:8] == count.to_bytes(8, "big")
            count += 1
        _report(connection, errors, key, count=count, in_order=in_order)

    @app.route("/firehose", websocket=websocket)
    @sockets.byte_messages(write_wait=0.5, close_timeout=0.5)
    def firehose(sender, errors, connection):  # type: ignore[no-untyped-def]
        """Send until the peer stops reading and the write times out."""
        key = _entry_id()
        chunk = b"z" * 65536
        put_raised = None
        try:
            for _ in range(100000):
                sender.put(chunk)
        except sockets.Closed:
            put_raised = "Closed"
        _report(connection, errors, key, put_raised=put_raised)

    @app.route("/echo/deflate", websocket=websocket)
    @sockets.mixed_messages(compression=True)
    def echo_deflate(receiver, sender):  # type: ignore[no-untyped-def]
        for message in receiver:
            sender.put(message)

    @app.route("/room/<room>", websocket=websocket)
    @sockets.messages()
    def room_view(room, receiver, sender):  # type: ignore[no-untyped-def]
        """Everything a member sends goes to the whole room, itself included."""
        room_member(room, receiver, sender)

    @app.route("/room/deflate/<room>", websocket=websocket)
    @sockets.messages(compression=True)
    def room_view_deflate(room, receiver, sender):  # type: ignore[no-untyped-def]
        """The same, with permessage-deflate when the client offers it."""
        room_member(room, receiver, sender)

    def room_member(room, receiver, sender):  # type: ignore[no-untyped-def]
        hub = app.extensions["sockets_channels"].hub
        with hub.join(room, sender, max_backlog=int(request.args.get("backlog", 1000))):
            sender.put(f"joined {room}")
            for message in receiver:
                try:
                    hub.publish(room, message)
                except sockets.HubUnavailable:
                    sender.put("hub unavailable")

    @app.route("/_publish/<room>")
    def publish(room: str) -> Any:
        hub = app.extensions["sockets_channels"].hub
        text, count = request.args.get("text", "m"), int(request.args.get("count", 1))
        text *= int(request.args.get("repeat", 1))
        if "no-threads" in request.args:  # as in a process at its thread limit
            no_thread_can_start()
        try:
            for index in range(count):
                hub.publish(room, f"{text}-{index}" if count > 1 else text)
        except sockets.HubUnavailable as exc:
            return str(exc) + "\n", 503
        finally:
            threads_can_start()
        return jsonify(len(hub.members(room)))

    @app.route("/page")
    def page() -> str:
        return "a page\n"

    @app.route("/page", websocket=True, endpoint="page_socket")
    @sockets.messages()
    def page_socket(sender):  # type: ignore[no-untyped-def]
        sender.put("socket at /page")

    @app.route("/_memory")
    def memory() -> Any:
        """This process's peak and current RSS (KiB) and its live Connections."""
        gc.collect()
        objects = gc.get_objects()
        figures = {
            "connections": sum(isinstance(o, Connection) for o in objects),
            "objects": len(objects),
        }
        with open("/proc/self/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in ("VmHWM", "VmRSS"):
                    figures[name] = int(value.split()[0])
        return jsonify(figures)

    @app.route("/hostile/deflate", websocket=websocket)
    @sockets.mixed_messages(compression=True)
    def hostile_deflate(receiver, sender, errors, connection):  # type: ignore[no-untyped-def]
        for message in receiver:
            sender.put(message)
        _report(connection, errors, _entry_id())

    @app.route("/hostile/json", websocket=websocket)
    @sockets.json_messages(Fussy)
    def hostile_json(receiver, sender, errors, connection):  # type: ignore[no-untyped-def]
        for message in receiver:
            sender.put({"name": message.name})
        _report(connection, errors, _entry_id())

    @app.route("/hostile/json-post-init", websocket=websocket)
    @sockets.json_messages(Checked)
    def hostile_json_post_init(receiver, sender, errors, connection):  # type: ignore[no-untyped-def]
        for message in receiver:
            sender.put({"name": message.name})
        _report(connection, errors, _entry_id())

    @app.route("/hostile/put-nowait", websocket=websocket)
    @sockets.byte_messages(write_wait=2, send_channel_buffer=4)
    def hostile_put_nowait(sender, errors, connection):  # type: ignore[no-untyped-def]
        """Push without waiting until the buffer is full; time every put."""
        chunk = b"n" * 65536
        slowest = {"put_nowait": 0.0, "put_timeout": 0.0}
        outcome = {"full": 0, "timeouts": 0}
        for _ in range(400):
            started = time.monotonic()
            try:
                sender.put_nowait(chunk)
            except queue.Full:
                outcome["full"] += 1
            except sockets.Closed:
                break
            slowest["put_nowait"] = max(slowest["put_nowait"], time.monotonic() - started)
        for _ in range(5):
            started = time.monotonic()
            try:
                sender.put(chunk, timeout=0.02)
            except queue.Full:
                outcome["timeouts"] += 1
            except sockets.Closed:
                break
            slowest["put_timeout"] = max(slowest["put_timeout"], time.monotonic() - started)
        release_event(_entry_id() or "").wait(30)
        _report(connection, errors, _entry_id(), slowest=slowest, **outcome)

    @app.route("/held/answer-then-wait", websocket=websocket)
    @sockets.messages()
    def held_answer_then_wait(receiver, sender):  # type: ignore[no-untyped-def]
        """Answer the first message of a burst while the rest wait on
        ``receiver``, then neither read nor write until released: the
        answer, held back for the next one, must go out on its own."""
        first = receiver.get(timeout=10)
        waiting = receiver.qsize()
        sender.put(f"answer:{first} waiting:{waiting}")
        release_event(_entry_id() or "").wait(30)
        for message in receiver:
            sender.put(f"answer:{message}")

    @app.route("/held/answer-then-return", websocket=websocket)
    @sockets.messages()
    def held_answer_then_return(receiver, sender):  # type: ignore[no-untyped-def]
        """Answer the first message of a burst, and return without reading
        the rest: the answer goes out before the close frame."""
        first = receiver.get(timeout=10)
        sender.put(f"answer:{first} waiting:{receiver.qsize()}")

    @app.route("/hostile/slow-reader", websocket=websocket)
    @sockets.byte_messages(ping_period=0.3, pong_wait=0.9, write_wait=5, close_timeout=0.5)
    def hostile_slow_reader(sender, errors, connection):  # type: ignore[no-untyped-def]
        """Push far more than the socket buffers hold to a client that reads
        slowly and never sends anything."""
        try:
            for index in range(100000):
                sender.put(index.to_bytes(8, "big") + b"s" * 16376)
        except sockets.Closed:
            pass
        _report(connection, errors, _entry_id())

    @app.before_request
    def no_thread_for_the_handshake() -> None:
        if request.path == "/hostile/no-thread":
            no_thread_can_start()

    @app.teardown_request
    def threads_start_after_the_request(exc: BaseException | None) -> None:
        threads_can_start()

    # A reader thread for the connection's life: the one that cannot start.
    # (Parked, it would need none once the poller runs.)
    @app.route("/hostile/no-thread", websocket=websocket)
    @sockets.messages(logger=threads_restoring_logger, idle_reader_timeout=None)
    def hostile_no_thread(sender):  # type: ignore[no-untyped-def]
        sender.put("the view ran")  # it must not: its connection could not start

    @app.route("/hostile/no-writer-thread", websocket=websocket)
    @sockets.byte_messages(logger=threads_restoring_logger)
    def hostile_no_writer_thread(sender, errors, connection):  # type: ignore[no-untyped-def]
        """Put more than the kernel takes at once while no thread can start,
        as in a process at its thread limit."""
        key = _entry_id()
        no_thread_can_start()
        try:
            probe = threading.Thread(target=lambda: None)
            try:
                probe.start()
            except RuntimeError:
                sender.put(b"w" * (32 << 20))
            else:  # this machine overcommits memory: no failure to provoke
                probe.join()
                journal.record(key, {"provoked": False})
                return
        finally:
            threads_can_start()
        try:
            sender.put(b"after")
            put_after = "sent"
        except sockets.Closed:
            put_after = "Closed"
        texts = []
        done = connection.done.wait(30)
        for error in errors:
            texts.append(f"{type(error).__name__}: {error}")
        journal.record(
            key,
            {
                "provoked": True,
                "done": done,
                "errors": texts,
                "close_code": connection.close_code,
                "put_after": put_after,
            },
        )

    blueprint = Blueprint("bp", __name__, url_prefix="/bp")

    @blueprint.route("/echo/<prefix>", websocket=websocket)
    @sockets.messages()
    def bp_echo(prefix, receiver, sender):  # type: ignore[no-untyped-def]
        for message in receiver:
            sender.put(f"{prefix}:{message}")

    app.register_blueprint(blueprint)

    from tests import hostile_views  # it imports this module

    hostile_views.register(app, websocket)
    return app


def app_from_env() -> Flask:
    """Entry point for gunicorn: ``tests.server_app:app_from_env()``."""
    return create_app(extension=os.environ.get("FSC_TEST_EXTENSION", "1") == "1")


def trusted_hosts_app() -> Flask:
    """The test app with Flask's ``TRUSTED_HOSTS`` set (gunicorn entry point:
    ``tests.server_app:trusted_hosts_app()``)."""
    app = create_app(extension=os.environ.get("FSC_TEST_EXTENSION", "1") == "1")
    app.config["TRUSTED_HOSTS"] = ["127.0.0.1", "localhost"]
    return app
