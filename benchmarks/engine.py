#!/usr/bin/env python3
"""The protocol engine alone: wsproto against websockets' sans-I/O layer.

No sockets and no threads: each engine, as a server, parses client frames
from bytes and serialises its replies to bytes, which is all the work the
engine does in our server. Prints microseconds per operation (median of
several rounds) and the ratio wsproto / websockets in the same run::

    python benchmarks/engine.py

Scenarios: ``small`` (receive one masked 32-byte text message, send one),
``large`` (receive one masked 1 MiB binary message, in 64 KiB reads),
``deflate`` (``small`` with permessage-deflate on both sides).
Needs wsproto and websockets (benchmarks/requirements.txt).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Callable

from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN, SERVER, Protocol
from wsproto.connection import Connection as WsprotoConnection
from wsproto.connection import ConnectionType
from wsproto.events import BytesMessage, TextMessage
from wsproto.extensions import PerMessageDeflate as WsprotoDeflate

SMALL = b"x" * 32
LARGE = os.urandom(1 << 20)
READ_SIZE = 1 << 16


def client_frames(opcode: int, payload: bytes, count: int, deflate: bool = False) -> bytes:
    """``count`` masked frames as a client would send them."""
    extensions = []
    if deflate:
        extensions = [PerMessageDeflate(False, False, 15, 15)]
    return b"".join(
        Frame(opcode, payload).serialize(mask=True, extensions=extensions) for _ in range(count)
    )


def websockets_server(deflate: bool = False) -> Protocol:
    protocol = Protocol(SERVER, state=OPEN, max_size=None)
    if deflate:
        protocol.extensions = [PerMessageDeflate(False, False, 15, 15)]
    assert protocol.side is SERVER
    return protocol


def wsproto_server(deflate: bool = False) -> WsprotoConnection:
    extensions = []
    if deflate:
        extension = WsprotoDeflate()
        extension.finalize("permessage-deflate")
        extensions = [extension]
    return WsprotoConnection(ConnectionType.SERVER, extensions=extensions)


def run_small_websockets(wire: bytes, count: int, deflate: bool) -> None:
    protocol = websockets_server(deflate)
    protocol.receive_data(wire)
    for frame in protocol.events_received():
        protocol.send_text(frame.data.decode().encode())
    assert len(protocol.data_to_send()) == count


def run_small_wsproto(wire: bytes, count: int, deflate: bool) -> None:
    protocol = wsproto_server(deflate)
    protocol.receive_data(wire)
    out = [protocol.send(TextMessage(data=event.data)) for event in protocol.events()]
    assert len(out) == count


def run_large_websockets(wire: bytes) -> None:
    protocol = websockets_server()
    size = 0
    for start in range(0, len(wire), READ_SIZE):
        protocol.receive_data(wire[start : start + READ_SIZE])
        for frame in protocol.events_received():
            size += len(frame.data)
    assert size == len(LARGE)


def run_large_wsproto(wire: bytes) -> None:
    protocol = wsproto_server()
    size = 0
    for start in range(0, len(wire), READ_SIZE):
        protocol.receive_data(wire[start : start + READ_SIZE])
        for event in protocol.events():
            assert isinstance(event, BytesMessage)
            size += len(event.data)
    assert size == len(LARGE)


def measure(work: Callable[[], None], per: int, rounds: int = 7) -> float:
    """Median microseconds per operation over ``rounds`` runs of ``work``."""
    work()  # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) / per * 1e6)
    return statistics.median(times)


def main() -> int:
    count = 2000
    small = client_frames(Opcode.TEXT, SMALL, count)
    small_deflate = client_frames(Opcode.TEXT, SMALL, count, deflate=True)
    large = client_frames(Opcode.BINARY, LARGE, 1)
    rows = [
        (
            "small: receive + send 32 B text, µs",
            measure(lambda: run_small_wsproto(small, count, False), count),
            measure(lambda: run_small_websockets(small, count, False), count),
        ),
        (
            "deflate: receive + send 32 B text, µs",
            measure(lambda: run_small_wsproto(small_deflate, count, True), count),
            measure(lambda: run_small_websockets(small_deflate, count, True), count),
        ),
        (
            "large: receive 1 MiB binary, µs",
            measure(lambda: run_large_wsproto(large), 1),
            measure(lambda: run_large_websockets(large), 1),
        ),
    ]
    print(f"Python {sys.version.split()[0]}")
    print(f"{'scenario':42} {'wsproto':>10} {'websockets':>11} {'ratio':>7}")
    for name, wsproto_us, websockets_us in rows:
        ratio = wsproto_us / websockets_us
        print(f"{name:42} {wsproto_us:10.2f} {websockets_us:11.2f} {ratio:6.2f}x")

    return 0


if __name__ == "__main__":
    raise SystemExit(main())
