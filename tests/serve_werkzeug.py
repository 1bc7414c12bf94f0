"""The test app on the werkzeug development server, as a process of its own
(for figures that need a fresh process, such as its peak memory): the
listening socket is inherited as file descriptor ``argv[1]``. With
``FSC_TEST_SIGTERM_HANDLER=1`` it installs ``Sockets.install_sigterm_handler``
over Python's default SIGTERM handling."""

from __future__ import annotations

import os
import sys

from werkzeug.serving import make_server

from tests.server_app import app_from_env

if __name__ == "__main__":
    app = app_from_env()
    if os.environ.get("FSC_TEST_SIGTERM_HANDLER") == "1":
        app.extensions["sockets_channels"].install_sigterm_handler()
    server = make_server("127.0.0.1", 0, app, threaded=True, fd=int(sys.argv[1]))
    server.serve_forever()
