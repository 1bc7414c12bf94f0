"""Channel: queue.Queue with close, Go semantics for size 0."""

from __future__ import annotations

import queue
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from flask_sockets_channels import Channel, Closed
from tests.conftest import wait_time

T = wait_time(5)


@contextmanager
def running(target: Callable[[], Any]) -> Iterator[dict[str, Any]]:
    """Run ``target`` in a thread; yield its outcome dict once joined."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = target()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield outcome
    finally:
        thread.join(T)
        assert not thread.is_alive()


def _wait_for_sleepers(channel: Channel[Any], count: int) -> None:
    deadline = time.monotonic() + T
    while channel._sleeping < count and time.monotonic() < deadline:
        time.sleep(0.001)  # until they wait: their wake-up is what is tested
    assert channel._sleeping == count, f"{channel._sleeping} of {count} threads waiting"


def test_is_a_queue_and_generic() -> None:
    channel: Channel[int] = Channel(2)
    assert isinstance(channel, queue.Queue)
    assert Channel[str] is not None


def test_fifo_order() -> None:
    channel: Channel[int] = Channel(3)
    for item in (1, 2, 3):
        channel.put(item)
    assert [channel.get(), channel.get(), channel.get()] == [1, 2, 3]


def test_put_on_closed_raises_closed() -> None:
    channel: Channel[int] = Channel(1)
    channel.close()
    with pytest.raises(Closed):
        channel.put(1)


def test_get_drains_then_raises_closed() -> None:
    channel: Channel[int] = Channel(2)
    channel.put(1)
    channel.close()
    assert channel.get() == 1
    with pytest.raises(Closed):
        channel.get()


def test_iteration_ends_when_closed_and_drained() -> None:
    channel: Channel[int] = Channel(5)
    for item in range(3):
        channel.put(item)
    channel.close()
    assert list(channel) == [0, 1, 2]


def test_close_is_idempotent_and_sets_closed() -> None:
    channel: Channel[int] = Channel(1)
    assert not channel.closed
    channel.close()
    channel.close()
    assert channel.closed


def test_close_discard_drops_buffered_items() -> None:
    channel: Channel[int] = Channel(3)
    channel.put(1)
    channel.close(discard=True)
    with pytest.raises(Closed):
        channel.get_nowait()


def test_close_wakes_a_blocked_get() -> None:
    channel: Channel[int] = Channel(1)
    started = threading.Event()

    def get() -> int:
        started.set()
        return channel.get()

    with running(get) as outcome:
        assert started.wait(T)
        channel.close()
    assert isinstance(outcome["error"], Closed)


def test_close_wakes_a_blocked_put() -> None:
    channel: Channel[int] = Channel(1)
    channel.put(0)
    started = threading.Event()

    def put() -> None:
        started.set()
        channel.put(1)

    with running(put) as outcome:
        assert started.wait(T)
        channel.close()
    assert isinstance(outcome["error"], Closed)


def test_put_blocks_while_full() -> None:
    channel: Channel[int] = Channel(1)
    channel.put(0)
    with pytest.raises(queue.Full):
        channel.put(1, timeout=0.01)
    with pytest.raises(queue.Full):
        channel.put_nowait(1)


def test_get_times_out_with_empty() -> None:
    channel: Channel[int] = Channel(1)
    with pytest.raises(queue.Empty):
        channel.get(timeout=0.01)
    with pytest.raises(queue.Empty):
        channel.get_nowait()


def test_unbuffered_put_returns_once_taken() -> None:
    channel: Channel[str] = Channel(0)
    taken = threading.Event()

    def put() -> None:
        channel.put("hand-over")
        assert taken.is_set()

    with running(put) as outcome:
        assert channel.get(timeout=T) == "hand-over"
        taken.set()
    assert "error" not in outcome


def test_unbuffered_put_times_out_and_withdraws() -> None:
    channel: Channel[str] = Channel(0)
    with pytest.raises(queue.Full):
        channel.put("nobody takes it", timeout=0.01)
    assert channel.empty()


def test_unbuffered_put_nowait_needs_a_waiting_getter() -> None:
    channel: Channel[str] = Channel(0)
    with pytest.raises(queue.Full):
        channel.put_nowait("x")


def test_unbuffered_put_raises_closed_when_closed_before_taken() -> None:
    channel: Channel[str] = Channel(0)
    started = threading.Event()

    def put() -> None:
        started.set()
        channel.put("never taken")

    with running(put) as outcome:
        assert started.wait(T)
        while channel.empty():  # the put has not inserted yet
            threading.Event().wait(0.001)
        channel.close()
    assert isinstance(outcome["error"], Closed)


def test_get_many_takes_everything_available() -> None:
    channel: Channel[int] = Channel(5)
    for item in range(4):
        channel.put(item)
    assert channel.get_many() == [0, 1, 2, 3]
    channel.put(9)
    assert channel.get_many(max_items=1) == [9]


def test_negative_size_is_rejected() -> None:
    with pytest.raises(ValueError):
        Channel(-1)


def test_batch_put_keeps_order_while_waiting_for_room() -> None:
    channel: Channel[int] = Channel(10)
    with running(lambda: channel._put_all(list(range(25)))) as outcome:
        received = [channel.get(timeout=T) for _ in range(25)]
    assert received == list(range(25))
    assert "error" not in outcome


def test_batch_put_raises_closed_when_closed_while_waiting() -> None:
    channel: Channel[int] = Channel(2)
    started = threading.Event()

    def put_all() -> None:
        started.set()
        channel._put_all([1, 2, 3, 4])

    with running(put_all) as outcome:
        assert started.wait(T)
        assert channel.get(timeout=T) == 1
        channel.close()
    assert isinstance(outcome["error"], Closed)


def test_close_with_discard_lets_join_return() -> None:
    channel: Channel[int] = Channel(5)
    for item in range(3):
        channel.put(item)
    channel.close(discard=True)
    finished = threading.Event()
    waiter = threading.Thread(target=lambda: (channel.join(), finished.set()))
    waiter.start()
    waiter.join(5)
    assert finished.is_set(), "Queue.join() hung on discarded items"


@pytest.mark.parametrize("finish", ["task_done", "discard"])
def test_a_waiting_join_wakes_when_the_items_are_done_or_discarded(finish: str) -> None:
    channel: Channel[int] = Channel(5)
    for item in range(3):
        channel.put(item)
    finished = threading.Event()
    waiter = threading.Thread(target=lambda: (channel.join(), finished.set()))
    waiter.start()
    _wait_for_sleepers(channel, 1)  # until join() waits: the wake-up is what is tested
    if finish == "task_done":
        for _ in range(3):
            channel.get(timeout=T)
            channel.task_done()
    else:
        channel.close(discard=True)
    assert finished.wait(T), "a waiting Queue.join() was not woken"
    waiter.join(T)


def test_a_getter_that_timed_out_takes_no_wake_up_from_a_later_one() -> None:
    channel: Channel[str] = Channel(5)
    with pytest.raises(queue.Empty):
        channel.get(timeout=0.01)
    with running(lambda: channel.get(timeout=T)) as outcome:
        _wait_for_sleepers(channel, 1)
        channel.put("for the one waiting")
    assert outcome == {"value": "for the one waiting"}


def test_each_item_wakes_one_waiting_getter_and_close_wakes_the_rest() -> None:
    channel: Channel[int] = Channel(5)
    got: list[int] = []
    closed: list[bool] = []

    def take() -> None:
        try:
            got.append(channel.get(timeout=T))
        except Closed:
            closed.append(True)

    getters = [threading.Thread(target=take) for _ in range(3)]
    for getter in getters:
        getter.start()
    _wait_for_sleepers(channel, 3)
    channel.put(1)
    channel.put(2)
    deadline = time.monotonic() + T
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert sorted(got) == [1, 2] and channel._sleeping == 1
    channel.close()
    for getter in getters:
        getter.join(T)
    assert closed == [True] and not any(getter.is_alive() for getter in getters)


def test_a_channel_gives_its_buffer_back_once_emptied() -> None:
    # An idle connection's channels are kept by the thousand: between messages
    # a channel holds no buffer (a deque keeps a 64-slot block while empty).
    channels: list[Channel[bytes]] = [Channel(10) for _ in range(200)]
    tracemalloc.start()
    try:
        for channel in channels:
            channel.put(b"x")
        holding = tracemalloc.get_traced_memory()[0]
        for channel in channels:
            assert channel.get() == b"x"
            assert channel.empty() and channel.qsize() == 0
        given_back = (holding - tracemalloc.get_traced_memory()[0]) / len(channels)
    finally:
        tracemalloc.stop()
    assert given_back > 400, f"an emptied channel gave back {given_back:.0f} bytes"
