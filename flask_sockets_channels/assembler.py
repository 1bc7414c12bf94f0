"""Inbound data frames into whole messages.

The engine has already checked each frame and the size of the message (the
*inflated* size, over all its fragments); this joins the fragments of one
message in one buffer, so an empty or tiny fragment costs nothing to keep,
and checks the UTF-8 of a text message as its fragments arrive (with the
standard library's incremental decoder), so invalid text fails before the
message ends.
"""

from __future__ import annotations

import codecs
from typing import Union

from .engine import Frame, Opcode
from .exceptions import CloseCode, ProtocolError

__all__ = ["Assembler", "Raw"]

#: A whole message: ``str`` for a text message, ``bytes`` for a binary one.
Raw = Union[str, bytes]


class Assembler:
    """Joins data frames into messages; one per connection, used by its
    reader only.

    Attributes:
        bytes_in: Payload bytes of every data frame added (inflated).
    """

    def __init__(self) -> None:
        self.bytes_in = 0
        self._parts = bytearray()
        self._text = False
        self._utf8: codecs.IncrementalDecoder | None = None

    def add(self, frame: Frame) -> Raw | ProtocolError | None:
        """Add a data frame; return the whole message once complete, or the
        ``ProtocolError`` (1007) to fail the connection with."""
        data = frame.data
        self.bytes_in += len(data)
        if frame.opcode is not Opcode.CONT:
            self._text = frame.opcode is Opcode.TEXT
            if frame.fin:  # the common case: a message in one frame
                if not self._text:
                    return bytes(data)
                try:
                    return bytes(data).decode()
                except UnicodeDecodeError as exc:
                    return invalid_utf8(exc)
            self._parts = bytearray()
            self._utf8 = codecs.getincrementaldecoder("utf-8")() if self._text else None
        self._parts += data
        if self._utf8 is not None:
            try:
                self._utf8.decode(data, final=frame.fin)
            except UnicodeDecodeError as exc:
                return invalid_utf8(exc)
        if not frame.fin:
            return None
        whole, self._parts = self._parts, bytearray()
        return whole.decode() if self._text else bytes(whole)


def invalid_utf8(exc: UnicodeDecodeError) -> ProtocolError:
    """The error for invalid UTF-8 in a text message (1007)."""
    error = ProtocolError(
        f"invalid UTF-8 in a text message: {exc.reason}", CloseCode.INVALID_FRAME_PAYLOAD_DATA
    )
    error.__cause__ = exc
    return error
