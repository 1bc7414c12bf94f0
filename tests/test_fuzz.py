"""A standing adversarial battery: random frame sequences, valid and not.

Each example opens a raw connection to an echo endpoint (with and without
permessage-deflate) and sends a random sequence of messages, cut into random
fragments (empty ones included) with pings in between, possibly followed by
one protocol violation, then a close. The server must echo every message in
order and answer the close, or fail the connection with the close code RFC
6455 names for the violation and end TCP. After each example a normal client
is served; after the run no library thread has died and peak memory stayed
within budget.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from tests.client import connect
from tests.conftest import Server, wait_time
from tests.wire import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, RawClient, frame

T = wait_time(5)


@dataclass
class Message:
    opcode: int
    payload: bytes
    cuts: list[int]  # fragment boundaries, sorted; duplicates make empty fragments
    pings: list[int]  # after which fragments a ping goes


@dataclass
class Violation:
    name: str
    wire: bytes
    codes: frozenset[int]


def messages() -> st.SearchStrategy[Message]:
    text = st.text(max_size=300).map(lambda s: (TEXT, s.encode()))
    binary = st.binary(max_size=300).map(lambda b: (BINARY, b))

    def cut(kind: tuple[int, bytes]) -> st.SearchStrategy[Message]:
        opcode, payload = kind
        points = st.lists(st.integers(0, len(payload)), max_size=4).map(sorted)
        pings = st.lists(st.integers(0, 4), max_size=2)
        return st.builds(Message, st.just(opcode), st.just(payload), points, pings)

    return st.one_of(text, binary).flatmap(cut)


PROTOCOL = frozenset({1002})
VIOLATIONS = [
    Violation("reserved opcode", frame(0x3, b"x"), PROTOCOL),
    Violation("reserved control opcode", frame(0xB, b""), PROTOCOL),
    Violation("rsv2 set", frame(TEXT, b"x", rsv=2), PROTOCOL),
    Violation("unmasked frame", frame(TEXT, b"x", mask=False), PROTOCOL),
    Violation("long ping", frame(PING, b"p" * 126), PROTOCOL),
    Violation("fragmented ping", frame(PING, b"p", fin=False), PROTOCOL),
    Violation("lone continuation", frame(CONTINUATION, b"x"), PROTOCOL),
    Violation("new message inside a message", frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"),
              PROTOCOL),
    Violation("invalid UTF-8", frame(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xed\xa0\x80"),
              frozenset({1007})),
    Violation("invalid UTF-8 in a fragment", frame(TEXT, b"ok", fin=False)
              + frame(CONTINUATION, b"\xff", fin=False), frozenset({1007})),
    Violation("close code 1005", frame(CLOSE, struct.pack("!H", 1005)), PROTOCOL),
    Violation("close code 999", frame(CLOSE, struct.pack("!H", 999)), PROTOCOL),
    Violation("close reason not UTF-8", frame(CLOSE, struct.pack("!H", 1000) + b"\xff"),
              frozenset({1002, 1007})),
    Violation("one-byte close", frame(CLOSE, b"\x03"), PROTOCOL),
]  # fmt: skip


class Deflate:
    """Both directions of permessage-deflate with context takeover."""

    def __init__(self) -> None:
        self.compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.decompressor = zlib.decompressobj(-15)

    def compress(self, payload: bytes) -> bytes:
        data = self.compressor.compress(payload) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        return data[:-4]

    def decompress(self, payload: bytes) -> bytes:
        return self.decompressor.decompress(payload + b"\x00\x00\xff\xff")


def wire(message: Message, deflate: Deflate | None) -> bytes:
    payload = deflate.compress(message.payload) if deflate else message.payload
    bounds = [0, *[min(c, len(payload)) for c in message.cuts], len(payload)]
    pieces = [payload[a:b] for a, b in zip(bounds, bounds[1:])]
    out = []
    for index, piece in enumerate(pieces):
        opcode = message.opcode if index == 0 else CONTINUATION
        rsv = 4 if deflate and index == 0 else 0
        out.append(frame(opcode, piece, fin=index == len(pieces) - 1, rsv=rsv))
        if index in message.pings and index < len(pieces) - 1:
            out.append(frame(PING, b"in between"))
    return b"".join(out)


def exchange(
    server: Server, sent: list[Message], violation: Violation | None, compress: bool
) -> None:
    with RawClient(server.port, timeout=10) as client:
        path = "/echo/deflate" if compress else "/echo/mixed"
        headers = {"Sec-WebSocket-Extensions": "permessage-deflate"} if compress else None
        status, fields, body = client.handshake(path, headers)
        assert status == 101, body
        deflate = Deflate() if compress else None
        if compress:
            assert "permessage-deflate" in fields.get("sec-websocket-extensions", "")
        client.send(b"".join(wire(m, deflate) for m in sent))
        expected = [(m.opcode, m.payload) for m in sent]
        if violation is None:
            # A close that arrives with the messages may overtake their
            # echoes (RFC 6455 §5.5.1): wait for them, as a client would.
            echoes = read_replies(client, deflate, len(sent))[0]
            client.send(frame(CLOSE, struct.pack("!H", 1000)))
            _, close = read_replies(client, deflate)
            assert echoes == expected
            assert close == 1000
        else:
            client.send(violation.wire)
            echoes, close = read_replies(client, deflate)
            # Failing fast may drop echoes still queued (SPEC §5).
            assert echoes == expected[: len(echoes)], violation.name
            assert close in violation.codes, (violation.name, close)
        client.sock.settimeout(T)
        assert client.read_rest() == b"", "bytes after the close frame"


def read_replies(
    client: RawClient, deflate: Deflate | None, count: int | None = None
) -> tuple[list[tuple[int, bytes]], int | None]:
    """Data messages until a close frame (or until ``count`` of them)."""
    echoes: list[tuple[int, bytes]] = []
    parts: list[bytes] = []
    opcode = 0
    compressed = False
    while count is None or len(echoes) < count:
        reply = client.read_frame()
        if reply.opcode == CLOSE:
            return echoes, reply.close_code
        if reply.opcode in (PING, PONG):
            continue
        if reply.opcode != CONTINUATION:
            opcode, parts = reply.opcode, []
            compressed = bool(reply.rsv & 4)
        parts.append(reply.payload)
        if reply.fin:
            payload = b"".join(parts)
            if deflate is not None and compressed:
                payload = deflate.decompress(payload)
            echoes.append((opcode, payload))
    return echoes, None


@settings(
    # Deterministic in CI (the same examples every run); FSC_FUZZ_EXAMPLES
    # runs more, with fresh randomness, for a longer hunt.
    max_examples=int(os.environ.get("FSC_FUZZ_EXAMPLES", 150)),
    derandomize="FSC_FUZZ_EXAMPLES" not in os.environ,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sent=st.lists(messages(), max_size=6),
    violation=st.one_of(st.none(), st.sampled_from(VIOLATIONS)),
    compress=st.booleans(),
)
def test_random_frames_get_an_rfc_answer_and_the_server_goes_on(
    server: Server, sent: list[Message], violation: Violation | None, compress: bool
) -> None:
    exchange(server, sent, violation, compress)
    with connect(f"{server.ws}/echo", open_timeout=T) as ws:
        ws.send("still serving")
        assert ws.recv(timeout=T) == "still serving"


def test_after_the_battery_no_thread_died_and_memory_stayed_bounded(server: Server) -> None:
    before = json.loads(server.get("/_memory")[1])
    log_start = len(server.log())
    test_random_frames_get_an_rfc_answer_and_the_server_goes_on(server)
    after = json.loads(server.get("/_memory")[1])
    log = server.log()[log_start:]
    assert "crashed" not in log
    assert "Traceback" not in log
    assert after["VmHWM"] - before["VmHWM"] < 32 * 1024, (before, after)


def test_deflate_with_a_corrupt_stream_fails_with_1002(server: Server) -> None:
    with RawClient(server.port) as client:
        status, _, _ = client.handshake(
            "/echo/deflate", {"Sec-WebSocket-Extensions": "permessage-deflate"}
        )
        assert status == 101
        client.send(frame(TEXT, b"\xff\xff\xff\xff not deflate", rsv=4))
        frames = client.read_until_close()
        assert frames[-1].close_code == 1002
