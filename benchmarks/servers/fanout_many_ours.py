"""One room of many members on flask-sockets-channels: the app benchmarks/fanout_many.py serves.

``gunicorn -k gthread --threads 10100 --pythonpath benchmarks/servers fanout_many_ours:app``

Endpoints: ``/room`` (a member of the in-process hub room "many": it joins,
sends ``joined`` so that the client knows it is in the room, then reads
until the client closes), and ``GET /publish?seq=N&size=S``, which publishes
one text message of ``S`` bytes (``N`` as ten digits, then padding) to the
room and answers with how many members it was for. ``/`` answers "ours"
(the benchmark's readiness check).

Keepalive pings are off (``ping_period`` and ``pong_wait`` ``None``), as in
the websockets peer (benchmarks/servers/fanout_many_websockets.py), so that
nothing but the published messages reaches the members during a run.
"""

from __future__ import annotations

from flask import Flask, jsonify, request

import flask_sockets_channels as sockets

ROOM = "many"

app = Flask(__name__)
app.config["SOCKETS_HUB_URL"] = None  # in-process
app.config["SOCKETS_LOG_LEVEL"] = sockets.LOG_LEVEL_WARNING
app.config["SOCKETS_PING_PERIOD"] = None
app.config["SOCKETS_PONG_WAIT"] = None
ext = sockets.Sockets(app)


@app.route("/")
def index() -> str:
    return "ours\n"


@app.route("/room")
@sockets.messages()
def member(receiver, sender):  # type: ignore[no-untyped-def]
    with ext.hub.join(ROOM, sender):
        sender.put("joined")
        for _ in receiver:
            pass


@app.route("/publish")
def publish():  # type: ignore[no-untyped-def]
    seq = int(request.args["seq"])
    size = int(request.args.get("size", "64"))
    return jsonify(members=ext.hub.publish(ROOM, f"{seq:010d}".ljust(size, "x")))
