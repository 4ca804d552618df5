"""The Kafka client's lines are throttled per message (Kafka audit of 2026-12-06: ~140 a second per
replica during an outage). Hand-worked with a fake clock: burst 2, window 60 s."""

from __future__ import annotations

import logging

from worker.logs import ClientThrottle


def record(name: str, msg: str, *args) -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, None)


def test_a_message_past_its_burst_is_left_out_and_counted_on_the_next_window():
    now = [0.0]
    throttle = ClientThrottle(burst=2, window=60.0, clock=lambda: now[0])
    template = "Unable connect to node with id %s: %s"
    kept = [throttle.filter(record("aiokafka.conn", template, n, "refused")) for n in range(5)]
    assert kept == [True, True, False, False, False]
    now[0] = 59.9
    assert throttle.filter(record("aiokafka.conn", template, 1, "refused")) is False
    now[0] = 60.0
    first = record("aiokafka.conn", template, 2, "refused")
    assert throttle.filter(first) is True
    assert first.suppressed == 4               # 6 lines in the first window, 2 kept
    assert throttle.filter(record("aiokafka.conn", template, 3, "refused")) is True
    assert throttle.filter(record("aiokafka.conn", template, 3, "refused")) is False


def test_messages_and_loggers_are_counted_apart_and_ours_are_never_throttled():
    now = [0.0]
    throttle = ClientThrottle(burst=1, window=60.0, clock=lambda: now[0])
    assert throttle.filter(record("aiokafka.conn", "a %s", 1)) is True
    assert throttle.filter(record("aiokafka.conn", "b %s", 1)) is True
    assert throttle.filter(record("aiokafka.producer", "a %s", 1)) is True
    assert throttle.filter(record("aiokafka.conn", "a %s", 2)) is False
    assert all(throttle.filter(record("worker.shards", "a %s", n)) for n in range(10))
    quiet = record("aiokafka.conn", "c")
    now[0] = 120.0
    assert throttle.filter(quiet) is True and not hasattr(quiet, "suppressed")


def test_unread_fenced_futures_are_dropped_and_nothing_else():
    from aiokafka.errors import ProducerFenced

    from worker.logs import FencedLeftovers

    def unread(name: str, exc: BaseException) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, "Future exception was never retrieved", (),
                                 (type(exc), exc, None))

    keep = FencedLeftovers()
    assert keep.filter(unread("asyncio", ProducerFenced())) is False
    assert keep.filter(unread("asyncio", RuntimeError("x"))) is True
    assert keep.filter(unread("worker.shards", ProducerFenced())) is True   # the shard's own line stays
    assert keep.filter(record("asyncio", "Task was destroyed but it is pending!")) is True


def answer(provider: str, account: str, status: int) -> logging.LogRecord:
    r = logging.LogRecord("worker.webhooks", logging.INFO, __file__, 1, "webhook", (), None)
    r.provider, r.account, r.status = provider, account, status
    return r


def test_webhook_answers_are_throttled_per_account_and_status_never_a_200():
    """Edge audit of 2026-12-06: a flood of bad signatures or unknown URLs logged a line per request
    (426,000 lines in 20 minutes). Burst 2, window 60 s, by hand."""
    from worker.logs import AnswerThrottle

    now = [0.0]
    throttle = AnswerThrottle(burst=2, window=60.0, clock=lambda: now[0])
    assert [throttle.filter(answer("sendcloud", "sc", 401)) for _ in range(4)] == [True, True, False, False]
    assert throttle.filter(answer("sendcloud", "sc", 404)) is True              # another status
    assert throttle.filter(answer("sendcloud", "other", 401)) is True           # another account
    assert all(throttle.filter(answer("sendcloud", "sc", 200)) for _ in range(5))   # debug-level 200s untouched
    shard_line = logging.LogRecord("worker.webhooks", logging.ERROR, __file__, 1, "webhook failed", (), None)
    assert all(throttle.filter(shard_line) for _ in range(5))                   # other lines of the module
    now[0] = 60.0
    first = answer("sendcloud", "sc", 401)
    assert throttle.filter(first) is True and first.suppressed == 2
