"""``python -m examples.blueprint_factory [PORT]``: the factory's app on the
werkzeug development server."""

from __future__ import annotations

import sys

from . import create_app

if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    create_app().run("127.0.0.1", port, threaded=True)
