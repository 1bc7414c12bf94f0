"""What the library adds to one message, with no thread switch and no wait.

    python benchmarks/hot_path.py [--rounds 9] [--messages 20000] [--against REF]
    python benchmarks/hot_path.py --quick    # 1 round of 2,000 (CI)

A round trip's server time is the kernel (wake-ups, system calls), the
protocol engine (websockets' parser and framing) and the library's own
Python. rtt_raw.py and run.py measure the sum through a real server; this
takes the library's share apart, in one thread of this process, over a real
TCP loopback pair: the client end writes a masked 32-byte text frame, a
parked connection's ``receiver.get()`` reads it (in the caller's thread, as
a waiting view does) and ``sender.put()`` answers, and the client end reads
the answer. Each step finds its data already there, so nothing sleeps.

Measured in the same run, alternating, the median of ``--rounds``:

- ``syscalls``: the same system calls on the same pair without the library
  (``send``, ``poll``, ``recv``, ``send``, ``recv``);
- ``engine``: websockets' ``Protocol`` alone parsing that frame and framing
  the answer, no socket;
- ``ours``: the whole step through a ``Connection``.

``library`` = ours - syscalls - engine: the library's own time per message.
``--against REF`` measures ``flask_sockets_channels/`` as of git ``REF`` too
(``ours_at_ref``, ``library_at_ref``), in the same rounds: each ``ours`` runs
in a fresh process that imports the tree it measures.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from rtt_raw import ANSWER_SIZE, FRAME, read_answer  # noqa: E402
from run import ours_snapshot  # noqa: E402

WARMUP = 1000


def loopback_pair() -> tuple[socket.socket, socket.socket]:
    """A connected TCP pair on 127.0.0.1 (client end, server end)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    for sock in (client, server):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client, server


def per_message(step: Callable[[], object], count: int) -> float:
    """Microseconds per call of ``step``, over ``count`` calls."""
    for _ in range(min(count, WARMUP)):
        step()
    began = time.perf_counter()
    for _ in range(count):
        step()
    return (time.perf_counter() - began) / count * 1e6


def syscalls(count: int) -> float:
    client, server = loopback_pair()
    with client, server:
        waiter = select.poll()
        waiter.register(server, select.POLLIN)

        def step() -> None:
            client.send(FRAME)
            waiter.poll(1000)
            data = server.recv(1 << 16)
            server.send(data[:ANSWER_SIZE])
            read_answer(client)

        return per_message(step, count)


def engine(count: int) -> float:
    protocol = Protocol(Side.SERVER, state=State.OPEN, max_size=1 << 20)

    def step() -> None:
        protocol.receive_data(FRAME)
        for frame in protocol.events_received():
            assert isinstance(frame, Frame)
            Frame(Opcode.TEXT, frame.data).serialize(mask=False, extensions=[])

    return per_message(step, count)


def ours(count: int) -> float:
    """In a process whose ``sys.path`` starts with the tree to measure."""
    from flask_sockets_channels.connection import Connection
    from flask_sockets_channels.modes import MixedCodec
    from flask_sockets_channels.options import Options

    client, server = loopback_pair()
    protocol = Protocol(Side.SERVER, state=State.OPEN, max_size=1 << 20)
    options = Options(ping_period=None, pong_wait=None, log_level="Error")
    connection = Connection(server, protocol, options, MixedCodec())
    connection.start()
    get, put = connection.receiver.get, connection.sender.put

    def step() -> None:
        client.send(FRAME)
        put(get())
        read_answer(client)

    try:
        return per_message(step, count)
    finally:
        client.close()  # the connection reads the EOF and ends
        if not connection.done.wait(10):
            connection.abort()
        server.close()


def ours_in(tree: Path, count: int) -> float:
    """:func:`ours` for the package in ``tree``, in a fresh process."""
    command = [sys.executable, __file__, "--child", str(tree), "--messages", str(count)]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300)
    return float(output.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--messages", type=int, default=20000, help="per round and measure")
    parser.add_argument("--against", metavar="REF", help="also measure this git ref")
    parser.add_argument("--quick", action="store_true", help="1 round of 2,000")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        assert "flask_sockets_channels" not in sys.modules, "imported before its tree was chosen"
        sys.path.insert(0, str(args.child))
        print(ours(args.messages))
        return 0
    if args.quick:
        args.rounds, args.messages = 1, 2000
    trees = {"ours": ROOT}
    with tempfile.TemporaryDirectory() as scratch:
        if args.against:
            trees["ours_at_ref"] = ours_snapshot(args.against, Path(scratch))
        results: dict[str, list[float]] = {name: [] for name in ("syscalls", "engine", *trees)}
        for _ in range(args.rounds):
            results["syscalls"].append(syscalls(args.messages))
            results["engine"].append(engine(args.messages))
            for name, tree in trees.items():
                results[name].append(ours_in(tree, args.messages))
    medians = {name: statistics.median(values) for name, values in results.items()}
    summary: dict[str, object] = {f"{name}_us": round(value, 2) for name, value in medians.items()}
    floor = medians["syscalls"] + medians["engine"]
    summary["library_us"] = round(medians["ours"] - floor, 2)
    if args.against:
        summary["library_at_ref_us"] = round(medians["ours_at_ref"] - floor, 2)
        summary["ref"] = args.against
    summary["rounds"] = args.rounds
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
