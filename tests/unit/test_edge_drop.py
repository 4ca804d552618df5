"""Webhook records that carry no delivery status (opens, clicks, requests) are counted and dropped
at the edge: they never reach `_raw`, where the shard would parse them again to find nothing."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.unit.test_receiver import CONFIG, FORM, NOW, FakeWriter, sendcloud
from worker.metrics import REGISTRY
from worker.webhooks import WebhookReceiver


def ignored(account: str) -> float:
    return REGISTRY.get_sample_value("esw_ignored_statuses_total", {"provider": "sendcloud", "account": account}) or 0.0


async def test_opens_clicks_and_requests_never_reach_raw_and_are_counted():
    writer = FakeWriter()
    app = web.Application(client_max_size=CONFIG.http.max_body_bytes)
    app.add_routes(WebhookReceiver(CONFIG, writer, clock=lambda: NOW).routes())
    before = ignored("sc")
    async with TestClient(TestServer(app)) as c:
        for event in ("open", "click", "request"):
            r = await c.post("/webhooks/sendcloud/sc", data=sendcloud(event, f"{event}$a@x.test"), headers=FORM)
            assert r.status == 200, event
        assert writer.writes == []                     # nothing to write: answered without Kafka
        assert ignored("sc") == before + 3
        r = await c.post("/webhooks/sendcloud/sc", data=sendcloud("deliver", "d$a@x.test"), headers=FORM)
        assert r.status == 200
    [(records, dead)] = writer.writes                  # a status still goes to _raw
    assert dead == [] and [a.record.record["event"] for a in records] == ["deliver"]
    assert ignored("sc") == before + 3
