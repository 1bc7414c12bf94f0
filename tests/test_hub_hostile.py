"""The hub when things go wrong around it, each against a real
redis-server started by the test: members whose ``offer`` raises.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import pytest

from tests.conftest import Inbox, redis_server, wait_time
from tests.test_hub_redis import hub_at, new_room, receive, sender_channel

T = wait_time(5)


# -- members whose offer raises ----------------------------------------------------


class Raising(Inbox):
    def offer(self, frame: Any, max_backlog: int) -> bool:
        raise RuntimeError("a broken member")


@pytest.mark.parametrize("kind", ["in-process", "redis"])
def test_a_member_whose_offer_raises_is_logged_once_and_removed_and_the_others_go_on(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "flask_sockets_channels")
    name = new_room()
    first, broken, last = sender_channel(), Raising(10), sender_channel()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(redis_server()).url if kind == "redis" else None
        hub = stack.enter_context(hub_at(url))
        for member in (first, broken, last):
            stack.enter_context(hub.join(name, member))
        assert hub.wait_ready(T)
        for number in range(5):
            hub.publish(name, f"m{number}")
        expected = [f"m{number}" for number in range(5)]
        assert [receive(first) for _ in expected] == expected
        assert [receive(last) for _ in expected] == expected
        assert [m.sender for m in hub.members(name)] == [first, last]
        assert hub.reconnects == 0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert errors[0].exc_info is not None and "a broken member" in str(errors[0].exc_info[1])
