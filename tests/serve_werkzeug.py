"""The test app on the werkzeug development server, as a process of its own
(for figures that need a fresh process, such as its peak memory): the
listening socket is inherited as file descriptor ``argv[1]``."""

from __future__ import annotations

import sys

from werkzeug.serving import make_server

from tests.server_app import app_from_env

if __name__ == "__main__":
    server = make_server("127.0.0.1", 0, app_from_env(), threaded=True, fd=int(sys.argv[1]))
    server.serve_forever()
