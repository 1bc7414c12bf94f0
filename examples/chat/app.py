"""A chat: rooms from the URL, nicknames, join and leave notices.

One process, rooms in memory (after ``pip install -e .``)::

    python examples/chat/app.py [PORT]       # then open http://127.0.0.1:5000/

Several processes sharing rooms through Redis (``pip install -e .[redis]``)::

    SOCKETS_HUB_URL=redis://127.0.0.1:6379/0 \\
        gunicorn -k gthread -w 2 --threads 100 'examples.chat.app:app'

(``-c examples/gunicorn.conf.py`` adds a hook that closes the sockets at once
on SIGTERM.) The page at ``/room/<room>`` asks for a nickname and opens the
socket ``/ws/<room>?user=<nickname>``. Every frame is JSON: the client sends
``{"user": ..., "text": ...}`` and the server publishes it to the room as it
came, plus ``{"kind": "join" | "leave", "user": ...}`` notices.
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
    app.config.update(config or {})
    hub = sockets.Sockets(app).hub

    @app.route("/")
    def index() -> Any:
        return redirect(url_for("room_page", room="lobby"))

    @app.route("/room/<room>")
    def room_page(room: str) -> str:
        return render_template("index.html", room=room)

    @app.route("/ws/<room>")
    @sockets.json_messages(ChatMessage)
    def room_socket(room, receiver, sender):  # type: ignore[no-untyped-def]
        """Publish every message to the room, between a join and a leave notice."""
        user = request.args.get("user") or "anonymous"

        def publish(message: Any) -> None:
            try:
                hub.publish(room, message)
            except sockets.HubUnavailable:  # Redis is down: tell this client only
                with contextlib.suppress(sockets.Closed):
                    sender.put({"kind": "error", "text": "the chat is unavailable, try again"})

        with hub.join(room, sender):
            publish({"kind": "join", "user": user})
            try:
                for message in receiver:  # ends when the client goes away
                    publish(message)
            finally:
                publish({"kind": "leave", "user": user})

    return app


app = create_app()

if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    app.run("127.0.0.1", port, threaded=True)
