"""A status API that does not route the worker's form POST in other ways than a 405 (worker.poll.fetch,
"POST refused"; polling audit 2026-12-06): a server that routes the path for GET only and answers
anything else 404 (Express, WireMock and MockServer do) is asked again at once with GET. A wrong
path fails as GET too, and stays what it is. An authentication failure is not retried as GET: a
wrong key would travel in a URL (a server that reads the credentials from the query alone needs
`options.method: GET`). Real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

from datetime import date

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.integration.harness import worker_config
from tests.unit.test_fetch_method import FAMILY_PAGE, KEY, NOW, serve
from worker.config import parse_config
from worker.errors import BadRequest, FatalConfig
from worker.poll.fetch import Fetcher
from worker.poll.limiter import AdaptiveLimiter
from worker.providers.base import PollQuery

AUTH_FAILED = orjson.dumps({"result": False, "statusCode": 40005, "message": "认证失败", "info": {}})
QUERY = PollQuery(send_date=date(2026, 11, 2), limit=100)


class Api:
    """Records (method, query) of every request; `answer` decides what each gets."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.seen: list[tuple[str, dict[str, str]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, dict(request.query)))
        status, body = self.answer(request)
        return web.Response(status=status, body=body, content_type="application/json")


async def fetch_twice(answer, provider: str = "aurora_sendcloud"):
    api = Api(answer)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", api.handle)
    runner, port = await serve(app)
    config = parse_config(worker_config("127.0.0.1:9", "p", [
        {"name": "acct", "provider": provider, "base_url": f"http://127.0.0.1:{port}",
         "credentials": {"api_user": "u", "api_key_env": "K"}, "webhook": {"enabled": False},
         "poll": {"retry_attempts": 1}}]), {"K": KEY})
    results: list = []
    try:
        async with aiohttp.ClientSession() as session:
            fetcher = Fetcher(config.accounts[0], session, AdaptiveLimiter(100.0), lambda: NOW)
            for _ in range(2):
                try:
                    results.append(await fetcher.fetch(QUERY))
                except Exception as exc:   # noqa: BLE001 - the test looks at which
                    results.append(exc)
    finally:
        await runner.cleanup()
    return api.seen, results, fetcher.post_refused


def get_only_else_404(request: web.Request) -> tuple[int, bytes]:
    return (200, FAMILY_PAGE) if request.method == "GET" else (404, b'{"error": "not found"}')


def credentials_from_the_query(request: web.Request) -> tuple[int, bytes]:
    ok = request.query.get("apiUser") == "u" and request.query.get("apiKey") == KEY
    return 200, FAMILY_PAGE if ok else AUTH_FAILED


@pytest.mark.parametrize("provider", ["aurora_sendcloud", "sendcloud"])
async def test_a_post_answered_404_is_asked_again_as_get_and_later_calls_go_as_get(provider):
    seen, results, switched = await fetch_twice(get_only_else_404, provider)
    assert [method for method, _ in seen] == ["POST", "GET", "GET"]
    assert [r.page.rows for r in results] == [1, 1] and switched is True
    assert seen[1][1]["apiKey"] == KEY and seen[2][1]["startDate"] == "2026-11-02"


@pytest.mark.parametrize("answer", [credentials_from_the_query, lambda request: (200, AUTH_FAILED)],
                         ids=["query-only", "wrong-key"])
async def test_an_authentication_failure_is_not_retried_as_get(answer):
    # the key stays out of URLs: no GET, the account keeps posting (and is paused by the runner)
    seen, results, switched = await fetch_twice(answer)
    assert [type(r) for r in results] == [FatalConfig, FatalConfig]
    assert [method for method, _ in seen] == ["POST", "POST"] and switched is False
    assert all("apiKey" not in query for _, query in seen)


async def test_a_get_only_api_that_reads_the_query_works_with_the_method_option():
    api = Api(credentials_from_the_query)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", api.handle)
    runner, port = await serve(app)
    config = parse_config(worker_config("127.0.0.1:9", "p", [
        {"name": "acct", "provider": "aurora_sendcloud", "base_url": f"http://127.0.0.1:{port}",
         "credentials": {"api_user": "u", "api_key_env": "K"}, "options": {"method": "GET"},
         "webhook": {"enabled": False}, "poll": {"retry_attempts": 1}}]), {"K": KEY})
    try:
        async with aiohttp.ClientSession() as session:
            fetched = await Fetcher(config.accounts[0], session, AdaptiveLimiter(100.0), lambda: NOW).fetch(QUERY)
    finally:
        await runner.cleanup()
    assert fetched.page.rows == 1 and [method for method, _ in api.seen] == ["GET"]


async def test_a_path_that_is_not_there_is_a_bad_request_after_the_get():
    seen, results, switched = await fetch_twice(lambda request: (404, b'{"error": "not found"}'))
    assert [type(r) for r in results] == [BadRequest, BadRequest]
    assert [method for method, _ in seen] == ["POST", "GET", "POST", "GET"] and switched is False
