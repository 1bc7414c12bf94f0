"""The process-wide timer thread (``keepalive.Scheduler``) on its own."""

from __future__ import annotations

import threading
import time

from flask_sockets_channels.keepalive import Scheduler
from tests.conftest import require, wait_time
from tests.server_app import STACK_LARGER_THAN_MEMORY


class Ticking:
    """A connection as the scheduler sees it: records its ticks."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ticked = threading.Event()

    def tick(self, now: float) -> float | None:
        self.ticked.set()
        return None


def test_a_timer_thread_that_cannot_start_is_started_by_the_next_schedule() -> None:
    """A process at its thread limit: the schedule that needed the thread
    raises and keeps nothing; the timers are not wedged for the process,
    the next schedule starts the thread."""
    scheduler = Scheduler()
    refused, later = Ticking("refused"), Ticking("later")
    previous = threading.stack_size(STACK_LARGER_THAN_MEMORY)
    try:
        scheduler.schedule(refused, time.monotonic())
    except RuntimeError:
        provoked = True
    else:
        provoked = False
    finally:
        threading.stack_size(previous)
    require(provoked, "thread stacks larger than memory start here (overcommit)")
    assert not scheduler.running
    assert not scheduler.scheduled(refused)  # no reference kept to it
    scheduler.schedule(later, time.monotonic())
    assert later.ticked.wait(wait_time(5))
    assert not refused.ticked.is_set()
    deadline = time.monotonic() + wait_time(5)
    while scheduler.running and time.monotonic() < deadline:
        time.sleep(0.01)  # the thread ends when nothing is left; no event says so
    assert not scheduler.running
