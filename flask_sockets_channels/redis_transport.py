"""The hub's Redis pub/sub transport: one listener thread per hub.

Each published frame goes to the Redis channel ``flask-sockets-channels:<room>``
as ``origin (16 bytes) + kind (b"t" text | b"b" binary) + payload``. Every
process listens to all rooms with one pattern subscription and delivers to
its own members; it skips the frames it published itself (those were
delivered locally at once). Redis keeps the order of one publisher's
messages, so members see them in publish order.

If Redis goes away, ``publish`` raises :class:`HubUnavailable` and the
listener reconnects and subscribes again by itself, with backoff.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from .engine import Outgoing
from .exceptions import HubUnavailable

try:
    import redis
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "Hub.from_url('redis://...') needs redis-py: pip install flask-sockets-channels[redis]"
    ) from exc

__all__ = ["RedisTransport"]

logger = logging.getLogger("flask_sockets_channels.hub")

PREFIX = "flask-sockets-channels:"
_TEXT, _BINARY = b"t", b"b"
#: How long the listener waits for a message before checking for stop.
POLL_TIMEOUT = 0.5
RECONNECT_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)

Deliver = Callable[[str, Outgoing], Any]


def redact(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


class RedisTransport:
    """Publishes frames to Redis and delivers other processes' frames."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.safe_url = redact(url)
        self._origin = uuid.uuid4().bytes
        self._client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._subscribed = threading.Event()

    def publish(self, room: str, frame: Outgoing) -> None:
        """Send ``frame`` to ``room`` in every other process.

        Raises:
            HubUnavailable: Redis cannot be reached.
        """
        payload = self._origin + (_TEXT if frame.text else _BINARY) + frame.data
        try:
            self._client.publish(PREFIX + room, payload)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise HubUnavailable(f"hub at {self.safe_url} is unavailable: {exc}") from exc

    def start(self, deliver: Deliver) -> None:
        """Start the listener thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._listen, args=(deliver,), name="flask-sockets-channels hub", daemon=True
        )
        self._thread.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the listener is subscribed."""
        return self._subscribed.wait(timeout)

    def close(self) -> None:
        """Stop the listener and wait for it to end."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        self._client.close()

    def _listen(self, deliver: Deliver) -> None:
        # Owns: the subscription. Ends when close() sets _stop (checked at
        # least every POLL_TIMEOUT seconds).
        failures = 0
        while not self._stop.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            try:
                pubsub.psubscribe(PREFIX + "*")
                self._subscribed.set()
                if failures:
                    logger.info("hub: reconnected to %s", self.safe_url)
                failures = 0
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=POLL_TIMEOUT)
                    if message is not None:
                        self._handle(message, deliver)
            except (
                redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError,
                OSError,
            ) as exc:
                self._subscribed.clear()
                delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                failures += 1
                if failures == 1:
                    logger.warning("hub: lost %s (%s); reconnecting", self.safe_url, exc)
                self._stop.wait(delay)
            except Exception:
                logger.exception("hub: listener error; reconnecting")
                self._stop.wait(RECONNECT_DELAYS[-1])
            finally:
                try:
                    pubsub.close()
                except Exception:  # closing a broken connection
                    logger.debug("hub: closing the subscription failed", exc_info=True)
        self._subscribed.clear()

    def _handle(self, message: dict[str, Any], deliver: Deliver) -> None:
        """Deliver one pub/sub message; log and drop a malformed one."""
        channel, data = message.get("channel"), message.get("data")
        try:
            room = channel.decode() if isinstance(channel, bytes) else str(channel)
            if not room.startswith(PREFIX) or not isinstance(data, bytes) or len(data) < 17:
                raise ValueError("not a hub message")
            origin, kind, payload = data[:16], data[16:17], data[17:]
            if origin == self._origin:
                return  # ours: already delivered locally
            frame: Outgoing
            if kind == _TEXT:
                payload.decode()  # a text frame must be UTF-8
                frame = Outgoing(True, payload)
            elif kind == _BINARY:
                frame = Outgoing(False, payload)
            else:
                raise ValueError(f"unknown kind {kind!r}")
        except ValueError as exc:  # UnicodeDecodeError included
            logger.warning("hub: dropped a malformed message on %r: %s", channel, exc)
            return
        deliver(room[len(PREFIX) :], frame)
