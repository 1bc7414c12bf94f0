"""Where a connection is in its closing: :class:`CloseState`."""

from __future__ import annotations

import threading

__all__ = ["CloseState"]


class CloseState:
    """The one owner of a connection's close bookkeeping.

    It answers: was a close asked for, and with what (``request``); which
    code ended the connection (``code``, ``reason``: the first one set
    wins); was the connection-ending error reported (:meth:`first_failure`);
    by when must the peer finish the closing handshake (``deadline``); has
    the teardown begun (``ended``). The engine's state says which frames
    may still be sent or received, and the sender's own flags which frames
    are still to be written; neither is kept here.
    """

    # An idle connection is kept by the thousand: no __dict__.
    __slots__ = ("_lock", "code", "deadline", "ended", "failed", "reason", "request")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: The close to send, as asked (``close``, ``fail``, the peer's close).
        self.request: tuple[int, str] | None = None
        #: The code that ended the connection, once known.
        self.code: int | None = None
        self.reason = ""
        #: A connection-ending error was reported.
        self.failed = False
        #: The closing handshake must end by then (monotonic time).
        self.deadline: float | None = None
        #: The teardown has begun.
        self.ended = False

    def ask(self, code: int, reason: str) -> bool:
        """Record the close to send; False if one was already recorded."""
        with self._lock:
            if self.request is not None:
                return False
            self.request = (code, reason)
            return True

    def set_code(self, code: int, reason: str) -> None:
        """Record the code that ended the connection, unless one is."""
        with self._lock:
            if self.code is None:
                self.code, self.reason = int(code), reason

    def first_failure(self) -> bool:
        """True the first time only: the error that ends the connection is
        reported once."""
        with self._lock:
            if self.failed:
                return False
            self.failed = True
            return True
