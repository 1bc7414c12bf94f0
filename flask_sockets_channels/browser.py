"""The browser client (``static/client.js``), served by the ``Sockets``
extension at ``/_sockets_channels/client.js`` (a plain script that defines
``window.FlaskSocketsChannels``) and ``/_sockets_channels/client.mjs`` (an
ES module), with no build step and no dependency. In a template::

    <script src="{{ url_for('sockets_channels.static', filename='client.js') }}"></script>
"""

from __future__ import annotations

from flask import Blueprint, Flask

__all__ = ["CLIENT_BLUEPRINT", "serve_client"]

#: The name of the blueprint that serves the client's files.
CLIENT_BLUEPRINT = "sockets_channels"

_client = Blueprint(
    CLIENT_BLUEPRINT, __name__, static_folder="static", static_url_path="/_sockets_channels"
)


def serve_client(app: Flask) -> None:
    """Serve the browser client's files from ``app`` (once)."""
    if CLIENT_BLUEPRINT not in app.blueprints:
        app.register_blueprint(_client)
