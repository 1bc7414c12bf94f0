"""The client of tests/test_network_faults.py, run in the peer's network
namespace: ``python -m tests.vanishing_client URL MODE``. Opens the
connection, answers pings (websockets' client does), says ``open`` on
stdout once the server's view is where the test wants it, then reads until
the connection ends, which it never sees once its link is down."""

from __future__ import annotations

import sys

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


def main(url: str, mode: str) -> None:
    with connect(url, open_timeout=30) as ws:
        assert ws.recv(timeout=30) == "ready"
        if mode == "paused":
            ws.send("first")
            ws.send("second")  # waits a minute for the rate limit
            assert ws.recv(timeout=30) == "got first"
        print("open", flush=True)
        try:
            while True:
                ws.recv()
        except ConnectionClosed:
            pass


if __name__ == "__main__":
    main(*sys.argv[1:])
