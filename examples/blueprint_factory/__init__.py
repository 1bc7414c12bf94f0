"""An app factory with its socket views on a blueprint.

Run it from the repository root (after ``pip install -e .``), either way::

    flask --app examples.blueprint_factory:create_app run      # port 5000
    python -m examples.blueprint_factory [PORT]

Sockets:  ws://127.0.0.1:5000/live/echo/<name>   text: replies "<name>: <message>"
          ws://127.0.0.1:5000/live/sum           JSON: {"numbers": [1, 2.5]} -> {"sum": 3.5}
HTTP:     http://127.0.0.1:5000/live/status      {"open_connections": N}

The pattern is Flask's usual one: the extension object is created once at
module level without an app, and each app the factory makes is set up with
``init_app``. The blueprint's views need nothing from it: the decorators work
on their own, and ``init_app`` makes their plain ``@live.route`` rules
WebSocket rules, also for a blueprint registered after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from flask_sockets_channels import Sockets

from .views import live

sockets_ext = Sockets()


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Make the app; ``config`` overrides any config key."""
    app = Flask(__name__)
    # App-wide connection options: every socket view of this app pings every
    # 20 s and gives up on a peer silent for 30 s, unless its decorator says
    # otherwise.
    app.config.from_mapping(SOCKETS_PING_PERIOD=20, SOCKETS_PONG_WAIT=30)
    app.config.update(config or {})
    sockets_ext.init_app(app)
    app.register_blueprint(live)
    return app
