"""The process-wide timer thread (``keepalive.Scheduler``) on its own."""

from __future__ import annotations

import select
import socket
import struct
import threading
import time

from flask_sockets_channels.keepalive import Scheduler, input_waiting
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


def test_input_waiting_is_what_the_peer_sent_and_we_have_not_read() -> None:
    """The keepalive clock's last look before it calls a peer dead: bytes
    (or an EOF) in the kernel that no reader has taken yet mean the peer
    spoke and our reading lags; nothing there, or a reset, means silence."""
    ours, peer = socket.socketpair()
    with ours, peer:
        assert not input_waiting(ours)
        peer.sendall(b"\x8a\x00")  # a pong
        assert input_waiting(ours)
        assert ours.recv(16) == b"\x8a\x00"
        assert not input_waiting(ours)
        peer.shutdown(socket.SHUT_WR)
        assert input_waiting(ours)  # an EOF the reader has yet to see
    assert not input_waiting(ours)  # closed


def test_input_waiting_is_false_after_a_reset() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()) as client:
        accepted, _ = listener.accept()
        with accepted:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()  # RST
            reset = select.poll()
            reset.register(accepted, select.POLLERR | select.POLLHUP)
            assert reset.poll(wait_time(5) * 1000), "no reset arrived"
            assert not input_waiting(accepted)
