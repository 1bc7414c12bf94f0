"""Options: defaults, validation, SOCKETS_* precedence, logging levels."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from flask import Flask

import flask_sockets_channels as sockets
from flask_sockets_channels import LOG_LEVEL_STRINGS, Options
from flask_sockets_channels.options import resolve_options


def test_defaults_match_the_spec() -> None:
    options = Options()
    assert options.logger is logging.getLogger("flask_sockets_channels")
    assert options.log_level == sockets.LOG_LEVEL_INFO == 2
    assert options.skip_logging is False
    assert options.write_wait == 10
    assert options.pong_wait == 60
    assert options.ping_period == 48
    assert options.max_message_size == 65536
    assert options.send_channel_buffer == 10
    assert options.recv_channel_buffer == 10
    assert options.allowed_origin == "https?://{{host}}"
    assert options.subprotocols == ()
    assert options.close_timeout == 5
    assert options.compression is False
    assert options.heartbeat is False


def test_log_level_constants_and_strings() -> None:
    assert (
        sockets.LOG_LEVEL_ERROR,
        sockets.LOG_LEVEL_WARNING,
        sockets.LOG_LEVEL_INFO,
        sockets.LOG_LEVEL_DEBUG,
    ) == (0, 1, 2, 3)
    assert LOG_LEVEL_STRINGS == ("Error", "Warning", "Info", "Debug")
    assert Options(log_level="debug").log_level == 3


def test_timedelta_becomes_seconds() -> None:
    options = Options(ping_period=timedelta(seconds=5), pong_wait=timedelta(minutes=1))
    assert (options.ping_period, options.pong_wait) == (5.0, 60.0)


@pytest.mark.parametrize(
    "overrides",
    [
        {"log_level": 0},
        {"write_wait": None},
        {"send_channel_buffer": 0},
        {"recv_channel_buffer": 0},
        {"close_timeout": 0},
        {"max_message_size": None},
        {"allowed_origin": None},
    ],
)
def test_zeros_and_nones_are_honoured(overrides: dict[str, object]) -> None:
    options = Options(**overrides)
    name, value = next(iter(overrides.items()))
    assert getattr(options, name) == value


@pytest.mark.parametrize(
    "overrides",
    [
        {"log_level": 4},
        {"log_level": -1},
        {"log_level": "loud"},
        {"write_wait": 0},
        {"write_wait": -1},
        {"pong_wait": "soon"},
        {"ping_period": 60, "pong_wait": 60},
        {"max_message_size": 0},
        {"send_channel_buffer": -1},
        {"recv_channel_buffer": 1.5},
        {"allowed_origin": 5},
        {"allowed_origin": "("},
        {"subprotocols": [1]},
        {"close_timeout": -1},
        {"compression": "yes"},
        {"heartbeat": 1},
        {"skip_logging": 1},
    ],
)
def test_invalid_values_raise_value_error(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Options(**overrides)


def test_invalid_value_raises_at_decoration() -> None:
    with pytest.raises(ValueError, match="ping_period"):
        sockets.messages(ping_period=100, pong_wait=10)
    with pytest.raises(ValueError):
        sockets.json_messages(dict, Options(), write_wait=-5)


def test_unknown_override_raises_type_error() -> None:
    with pytest.raises(TypeError):
        sockets.messages(ping_periods=5)


def test_precedence_override_over_options_over_config_over_default() -> None:
    config = {"SOCKETS_PING_PERIOD": 20, "SOCKETS_PONG_WAIT": 30, "SOCKETS_WRITE_WAIT": 3}
    resolved = resolve_options(config, Options(ping_period=7, close_timeout=1), ping_period=9)
    assert resolved.ping_period == 9  # override
    assert resolved.close_timeout == 1  # explicit Options field
    assert resolved.pong_wait == 30  # config
    assert resolved.write_wait == 3  # config
    assert resolved.max_message_size == 65536  # default


def test_options_field_equal_to_default_still_overrides_config() -> None:
    resolved = resolve_options({"SOCKETS_LOG_LEVEL": 3}, Options(log_level=2))
    assert resolved.log_level == 2


def test_invalid_config_raises_at_init_app() -> None:
    app = Flask(__name__)
    app.config["SOCKETS_MAX_MESSAGE_SIZE"] = -3
    with pytest.raises(ValueError, match="SOCKETS_"):
        sockets.Sockets(app)


def test_unknown_config_key_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    app = Flask(__name__)
    app.config["SOCKETS_PING_PERIODS"] = 3
    with caplog.at_level(logging.WARNING, "flask_sockets_channels"):
        sockets.Sockets(app)
    assert "SOCKETS_PING_PERIODS" in caplog.text


@pytest.mark.parametrize(
    ("level", "emitted"),
    [
        (sockets.LOG_LEVEL_ERROR, ["error"]),
        (sockets.LOG_LEVEL_WARNING, ["error", "warning"]),
        (sockets.LOG_LEVEL_INFO, ["error", "warning", "info"]),
        (sockets.LOG_LEVEL_DEBUG, ["error", "warning", "info", "debug"]),
    ],
)
def test_log_level_filters_records(
    caplog: pytest.LogCaptureFixture, level: int, emitted: list[str]
) -> None:
    options = Options(log_level=level)
    with caplog.at_level(logging.DEBUG, "flask_sockets_channels"):
        for index, name in enumerate(["error", "warning", "info", "debug"]):
            options.log(index, name)
    assert [record.getMessage() for record in caplog.records] == emitted


def test_skip_logging_silences_everything(caplog: pytest.LogCaptureFixture) -> None:
    options = Options(skip_logging=True)
    with caplog.at_level(logging.DEBUG, "flask_sockets_channels"):
        options.log(sockets.LOG_LEVEL_ERROR, "nothing")
    assert caplog.records == []


def test_logger_by_name() -> None:
    assert Options(logger="my.app").logger is logging.getLogger("my.app")


def test_config_conflicting_with_a_view_raises_at_init_app() -> None:
    app = Flask(__name__)
    app.config.update(SOCKETS_PONG_WAIT=30, SOCKETS_PING_PERIOD=10)
    app.add_url_rule("/s", "s", sockets.messages(ping_period=40)(lambda sender: None))
    with pytest.raises(ValueError, match="ping_period"):
        sockets.Sockets(app)


def test_config_conflicting_with_a_later_blueprint_view_raises_at_registration() -> None:
    from flask import Blueprint

    app = Flask(__name__)
    app.config.update(SOCKETS_PONG_WAIT=30, SOCKETS_PING_PERIOD=10)
    sockets.Sockets(app)
    blueprint = Blueprint("late", __name__)
    blueprint.add_url_rule("/s", "s", sockets.messages(ping_period=40)(lambda sender: None))
    with pytest.raises(ValueError, match="ping_period"):
        app.register_blueprint(blueprint)
