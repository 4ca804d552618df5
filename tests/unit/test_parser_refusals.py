"""worker.webhooks.ParserRefusals counts what aiohttp's HTTP parser refuses and drops its line; a
handler's own failure is neither counted as a webhook answer nor hidden (review of 2026-12-06:
the first version counted any server error on any route as a webhook 500 and dropped its line)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.test_utils import TestServer

from worker import metrics
from worker.http import count_parser_refusals


def answered(status: str) -> float:
    return metrics.REGISTRY.get_sample_value(
        "esw_webhook_requests_total", {"provider": "unknown", "account": "unknown", "status": status}) or 0.0


async def test_parser_refusals_are_counted_and_a_handler_failure_is_logged(caplog):
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    count_parser_refusals()
    app = web.Application()
    app.router.add_get("/status", broken)
    caplog.set_level(logging.ERROR, logger="aiohttp.server")
    before = (answered("400"), answered("500"))
    async with TestServer(app) as srv:
        for raw in (b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n",                                  # the handler fails
                    b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):  # the parser refuses
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            writer.write(raw)
            await writer.drain()
            await asyncio.wait_for(reader.readline(), 5)
            writer.close()
    assert (answered("400"), answered("500")) == (before[0] + 1, before[1])
    failures = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(failures) == 1 and isinstance(failures[0].exc_info[1], RuntimeError)
