"""A publisher in a process of its own, for the hub tests: no Flask app.

``python -m tests.hub_publisher URL ROOM COUNT PACE HISTORY`` publishes
``n-0`` ... ``n-<COUNT-1>`` to ``ROOM``, PACE seconds apart, and prints
how many it has published after every 100 (and ``done`` at the end), so
that a test can act at known points of the run.
"""

from __future__ import annotations

import sys
import time

import flask_sockets_channels as sockets


def main(url: str, room: str, count: int, pace: float, history: int) -> None:
    hub = sockets.Hub.from_url(url, history=history)
    started = time.monotonic()
    for number in range(count):
        hub.publish(room, f"n-{number}")
        if (number + 1) % 100 == 0:
            print(number + 1, flush=True)
        # Paced against the start, so that a slow publish does not slow the run.
        delay = started + (number + 1) * pace - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print("done", flush=True)
    hub.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
