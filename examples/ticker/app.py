"""Server push: a tick every ``period`` milliseconds until the client leaves.

Run it (from the repository root, after ``pip install -e .``)::

    python examples/ticker/app.py [PORT]        # or: python -m examples.ticker.app [PORT]

then connect to ws://127.0.0.1:5000/ticker?period=500 (milliseconds, 1000 by
default). The client may send a number of milliseconds at any time; the ticks
after the current sleep come at that period.

Two ways out of the loop, and both are needed:

* ``done.wait(period)`` is the loop's sleep. It returns ``False`` after
  ``period`` seconds and ``True`` as soon as the connection has ended, so a
  client that goes away ends the view at once, not at the next tick.
* ``sender.put`` raises ``Closed`` once the connection is closing (the client
  sent its close frame, or the server is shutting down): nothing more can be
  sent.

The view also reads ``receiver``, without waiting. A view must keep reading
what the client sends: once ``receiver`` is full the library stops reading the
socket (backpressure), and then it cannot see the client's close frame either.
"""

from __future__ import annotations

import itertools
import queue
import sys
import threading

from flask import Flask, request

import flask_sockets_channels as sockets

DEFAULT_PERIOD_MS = 1000
MIN_PERIOD_MS = 10

app = Flask(__name__)
sockets.Sockets(app)


@app.route("/")
def index() -> str:
    return "ticker: ws://HOST/ticker?period=MILLISECONDS\n"


@app.route("/ticker")
@sockets.messages()
def ticker(
    receiver: sockets.Channel[str], sender: sockets.Channel[str], done: threading.Event
) -> None:
    """Send "tick 1", "tick 2", ... every period until the connection ends."""
    period = parse_period(request.args.get("period"), DEFAULT_PERIOD_MS / 1000)
    for count in itertools.count(1):
        try:
            sender.put(f"tick {count}")
        except sockets.Closed:  # the connection is closing: stop sending
            return
        if done.wait(period):  # the sleep; True once the connection has ended
            return
        period = latest_period(receiver, period)


def latest_period(receiver: sockets.Channel[str], period: float) -> float:
    """The last period the client asked for since the previous tick, in
    seconds, or ``period``; never waits."""
    while True:
        try:
            message = receiver.get_nowait()
        except (queue.Empty, sockets.Closed):  # nothing new / connection ended
            return period
        period = parse_period(message, period)


def parse_period(milliseconds: str | None, default: float) -> float:
    """``milliseconds`` as seconds (at least 10 ms), or ``default`` if it is
    not a number."""
    try:
        return max(int(milliseconds or ""), MIN_PERIOD_MS) / 1000
    except ValueError:
        return default


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    app.run("127.0.0.1", port, threaded=True)
