"""The view's controls of its connection besides ``receiver`` and
``sender``: ``disconnect`` (close it) and ``done`` (it has ended)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable

from .channels import Channel, SlimCondition, build_once
from .exceptions import is_sendable_code

__all__ = ["Disconnect", "Done", "check_close"]


class Disconnect(Channel[Any]):
    """``disconnect``: putting a code (or ``(code, reason)``) closes the
    connection at once; never blocks, only the first one counts."""

    def __init__(self, close: Callable[[int, str], None]) -> None:
        super().__init__(1)
        self._close = close

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Close the connection with ``item``: a code or ``(code, reason)``.

        Raises:
            TypeError: ``item`` is neither an ``int`` nor a ``(code, reason)``.
            ValueError: The code may not be sent in a close frame.
        """
        if isinstance(item, int):
            code, reason = item, ""
        elif isinstance(item, tuple) and len(item) == 2:
            code, reason = item
        else:
            raise TypeError(f"disconnect takes a close code or (code, reason), not {item!r}")
        self._close(code, reason)


class Done(threading.Event):
    """``done``: once it reads as set, the connection's threads have ended.

    The reader sets it as its very last act; a thread cannot signal after it
    has ended, so ``wait`` and ``is_set`` also join the reader (a matter of
    microseconds by then) before they report it set.
    """

    def __init__(self, reader: threading.Thread | None) -> None:
        # Not Event.__init__: its condition is built when first used (see
        # __getattr__); most connections are never waited on until they end.
        self._flag = False
        self._reader = reader

    if not TYPE_CHECKING:  # typed by threading.Event's attributes

        def __getattr__(self, name: str) -> Any:
            if name != "_cond":
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            return build_once(self, name, lambda: SlimCondition(threading.Lock()))

    def is_set(self) -> bool:
        """Whether the connection has ended (its threads too)."""
        if not super().is_set():
            return False
        self._join()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` for the end; return whether it came."""
        if not super().wait(timeout):
            return False
        self._join()
        return True

    def follow(self, reader: threading.Thread | None) -> None:
        """The connection's reader is now ``reader``; ``None``: a worker of
        the process's poller, which outlives the connection."""
        self._reader = reader

    def _join(self) -> None:
        reader = self._reader
        if reader is not None and reader is not threading.current_thread() and reader.ident:
            reader.join()


def check_close(code: object, reason: object) -> None:
    """Raise ``ValueError`` for a close code or reason that may not be sent."""
    if not isinstance(code, int) or not is_sendable_code(code):
        raise ValueError(f"close code {code!r} may not be sent in a close frame")
    if not isinstance(reason, str) or len(reason.encode()) > 123:
        raise ValueError("close reason must be a str of at most 123 bytes of UTF-8")
