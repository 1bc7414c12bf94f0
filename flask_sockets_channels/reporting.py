"""What a connection reports, and how: :class:`Reports`.

Every error of a connection goes three ways: a log line, the ``on_error``
callbacks, and the ``errors`` channel. User callbacks run in library
threads (reader, writer, timer), so whatever they raise is logged and goes
no further; lines a peer can make us repeat at will are logged under a
:class:`~.loglimit.LogLimit`.
"""

from __future__ import annotations

import queue
from typing import Any, Callable

from .channels import Channel, Closed, build_slot_once
from .exceptions import SocketsError
from .loglimit import LogLimit
from .options import LOG_LEVEL_ERROR, LOG_LEVEL_WARNING, Options

__all__ = ["ERRORS_BUFFER", "Reports"]

#: How many errors ``errors`` holds; more are logged and dropped.
ERRORS_BUFFER = 64


class Reports:
    """A connection's ``errors``, ``on_error`` callbacks and capped logs."""

    # An idle connection is kept by the thousand: no __dict__.
    __slots__ = ("_errors", "_log_limit", "_name", "_on_error", "_options")

    def __init__(self, name: str, options: Options) -> None:
        self._name = name
        self._options = options
        # Built on first use: most connections end without an error.
        self._errors: Channel[SocketsError] | None = None
        self._on_error: list[Callable[[SocketsError], None]] = []
        self._log_limit: LogLimit | None = None  # made by the first capped line

    @property
    def errors(self) -> Channel[SocketsError]:
        """The ``errors`` channel."""
        errors: Channel[SocketsError] = self._errors or build_slot_once(
            self, "_errors", lambda: Channel(ERRORS_BUFFER)
        )
        return errors

    def on_error(self, callback: Callable[[SocketsError], None]) -> None:
        """Call ``callback(error)`` for every error reported."""
        self._on_error.append(callback)

    def report(self, error: SocketsError, level: int, capped: bool = False) -> None:
        """Log ``error`` (``capped``: under the log limit: the peer can
        repeat it at will), pass it to the ``on_error`` callbacks and put it
        on ``errors``."""
        message = "%s: %s: %s"
        args = (self._name, type(error).__name__, error)
        if capped:
            self.log_capped(level, message, *args)
        else:
            self._options.log(level, message, *args)
        for callback in self._on_error:
            self.call(callback, error, "on_error")
        try:
            self.errors.put_nowait(error)
        except queue.Full:
            self.log_capped(LOG_LEVEL_WARNING, "%s: errors channel full, dropped", self._name)
        except Closed:
            pass  # the connection has ended: nobody reads errors any more

    def call(self, callback: Callable[[Any], object], argument: Any, kind: str) -> None:
        """Run a user's ``kind`` callback in a library thread: whatever it
        raises is logged with its traceback, and the thread goes on."""
        try:
            callback(argument)
        except Exception:
            name = getattr(callback, "__qualname__", None) or repr(callback)
            self.log_capped(
                LOG_LEVEL_ERROR, "%s: %s callback %s raised", self._name, kind, name,
                exc_info=True,
            )  # fmt: skip

    def log_capped(self, level: int, message: str, *args: object, exc_info: bool = False) -> None:
        """Log a line the peer can make us repeat, under the log limit."""
        limit = self._log_limit
        if limit is None:
            limit = self._log_limit = LogLimit()
        left_out = limit.allow()
        if left_out is None:
            return
        if left_out:
            message += " (%d similar lines left out)"
            args = (*args, left_out)
        self._options.log(level, message, *args, exc_info=exc_info)

    def end(self) -> None:
        """The connection ended: ``errors`` is closed (it holds every error),
        the callbacks are dropped, and what the log limit left out is said."""
        self.errors.close()
        self._on_error.clear()
        if self._log_limit is not None and self._log_limit.suppressed:
            self._options.log(
                LOG_LEVEL_WARNING, "%s: %d more lines left out (log limit)",
                self._name, self._log_limit.suppressed,
            )  # fmt: skip
