"""The `poll` log line of a status-API call (worker.poll.fetch): debug level when the call went well
(the call is counted in esw_poll_requests_total, and at the quota a line per call would be most of
the log), info level for any other outcome. A real aiohttp server on 127.0.0.1 plays SendCloud."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

import aiohttp
import orjson
from aiohttp import web

from tests.integration.harness import worker_config
from worker.config import parse_config
from worker.errors import Retriable
from worker.poll.fetch import Fetcher
from worker.poll.limiter import AdaptiveLimiter
from worker.providers.base import PollQuery

PAGE = orjson.dumps({"result": True, "statusCode": 200, "message": "ok", "info": {"total": "0", "voList": []}})


async def answer(request: web.Request) -> web.Response:
    params = request.query if request.method == "GET" else await request.post()
    if params.get("startDate") == "2026-11-01":
        return web.Response(status=502, text="bad gateway")
    return web.Response(body=PAGE, content_type="application/json")


async def test_a_call_that_went_well_logs_at_debug_and_a_failed_one_at_info(caplog):
    app = web.Application()
    app.router.add_route("*", "/apiv2/data/emailStatus", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    config = parse_config(worker_config("127.0.0.1:9", "p", [
        {"name": "sc", "provider": "sendcloud", "base_url": f"http://127.0.0.1:{port}",
         "credentials": {"api_user": "u", "api_key_env": "K"}, "webhook": {"enabled": False},
         "poll": {"retry_attempts": 1}}]), {"K": "k"})
    account = config.accounts[0]
    caplog.set_level(logging.DEBUG, logger="worker.poll")
    try:
        async with aiohttp.ClientSession() as session:
            fetcher = Fetcher(account, session, AdaptiveLimiter(100.0), lambda: datetime(2026, 11, 2, 4, 0, tzinfo=UTC))
            fetched = await fetcher.fetch(PollQuery(send_date=date(2026, 11, 2), limit=100))
            assert fetched.page.rows == 0
            try:
                await fetcher.fetch(PollQuery(send_date=date(2026, 11, 1), limit=100))
            except Retriable:
                pass
            else:
                raise AssertionError("HTTP 502 must fail the call")
    finally:
        await runner.cleanup()
    lines = [(r.levelno, r.outcome, r.send_date) for r in caplog.records if r.getMessage() == "poll"]
    assert lines == [(logging.DEBUG, "ok", "2026-11-02"), (logging.INFO, "retriable", "2026-11-01")]
