"""Series the alerts count exist at 0 from the start, and `esw_ready` is evaluated at each scrape
(dashboard audit of 2026-12-06 against a real Prometheus): a labelled counter born at its first
increment hides that increment from `increase()`, so a first burst of 30 bad signatures never
raised EswWebhooksRejected and the first refused call did not count for EswPollFatalConfig; and a
replica nothing probed showed `esw_ready 0` and fired EswNotReady while healthy."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from worker import metrics
from worker.http import Ops


def sample(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


def test_an_accounts_alerted_series_start_at_zero():
    metrics.account_webhooks("sendcloud", "first-burst", True, True)
    for status in ("401", "503"):
        assert sample("esw_webhook_requests_total", provider="sendcloud", account="first-burst", status=status) == 0.0
    for outcome in ("fatal_config", "bad_request"):
        assert sample("esw_poll_requests_total", provider="sendcloud", account="first-burst", outcome=outcome) == 0.0
    metrics.webhook_answered("sendcloud", "first-burst", 401)
    assert sample("esw_webhook_requests_total", provider="sendcloud", account="first-burst", status="401") == 1.0


def test_only_what_the_account_does():
    metrics.account_webhooks("engagelab", "poll-only", False, True)
    metrics.account_webhooks("engagelab", "hooks-only", True, False)
    assert sample("esw_webhook_requests_total", provider="engagelab", account="poll-only", status="401") is None
    assert sample("esw_poll_requests_total", provider="engagelab", account="hooks-only", outcome="fatal_config") is None


async def test_ready_is_what_readyz_would_answer_at_each_scrape():
    ops = Ops()
    reachable = [True]
    ops.checks["kafka_reachable"] = lambda: reachable[0]
    app = web.Application()
    app.add_routes(ops.routes())
    async with TestClient(TestServer(app)) as client:
        await (await client.get("/metrics")).text()          # no /readyz call at all
        assert sample("esw_ready") == 1.0
        reachable[0] = False
        await (await client.get("/metrics")).text()
        assert sample("esw_ready") == 0.0
