"""The app of the access-control tests: Flask's own tools in front of socket
views (``tests.auth_app:create_app()`` under gunicorn)."""

from __future__ import annotations

import functools
from typing import Any, Callable

from flask import Flask, abort, g, request, session
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user

import flask_sockets_channels as sockets

#: Tokens a client may present, and whose they are.
TOKENS = {"s3cret": "alice", "t0ken": "bob"}
USERS = set(TOKENS.values())
#: The subprotocol prefix that carries a token (browsers can set no header
#: but Sec-WebSocket-Protocol).
TOKEN_PREFIX = "bearer."


class User(UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def token_from_subprotocols() -> str | None:
    """The token offered as ``bearer.<token>`` in Sec-WebSocket-Protocol."""
    for value in request.headers.getlist("Sec-WebSocket-Protocol"):
        for offered in value.split(","):
            offered = offered.strip()
            if offered.startswith(TOKEN_PREFIX):
                return offered[len(TOKEN_PREFIX) :]
    return None


def token_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """A decorator of our own, above the socket decorator: 401 unless the
    query string has a valid ``token``."""

    @functools.wraps(view)
    def checked(**kwargs: Any) -> Any:
        user = TOKENS.get(request.args.get("token", ""))
        if user is None:
            abort(401, description="a valid token is required")
        g.user = user
        return view(**kwargs)

    return checked


def create_app() -> Flask:
    app = Flask(__name__)
    app.secret_key = "not secret: tests only"
    sockets.Sockets(app)
    login_manager = LoginManager(app)

    @login_manager.user_loader
    def load_user(user_id: str) -> User | None:
        return User(user_id) if user_id in USERS else None

    @login_manager.request_loader
    def load_user_from_token(request: Any) -> User | None:
        # A token in the query string, or in Sec-WebSocket-Protocol.
        token = request.args.get("token") or token_from_subprotocols()
        user = TOKENS.get(token or "")
        return None if user is None else User(user)

    @login_manager.unauthorized_handler
    def unauthorized() -> Any:
        return "log in first\n", 401, {"Content-Type": "text/plain; charset=utf-8"}

    @app.before_request
    def members_only() -> None:
        if request.path.startswith("/members/") and "user" not in session:
            abort(401, description="members only")
        g.member = session.get("user")

    @app.route("/")
    def index() -> str:
        return "auth app\n"

    @app.route("/login/<user>", methods=["POST"])
    def login(user: str) -> str:
        session["user"] = user
        login_user(User(user))
        return "logged in\n"

    @app.route("/members/lobby")
    @sockets.messages()
    def lobby(sender: Any) -> None:
        sender.put(f"hello {g.member}")

    @app.route("/me")
    @login_required
    @sockets.messages(subprotocols=("chat",))
    def me(sender: Any, connection: sockets.Connection) -> None:
        sender.put(f"{current_user.id} {connection.subprotocol}")

    @app.route("/feed")
    @token_required
    @sockets.messages()
    def feed(sender: Any) -> None:
        sender.put(f"feed of {g.user}")

    return app
