"""Issue 18 (4): how refused webhooks are counted. A 401 for a wrong Tencent path token is the
account's (an operator alerting on 401s must see which account's URL is being probed); an unknown
account stays `unknown`."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.unit.test_receiver import CONFIG, NOW, FakeWriter
from worker import metrics
from worker.webhooks import WebhookReceiver


def count(provider: str, account: str, status: str) -> float:
    return metrics.WEBHOOK_REQUESTS.labels(provider, account, status)._value.get()  # noqa: SLF001


async def test_a_wrong_tencent_token_is_counted_under_the_account_it_addressed():
    app = web.Application()
    app.add_routes(WebhookReceiver(CONFIG, FakeWriter(), clock=lambda: NOW).routes())
    async with TestClient(TestServer(app)) as c:
        before = (count("tencent_ses", "tx", "401"), count("unknown", "unknown", "401"),
                  count("unknown", "unknown", "404"))
        for path in ("/webhooks/tencent_ses/tx/wrong-token-0123456789", "/webhooks/tencent_ses/tx",
                     "/webhooks/tencent_ses/nobody"):
            await c.post(path, data=b'{"event": "delivered"}', headers={"Content-Type": "application/json"})
        assert count("tencent_ses", "tx", "401") == before[0] + 2
        assert count("unknown", "unknown", "401") == before[1]
        assert count("unknown", "unknown", "404") == before[2] + 1
        r = await c.get("/webhooks/tencent_ses/tx/wrong-token-0123456789")
        assert r.status == 401 and (await r.json()) == {"ok": False}
