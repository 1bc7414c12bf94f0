"""Views of the test app (tests/server_app.py) for what a raising user
callback and a peer repeating bad input may cost: each registers an
``on_error`` callback that raises, in whichever library thread meets the
error, and records what happened in the journal."""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask, request

import flask_sockets_channels as sockets
from tests.server_app import ChatMessage, journal, release_event


class RaisingCallback:
    """An ``on_error`` callback that raises, and records where it ran."""

    def __init__(self) -> None:
        self.calls = 0
        self.threads: list[str] = []

    def __call__(self, error: sockets.SocketsError) -> None:
        self.calls += 1
        self.threads.append(threading.current_thread().name)
        raise RuntimeError("the user's on_error callback raised")


def _outcome(
    connection: sockets.Connection, errors: sockets.Channel[Any], callback: RaisingCallback
) -> dict[str, Any]:
    done = connection.done.wait(30)
    return {
        "name": connection.name,
        "done": done,
        "close_code": connection.close_code,
        "errors": [type(error).__name__ for error in errors],
        "callback_threads": callback.threads,
    }


def register(app: Flask, websocket: bool) -> None:
    """Add the views to ``app`` (``websocket``: the rules must say so)."""

    @app.route("/callback/keepalive", websocket=websocket)
    @sockets.messages(ping_period=0.3, pong_wait=0.9, close_timeout=0.5)
    def callback_keepalive(receiver, sender, errors, connection):  # type: ignore[no-untyped-def]
        """A keepalive timeout: the timer thread runs the callback."""
        callback = RaisingCallback()
        connection.on_error(callback)
        sender.put("ready")
        for message in receiver:
            sender.put(message)
        journal.record(request.args.get("id"), _outcome(connection, errors, callback))

    @app.route("/callback/write-timeout", websocket=websocket)
    @sockets.byte_messages(write_wait=0.5, close_timeout=0.5)
    def callback_write_timeout(sender, errors, connection):  # type: ignore[no-untyped-def]
        """A write that times out: the writer thread runs the callback."""
        callback = RaisingCallback()
        connection.on_error(callback)
        chunk = b"z" * 65536
        put_raised = None
        try:
            for _ in range(100000):
                sender.put(chunk)
        except sockets.Closed:
            put_raised = "Closed"
        outcome = _outcome(connection, errors, callback)
        journal.record(request.args.get("id"), {**outcome, "put_raised": put_raised})

    @app.route("/callback/decode", websocket=websocket)
    @sockets.json_messages(ChatMessage, idle_reader_timeout=None)
    def callback_decode(receiver, sender, errors, connection):  # type: ignore[no-untyped-def]
        """Messages that do not decode: the reader thread runs the callback."""
        callback = RaisingCallback()
        connection.on_error(callback)
        sender.put("ready")
        for message in receiver:
            sender.put(message)
        journal.record(request.args.get("id"), _outcome(connection, errors, callback))

    @app.route("/callback/decode/parked", websocket=websocket)
    @sockets.json_messages(ChatMessage)
    def callback_decode_parked(receiver, sender, errors, connection):  # type: ignore[no-untyped-def]
        """As ``/callback/decode``, parked: the thread that reads (the view's
        own in its ``get``, or a worker of the poller) runs the callback."""
        callback = RaisingCallback()
        connection.on_error(callback)
        sender.put("ready")
        for message in receiver:
            sender.put(message)
        outcome = _outcome(connection, errors, callback)
        outcome["view_thread"] = threading.current_thread().name
        journal.record(request.args.get("id"), outcome)

    @app.route("/flood/undecodable", websocket=websocket)
    @sockets.json_messages(ChatMessage, recv_channel_buffer=10)
    def flood_undecodable(receiver, sender, errors, connection):  # type: ignore[no-untyped-def]
        """Echo what decodes; never read ``errors`` (it fills up)."""
        for message in receiver:
            sender.put(message)
        connection.done.wait(30)
        outcome = {"name": connection.name, "done": connection.done.wait(0)}
        journal.record(request.args.get("id"), {**outcome, "errors_held": errors.qsize()})

    @app.route("/hostile/deflate-unread", websocket=websocket)
    @sockets.byte_messages(compression=True)
    def hostile_deflate_unread(receiver, sender, errors, connection):  # type: ignore[no-untyped-def]
        """Reads nothing until released, then counts what arrives in order."""
        key = request.args.get("id", "")
        sender.put(b"ready")
        release_event(key).wait(60)
        count, in_order = 0, True
        for message in receiver:
            in_order = in_order and message[:8] == count.to_bytes(8, "big")
            count += 1
        connection.done.wait(30)
        journal.record(key, {"count": count, "in_order": in_order, "close": connection.close_code})
