"""The errors a connection puts on its ``errors`` channel.

Every error has one root, :class:`SocketsError`::

    SocketsError
    ├── ConnectionClosed          the connection is closed (code, reason)
    │   └── ConnectionClosedError     ...abnormally: 1006, or a peer's error code
    ├── ProtocolError             the peer broke RFC 6455 (1002) or sent bad UTF-8 (1007)
    │   └── MessageTooBig             an inbound message exceeded max_message_size (1009)
    ├── KeepaliveTimeout          no pong and no frame within pong_wait (1011)
    ├── WriteTimeout              a frame could not be written within write_wait
    ├── DecodeError               JSON mode: a message did not decode or validate
    └── HubUnavailable            the hub's broker (Redis) cannot be reached (maybe_delivered)

A normal close (1000 or 1001) is not an error and never reaches ``errors``.
Where an error has a lower-level cause (an ``OSError``, a ``ValueError`` from
the JSON decoder) it is kept as ``__cause__``.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "CloseCode",
    "ConnectionClosed",
    "ConnectionClosedError",
    "DecodeError",
    "HubUnavailable",
    "KeepaliveTimeout",
    "MessageTooBig",
    "ProtocolError",
    "SocketsError",
    "WriteTimeout",
]


class CloseCode(IntEnum):
    """The close codes of RFC 6455 §7.4.1 that this library uses."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_FRAME_PAYLOAD_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


#: Codes that are never put in a close frame (RFC 6455 §7.4.1).
LOCAL_ONLY_CODES = frozenset(
    {CloseCode.NO_STATUS_RCVD, CloseCode.ABNORMAL_CLOSURE, CloseCode.TLS_HANDSHAKE}
)

#: Closes that are not errors.
NORMAL_CODES = frozenset({CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY})


def is_sendable_code(code: int) -> bool:
    """Whether ``code`` may be put in a close frame by this side."""
    if code in LOCAL_ONLY_CODES:
        return False
    return (1000 <= code <= 1014 and code != 1004) or 3000 <= code <= 4999


class SocketsError(Exception):
    """Root of every error this library puts on ``errors`` or raises."""


class ConnectionClosed(SocketsError):
    """The connection is closed.

    Attributes:
        code: The close code (1006 when no close frame was received).
        reason: The close reason, possibly empty.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"connection closed: {code}" + (f" {reason}" if reason else ""))


class ConnectionClosedError(ConnectionClosed):
    """The connection closed abnormally: the peer vanished (1006) or closed
    with an error code (anything but 1000 and 1001)."""


class ProtocolError(SocketsError):
    """The peer broke the protocol; the connection was failed with ``code``.

    Attributes:
        code: 1002 (protocol error) or 1007 (invalid UTF-8 in a text message).
    """

    def __init__(self, message: str, code: int = CloseCode.PROTOCOL_ERROR) -> None:
        self.code = code
        super().__init__(message)


class MessageTooBig(ProtocolError):
    """An inbound message was larger than ``max_message_size``; closed with 1009."""

    def __init__(self, message: str) -> None:
        super().__init__(message, CloseCode.MESSAGE_TOO_BIG)


class KeepaliveTimeout(SocketsError):
    """No pong and no frame arrived within ``pong_wait``; closed with 1011.
    Or nothing the server sent was acknowledged within ``pong_wait`` (the
    peer vanished without FIN or RST; found by the kernel): cut, 1006."""


class WriteTimeout(SocketsError):
    """A frame could not be written within ``write_wait``; TCP was cut."""


class DecodeError(SocketsError):
    """JSON mode: an inbound message did not decode or validate.

    The connection stays open; the message is dropped.

    Attributes:
        raw: The message as received (``str``, or ``bytes`` for a binary frame).
    """

    def __init__(self, message: str, raw: str | bytes) -> None:
        self.raw = raw
        super().__init__(message)


class HubUnavailable(SocketsError):
    """The hub's broker (Redis) cannot be reached, or refused the command.

    Attributes:
        maybe_delivered: ``False`` when the message was certainly not sent (no
            connection could be made, or Redis refused the command); ``True``
            when it was written and no answer came (a read timeout, or the
            connection lost while waiting): Redis may have taken it, and the
            members may still get it, so publishing it again may deliver it
            twice.
    """

    def __init__(self, message: str, maybe_delivered: bool = False) -> None:
        self.maybe_delivered = maybe_delivered
        super().__init__(message)

    def __reduce__(self) -> tuple[type[HubUnavailable], tuple[str, bool]]:
        # Keeps maybe_delivered through pickle (a task queue's result backend).
        return type(self), (str(self), self.maybe_delivered)
