"""websockets' threaded sync server: the peer of benchmarks/run.py.

``python benchmarks/servers/websockets_server.py PORT``: every path is a
mixed-type echo. Compression off, no keepalive pings, inbound limit above
1 MiB; websockets sets TCP_NODELAY itself.
"""

from __future__ import annotations

import sys

from websockets.sync.server import ServerConnection, serve

MAX_MESSAGE_SIZE = 4 << 20


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


def main() -> None:
    port = int(sys.argv[1])
    with serve(
        echo,
        "127.0.0.1",
        port,
        compression=None,
        max_size=MAX_MESSAGE_SIZE,
        ping_interval=None,
    ) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
