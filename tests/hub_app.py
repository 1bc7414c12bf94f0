"""The app the hub tests serve: its hub is made at import, as an app does
with ``hub = Sockets(app).hub`` at module level, so ``gunicorn --preload``
creates it in the master before the workers fork.

``FSC_TEST_HUB_URL`` picks the hub (unset: in-process) and
``FSC_TEST_HUB_HISTORY`` its history. A member's socket is
``/member/<room>``; it says ``joined <pid>`` once it is in the room and
publishes what its client sends (``exclude-member:``/``exclude-sender:``
prefixes publish to everyone but itself).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from flask import Flask, jsonify, request

import flask_sockets_channels as sockets


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["SOCKETS_HUB_URL"] = os.environ.get("FSC_TEST_HUB_URL") or None
    if os.environ.get("FSC_TEST_HUB_HISTORY"):
        app.config["SOCKETS_HUB_HISTORY"] = int(os.environ["FSC_TEST_HUB_HISTORY"])
    log_path = os.environ.get("FSC_TEST_LOG")
    if log_path:
        handler = logging.FileHandler(log_path)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        logger = logging.getLogger("flask_sockets_channels")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    hub = sockets.Sockets(app).hub

    @app.route("/")
    def index() -> str:
        return "ok\n"

    @app.route("/pid")
    def pid() -> str:
        return str(os.getpid())

    @app.route("/member/<room>")
    @sockets.messages()
    def member(room, receiver, sender):  # type: ignore[no-untyped-def]
        extra: dict[str, Any] = {}
        if "presence" in request.args:
            extra["presence"] = json.loads(request.args["presence"])
        if request.args.get("replay") == "1":
            extra["replay"] = True
        with hub.join(room, sender, **extra) as joined:
            sender.put(f"joined {os.getpid()}")
            for message in receiver:
                exclude: Any = None
                if message.startswith("exclude-member:"):
                    exclude = joined
                elif message.startswith("exclude-sender:"):
                    exclude = sender
                try:
                    hub.publish(room, message, exclude=exclude)
                except sockets.HubUnavailable:
                    sender.put("hub unavailable")

    @app.route("/presence/<room>")
    def presence(room: str) -> Any:
        return jsonify(sorted(hub.presence(room), key=json.dumps))

    @app.route("/publish/<room>")
    def publish(room: str) -> Any:
        return jsonify(hub.publish(room, request.args.get("text", "m")))

    return app


app = create_app()
