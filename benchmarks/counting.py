#!/usr/bin/env python3
"""What counting costs per message (SPEC §11: under 1 µs).

A connection counts each echoed message four times: ``messages_in`` and
``bytes_in`` as it arrives (in ``Connection._decode`` and
``Assembler.add``), ``messages_out`` and ``bytes_out`` as it is serialised
(``Connection.serialize``). The extension adds nothing per message: it reads
these counters when a connection ends and when ``stats()`` is called. This
times those four increments on a real ``Connection`` against the same loop
without them, in one process::

    python benchmarks/counting.py
"""

from __future__ import annotations

import socket
import statistics
import time

from flask_sockets_channels import Options
from flask_sockets_channels.connection import Codec, Connection
from flask_sockets_channels.engine import Protocol, Side, State

ROUNDS, PER_ROUND = 7, 200_000


def main() -> int:
    ours, theirs = socket.socketpair()
    connection = Connection(ours, Protocol(Side.SERVER, state=State.OPEN), Options(), Codec())
    assembler = connection._assembler
    size = 32

    def counted() -> None:
        for _ in range(PER_ROUND):
            assembler.bytes_in += size
            connection.messages_in += 1
            connection.messages_out += 1
            connection.bytes_out += size

    def uncounted() -> None:
        for _ in range(PER_ROUND):
            pass

    def per_message(work: object) -> float:
        times = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            work()  # type: ignore[operator]
            times.append((time.perf_counter() - start) / PER_ROUND * 1e9)
        return statistics.median(times)

    with_counting, without = per_message(counted), per_message(uncounted)
    print(f"with counting {with_counting:.1f} ns, without {without:.1f} ns per message")
    print(f"counting costs {(with_counting - without) / 1000:.3f} µs per echoed message")
    ours.close()
    theirs.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
