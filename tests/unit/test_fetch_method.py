"""A status API that refuses the worker's form POST (worker.poll.fetch): SendCloud, Aurora and
UniSender document their status calls for GET and POST, and the worker posts by default (the key
stays out of URLs). Aurora's current pages show GET alone; an API that answers the POST with 405 is
asked again at once with GET, and the account's later calls go as GET. A real aiohttp server on
127.0.0.1 routes only GET, so aiohttp itself answers a POST with 405 Method Not Allowed."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.integration.harness import worker_config
from worker.config import parse_config
from worker.errors import BadRequest
from worker.metrics import REGISTRY
from worker.poll.fetch import Fetcher, as_get
from worker.poll.limiter import AdaptiveLimiter
from worker.providers.base import HttpRequest, PollQuery

KEY = "k-secret-9f2"
FAMILY_PAGE = orjson.dumps({"result": True, "statusCode": 200, "message": "ok", "info": {"total": "1", "voList": [
    {"emailId": "1700000000000_1_2_3.sc-1-inbound0$a@x.test", "apiUser": "u", "recipients": "a@x.test",
     "status": "送达", "modifiedTime": "2026-11-02 12:00:00", "requestTime": "2026-11-02 11:59:58",
     "sendLog": "", "subStat": "", "subStatDesc": ""}]}})
UNISENDER_PAGE = orjson.dumps({"result": {"statuses": [{"id": "101", "status": "ok_delivered"}]}})
NOW = datetime(2026, 11, 2, 4, 0, tzinfo=UTC)


class GetOnly:
    """Answers GET with a page; POST is refused by aiohttp's router (only GET is routed)."""

    def __init__(self, page: bytes) -> None:
        self.page = page
        self.seen: list[tuple[str, dict[str, str]]] = []   # (method, query) of every request, refused ones too

    @web.middleware
    async def record(self, request: web.Request, handler):
        self.seen.append((request.method, dict(request.query)))
        return await handler(request)

    async def get(self, request: web.Request) -> web.Response:
        return web.Response(body=self.page, content_type="application/json")


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, runner.addresses[0][1]


ACCOUNTS = {
    "sendcloud": ({"credentials": {"api_user": "u", "api_key_env": "K"}}, FAMILY_PAGE,
                  PollQuery(send_date=date(2026, 11, 2), limit=100),
                  {"apiUser": "u", "apiKey": KEY, "startDate": "2026-11-02", "endDate": "2026-11-02",
                   "start": "0", "limit": "100"}),
    "aurora_sendcloud": ({"credentials": {"api_user": "u", "api_key_env": "K"}}, FAMILY_PAGE,
                         PollQuery(send_date=date(2026, 11, 2), limit=100),
                         {"apiUser": "u", "apiKey": KEY, "startDate": "2026-11-02", "endDate": "2026-11-02",
                          "start": "0", "limit": "100"}),
    "unisender": ({"credentials": {"api_key_env": "K"}}, UNISENDER_PAGE, PollQuery(email_ids=("101",)),
                  {"format": "json", "api_key": KEY, "email_id": "101"}),
}


@pytest.mark.parametrize("provider", sorted(ACCOUNTS))
async def test_a_post_refused_with_405_is_asked_again_as_get_and_later_calls_go_as_get(provider, caplog):
    fields, page, query, want_query = ACCOUNTS[provider]
    server = GetOnly(page)
    app = web.Application(middlewares=[server.record])
    app.router.add_route("GET", "/{tail:.*}", server.get)
    runner, port = await serve(app)
    config = parse_config(worker_config("127.0.0.1:9", "p", [
        {"name": "acct", "provider": provider, "base_url": f"http://127.0.0.1:{port}", "webhook": {"enabled": False},
         "poll": {"retry_attempts": 1}, **fields}]), {"K": KEY})
    caplog.set_level(logging.DEBUG, logger="worker.poll")
    labels = {"provider": provider, "account": "acct"}

    def calls(outcome: str) -> float:
        return REGISTRY.get_sample_value("esw_poll_requests_total", {**labels, "outcome": outcome}) or 0.0

    before = calls("ok"), calls("bad_request")
    try:
        async with aiohttp.ClientSession() as session:
            fetcher = Fetcher(config.accounts[0], session, AdaptiveLimiter(100.0), lambda: NOW)
            first = await fetcher.fetch(query)
            second = await fetcher.fetch(query)
    finally:
        await runner.cleanup()
    assert first.status == 200 and first.page.rows == 1 and second.page.rows == 1
    # one refused POST (its fields in the body, none in the query), then GETs only
    assert [method for method, _ in server.seen] == ["POST", "GET", "GET"]
    assert server.seen[0][1] == {}
    for _, got in server.seen[1:]:
        assert {k: got.get(k) for k in want_query} == want_query
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "405" in warnings[0].getMessage()
    polls = [r.outcome for r in caplog.records if r.getMessage() == "poll"]
    assert polls == ["ok", "ok"]           # the refused POST is no failed call (bad_request alerts)
    assert (calls("ok") - before[0], calls("bad_request") - before[1]) == (2, 0)
    for record in caplog.records:   # the key is in the URL now: never in a log line
        assert KEY not in record.getMessage() and KEY not in repr(record.__dict__)


async def test_a_get_refused_with_405_is_a_bad_request_and_not_retried_as_post():
    server = GetOnly(FAMILY_PAGE)
    app = web.Application(middlewares=[server.record])
    app.router.add_route("POST", "/{tail:.*}", server.get)   # this one routes POST alone
    runner, port = await serve(app)
    config = parse_config(worker_config("127.0.0.1:9", "p", [
        {"name": "acct", "provider": "aurora_sendcloud", "base_url": f"http://127.0.0.1:{port}",
         "credentials": {"api_user": "u", "api_key_env": "K"}, "options": {"method": "GET"},
         "webhook": {"enabled": False}, "poll": {"retry_attempts": 1}}]), {"K": KEY})
    try:
        async with aiohttp.ClientSession() as session:
            fetcher = Fetcher(config.accounts[0], session, AdaptiveLimiter(100.0), lambda: NOW)
            with pytest.raises(BadRequest):
                await fetcher.fetch(PollQuery(send_date=date(2026, 11, 2), limit=100))
    finally:
        await runner.cleanup()
    assert [method for method, _ in server.seen] == ["GET"]


def test_as_get_reads_a_utf8_form_as_its_text():
    post = HttpRequest("POST", "https://api.example/x",
                       headers=(("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8"),),
                       body=b"labelName=%E4%B8%AD%E6%96%87")
    assert as_get(post) == HttpRequest("GET", "https://api.example/x", params=(("labelName", "中文"),))


def test_as_get_moves_a_forms_fields_into_the_query_after_the_urls_own():
    post = HttpRequest("POST", "https://api.example/x", params=(("a", "1"),),
                       headers=(("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"), ("X-Id", "7")),
                       body=b"apiUser=u&apiKey=k%2B1&emailIds=a%24b%3Bc&empty=")
    assert as_get(post) == HttpRequest("GET", "https://api.example/x",
                                       params=(("a", "1"), ("apiUser", "u"), ("apiKey", "k+1"), ("emailIds", "a$b;c"),
                                               ("empty", "")),
                                       headers=(("X-Id", "7"),))


@pytest.mark.parametrize("request_", [
    HttpRequest("POST", "https://api.example/x", headers=(("Content-Type", "application/json"),), body=b"{}"),
    HttpRequest("POST", "https://api.example/x", body=b"a=1"),                       # no content type: not a form
    HttpRequest("GET", "https://api.example/x", params=(("a", "1"),)),
    HttpRequest("POST", "https://api.example/x", headers=(("Content-Type", "application/x-www-form-urlencoded"),)),
    HttpRequest("POST", "https://api.example/x", headers=(("Content-Type", "application/x-www-form-urlencoded"),),
                body=b"label=\xc3\xa9"),                                             # not what urlencode makes
    HttpRequest("POST", "https://api.example/x", headers=(("Content-Type", "application/x-www-form-urlencoded"),),
                body=b"flag&a=1"),                                                     # a field without "="
    HttpRequest("POST", "https://api.example/x", headers=(("Content-Type", "application/x-www-form-urlencoded"),),
                body=b"a=%FF"),                                                        # not UTF-8 once decoded
    HttpRequest("POST", "https://api.example/x",
                headers=(("Content-Type", "application/x-www-form-urlencoded; charset=gbk"),), body=b"a=1"),
], ids=["json", "untyped", "get", "no-body", "raw-utf8", "bare-field", "percent-ff", "gbk"])
def test_only_a_form_post_has_a_get_twin(request_):
    assert as_get(request_) is None
