"""flask-sockets-channels under load: the app benchmarks/run.py serves.

werkzeug: ``python benchmarks/servers/ours_app.py PORT``
gunicorn: ``gunicorn -k gthread --threads 1100 --pythonpath benchmarks/servers ours_app:app``

Endpoints: ``/echo`` (mixed-type echo, no compression), ``/echo/deflate``
(the same with permessage-deflate accepted), ``/fanout/sub`` (a member of the
hub room "bench"), ``/fanout/pub`` (every message received is published to
the room), ``/resume/<room>`` (a member of the room that resumes from the
browser client's ``since``, with envelopes; ``?plain=1``: without resuming;
benchmarks/resume.py). ``SOCKETS_HUB_URL`` in the environment selects the
hub (unset: in-process; ``redis://127.0.0.1:PORT``: through Redis),
``SOCKETS_HUB_HISTORY`` how many messages each room keeps. ``/threads``:
the library's threads (readers, writers, the timer) and all of the
process's (benchmarks/soak.py).

TCP_NODELAY is set by the library. Keepalive pings stay at their defaults
(48 s), so no ping is sent during a run of benchmarks/run.py;
``BENCH_PING_PERIOD`` and ``BENCH_PONG_WAIT`` set them (benchmarks/soak.py).
"""

from __future__ import annotations

import os
import sys
import threading

from flask import Flask, jsonify, request

import flask_sockets_channels as sockets

#: Inbound limit: large enough for the 1 MiB messages of the `large` scenario.
MAX_MESSAGE_SIZE = 4 << 20

app = Flask(__name__)

if "BENCH_SWITCH_INTERVAL" in os.environ:  # benchmarks/hold.py --switch-interval
    sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
app.config["SOCKETS_HUB_URL"] = os.environ.get("SOCKETS_HUB_URL") or None
app.config["SOCKETS_HUB_HISTORY"] = int(os.environ.get("SOCKETS_HUB_HISTORY", "0"))
app.config["SOCKETS_LOG_LEVEL"] = sockets.LOG_LEVEL_WARNING
if "BENCH_PING_PERIOD" in os.environ:
    app.config["SOCKETS_PING_PERIOD"] = float(os.environ["BENCH_PING_PERIOD"])
    app.config["SOCKETS_PONG_WAIT"] = float(os.environ["BENCH_PONG_WAIT"])
if "BENCH_IDLE_READER_TIMEOUT" in os.environ:  # benchmarks/hold.py --idle-reader-timeout
    # "none": a reader thread per connection, no parking.
    value = os.environ["BENCH_IDLE_READER_TIMEOUT"]
    app.config["SOCKETS_IDLE_READER_TIMEOUT"] = None if value == "none" else float(value)
ext = sockets.Sockets(app)


@app.route("/")
def index() -> str:
    return "ours\n"


@app.route("/threads")
def threads():  # type: ignore[no-untyped-def]
    names = [thread.name for thread in threading.enumerate()]
    library = [n for n in names if n.startswith("ws-") or n.startswith("flask-sockets-channels")]
    return jsonify(threads=len(names), library_threads=len(library))


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


@app.route("/resume/<room>")
@sockets.json_messages(heartbeat=True)
def resume(room, receiver, sender):  # type: ignore[no-untyped-def]
    since = None if request.args.get("plain") else request.args.get("since")
    with ext.hub.join(room, sender, since=since, envelope=True):
        for _ in receiver:
            pass


if __name__ == "__main__":
    app.run("127.0.0.1", int(sys.argv[1]), threaded=True)
