"""A publisher in a process of its own, for the hub tests: no Flask app.

``python -m tests.hub_publisher URL ROOMS COUNT PACE HISTORY [--retry] [--pause-at N]``
publishes ``n-0`` ... ``n-<COUNT-1>``, PACE seconds apart, message ``n-i``
to the ``i % len(ROOMS)``-th of the comma-separated ROOMS, and prints how
many it has published after every 100 (and ``done`` at the end), so that
a test can act at known points of the run.

With ``--retry``, a publish that raised ``HubUnavailable`` with
``maybe_delivered`` False (nothing was sent) is tried again every 50 ms for
up to 60 s, and the time until one went through is printed as
``outage <seconds>``; one that may have been delivered is not sent again
(it could arrive twice) but printed as ``maybe <number>``.

With ``--pause-at N``, once N messages are published (each acknowledged) it
prints ``paused N`` and waits for a line on its standard input: a test can
then act on Redis knowing that no publish is in flight (a signal could stop
the process between sending a command and reading its reply, and a master
killed then leaves that publish ``maybe_delivered``).
"""

from __future__ import annotations

import sys
import time

import flask_sockets_channels as sockets

RETRY_FOR = 60.0


def publish_until_sent(hub: sockets.Hub, room: str, text: str, number: int) -> None:
    failed_at = None
    while True:
        try:
            hub.publish(room, text)
        except sockets.HubUnavailable as exc:
            if exc.maybe_delivered:
                print(f"maybe {number}", flush=True)
                return
            failed_at = failed_at or time.monotonic()
            if time.monotonic() - failed_at > RETRY_FOR:
                raise
            time.sleep(0.05)
            continue
        if failed_at is not None:
            print(f"outage {time.monotonic() - failed_at:.3f}", flush=True)
        return


def main(
    url: str,
    rooms: list[str],
    count: int,
    pace: float,
    history: int,
    retry: bool,
    pause_at: int | None,
) -> None:
    hub = sockets.Hub.from_url(url, history=history)
    started = time.monotonic()
    for number in range(count):
        room, text = rooms[number % len(rooms)], f"n-{number}"
        if retry:
            publish_until_sent(hub, room, text, number)
        else:
            hub.publish(room, text)
        if (number + 1) % 100 == 0:
            print(number + 1, flush=True)
        if number + 1 == pause_at:
            print(f"paused {pause_at}", flush=True)
            sys.stdin.readline()
            started = time.monotonic() - (number + 1) * pace  # no catching up
        # Paced against the start, so that a slow publish does not slow the run.
        delay = started + (number + 1) * pace - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print("done", flush=True)
    hub.close()


if __name__ == "__main__":
    main(
        sys.argv[1],
        sys.argv[2].split(","),
        int(sys.argv[3]),
        float(sys.argv[4]),
        int(sys.argv[5]),
        "--retry" in sys.argv[6:],
        int(sys.argv[sys.argv.index("--pause-at") + 1]) if "--pause-at" in sys.argv else None,
    )
