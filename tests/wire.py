"""A raw-socket WebSocket client for malformed traffic and exact wire checks."""

from __future__ import annotations

import base64
import os
import socket
import struct
from dataclasses import dataclass

from tests.conftest import wait_time

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def frame(
    opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0, mask: bool = True
) -> bytes:
    """One frame, masked as a client must (unless ``mask`` is false)."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_frame(code: int | None = 1000, reason: bytes = b"") -> bytes:
    payload = b"" if code is None else struct.pack("!H", code) + reason
    return frame(CLOSE, payload)


def request(
    path: str, host: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> bytes:
    """An upgrade request; ``headers`` add to or (value None) remove defaults."""
    fields: dict[str, str | None] = {
        "Host": host,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }
    fields.update(headers or {})
    lines = [f"{method} {path} HTTP/1.1"] + [
        f"{k}: {v}" for k, v in fields.items() if v is not None
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes
    rsv: int = 0

    @property
    def close_code(self) -> int | None:
        assert self.opcode == CLOSE
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def text(self) -> str:
        return self.payload.decode()


class RawClient:
    """A client that speaks bytes: handshake, then frames, read back exactly."""

    def __init__(self, port: int, timeout: float = 5) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=wait_time(timeout))
        self.buffer = b""
        self.host = f"127.0.0.1:{port}"

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def handshake(
        self,
        path: str,
        headers: dict[str, str] | None = None,
        extra: bytes = b"",
        method: str = "GET",
    ) -> tuple[int, dict[str, str], bytes]:
        """Send an upgrade request (plus ``extra`` bytes in the same write);
        return the status, headers and, for a refusal, the body."""
        self.send(request(path, self.host, headers, method) + extra)
        head = self._read_until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
        body = b""
        if status != 101 and method != "HEAD":
            length = int(fields.get("content-length", 0) or 0)
            while len(self.buffer) < length:
                self._fill()
            body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, fields, body

    def open(self, path: str, headers: dict[str, str] | None = None) -> RawClient:
        status, _, body = self.handshake(path, headers)
        assert status == 101, (status, body)
        return self

    def read_frame(self) -> Frame:
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            self._fill()

    def read_until_close(self) -> list[Frame]:
        """Frames up to and including the close frame."""
        frames = []
        while True:
            received = self.read_frame()
            frames.append(received)
            if received.opcode == CLOSE:
                return frames

    def read_rest(self) -> bytes:
        """Every byte until the server closes TCP."""
        data, self.buffer = self.buffer, b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return data
            data += chunk

    def _parse(self) -> Frame | None:
        buffer = self.buffer
        if len(buffer) < 2:
            return None
        fin, opcode = bool(buffer[0] & 0x80), buffer[0] & 0x0F
        assert not buffer[1] & 0x80, "server frames must not be masked"
        length, offset = buffer[1] & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                return None
            length, offset = struct.unpack("!H", buffer[2:4])[0], 4
        elif length == 127:
            if len(buffer) < 10:
                return None
            length, offset = struct.unpack("!Q", buffer[2:10])[0], 10
        if len(buffer) < offset + length:
            return None
        self.buffer = buffer[offset + length :]
        return Frame(fin, opcode, buffer[offset : offset + length], (buffer[0] >> 4) & 0x7)

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buffer += chunk
