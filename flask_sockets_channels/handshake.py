"""The opening handshake: request -> 405 / 400 / 426 / 403, or 101.

Each refusal is raised as a werkzeug ``HTTPException`` so that Flask's error
handlers and logging see it; its body is one plain-text line. An accepted
request yields the bytes of the 101 response and the engine's protocol that
takes over the socket.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import current_app
from werkzeug.exceptions import BadRequest, Forbidden, HTTPException, MethodNotAllowed
from werkzeug.sansio.utils import host_is_trusted

from . import engine
from .engine import Protocol
from .options import LOG_LEVEL_INFO, LOG_LEVEL_WARNING, Options

if TYPE_CHECKING:
    from flask import Request as FlaskRequest

__all__ = ["Accepted", "OneLineBody", "accept", "origin_allowed"]


class OneLineBody(HTTPException):
    """A refusal whose body is one plain-text line, not an HTML page."""

    def get_body(self, environ: Any = None, scope: Any = None) -> str:
        return f"{self.code} {self.name}: {self.description}\n"

    def get_headers(self, environ: Any = None, scope: Any = None) -> list[tuple[str, str]]:
        headers = [(k, v) for k, v in super().get_headers(environ, scope) if k != "Content-Type"]
        return [("Content-Type", "text/plain; charset=utf-8"), *headers]


class NotGet(OneLineBody, MethodNotAllowed):
    """405: a WebSocket handshake must be a GET."""


class NotUpgrade(OneLineBody, BadRequest):
    """400: the request is not a WebSocket upgrade."""


class BadVersion(OneLineBody):
    """426: the client speaks another WebSocket version."""

    code = 426
    name = "Upgrade Required"

    def get_headers(self, environ: Any = None, scope: Any = None) -> list[tuple[str, str]]:
        return [*super().get_headers(environ, scope), ("Sec-WebSocket-Version", "13")]


class OriginRejected(OneLineBody, Forbidden):
    """403: the Origin is not allowed."""


@dataclass
class Accepted:
    """A handshake that succeeded.

    Attributes:
        response: The bytes of the 101 response, to be written as they are.
        protocol: The engine's protocol, in the OPEN state.
        subprotocol: The negotiated subprotocol, or ``None``.
    """

    response: bytes
    protocol: Protocol
    subprotocol: str | None


def accept(request: FlaskRequest, options: Options) -> Accepted:
    """Check ``request`` in the order of the spec and build the 101 response.

    Raises:
        HTTPException: 405, 400, 426 or 403, with a one-line reason.
    """
    if request.method != "GET":
        options.log(LOG_LEVEL_INFO, "handshake refused (405): method %s", request.method)
        raise NotGet(valid_methods=["GET"], description="a WebSocket handshake must be a GET")
    problem = _upgrade_problem(request)
    if problem:
        options.log(LOG_LEVEL_INFO, "handshake refused (400) for %s: %s", request.path, problem)
        raise NotUpgrade(problem)
    version = request.headers.get("Sec-WebSocket-Version", "")
    if version.strip() != "13":
        options.log(LOG_LEVEL_INFO, "handshake refused (426): version %r", version)
        raise BadVersion(f"Sec-WebSocket-Version {version!r} is not supported; use 13")
    trusted = current_app.config.get("TRUSTED_HOSTS")
    host = request.headers.get("Host", "")
    if trusted and not host_is_trusted(host, trusted):
        # Before the origin check: the default {{host}} rule compares the
        # Origin with this Host, which DNS rebinding lets an attacker choose.
        options.log(LOG_LEVEL_WARNING, "handshake refused (400): Host %r not trusted", host)
        raise NotUpgrade(f"Host {host!r} is not trusted")
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, request, options):
        options.log(LOG_LEVEL_WARNING, "handshake refused (403): Origin %r not allowed", origin)
        raise OriginRejected(f"Origin {origin!r} is not allowed")
    offered = _tokens(request.headers.getlist("Sec-WebSocket-Protocol"), lower=False)
    subprotocol = next((p for p in offered if p in options.subprotocols), None)
    try:
        response, protocol = engine.accept(
            _target(request),
            list(request.headers.items()),
            subprotocol,
            options.compression,
            options.max_message_size,
        )
    except ValueError as exc:
        options.log(LOG_LEVEL_INFO, "handshake refused (400): %s", exc)
        raise NotUpgrade(f"malformed handshake: {exc}") from exc
    return Accepted(response, protocol, subprotocol)


def origin_allowed(origin: str | None, request: FlaskRequest, options: Options) -> bool:
    """Whether ``origin`` passes ``options.allowed_origin``.

    A request without an Origin header (not a browser) is always allowed. A
    pattern must match the whole Origin, case-insensitively; ``{{host}}``
    stands for the request's Host, regex-escaped.
    """
    policy = options.allowed_origin
    if policy is None or origin is None:
        return True
    if callable(policy):
        return bool(policy(origin, request))
    patterns = (policy,) if isinstance(policy, str) else policy
    host = request.headers.get("Host", "")
    return any(_origin_regex(pattern, host).fullmatch(origin) for pattern in patterns)


@functools.lru_cache(maxsize=256)
def _origin_regex(pattern: str, host: str) -> re.Pattern[str]:
    return re.compile(pattern.replace("{{host}}", re.escape(host)), re.IGNORECASE)


def _upgrade_problem(request: FlaskRequest) -> str | None:
    """Why ``request`` is not a WebSocket upgrade, or ``None`` if it is one."""
    if "upgrade" not in _tokens(request.headers.getlist("Connection")):
        return "not a WebSocket upgrade: 'Connection: Upgrade' header missing"
    if "websocket" not in _tokens(request.headers.getlist("Upgrade")):
        return "not a WebSocket upgrade: 'Upgrade: websocket' header missing"
    key = request.headers.get("Sec-WebSocket-Key")
    if key is None:
        return "not a WebSocket upgrade: Sec-WebSocket-Key header missing"
    try:
        valid = len(base64.b64decode(key.strip(), validate=True)) == 16
    except binascii.Error:
        valid = False
    if not valid:
        return "invalid Sec-WebSocket-Key: must be 16 bytes, base64-encoded"
    return None


def _tokens(values: Iterable[str], lower: bool = True) -> list[str]:
    tokens = (token.strip() for value in values for token in value.split(","))
    return [token.lower() if lower else token for token in tokens if token]


def _target(request: FlaskRequest) -> str:
    path: str = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or "/"
    return path
