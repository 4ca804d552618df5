"""The webhook sender against a tiny aiohttp receiver: formats, signatures, ground truth, delivery.

Each body is checked twice: by recomputing its signature here, from PROVIDERS.md, and by the
provider module's own verify_webhook / split_webhook / webhook_observations.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import time
import urllib.parse
from datetime import datetime, timezone

import attrs
import orjson
import pytest
from aiohttp import web

from tests.integration.test_simulator_support import FakeClock, accounts, running
from tests.support import hook_acct
from worker.model import Provider
from worker.providers import get_module
from worker.providers.base import AccountContext, WebhookRequest
from worker.simulator import WebhookSender
from worker.simulator.codes import truth_for
from worker.simulator.stream import utc_seconds

pytestmark = pytest.mark.integration

APP_KEYS = {"el": "el_app", "sc": "sc_app", "au": "au_app", "uni": "uni_key"}


@attrs.define
class Received:
    provider: str
    account: str
    token: str | None
    headers: dict
    query: dict
    body: bytes


class Receiver:
    """Records every POST; `fail_first` answers 503 to the first sight of each body."""

    def __init__(self, fail_first: bool = False, always: int | None = None) -> None:
        self.got: list[Received] = []
        self.fail_first, self.always = fail_first, always
        self._seen: set[bytes] = set()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        info = request.match_info
        self.got.append(Received(info["provider"], info["account"], info.get("token"),
                                 {k.lower(): v for k, v in request.headers.items()}, dict(request.query), body))
        if self.always is not None:
            return web.Response(status=self.always)
        if self.fail_first and body not in self._seen:
            self._seen.add(body)
            return web.Response(status=503)
        return web.Response(status=200)

    @contextlib.asynccontextmanager
    async def serve(self):
        app = web.Application()
        app.router.add_post("/webhooks/{provider}/{account}", self.handle)
        app.router.add_post("/webhooks/{provider}/{account}/{token}", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()


def independent_check(r: Received) -> None:
    """Signature and shape per PROVIDERS.md, without the provider modules."""
    if r.provider in ("sendcloud", "aurora_sendcloud"):
        if r.headers["content-type"].startswith("application/json"):
            fields = orjson.loads(r.body)
            ts = str(fields["timestamp"])
        else:
            assert r.headers["content-type"] == "application/x-www-form-urlencoded"
            fields = dict(urllib.parse.parse_qsl(r.body.decode()))
            ts = fields["timestamp"]
        assert len(fields["token"]) == 50 and len(ts) == 13  # epoch milliseconds
        expected = hmac.new(APP_KEYS[r.account].encode(), (ts + fields["token"]).encode(), hashlib.sha256).hexdigest()
        assert fields["signature"] == expected
    elif r.provider == "engagelab":
        ts, ak = r.headers["x-webhook-timestamp"], r.headers["x-webhook-appkey"]
        assert ak == "email" and r.headers["content-type"].startswith("application/json")
        assert r.headers["x-webhook-signature"] == hashlib.md5((ts + ak + "el_app").encode()).hexdigest()
        body = orjson.loads(r.body)
        assert body["server"] == "email" and isinstance(body["itime"], int) and "message_status" in body["status"]
    elif r.provider == "unisender":
        auth = re.match(rb'\{"auth":"([0-9a-f]{32})"', r.body).group(1)
        signed = r.body.replace(auth, b"uni_key", 1)
        assert hashlib.md5(signed).hexdigest().encode() == auth
        assert orjson.loads(r.body)["events_by_user"][0]["login"] == "uni_login"
    else:
        assert r.provider == "tencent_ses" and r.token == "tc-token-0123456789abcdef"
        body = orjson.loads(r.body)
        assert {"event", "email", "bulkId", "timestamp", "eventid"} <= set(body)


def module_observations(r: Received, now: datetime) -> list:
    module = get_module(r.provider)
    req = WebhookRequest(body=r.body, content_type=r.headers["content-type"], headers=r.headers, query=r.query)
    keys = [APP_KEYS[r.account]] if r.account in APP_KEYS else []
    assert module.verify_webhook(hook_acct(module.NAME, keys), req, now, 259_200)
    acct = AccountContext(name=r.account, provider=Provider(r.provider), base_url="http://unused",
                          webhook_keys=tuple(keys))
    return [obs for record in module.split_webhook(req) for obs in module.webhook_observations(acct, record)]


@pytest.mark.parametrize("aurora_body, aurora_events", [("json", "new"), ("form", "legacy"), ("json", "mixed")])
async def test_each_providers_webhooks_verify_and_match_the_ground_truth(aurora_body, aurora_events):
    clock = FakeClock()
    accts = accounts(live_per_sec=3.0, live_max=400)
    receiver = Receiver()
    async with running(accts, clock=clock) as (sim, base, _), receiver.serve() as target:
        async with WebhookSender(sim, target, aurora_body=aurora_body, aurora_events=aurora_events) as sender:
            start = clock()
            totals = []
            for _ in range(6):  # live mail arrives, history mail keeps changing
                clock.advance(60)
                totals.append(await sender.send_due())
            assert all(t.failed == 0 and t.retries == 0 for t in totals)
        now = datetime.fromtimestamp(clock(), tz=timezone.utc)
        got = {name: set() for name in sim.accounts}
        sub_second: list[int] = []
        for r in receiver.got:
            independent_check(r)
            for obs in module_observations(r, now):
                if obs.type is not None:
                    # webhooks fire up to a second after the change the status API dates to the
                    # second (ms timestamps for SendCloud, Aurora and EngageLab): same second here
                    got[r.account].add((obs.email_id, obs.type, obs.occurred_at.replace(microsecond=0)))
                    sub_second.append(obs.occurred_at.microsecond)
        problems = {}
        for name in sim.accounts:
            # the webhook's truth (a Tencent send-stage rejection is `dropped`: not the row's type)
            changes = [(m, e, t) for m, e in sim.iter_changes(name, start, None)
                       if (t := truth_for(e, "webhook")) is not None]
            assert changes, name
            truth = {(m.email_id, t.type, utc_seconds(e.at_ms)) for m, e, t in changes}
            status = {m.email_id: e.provider_status for m, e, _ in changes}
            missing, extra = truth - got[name], got[name] - truth
            if missing or extra:
                problems[name] = {"missing": sorted((e, t.value, status[e]) for e, t, _ in missing)[:5],
                                  "extra": sorted((e, t.value, status.get(e)) for e, t, _ in extra)[:5]}
        assert not problems, problems
        assert sum(1 for us in sub_second if us) > len(sub_second) // 3, "millisecond webhook times are exercised"
        providers = {r.provider for r in receiver.got}
        assert providers == {p.value for p in Provider}
        if aurora_body == "form":
            assert all(r.headers["content-type"] == "application/x-www-form-urlencoded"
                       for r in receiver.got if r.provider == "aurora_sendcloud")


async def test_pending_changes_of_one_request_are_one_webhook():
    clock = FakeClock()
    receiver = Receiver()
    async with running(accounts(live_per_sec=5.0, live_max=300), clock=clock) as (sim, base, _), receiver.serve() as target:
        async with WebhookSender(sim, target, accounts=["sc", "el"]) as sender:
            clock.advance(60)
            stats = await sender.send_due()
        requests = [orjson.loads(r.body) for r in receiver.got if r.provider == "engagelab"
                    and orjson.loads(r.body)["status"]["message_status"] == "target"]
        assert requests and any(len(b["status"]["status_data"]["email_ids"]) > 1 for b in requests)
        forms = [dict(urllib.parse.parse_qsl(r.body.decode())) for r in receiver.got if r.provider == "sendcloud"]
        multi = [f for f in forms if f["event"] == "request" and int(f["recipientSize"]) > 1]
        assert multi and len(orjson.loads(multi[0]["emailIds"])) == int(multi[0]["recipientSize"])
        assert stats.events == sum(1 for n in ("sc", "el") for _ in sim.changes(n, since=clock() - 60)) - stats.skipped


async def test_duplicates_and_reordering():
    clock = FakeClock()
    receiver = Receiver()
    async with running(accounts(live_per_sec=3.0, live_max=300), clock=clock) as (sim, base, _), receiver.serve() as target:
        async with WebhookSender(sim, target, duplicate_rate=0.3, reorder_window=8, seed=5, accounts=["tc"]) as sender:
            clock.advance(120)
            stats = await sender.send_due()
        bodies = [r.body for r in receiver.got]
        assert stats.duplicates > 5 and len(bodies) == len(set(bodies)) + stats.duplicates
        times = [orjson.loads(b)["timestamp"] for b in bodies]
        assert times != sorted(times)  # out of order
        truth = [c for c in sim.changes("tc", since=clock() - 120) if c.type is not None]
        assert len(set(bodies)) == len(truth) == stats.events


async def test_retries_on_errors_and_gives_up_bounded():
    clock = FakeClock()
    flaky = Receiver(fail_first=True)
    async with running(accounts(live_per_sec=2.0, live_max=100), clock=clock) as (sim, base, _), flaky.serve() as target:
        async with WebhookSender(sim, target, accounts=["uni", "sc"], retry_base_secs=0.01) as sender:
            clock.advance(60)
            stats = await sender.send_due()
        assert stats.failed == 0 and stats.retries == stats.delivered > 0
        assert stats.statuses[503] == stats.retries and stats.requests == 2 * stats.delivered
        retried = [r for r in flaky.got if r.provider == "unisender" and r.query]
        assert retried and all(r.query == {"retry_count": "1"} for r in retried)
        now = datetime.fromtimestamp(clock(), tz=timezone.utc)
        for r in flaky.got:  # a resent UniSender body still verifies
            module_observations(r, now)
    down = Receiver(always=500)
    async with running(accounts(live_per_sec=2.0, live_max=100), clock=clock) as (sim, base, _), down.serve() as target:
        async with WebhookSender(sim, target, accounts=["tc"], max_attempts=3, retry_base_secs=0.001) as sender:
            clock.advance(60)
            stats = await sender.send_due()
        assert stats.delivered == 0 and stats.failed > 0 and stats.requests == 3 * stats.failed
    async with running(accounts(live_per_sec=2.0, live_max=100), clock=clock) as (sim, base, _):
        sender = WebhookSender(sim, "http://127.0.0.1:9", accounts=["tc"], max_attempts=2, retry_base_secs=0.001)
        clock.advance(60)
        stats = await sender.send_due()  # nobody listens: no answer counts as a failure
        await sender.close()
        assert stats.failed > 0 and stats.statuses[0] == stats.requests


async def test_run_sends_until_stopped():
    receiver = Receiver()
    async with running(accounts(live_per_sec=20.0, live_max=200), clock=time.time) as (sim, base, _), receiver.serve() as target:
        # the real clock: live mail appears every second (times are whole seconds)
        sender = WebhookSender(sim, target, accounts=["tc", "uni"])
        stop = asyncio.Event()
        task = asyncio.create_task(sender.run(0.1, stop))
        await asyncio.sleep(2.2)
        stop.set()
        await asyncio.wait_for(task, 5)
        assert sender.totals.delivered > 0 and sender._session is None
        assert sender.totals.requests >= 2
        assert len(receiver.got) == sender.totals.delivered


def test_sender_refuses_accounts_it_cannot_sign_for():
    from worker.simulator import SimAccount, SimConfig, Simulator

    sim = Simulator(SimConfig(seed=1, accounts=(SimAccount(provider=Provider.SENDCLOUD, name="x", api_user="u",
                                                           api_key="k", live_per_sec=0, history_per_day=1),)))
    with pytest.raises(ValueError, match="app_key"):
        WebhookSender(sim, "http://127.0.0.1:1")
