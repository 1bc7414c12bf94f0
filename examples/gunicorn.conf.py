"""gunicorn settings for a Flask app with WebSocket endpoints.

    gunicorn -c examples/gunicorn.conf.py examples.echo.app:app

Sizing: each open WebSocket holds one gthread thread for its whole life (the
view runs in it), and the library adds two of its own (reader and writer).
So ``threads`` must be at least the number of concurrent WebSockets per
worker plus headroom for plain HTTP requests; a connection beyond that is
accepted but its handshake waits, unanswered, until a thread is free.
gthread keeps its pool threads after they were used once: size it, do not
rely on it shrinking.
"""

import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "100"))
# How long a worker waits for requests (WebSocket sessions included) after
# SIGTERM; the hook below makes the sessions end at its start, not its end.
graceful_timeout = 10


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    """On SIGTERM, close every WebSocket with 1001 at once.

    gunicorn's ``worker_exit`` hook runs only after the graceful timeout,
    when the arbiter is about to send SIGKILL: too late to close anything.
    """
    extension = getattr(worker.wsgi, "extensions", {}).get("sockets_channels")
    if extension is not None:
        extension.install_sigterm_handler()
