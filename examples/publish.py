"""Publish to a room of the hub from any process: a shell, a cron job, a task
queue worker. No Flask app and no request: the members of every worker of
the app get it, as if a view had published it.

After ``pip install -e .[redis]``::

    export SOCKETS_HUB_URL=redis://127.0.0.1:6379/0
    python examples/publish.py lobby "the build is green"
    echo '{"user": "ci", "text": "deploy at 5"}' | python examples/publish.py --json lobby

A message given as an argument, or else each line of stdin, is sent as a
text frame; with ``--json`` it must be JSON (it is checked, then sent as
it is). Exit status: 0 sent; 1 not sent (Redis is unavailable); 2 perhaps
sent (Redis did not answer in time: do not simply send it again).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable

import flask_sockets_channels as sockets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Publish to a room of the hub.")
    parser.add_argument("room")
    parser.add_argument("message", nargs="?", help="the message (default: each line of stdin)")
    parser.add_argument("--json", action="store_true", help="the messages are JSON")
    parser.add_argument(
        "--url",
        default=os.environ.get("SOCKETS_HUB_URL"),
        help="the hub's Redis URL (default: $SOCKETS_HUB_URL)",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=int(os.environ.get("SOCKETS_HUB_HISTORY", "0")),
        help="messages kept per room, as the app keeps (default: $SOCKETS_HUB_HISTORY or 0)",
    )
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("no hub URL: give --url or set SOCKETS_HUB_URL")
    messages: Iterable[str] = (
        [args.message] if args.message is not None else (line.rstrip("\n") for line in sys.stdin)
    )
    hub = sockets.Hub.from_url(args.url, history=args.history)
    try:
        for message in messages:
            if args.json:
                json.loads(message)  # raises ValueError: better here than in a browser
            hub.publish(args.room, message)
    except sockets.HubUnavailable as exc:
        print(exc, file=sys.stderr)
        return 2 if exc.maybe_delivered else 1
    except ValueError as exc:  # not JSON (--json), or larger than the hub takes
        print(f"not published: {exc}", file=sys.stderr)
        return 1
    finally:
        hub.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
