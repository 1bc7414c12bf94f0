"""Modes in-process through the test client: models, unbuffered channels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pytest
from flask import Flask

import flask_sockets_channels as sockets
from flask_sockets_channels.testing import WebSocketTestClient


class PydanticStyle:
    """A model with pydantic's two methods, without depending on pydantic."""

    def __init__(self, name: str, age: int) -> None:
        self.name, self.age = name, age

    @classmethod
    def model_validate(cls, value: Any) -> PydanticStyle:
        if not isinstance(value, dict) or not isinstance(value.get("age"), int):
            raise ValueError("age must be an integer")
        return cls(value["name"], value["age"])

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        return {"name": self.name, "age": self.age}


@dataclass
class Optionals:
    name: str
    note: Optional[str] = None  # noqa: UP045 - the form that works on Python 3.9
    count: Optional[int] = None  # noqa: UP045


def make_app() -> Flask:
    app = Flask(__name__)
    sockets.Sockets(app)

    @app.route("/pydantic")
    @sockets.json_messages(PydanticStyle)
    def pydantic(receiver, sender, errors):  # type: ignore[no-untyped-def]
        for person in receiver:
            # A message that did not decode is on errors before the next
            # one is on receiver: its error goes out first.
            while not errors.empty():
                sender.put({"error": type(errors.get()).__name__})
            person.age += 1
            sender.put(person)

    @app.route("/optionals")
    @sockets.json_messages(Optionals)
    def optionals(receiver, sender, errors):  # type: ignore[no-untyped-def]
        for item in receiver:
            while not errors.empty():
                sender.put({"error": type(errors.get()).__name__})
            sender.put(item)

    @app.route("/any-json")
    @sockets.json_messages(object)
    def any_json(receiver, sender):  # type: ignore[no-untyped-def]
        for value in receiver:
            sender.put(value)

    @app.route("/unbuffered")
    @sockets.messages(send_channel_buffer=0, recv_channel_buffer=0)
    def unbuffered(receiver, sender):  # type: ignore[no-untyped-def]
        for message in receiver:
            sender.put(message.upper())

    return app


@pytest.fixture
def client() -> WebSocketTestClient:
    return WebSocketTestClient(make_app())


def test_pydantic_style_models_are_validated_and_dumped(client: WebSocketTestClient) -> None:
    with client.connect("/pydantic") as ws:
        ws.send_json({"name": "ann", "age": 40})
        assert ws.receive_json() == {"name": "ann", "age": 41}
        ws.send_json({"name": "bob", "age": "old"})
        ws.send_json({"name": "cid", "age": 1})
        assert ws.receive_json() == {"error": "DecodeError"}
        assert ws.receive_json() == {"name": "cid", "age": 2}


def test_optional_dataclass_fields_accept_none_and_reject_wrong_types(
    client: WebSocketTestClient,
) -> None:
    with client.connect("/optionals") as ws:
        ws.send_json({"name": "a", "note": None, "count": 3})
        assert ws.receive_json() == {"name": "a", "note": None, "count": 3}
        ws.send_json({"name": "b", "note": 5})
        ws.send_json({"name": "c"})
        assert ws.receive_json() == {"error": "DecodeError"}
        assert ws.receive_json() == {"name": "c", "note": None, "count": None}


def test_model_object_accepts_any_json_value(client: WebSocketTestClient) -> None:
    with client.connect("/any-json") as ws:
        for value in ([1, 2], "text", 3.5, None, {"a": True}):
            ws.send_json(value)
            assert ws.receive_json() == value


def test_unbuffered_channels_work_like_go(client: WebSocketTestClient) -> None:
    with client.connect("/unbuffered") as ws:
        for word in ("one", "two", "three"):
            ws.send(word)
        assert [ws.receive() for _ in range(3)] == ["ONE", "TWO", "THREE"]
