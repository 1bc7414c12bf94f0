"""flask-sockets-channels under load: the app benchmarks/run.py serves.

werkzeug: ``python benchmarks/servers/ours_app.py PORT``
gunicorn: ``gunicorn -k gthread --threads 1100 --pythonpath benchmarks/servers ours_app:app``

Endpoints: ``/echo`` (mixed-type echo, no compression), ``/echo/deflate``
(the same with permessage-deflate accepted), ``/fanout/sub`` (a member of the
hub room "bench"), ``/fanout/pub`` (every message received is published to
the room). ``SOCKETS_HUB_URL`` in the environment selects the hub
(unset: in-process; ``redis://127.0.0.1:PORT``: through Redis).

TCP_NODELAY is set by the library. Keepalive pings stay at their defaults
(48 s): no ping is sent during a run.
"""

from __future__ import annotations

import os
import sys

from flask import Flask

import flask_sockets_channels as sockets

#: Inbound limit: large enough for the 1 MiB messages of the `large` scenario.
MAX_MESSAGE_SIZE = 4 << 20

app = Flask(__name__)
app.config["SOCKETS_HUB_URL"] = os.environ.get("SOCKETS_HUB_URL") or None
app.config["SOCKETS_LOG_LEVEL"] = sockets.LOG_LEVEL_WARNING
ext = sockets.Sockets(app)


@app.route("/")
def index() -> str:
    return "ours\n"


@app.route("/echo")
@sockets.mixed_messages(max_message_size=MAX_MESSAGE_SIZE)
def echo(receiver, sender):  # type: ignore[no-untyped-def]
    for message in receiver:
        sender.put(message)


@app.route("/echo/deflate")
@sockets.mixed_messages(max_message_size=MAX_MESSAGE_SIZE, compression=True)
def echo_deflate(receiver, sender):  # type: ignore[no-untyped-def]
    for message in receiver:
        sender.put(message)


@app.route("/fanout/sub")
@sockets.mixed_messages()
def fanout_sub(receiver, sender):  # type: ignore[no-untyped-def]
    with ext.hub.join("bench", sender):
        for _ in receiver:
            pass


@app.route("/fanout/pub")
@sockets.mixed_messages()
def fanout_pub(receiver):  # type: ignore[no-untyped-def]
    hub = ext.hub
    for message in receiver:
        hub.publish("bench", message)


if __name__ == "__main__":
    app.run("127.0.0.1", int(sys.argv[1]), threaded=True)
