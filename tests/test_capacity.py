"""Operating at capacity: connection limits (503 / 429 before the 101), the
rate limit, and a thread budget that plain HTTP keeps a share of."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask

import flask_sockets_channels as sockets
from flask_sockets_channels import Options

# -- options ----------------------------------------------------------------


def test_limits_are_off_by_default() -> None:
    options = Options()
    assert options.max_connections is None
    assert options.max_connections_per_client is None
    assert options.rate_limit is None


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ((50, 1.0), (50.0, 1.0)),
        ([200, 2], (200.0, 2.0)),  # a list, as JSON config gives it
        ((5, timedelta(milliseconds=500)), (5.0, 0.5)),
        ((0.5, 1), (0.5, 1.0)),
        (None, None),
    ],
)
def test_rate_limit_is_messages_per_seconds(value: Any, stored: Any) -> None:
    assert Options(rate_limit=value).rate_limit == stored


@pytest.mark.parametrize(
    "value",
    [(0, 1.0), (10, 0), (-1, 1.0), (10, -1), (True, 1.0), (10,), (1, 2, 3), "50/s", 50,
     (float("inf"), 1.0), (10, float("nan"))],
)  # fmt: skip
def test_invalid_rate_limit_raises_at_decoration(value: Any) -> None:
    with pytest.raises(ValueError, match="rate_limit must be"):
        sockets.messages(rate_limit=value)


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("max_connections", -1),
        ("max_connections", 1.5),
        ("max_connections", True),
        ("max_connections", "10"),
        ("max_connections_per_client", 0),
        ("max_connections_per_client", -3),
        ("max_connections_per_client", 2.0),
    ],
)
def test_invalid_connection_limits_raise_at_decoration(name: str, bad: Any) -> None:
    with pytest.raises(ValueError, match=name):
        sockets.messages(**{name: bad})


def test_zero_max_connections_is_accepted() -> None:
    assert Options(max_connections=0).max_connections == 0


def test_limits_come_from_app_config() -> None:
    app = Flask(__name__)
    app.config.update(
        SOCKETS_MAX_CONNECTIONS=15,
        SOCKETS_MAX_CONNECTIONS_PER_CLIENT=3,
        SOCKETS_RATE_LIMIT=[50, 1],
    )

    @app.route("/config")
    @sockets.messages()
    def from_config(receiver: Any) -> None:
        pass

    @app.route("/override")
    @sockets.messages(max_connections=2, rate_limit=None)
    def overridden(receiver: Any) -> None:
        pass

    sockets.Sockets(app)
    config = from_config.__sockets_channels__.options_for(app)  # type: ignore[attr-defined]
    assert (config.max_connections, config.max_connections_per_client) == (15, 3)
    assert config.rate_limit == (50.0, 1.0)
    override = overridden.__sockets_channels__.options_for(app)  # type: ignore[attr-defined]
    assert (override.max_connections, override.max_connections_per_client) == (2, 3)
    assert override.rate_limit is None


def test_invalid_limit_in_config_raises_at_init_app() -> None:
    app = Flask(__name__)
    app.config["SOCKETS_MAX_CONNECTIONS"] = -5
    with pytest.raises(ValueError, match="max_connections"):
        sockets.Sockets(app)
