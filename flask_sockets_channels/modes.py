"""The four message modes and their decorators.

=====================  ===================  ============================  ==========
decorator              ``receiver`` yields  ``sender`` takes              frames sent
=====================  ===================  ============================  ==========
``messages()``         ``str``              ``str``                       text
``byte_messages()``    ``bytes``            bytes, bytearray, memoryview  binary
``json_messages(M)``   ``M`` instances      ``M`` instances, JSON values  text
``mixed_messages()``   ``str`` or ``bytes`` ``str`` or bytes-like         by type
=====================  ===================  ============================  ==========
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
import typing
from typing import Any, Callable, TypeVar, Union, overload

from .assembler import Raw
from .connection import Codec
from .engine import Outgoing
from .exceptions import CloseCode, DecodeError, ProtocolError
from .options import Options
from .session import check_options, socket_view

__all__ = ["byte_messages", "json_messages", "messages", "mixed_messages"]

View = TypeVar("View", bound=Callable[..., Any])
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
_BYTES_LIKE = (bytes, bytearray, memoryview)
_JSON_VALUES = (dict, list, str, int, float, bool, type(None))
_UNION_TYPES = (Union, getattr(types, "UnionType", Union))  # X | Y is types.UnionType


class TextCodec(Codec):
    """Text mode: ``str`` both ways; a binary frame must be UTF-8."""

    def encode(self, item: Any) -> Outgoing:
        if not isinstance(item, str):
            raise TypeError(f"messages() sends str, not {type(item).__name__}")
        return Outgoing(True, item.encode())

    def decode(self, message: Raw) -> str:
        if isinstance(message, str):
            return message
        try:
            return message.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(
                "binary message is not valid UTF-8", CloseCode.INVALID_FRAME_PAYLOAD_DATA
            ) from exc


class BytesCodec(Codec):
    """Bytes mode: ``bytes`` in, bytes-like out; a text frame arrives as UTF-8."""

    def encode(self, item: Any) -> Outgoing:
        if isinstance(item, bytes):
            return Outgoing(False, item)
        if isinstance(item, (bytearray, memoryview)):
            return Outgoing(False, bytes(item))  # a copy: the caller may reuse its buffer
        raise TypeError(f"byte_messages() sends bytes-like objects, not {type(item).__name__}")

    def decode(self, message: Raw) -> bytes:
        return message.encode("utf-8") if isinstance(message, str) else message


class MixedCodec(Codec):
    """Mixed mode: each frame keeps its type."""

    def encode(self, item: Any) -> Outgoing:
        if isinstance(item, str):
            return Outgoing(True, item.encode())
        if isinstance(item, _BYTES_LIKE):
            return Outgoing(False, item if isinstance(item, bytes) else bytes(item))
        raise TypeError(f"mixed_messages() sends str or bytes-like, not {type(item).__name__}")

    def decode(self, message: Raw) -> Raw:
        return message


class JsonCodec(Codec):
    """JSON mode bound to ``model``: a dict, a dataclass, a pydantic-style
    model (``model_validate`` / ``model_dump``), any class taking the
    object's keys as keyword arguments, or ``object`` for any JSON value."""

    def __init__(self, model: type[Any]) -> None:
        if not isinstance(model, type):
            raise TypeError(f"json_messages() takes a class, not {model!r}")
        self.model = model
        self._field_types: dict[str, tuple[type, ...]] = {}
        if dataclasses.is_dataclass(model):
            self._field_types = _checkable_field_types(model)

    def encode(self, item: Any) -> Outgoing:
        if not isinstance(item, (self.model, *_JSON_VALUES)) and not _is_model(item):
            raise TypeError(
                f"json_messages({self.model.__name__}) sends {self.model.__name__} instances "
                f"or JSON values, not {type(item).__name__}"
            )
        return Outgoing(True, to_json_text(item).encode())

    def decode(self, message: Raw) -> Any:
        try:
            value = json.loads(message)
        except ValueError as exc:  # also UnicodeDecodeError, for a binary frame
            raise DecodeError(f"message is not JSON: {exc}", message) from exc
        except RecursionError as exc:  # "[" * 30000: nested deeper than the stack
            raise DecodeError("message is nested too deeply", message) from exc
        try:
            return self._from_json_value(value)
        except Exception as exc:  # a user's model may raise anything
            raise DecodeError(
                f"message is not a valid {self.model.__name__}: {exc}", message
            ) from exc

    def _from_json_value(self, value: Any) -> Any:
        model = self.model
        if model is object:
            return value
        validate = getattr(model, "model_validate", None)
        if validate is not None:
            return validate(value)
        if not isinstance(value, dict):
            raise TypeError(f"expected a JSON object, got {type(value).__name__}")
        if model is dict:
            return value
        for name, allowed in self._field_types.items():
            if name in value and not _is_instance(value[name], allowed):
                raise TypeError(f"field {name!r} must be {allowed[0].__name__}")
        return model(**value)


def to_json_text(item: Any) -> str:
    """Serialise a JSON value, dataclass or pydantic-style model to JSON text.

    Raises:
        TypeError: ``item`` (or something in it) cannot be serialised.
    """
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        value = dataclasses.asdict(item)
    elif callable(getattr(item, "model_dump", None)):
        value = item.model_dump(mode="json")
    else:
        value = item
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot send {type(item).__name__} as JSON: {exc}") from exc


def to_frame(message: Any) -> Outgoing:
    """The frame for a hub message: text for ``str``, binary for bytes-like,
    JSON text for anything else.

    Raises:
        TypeError: ``message`` cannot be serialised.
    """
    if isinstance(message, str):
        return Outgoing(True, message.encode())
    if isinstance(message, _BYTES_LIKE):
        return Outgoing(False, bytes(message))
    return Outgoing(True, to_json_text(message).encode(), json=True)


def _is_model(item: Any) -> bool:
    return (dataclasses.is_dataclass(item) and not isinstance(item, type)) or callable(
        getattr(item, "model_dump", None)
    )


def _checkable_field_types(model: type) -> dict[str, tuple[type, ...]]:
    """Dataclass fields whose annotation is a plain JSON type (or Optional of
    one), to check decoded values against."""
    try:
        hints = typing.get_type_hints(model)
    except Exception:  # unresolvable annotations: no checks
        return {}
    checkable = {}
    for item in dataclasses.fields(model):
        hint = hints.get(item.name)
        union = typing.get_origin(hint) in _UNION_TYPES
        options = typing.get_args(hint) if union else (hint,)
        allowed = tuple(typing.get_origin(t) or t for t in options)
        if all(t in _JSON_VALUES for t in allowed):
            checkable[item.name] = allowed
    return checkable


def _is_instance(value: Any, allowed: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in allowed:
        return False  # JSON true is not an int
    if isinstance(value, int) and float in allowed:
        return True
    return isinstance(value, allowed)


def _decorator(codec: Codec, options: Any, overrides: dict[str, Any]) -> Any:
    if inspect.isfunction(options):  # used bare: @messages
        return socket_view(options, codec, None, overrides)
    check_options(options, overrides)
    return lambda view: socket_view(view, codec, options, overrides)


@overload
def messages(options: View) -> View: ...
@overload
def messages(options: Options | None = None, **overrides: Any) -> Decorator: ...
def messages(options: Any = None, **overrides: Any) -> Any:
    """Make a view a WebSocket endpoint exchanging text messages.

    ::

        @app.route("/echo")          # with Sockets(app); else add websocket=True
        @messages()                  # or messages(ping_period=5), messages(Options(...))
        def echo(receiver, sender):
            for message in receiver:
                sender.put(message)

    The view runs in the request's thread and gets, besides its URL
    variables, whichever of these it names (all with ``**kwargs``):

    * ``receiver``: ``Channel`` of ``str``; iteration ends (``get`` raises
      ``Closed``) once the connection is closed and the buffer consumed.
    * ``sender``: ``Channel`` taking ``str`` (anything else: ``TypeError``
      at ``put``); ``put`` blocks while the buffer is full and raises
      ``Closed`` once the connection is closing.
    * ``errors``, ``disconnect``, ``done``, ``connection``: see
      :class:`~flask_sockets_channels.Connection`.

    Returning closes with 1000 after what was put on ``sender`` is sent;
    raising logs the traceback and closes with 1011. An inbound binary
    frame is decoded as UTF-8 (invalid: close with 1007). ``@messages``
    without parentheses works too.

    Args:
        options: An :class:`Options`; the fields it was given override the
            app's ``SOCKETS_*`` config.
        **overrides: Single options, overriding everything else.

    Raises:
        ValueError: An option's value is invalid (raised here, when the
            decorator is made; a conflict with the app config is raised by
            ``Sockets.init_app`` or when the view is registered).
        TypeError: ``options`` is not an ``Options``, or an override names
            no option.
    """
    return _decorator(TextCodec(), options, overrides)


@overload
def byte_messages(options: View) -> View: ...
@overload
def byte_messages(options: Options | None = None, **overrides: Any) -> Decorator: ...
def byte_messages(options: Any = None, **overrides: Any) -> Any:
    """Like :func:`messages`, for binary messages.

    ``receiver`` yields ``bytes`` (a text frame arrives as its UTF-8
    bytes); ``sender`` takes ``bytes``, ``bytearray`` or ``memoryview``
    (copied at ``put``) and sends binary frames; anything else raises
    ``TypeError`` at ``put``. Arguments and errors as for :func:`messages`.
    """
    return _decorator(BytesCodec(), options, overrides)


@overload
def mixed_messages(options: View) -> View: ...
@overload
def mixed_messages(options: Options | None = None, **overrides: Any) -> Decorator: ...
def mixed_messages(options: Any = None, **overrides: Any) -> Any:
    """Like :func:`messages`, keeping each frame's type.

    ``receiver`` yields ``str`` for a text frame and ``bytes`` for a binary
    one; ``sender`` sends ``str`` as text and bytes-like objects as binary;
    anything else raises ``TypeError`` at ``put``. Arguments and errors as
    for :func:`messages`.
    """
    return _decorator(MixedCodec(), options, overrides)


def json_messages(
    model: type[Any] = dict, options: Options | None = None, **overrides: Any
) -> Decorator:
    """Like :func:`messages`, with JSON messages bound to ``model``.

    ``receiver`` yields instances of ``model``. A message that does not
    decode or validate is dropped and a :class:`DecodeError` goes on
    ``errors`` (its ``raw`` is the message as received: ``str``, or
    ``bytes`` for a binary frame); the connection stays open. ``sender``
    takes instances of ``model`` and plain JSON values, and raises
    ``TypeError`` at ``put`` for anything it cannot serialise. Text and
    binary frames are both accepted; frames sent are text.

    Args:
        model: ``dict`` (a JSON object), a dataclass (built from the
            object's keys; fields annotated with plain JSON types, or
            Optional ones, are type-checked), a pydantic-style model
            (``model_validate`` / ``model_dump``), or ``object`` for any JSON
            value.
        options: As for :func:`messages`.
        **overrides: As for :func:`messages`.

    Raises:
        TypeError: ``model`` is not a class; as for :func:`messages`.
        ValueError: As for :func:`messages`.
    """
    if inspect.isfunction(model):  # used bare: @json_messages
        return socket_view(model, JsonCodec(dict), None, overrides)
    return _decorator(JsonCodec(model), options, overrides)  # type: ignore[no-any-return]
