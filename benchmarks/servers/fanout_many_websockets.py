"""One room of many members on websockets' threaded sync server: the peer of
benchmarks/fanout_many.py.

``python benchmarks/servers/fanout_many_websockets.py PORT``

The same endpoints as fanout_many_ours.py. ``/room`` (any WebSocket path):
a member, added to a set of connections, sent ``joined``, then read until
the client closes. ``GET /publish?seq=N&size=S`` (a plain HTTP request,
answered from ``process_request`` in its connection's thread): the loop a
websockets user writes for the sync server (``websockets.broadcast`` is
asyncio's only), ``ws.send`` to every connection of the set, one after the
other, then the answer with how many there were. Any other plain HTTP
request: 200 "websockets" (the readiness check).

Compression and keepalive pings are off, as for ours; listen backlog 2048,
as gunicorn's. The sync server runs a thread per connection (and one that
reads its socket).
"""

from __future__ import annotations

import http
import json
import sys
import threading
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import ServerConnection, serve

members: set[ServerConnection] = set()
members_lock = threading.Lock()


def broadcast(message: str) -> int:
    with members_lock:
        targets = list(members)
    for target in targets:
        try:
            target.send(message)
        except ConnectionClosed:
            with members_lock:
                members.discard(target)
    return len(targets)


def process_request(connection: ServerConnection, request: Request) -> Response | None:
    if "Upgrade" in request.headers:
        return None  # a WebSocket handshake: go on
    url = urlsplit(request.path)
    if url.path != "/publish":
        return connection.respond(http.HTTPStatus.OK, "websockets\n")
    query = parse_qs(url.query)
    seq = int(query["seq"][0])
    size = int(query.get("size", ["64"])[0])
    count = broadcast(f"{seq:010d}".ljust(size, "x"))
    return connection.respond(http.HTTPStatus.OK, json.dumps({"members": count}))


def member(ws: ServerConnection) -> None:
    with members_lock:
        members.add(ws)
    try:
        ws.send("joined")
        for _ in ws:
            pass
    except ConnectionClosed:
        pass
    finally:
        with members_lock:
            members.discard(ws)


def main() -> None:
    port = int(sys.argv[1])
    with serve(
        member,
        "127.0.0.1",
        port,
        process_request=process_request,
        compression=None,
        ping_interval=None,
        backlog=2048,
    ) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
