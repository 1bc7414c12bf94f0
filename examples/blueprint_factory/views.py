"""The blueprint: two socket views and a plain HTTP view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, current_app

import flask_sockets_channels as sockets

live = Blueprint("live", __name__, url_prefix="/live")


@dataclass
class Numbers:
    """What a client sends to /live/sum."""

    numbers: list[float]  # checked on decoding: a message without a list is dropped

    def __post_init__(self) -> None:
        # Runs as a message is decoded: raising here drops the message, with a
        # DecodeError on `errors`, as a missing or mistyped field does.
        if not all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in self.numbers):
            raise ValueError("numbers must hold numbers only")


@live.route("/status")
def status() -> dict[str, Any]:
    """How many WebSockets this process has open (the extension's registry)."""
    extension = current_app.extensions["sockets_channels"]
    return {"open_connections": len(extension.connections)}


@live.route("/echo/<name>")
@sockets.messages()
def echo(name: str, receiver: sockets.Channel[str], sender: sockets.Channel[str]) -> None:
    """URL variables come first, then the channels the view names."""
    for message in receiver:
        sender.put(f"{name}: {message}")


@live.route("/sum")
@sockets.json_messages(Numbers, max_message_size=4096)
def add(receiver: sockets.Channel[Numbers], sender: sockets.Channel[Any]) -> None:
    """Answer each ``{"numbers": [...]}`` with ``{"sum": ...}``.

    A message that is not such an object is dropped, and a ``DecodeError``
    goes on ``errors`` (and to the log); the connection stays open.
    """
    for message in receiver:
        sender.put({"sum": sum(message.numbers)})
