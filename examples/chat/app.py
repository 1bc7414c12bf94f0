"""A chat: rooms from the URL, nicknames, who's here, the last 50 messages.

One process, rooms in memory (after ``pip install -e .``)::

    python examples/chat/app.py [PORT]       # then open http://127.0.0.1:5000/

Several processes sharing rooms through Redis (``pip install -e .[redis]``)::

    SOCKETS_HUB_URL=redis://127.0.0.1:6379/0 \\
        gunicorn -k gthread -w 2 --threads 100 'examples.chat.app:app'

(``-c examples/gunicorn.conf.py`` adds a hook that closes the sockets at once
on SIGTERM.) The page at ``/room/<room>`` asks for a nickname and opens the
socket ``/ws/<room>?user=<nickname>`` with the library's browser client,
which reconnects by itself (a deploy, a laptop that slept) and resumes the
room from the last message the page shows: nothing twice, nothing missed,
or, when the room's history cannot cover the gap, the page is told and
starts over from it. Every frame is JSON: the client sends ``{"user": ...,
"text": ...}`` and the server publishes it to the room as it came, plus
``{"kind": "join" | "leave", "user": ..., "here": [...]}`` notices, where
``here`` is who is in the room, in every process (the hub's presence); the
hub delivers each with its position (``envelope=True``). A newcomer first
gets the room's last 50 messages (the hub's history,
``SOCKETS_HUB_HISTORY``). ``examples/publish.py --json`` posts to a room
from a shell.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, redirect, render_template, request, url_for

import flask_sockets_channels as sockets


@dataclass
class ChatMessage:
    """What a client sends: its nickname and a line of text."""

    user: str
    text: str


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The chat app. ``SOCKETS_HUB_URL`` comes from the environment (unset:
    in-process rooms), then ``config`` overrides any key."""
    app = Flask(__name__)
    app.config["SOCKETS_HUB_URL"] = os.environ.get("SOCKETS_HUB_URL") or None
    app.config["SOCKETS_HUB_HISTORY"] = 50
    app.config["SOCKETS_MAX_TOTAL_CONNECTIONS"] = 90
    app.config.update(config or {})
    extension = sockets.Sockets(app)
    hub = extension.hub

    @app.route("/")
    def index() -> Any:
        return redirect(url_for("room_page", room="lobby"))

    @app.route("/room/<room>")
    def room_page(room: str) -> str:
        # The page takes a connection that brought nothing (not even the
        # heartbeat sent with each ping) for pong_wait as dead.
        pong_wait = float(app.config.get("SOCKETS_PONG_WAIT", 60))
        return render_template("index.html", room=room, idle_timeout=int(pong_wait * 1000))

    @app.route("/stats")
    def stats() -> Any:
        figures = extension.stats()
        return {"open": figures["open"], "rejected": figures["rejected"]}

    @app.route("/ws/<room>")
    @sockets.json_messages(
        ChatMessage, max_connections_per_client=10, rate_limit=(20, 1.0), heartbeat=True
    )
    def room_socket(room, receiver, sender, connection):  # type: ignore[no-untyped-def]
        """The room's last messages (or, coming back, those the page
        missed), then live ones; every message to the room, between a join
        and a leave notice that say who is here."""
        user = request.args.get("user") or "anonymous"
        since = request.args.get("since")  # the browser client's last positions

        def tell(text: str) -> None:  # this client only
            with contextlib.suppress(sockets.Closed):
                sender.put({"kind": "error", "text": text})

        def publish(message: Any) -> None:
            try:
                hub.publish(room, message)
            except sockets.HubUnavailable:  # Redis is down
                tell("the chat is unavailable, try again")
            except ValueError:  # over the hub's max_message_size once JSON-escaped
                tell("that message is too long")

        def notice(kind: str) -> None:
            try:
                here = sorted(set(hub.presence(room)))
            except sockets.HubUnavailable:
                here = None
            publish({"kind": kind, "user": user, "here": here})

        try:
            member = hub.join(room, sender, presence=user, replay=True, since=since, envelope=True)
        except sockets.HubUnavailable:
            # The history cannot be read now: without it the page would miss
            # what it came back for. 1013: the client tries again later.
            connection.close(1013, "the chat is unavailable, try again later")
            return
        try:
            notice("join")
            for message in receiver:  # ends when the client goes away
                publish(message)
        finally:
            member.leave()
            notice("leave")

    return app


app = create_app()

if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    app.run("127.0.0.1", port, threaded=True)
