"""The bound on a `_raw` write (worker.intake `Deadlines`): the futures of a write still pending at
its deadline fail with TimeoutError, at most a tick (DEADLINE_TICK_SECS, 0.05 s) after it; what
completed is left alone; one task runs while something waits, and stops when nothing does."""

from __future__ import annotations

import asyncio

import pytest

from worker.intake import DEADLINE_TICK_SECS, Deadlines


async def settled(fut: asyncio.Future, within: float = 3.0) -> None:
    await asyncio.wait([fut], timeout=within)


async def test_a_pending_future_fails_with_timeout_after_its_bound_not_before():
    loop = asyncio.get_running_loop()
    deadlines = Deadlines()
    fut = loop.create_future()
    started = loop.time()
    deadlines.add(0.3, [fut])
    await asyncio.sleep(0.15)
    assert not fut.done()                      # half its bound: still waiting
    await settled(fut)
    assert isinstance(fut.exception(), TimeoutError)
    assert 0.3 <= loop.time() - started
    await deadlines.stop()


async def test_what_completed_is_left_alone_and_the_rest_of_the_write_fails():
    loop = asyncio.get_running_loop()
    deadlines = Deadlines()
    done, pending, cancelled = loop.create_future(), loop.create_future(), loop.create_future()
    deadlines.add(0.1, [done, pending, cancelled])
    done.set_result("acked")
    cancelled.cancel()
    await settled(pending)
    assert done.result() == "acked" and cancelled.cancelled()
    assert isinstance(pending.exception(), TimeoutError)
    await deadlines.stop()


async def test_writes_fail_in_the_order_they_began_each_at_its_own_deadline():
    loop = asyncio.get_running_loop()
    deadlines = Deadlines()
    first = loop.create_future()
    deadlines.add(0.2, [first])
    await asyncio.sleep(0.15)
    second = loop.create_future()
    deadlines.add(0.2, [second])
    await settled(first)
    assert isinstance(first.exception(), TimeoutError)
    assert not second.done()                   # its bound began 0.15 s later
    await settled(second)
    assert isinstance(second.exception(), TimeoutError)
    await deadlines.stop()


async def test_the_task_stops_once_every_write_completed_and_starts_again_for_the_next():
    loop = asyncio.get_running_loop()
    deadlines = Deadlines()
    fut = loop.create_future()
    deadlines.add(5.0, [fut])
    task = deadlines._task                     # noqa: SLF001
    assert task is not None and not task.done()
    fut.set_result(None)                       # acknowledged long before its bound
    await asyncio.wait([task], timeout=1.0)
    assert task.done()
    again = loop.create_future()
    deadlines.add(0.05, [again])
    assert deadlines._task is not task         # noqa: SLF001
    await settled(again)
    assert isinstance(again.exception(), TimeoutError)
    await deadlines.stop()


@pytest.mark.parametrize("tick", [DEADLINE_TICK_SECS])
def test_the_tick_is_a_fiftieth_of_the_default_ack_timeout_or_less(tick):
    from worker.config import HttpConfig
    assert tick <= HttpConfig().ack_timeout_secs / 50
