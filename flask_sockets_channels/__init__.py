"""Go-style channels for synchronous Flask views over WebSockets.

::

    from flask import Flask
    import flask_sockets_channels as sockets

    app = Flask(__name__)
    sockets.Sockets(app)

    @app.route("/echo")
    @sockets.messages()
    def echo(receiver, sender):
        for message in receiver:
            sender.put(message)
"""

from .channels import Channel, Closed
from .connection import Connection
from .exceptions import (
    CloseCode,
    ConnectionClosed,
    ConnectionClosedError,
    DecodeError,
    HubUnavailable,
    KeepaliveTimeout,
    MessageTooBig,
    ProtocolError,
    SocketsError,
    WriteTimeout,
)
from .extension import Sockets
from .hub import Hub
from .member import Member
from .modes import byte_messages, json_messages, messages, mixed_messages
from .options import (
    LOG_LEVEL_DEBUG,
    LOG_LEVEL_ERROR,
    LOG_LEVEL_INFO,
    LOG_LEVEL_STRINGS,
    LOG_LEVEL_WARNING,
    Options,
)

__version__ = "0.1.0"

__all__ = [
    "LOG_LEVEL_DEBUG",
    "LOG_LEVEL_ERROR",
    "LOG_LEVEL_INFO",
    "LOG_LEVEL_STRINGS",
    "LOG_LEVEL_WARNING",
    "Channel",
    "CloseCode",
    "Closed",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "DecodeError",
    "Hub",
    "HubUnavailable",
    "KeepaliveTimeout",
    "Member",
    "MessageTooBig",
    "Options",
    "ProtocolError",
    "Sockets",
    "SocketsError",
    "WriteTimeout",
    "byte_messages",
    "json_messages",
    "messages",
    "mixed_messages",
]
