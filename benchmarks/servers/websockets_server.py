"""websockets' threaded sync server: the peer of benchmarks/run.py.

``python benchmarks/servers/websockets_server.py PORT``: the same endpoints
as ours_app.py and flask_sock_app.py, dispatched on the request path:

* ``/echo`` (and any other path): a mixed-type echo, compression off;
* ``/echo/deflate``: the same echo, with permessage-deflate accepted when
  the client offers it (websockets' default ``compression="deflate"``);
* ``/fanout/sub``: a member of the broadcast; ``/fanout/pub``: every message
  received is sent to every member. As with flask-sock, the broadcast is the
  hand-written one a websockets user writes: a set of connections, and a
  loop of ``ws.send`` in the publisher's thread.

The server is started with ``compression="deflate"``; ``process_request``
removes the client's ``Sec-WebSocket-Extensions`` offer on every path but
``/echo/deflate``, so that compression is off everywhere else. No keepalive
pings (``BENCH_PING_PERIOD`` and ``BENCH_PONG_WAIT`` turn them on, as in
ours_app.py), inbound limit above 1 MiB; websockets sets TCP_NODELAY itself. The
sync server runs one thread per connection.
"""

from __future__ import annotations

import os
import sys
import threading

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request
from websockets.sync.server import ServerConnection, serve

MAX_MESSAGE_SIZE = 4 << 20

if "BENCH_SWITCH_INTERVAL" in os.environ:  # benchmarks/hold.py --switch-interval
    sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
DEFLATE_PATH = "/echo/deflate"

members: set[ServerConnection] = set()
members_lock = threading.Lock()


def process_request(connection: ServerConnection, request: Request) -> None:
    """Compression only where the deflate scenario asks for it."""
    if request.path != DEFLATE_PATH and "Sec-WebSocket-Extensions" in request.headers:
        del request.headers["Sec-WebSocket-Extensions"]


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


def fanout_sub(ws: ServerConnection) -> None:
    with members_lock:
        members.add(ws)
    try:
        for _ in ws:
            pass
    finally:
        with members_lock:
            members.discard(ws)


def fanout_pub(ws: ServerConnection) -> None:
    for message in ws:
        with members_lock:
            targets = list(members)
        for target in targets:
            try:
                target.send(message)
            except ConnectionClosed:
                with members_lock:
                    members.discard(target)


ROUTES = {"/fanout/sub": fanout_sub, "/fanout/pub": fanout_pub}


def handler(ws: ServerConnection) -> None:
    ROUTES.get(ws.request.path if ws.request else "", echo)(ws)


def main() -> None:
    port = int(sys.argv[1])
    with serve(
        handler,
        "127.0.0.1",
        port,
        process_request=process_request,
        compression="deflate",
        max_size=MAX_MESSAGE_SIZE,
        # BENCH_PING_PERIOD: pings on, as in ours_app.py (benchmarks/hold.py)
        ping_interval=float(os.environ["BENCH_PING_PERIOD"])
        if "BENCH_PING_PERIOD" in os.environ
        else None,
        ping_timeout=float(os.environ.get("BENCH_PONG_WAIT", "20")),
    ) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
