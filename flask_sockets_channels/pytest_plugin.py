"""A pytest plugin with the ``ws_client`` fixture.

Installed with the package, it is registered through the ``pytest11`` entry
point, so a test suite gets the fixture without importing anything. The
fixture needs an ``app`` fixture that returns the Flask application (the
convention pytest-flask also follows)::

    @pytest.fixture
    def app():
        return create_app()

    def test_echo(ws_client):
        with ws_client.connect("/echo") as ws:
            ws.send("hello")
            assert ws.receive() == "hello"
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .testing import WebSocketTestClient

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["ws_client"]


@pytest.fixture
def ws_client(app: Flask) -> WebSocketTestClient:
    """A :class:`~flask_sockets_channels.testing.WebSocketTestClient` for
    the ``app`` fixture, which the test suite must define.

    Every session it opens is closed, and its request thread joined, at the
    end of its ``with`` block; the fixture itself holds nothing to clean up.
    """
    return WebSocketTestClient(app)
