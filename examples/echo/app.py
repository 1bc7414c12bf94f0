"""Echo endpoints in the four modes.

Run: python examples/echo/app.py [PORT], then connect to
ws://127.0.0.1:PORT/echo (text), /echo/bytes, /echo/json, /echo/mixed.
/echo/deflate is /echo/mixed with permessage-deflate accepted (for
autobahn/run.py --deflate).
"""

from __future__ import annotations

import sys

from flask import Flask

import flask_sockets_channels as sockets

app = Flask(__name__)
sockets.Sockets(app)


@app.route("/")
def index() -> str:
    return "echo endpoints: /echo /echo/bytes /echo/json /echo/mixed\n"


@app.route("/echo")
@sockets.messages()
def echo(receiver, sender):  # type: ignore[no-untyped-def]
    for message in receiver:
        sender.put(message)


@app.route("/echo/bytes")
@sockets.byte_messages()
def echo_bytes(receiver, sender):  # type: ignore[no-untyped-def]
    for message in receiver:
        sender.put(message)


@app.route("/echo/json")
@sockets.json_messages(dict)
def echo_json(receiver, sender):  # type: ignore[no-untyped-def]
    for message in receiver:
        sender.put(message)


@app.route("/echo/mixed")
@sockets.mixed_messages(max_message_size=None)
def echo_mixed(receiver, sender):  # type: ignore[no-untyped-def]
    for message in receiver:
        sender.put(message)


@app.route("/echo/deflate")
@sockets.mixed_messages(compression=True, max_message_size=None)
def echo_deflate(receiver, sender):  # type: ignore[no-untyped-def]
    for message in receiver:
        sender.put(message)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    app.run("127.0.0.1", port, threaded=True)
