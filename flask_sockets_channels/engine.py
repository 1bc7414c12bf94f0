"""The protocol engine: websockets' sans-I/O layer, behind one module.

The only module of the server side that imports websockets (the test
client, :mod:`.testing`, speaks the client side with websockets'
``ClientProtocol``). It builds the 101 response (with
permessage-deflate negotiated when allowed) and the protocol object that
parses inbound frames and serialises outbound ones; it never touches a
socket. Framing, masking, close-frame rules, bounded inflate
(``max_size`` also bounds the *inflated* size, so a deflate bomb stops at
the limit) are the engine's; :mod:`.connection` feeds it bytes and writes
what it returns.

Why websockets and not wsproto: measured without sockets
(``benchmarks/engine.py``), it costs 2.9 times less per small message and
2.1 times less per 1 MiB message (C unmasking), and its inflate is bounded by
``max_size``. See docs/design.md.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

from websockets.datastructures import Headers
from websockets.exceptions import PayloadTooBig
from websockets.exceptions import ProtocolError as EngineProtocolError
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import SEND_EOF, Protocol, Side, State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from .exceptions import (
    CloseCode,
    ConnectionClosedError,
    MessageTooBig,
    ProtocolError,
    SocketsError,
)

__all__ = [
    "SEND_EOF",
    "Side",
    "Close",
    "Frame",
    "Opcode",
    "Outgoing",
    "Protocol",
    "State",
    "accept",
    "close_echo",
    "data_frame",
    "mid_frame",
    "parser_error",
    "with_plain_frame",
]


class Outgoing(NamedTuple):
    """One outbound data message, encoded once: ``text`` tells the frame's
    type, ``data`` is its payload (UTF-8 for text). ``plain`` is its frame
    without compression, when serialised once for many connections (see
    :func:`with_plain_frame`). ``json``: the text is JSON (a hub message
    made from an object), so a browser envelope can carry it as it is."""

    text: bool
    data: bytes
    plain: bytes | None = None
    json: bool = False


class _Silent(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The engine's own log lines (``connection open`` …) are dropped: the
    connection logs what happened, at its levels, through ``Options``."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("flask_sockets_channels.engine"), {})

    def isEnabledFor(self, level: int) -> bool:
        return False

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        return None


_SILENT = _Silent()


def accept(
    path: str,
    headers: list[tuple[str, str]],
    subprotocol: str | None,
    compression: bool,
    max_size: int | None,
) -> tuple[bytes, Protocol]:
    """Build the 101 response for a request whose checks passed, and the
    protocol that takes over the socket.

    Args:
        path: The request target.
        headers: The request's headers, in order.
        subprotocol: The subprotocol chosen, or ``None``.
        compression: Whether to accept permessage-deflate if offered.
        max_size: The inbound message limit in bytes (inflated size).

    Raises:
        ValueError: The engine refused the request (a malformed header).
    """
    request = Request(path, Headers(headers))

    chosen = None if subprotocol is None else Subprotocol(subprotocol)

    def select_subprotocol(
        protocol: ServerProtocol, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        return chosen

    factories = [_deflate()] if compression else []
    handshake = ServerProtocol(
        extensions=factories,
        select_subprotocol=select_subprotocol,
        logger=_SILENT,
    )
    response = handshake.accept(request)
    if response.status_code != 101:
        raise ValueError(str(handshake.handshake_exc or response.reason_phrase))
    protocol = Protocol(Side.SERVER, state=State.OPEN, max_size=max_size, logger=_SILENT)
    protocol.extensions = handshake.extensions
    protocol.subprotocol = handshake.subprotocol
    return response.serialize(), protocol


def with_plain_frame(outgoing: Outgoing) -> Outgoing:
    """``outgoing`` with its uncompressed frame serialised, for a message
    sent to many connections: those without compression send these bytes."""
    opcode = Opcode.TEXT if outgoing.text else Opcode.BINARY
    return outgoing._replace(plain=Frame(opcode, outgoing.data).serialize(mask=False))


def data_frame(outgoing: Outgoing, protocol: Protocol) -> bytes:
    """The bytes of one unfragmented data frame from the server, compressed
    by the extensions ``protocol`` negotiated.

    What ``protocol.send_text`` / ``send_binary`` would queue, without
    touching the protocol's state: the caller checks it is open. Only the
    outbound half of an extension is used (permessage-deflate keeps one zlib
    context per direction), so this runs in a writing thread while the
    reader parses under its own lock.
    """
    extensions = protocol.extensions
    if outgoing.plain is not None and not extensions:
        return outgoing.plain
    opcode = Opcode.TEXT if outgoing.text else Opcode.BINARY
    return Frame(opcode, outgoing.data).serialize(mask=False, extensions=extensions)


def mid_frame(protocol: Protocol) -> bool:
    """Whether the engine holds part of a frame it has not finished
    parsing: more of it is on its way (the reader's next read is large)."""
    return bool(protocol.reader.buffer)


def close_echo(close: Close) -> bytes:
    """The close frame that echoes the peer's ``close`` (none of a code if
    it sent none)."""
    data = b"" if close.code == CloseCode.NO_STATUS_RCVD else close.serialize()
    return Frame(Opcode.CLOSE, data).serialize(mask=False)


def _deflate() -> ServerPerMessageDeflateFactory:
    """permessage-deflate as websockets' own servers configure it: 4 KiB
    windows (both ways, when the client allows it) and memLevel 5 keep a
    connection's zlib state small, for a few percent of compression ratio."""
    return ServerPerMessageDeflateFactory(
        server_max_window_bits=12, client_max_window_bits=12, compress_settings={"memLevel": 5}
    )


def parser_error(exc: BaseException) -> SocketsError:
    """The error to report for ``protocol.parser_exc`` (the engine has
    already queued the matching close frame)."""
    if isinstance(exc, PayloadTooBig):
        error: SocketsError = MessageTooBig(str(exc) or "message too big")
    elif isinstance(exc, UnicodeDecodeError):
        error = ProtocolError(f"invalid UTF-8: {exc.reason}", CloseCode.INVALID_FRAME_PAYLOAD_DATA)
    elif isinstance(exc, EngineProtocolError):
        error = ProtocolError(str(exc))
    elif isinstance(exc, EOFError):
        error = ConnectionClosedError(CloseCode.ABNORMAL_CLOSURE, "connection lost")
    else:
        error = ProtocolError(f"frame rejected: {type(exc).__name__}", CloseCode.INTERNAL_ERROR)
    error.__cause__ = exc
    return error
