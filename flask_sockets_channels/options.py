"""Connection options: defaults, validation and ``SOCKETS_*`` precedence.

Precedence, highest first: keyword overrides given to a decorator, the
fields set explicitly on an :class:`Options` given to it, the app's
``SOCKETS_<FIELD>`` config keys, the built-in defaults.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, Union

if TYPE_CHECKING:
    from flask import Request

__all__ = [
    "LOG_LEVEL_DEBUG",
    "LOG_LEVEL_ERROR",
    "LOG_LEVEL_INFO",
    "LOG_LEVEL_STRINGS",
    "LOG_LEVEL_WARNING",
    "Options",
    "OriginPolicy",
    "resolve_options",
]

LOG_LEVEL_ERROR = 0
LOG_LEVEL_WARNING = 1
LOG_LEVEL_INFO = 2
LOG_LEVEL_DEBUG = 3
#: Names of the log levels, indexed by level.
LOG_LEVEL_STRINGS = ("Error", "Warning", "Info", "Debug")

_PYTHON_LEVELS = (logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)

#: ``allowed_origin``: a pattern, patterns, a predicate ``(origin, request)``, or None.
OriginPolicy = Union[str, Sequence[str], Callable[[str, "Request"], bool], None]
Duration = Union[float, int, timedelta]

CONFIG_PREFIX = "SOCKETS_"
#: Config keys with the prefix that are not connection options.
OTHER_CONFIG_KEYS = frozenset(
    {
        "SOCKETS_HUB_URL",
        "SOCKETS_HUB_HISTORY",
        "SOCKETS_HUB_MAX_MESSAGE_SIZE",
        "SOCKETS_HUB_MAX_RESUME",
        "SOCKETS_MAX_TOTAL_CONNECTIONS",
    }
)


def _default_logger() -> logging.Logger:
    return logging.getLogger("flask_sockets_channels")


@dataclass(frozen=True)
class Options:
    """Options of a WebSocket endpoint. Durations are seconds or ``timedelta``.

    Attributes:
        logger: Where log records go.
        log_level: 0 Error, 1 Warning, 2 Info, 3 Debug (or one of
            ``LOG_LEVEL_STRINGS``); records above it are not logged.
        skip_logging: Log nothing at all.
        write_wait: A frame whose write is blocked longer than this kills the
            connection (``WriteTimeout``); ``None`` waits for ever.
        pong_wait: No pong and no frame from the peer for this long: the peer
            is dead, close with 1011. ``None`` disables the check.
        ping_period: Interval of server pings; must be less than ``pong_wait``.
            ``None`` sends no pings.
        max_message_size: Inbound message limit in bytes (1009 above it);
            ``None`` means no limit.
        send_channel_buffer: Size of ``sender``; 0 is unbuffered.
        recv_channel_buffer: Size of ``receiver``; 0 is unbuffered.
        allowed_origin: Pattern (``{{host}}`` is the request's Host), list of
            patterns, predicate ``(origin, request) -> bool``, or ``None``.
        subprotocols: Subprotocols the server speaks; the first one in the
            client's list that is also here is chosen and echoed.
        close_timeout: How long to wait for the peer's close frame.
        compression: Accept permessage-deflate when the client offers it.
        heartbeat: Send an empty text message with each ping: a browser
            answers pings but its page never sees them; the browser client
            (``static/client.js``, its ``idleTimeout``) takes this message
            as a sign of life and drops it. Off by default: other clients
            would receive empty messages.
        max_connections: Open connections of this view in this process; the
            handshake past it is answered 503 with ``Retry-After``. 0 refuses
            every handshake; ``None`` means no limit.
        max_connections_per_client: Open connections of this view per client
            address (``request.remote_addr``); past it, 429 with
            ``Retry-After``. ``None`` means no limit.
        rate_limit: ``(messages, seconds)``: past that many inbound messages
            per that many seconds, the reader pauses until the rate allows
            the next one (nothing is dropped; TCP pushes back on the client).
            ``None`` means no limit.
        idle_reader_timeout: A connection's socket is parked from the start
            with the process's poller (one thread, epoll): the view's own
            thread reads it while it waits in ``receiver.get``, a worker of
            the poller otherwise, and a reader thread that has had no input
            for this long ends. An idle connection holds no thread of the
            library's. ``None`` keeps a reader thread for the connection's
            life (always so where there is no epoll: not Linux).

    Only the fields given when an ``Options`` is made override the app's
    ``SOCKETS_*`` config (``dataclasses.replace`` gives them all). The
    values are validated at once; durations are stored as float seconds.

    Raises:
        ValueError: A value is out of range or of the wrong type.
    """

    logger: logging.Logger = field(default_factory=_default_logger)
    log_level: int = LOG_LEVEL_INFO
    skip_logging: bool = False
    write_wait: Duration | None = 10.0
    pong_wait: Duration | None = 60.0
    ping_period: Duration | None = 48.0
    max_message_size: int | None = 65536
    send_channel_buffer: int = 10
    recv_channel_buffer: int = 10
    allowed_origin: OriginPolicy = "https?://{{host}}"
    subprotocols: Sequence[str] = ()
    close_timeout: Duration = 5.0
    compression: bool = False
    heartbeat: bool = False
    max_connections: int | None = None
    max_connections_per_client: int | None = None
    rate_limit: tuple[float, float] | None = None
    idle_reader_timeout: Duration | None = 2.0

    def __new__(cls, *args: Any, **kwargs: Any) -> Options:
        self = super().__new__(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        # Which fields were given, so that only those override app config.
        object.__setattr__(self, "_explicit", frozenset(names[: len(args)]) | set(kwargs))
        return self

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if isinstance(self.logger, str):
            set_(self, "logger", logging.getLogger(self.logger))
        if not isinstance(self.logger, (logging.Logger, logging.LoggerAdapter)):
            raise ValueError(f"logger must be a logging.Logger, not {self.logger!r}")
        set_(self, "log_level", _log_level(self.log_level))
        for name in ("skip_logging", "compression", "heartbeat"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, not {getattr(self, name)!r}")
        set_(self, "write_wait", _seconds("write_wait", self.write_wait, optional=True))
        set_(
            self,
            "idle_reader_timeout",
            _seconds("idle_reader_timeout", self.idle_reader_timeout, optional=True),
        )
        set_(self, "close_timeout", _seconds("close_timeout", self.close_timeout, zero=True))
        ping_period = _seconds("ping_period", self.ping_period, optional=True)
        pong_wait = _seconds("pong_wait", self.pong_wait, optional=True)
        set_(self, "ping_period", ping_period)
        set_(self, "pong_wait", pong_wait)
        if ping_period is not None and pong_wait is not None and ping_period >= pong_wait:
            raise ValueError(
                f"ping_period ({ping_period} s) must be less than pong_wait ({pong_wait} s)"
            )
        if self.max_message_size is not None:
            _integer("max_message_size", self.max_message_size, minimum=1)
        _integer("send_channel_buffer", self.send_channel_buffer, minimum=0)
        _integer("recv_channel_buffer", self.recv_channel_buffer, minimum=0)
        if self.max_connections is not None:
            _integer("max_connections", self.max_connections, minimum=0)
        if self.max_connections_per_client is not None:
            _integer("max_connections_per_client", self.max_connections_per_client, minimum=1)
        set_(self, "rate_limit", _rate_limit(self.rate_limit))
        set_(self, "subprotocols", _subprotocols(self.subprotocols))
        set_(self, "allowed_origin", _origin_policy(self.allowed_origin))

    @property
    def explicit_fields(self) -> frozenset[str]:
        """Names of the fields given when this object was made."""
        return self._explicit  # type: ignore[attr-defined,no-any-return]

    def log(self, level: int, message: str, *args: object, exc_info: bool = False) -> None:
        """Log ``message`` at one of the ``LOG_LEVEL_*`` levels, if enabled."""
        if self.skip_logging or level > self.log_level:
            return
        self.logger.log(_PYTHON_LEVELS[level], message, *args, exc_info=exc_info)


def seconds(value: Duration | None) -> float | None:
    """A validated duration as seconds (options hold floats after validation)."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return None if value is None else float(value)


def resolve_options(
    config: Mapping[str, Any], options: Options | None = None, **overrides: Any
) -> Options:
    """Merge app config, ``options`` and ``overrides`` into validated options.

    Raises:
        ValueError: A merged value is invalid (naming the config key if it
            came from the config).
        TypeError: An override names no option.
    """
    values: dict[str, Any] = {}
    for option in dataclasses.fields(Options):
        key = CONFIG_PREFIX + option.name.upper()
        if key in config:
            values[option.name] = config[key]
    try:
        Options(**values)
    except ValueError as exc:
        raise ValueError(f"invalid {CONFIG_PREFIX}* config: {exc}") from exc
    if options is not None:
        values.update({name: getattr(options, name) for name in options.explicit_fields})
    values.update(overrides)
    return Options(**values)


def unknown_config_keys(config: Mapping[str, Any]) -> list[str]:
    """The ``SOCKETS_*`` keys of ``config`` that name no option (typos)."""
    known = {CONFIG_PREFIX + f.name.upper() for f in dataclasses.fields(Options)}
    return sorted(
        key
        for key in config
        if key.startswith(CONFIG_PREFIX) and key not in known and key not in OTHER_CONFIG_KEYS
    )


def _log_level(value: object) -> int:
    if isinstance(value, str):
        names = [name.lower() for name in LOG_LEVEL_STRINGS]
        if value.lower() in names:
            return names.index(value.lower())
    elif (
        isinstance(value, int)
        and not isinstance(value, bool)
        and LOG_LEVEL_ERROR <= value <= LOG_LEVEL_DEBUG
    ):
        return value
    raise ValueError(f"log_level must be 0-3 or one of {LOG_LEVEL_STRINGS}, not {value!r}")


def _seconds(name: str, value: object, optional: bool = False, zero: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (value > 0 or (zero and value == 0))
    ):
        return float(value)
    bound = ">= 0" if zero else "> 0"
    allowed = " or None" if optional else ""
    raise ValueError(f"{name} must be seconds {bound} or a timedelta{allowed}, not {value!r}")


def _integer(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, not {value!r}")


def _rate_limit(value: object) -> tuple[float, float] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2:  # a list from JSON config too
        messages, period = value
        if isinstance(period, timedelta):
            period = period.total_seconds()
        if all(
            isinstance(n, (int, float)) and not isinstance(n, bool) and 0 < n < float("inf")
            for n in (messages, period)
        ):
            return (float(messages), float(period))
    raise ValueError(
        f"rate_limit must be (messages, seconds) with both numbers > 0, or None, not {value!r}"
    )


def integer_limit(name: str, value: object, minimum: int) -> int | None:
    """``value`` if it is ``None`` or an integer >= ``minimum``.

    Raises:
        ValueError: It is not.
    """
    if value is None:
        return None
    _integer(name, value, minimum)
    assert isinstance(value, int)
    return value


def _subprotocols(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) and p for p in value):
        raise ValueError(f"subprotocols must be a sequence of names, not {value!r}")
    return tuple(value)


def _origin_policy(value: object) -> OriginPolicy:
    if value is None or callable(value):
        return value
    patterns = (value,) if isinstance(value, str) else value
    if not isinstance(patterns, (list, tuple)) or not all(isinstance(p, str) for p in patterns):
        raise ValueError(
            f"allowed_origin must be a pattern, a list of patterns, a callable or None, "
            f"not {value!r}"
        )
    for pattern in patterns:
        try:
            re.compile(pattern.replace("{{host}}", "host"))
        except re.error as exc:
            raise ValueError(f"allowed_origin {pattern!r} is not a valid regex: {exc}") from exc
    return value if isinstance(value, str) else tuple(patterns)
