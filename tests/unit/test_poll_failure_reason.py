"""A failed status-API call's log line and the poller's `/status` name what the provider answered
(operator audit of 2026-12-06: the runbook sends operators to them to tell SendCloud's 40005, bad
credentials or region, from 6001, no permission, and they carried only `fatal_config`). The reason
is built by the provider module from codes and fixed texts: the credentials never appear in it.
Real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import logging

import orjson
import pytest
from aiohttp import web

from tests.unit.test_fetch_method import KEY
from tests.unit.test_fetch_not_routed import fetch_twice
from tests.unit.test_runner import TX, FakeFetcher, FakeSink, runner
from worker.errors import BadRequest, FatalConfig, MalformedPayload, Retriable, Throttled
from worker.poll.fetch import failure_reason
from worker.poll.scheduler import DateWindowScheduler
from worker.providers.base import PollPage


def answering(status: int, doc: dict):
    def answer(request: web.Request) -> tuple[int, bytes]:
        return status, orjson.dumps(doc)
    return answer


@pytest.mark.parametrize(("answer", "kind", "reason"), [
    (answering(200, {"result": False, "statusCode": 40005, "message": "认证失败", "info": {}}),
     FatalConfig, "statusCode 40005"),
    (answering(200, {"result": False, "statusCode": 6001, "message": "没有权限", "info": {}}),
     FatalConfig, "statusCode 6001"),
    (answering(401, {"error": "unauthorized"}), FatalConfig, "HTTP 401"),
    (answering(200, {"result": False, "statusCode": 40880, "message": "?", "info": {}}),
     BadRequest, "statusCode 40880"),
])
async def test_the_poll_line_of_a_failed_call_says_what_the_provider_answered(caplog, answer, kind, reason):
    caplog.set_level(logging.INFO, logger="worker.poll")
    seen, results, _ = await fetch_twice(answer, "sendcloud")
    assert all(isinstance(r, kind) for r in results), results
    lines = [r for r in caplog.records if r.name == "worker.poll" and r.getMessage() == "poll"]
    assert [(line.outcome, line.reason) for line in lines] == [(kind.error_type, reason)] * len(seen)
    assert all(KEY not in repr(vars(line)) for line in lines)


@pytest.mark.parametrize(("exc", "reason"), [
    (FatalConfig("tencent_ses error AuthFailure.SecretIdNotFound"), "tencent_ses error AuthFailure.SecretIdNotFound"),
    (Throttled("HTTP 429"), "HTTP 429"),
    (Retriable("x" * 300), "x" * 200),                  # bounded
    (TimeoutError(), None),                             # not an answer
    (MalformedPayload("a webhook's"), None),            # not a poll failure
])
def test_failure_reason(exc, reason):
    assert failure_reason(exc) == reason


async def test_the_poller_status_keeps_the_last_failure_reason_until_a_call_succeeds():
    fetcher = FakeFetcher([FatalConfig("tencent_ses error AuthFailure.SignatureFailure"), Retriable("HTTP 502"),
                           PollPage((), rows=0, next_offset=None)])
    r = runner(TX, fetcher, DateWindowScheduler.for_account(TX, {}), FakeSink([None]))
    await r.step()
    snap = r.snapshot()
    assert (snap["state"], snap["last_error"], snap["last_reason"]) == (
        "fatal_config", "fatal_config", "tencent_ses error AuthFailure.SignatureFailure")
    await r.step()
    assert (r.snapshot()["last_error"], r.snapshot()["last_reason"]) == ("retriable", "HTTP 502")
    await r.step()
    assert (r.snapshot()["last_error"], r.snapshot()["last_reason"]) == (None, None)
