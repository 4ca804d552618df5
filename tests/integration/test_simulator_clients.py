"""Clients built from the provider modules page through a whole simulated day, under the quota.

The requests come from `build_poll_request` and the answers go through `parse_poll_response` of
worker/providers; the simulator's ground truth says which messages that day holds and what their
status is. A mismatch here is a disagreement between a provider module and the simulator (both
claim to follow PROVIDERS.md), so the failure message names the email and both sides.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from tests.integration.test_simulator_support import FakeClock, accounts, running
from worker.config import parse_config
from worker.model import EventType, Provider
from worker.providers import get_module
from worker.providers.base import AccountContext, PollQuery
from worker.simulator import demo_config, demo_worker_accounts, demo_worker_env
from worker.simulator.simconfig import SimConfig

pytestmark = pytest.mark.integration

class TokenBucket:
    """A local limiter on the simulator's (fake) clock: waiting means moving that clock on."""

    def __init__(self, clock: FakeClock, rate_per_sec: float) -> None:
        self.clock, self.rate = clock, rate_per_sec
        self.tokens, self.last = 1.0, clock()

    def acquire(self) -> None:
        now = self.clock()
        self.tokens = min(1.0, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1.0:
            self.clock.advance((1.0 - self.tokens) / self.rate)
            self.tokens, self.last = 1.0, self.clock()
        self.tokens -= 1.0


def context(sim, name: str, base: str) -> AccountContext:
    a = sim.accounts[name].account
    return AccountContext(name=name, provider=a.provider, base_url=base, api_user=a.api_user, api_key=a.api_key,
                          secret_id=a.secret_id, secret_key=a.secret_key, region=a.region)


async def fetch(session, req):
    async with session.request(req.method, req.url, params=list(req.params) or None, headers=dict(req.headers),
                               data=req.body) as resp:
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.read()


async def page_through_day(sim, session, acct: AccountContext, clock: FakeClock, day) -> list:
    """Every observation of one day: every declared status filter (or none), page by page."""
    module = get_module(acct.provider)
    a = sim.accounts[acct.name].account
    bucket = TokenBucket(clock, 0.9 * a.quota_per_minute / a.quota_window_secs)
    observations = []
    if module.DEFAULTS.polling == "ids":
        ids = [m.email_id for m in sim.messages(acct.name) if m.local_date == day]
        recipients = {m.email_id: m.recipient for m in sim.messages(acct.name)}
        for i in range(0, len(ids), module.DEFAULTS.id_batch):
            bucket.acquire()
            now = datetime.fromtimestamp(clock(), tz=timezone.utc)
            query = PollQuery(email_ids=tuple(ids[i: i + module.DEFAULTS.id_batch]))
            status, headers, body = await fetch(session, module.build_poll_request(acct, query, now))
            page = module.parse_poll_response(acct, query, status, headers, body, now, recipients=recipients)
            assert not page.unknown_ids
            observations += page.observations
        return observations
    for status_filter in module.DEFAULTS.status_filters or (None,):
        offset = 0
        while offset is not None:
            bucket.acquire()
            now = datetime.fromtimestamp(clock(), tz=timezone.utc)
            query = PollQuery(send_date=day, status=status_filter, offset=offset, limit=module.DEFAULTS.page_limit)
            status, headers, body = await fetch(session, module.build_poll_request(acct, query, now))
            page = module.parse_poll_response(acct, query, status, headers, body, now)
            observations += page.observations
            offset = page.next_offset
    return observations


def check_against_ground_truth(sim, name: str, day, observations: list) -> None:
    module = get_module(sim.accounts[name].provider)
    filters = set(module.DEFAULTS.status_filters)
    expected = {}
    for m in sim.messages(name):
        if m.local_date != day:
            continue
        vis = sim.visible_status(name, m.email_id)
        if not filters or vis.type in filters:
            expected[m.email_id] = vis
    got: dict[str, set] = defaultdict(set)
    for obs in observations:
        got[obs.email_id]  # noqa: B018 - every row counts as covered, emitted or not
        if obs.type is not None:
            got[obs.email_id].add(obs.type)
    assert set(got) == set(expected), "the pages do not cover exactly the day's messages"
    wrong = {eid: (sorted(t.value for t in got[eid]), vis.provider_status, vis.sub_status,
                   sorted(t.value for t in vis.types))
             for eid, vis in expected.items() if got[eid] != set(vis.types)}
    assert not wrong, f"parsed types differ from the ground truth (parsed, status, sub, truth): {wrong}"
    rows = [o for o in observations if o.type is None or o.provider_status not in ("UserUnsubscribed", "UserComplainted", "UserComplained")]
    assert len(rows) == len(expected), "some message was reported twice"


@pytest.mark.parametrize("provider", list(Provider))
async def test_module_client_pages_through_a_whole_day(provider):
    clock = FakeClock()
    accts = tuple(a for a in accounts(history_per_day=1200, quota_per_minute=12, quota_window_secs=60)
                  if a.provider is provider)
    async with running(accts, clock=clock, time_scale=100) as (sim, base, session):
        name = accts[0].name
        day = sim.local_date(name) - timedelta(days=1)  # a whole day, every status final by now
        observations = await page_through_day(sim, session, context(sim, name, base), clock, day)
        assert {c.outcome for c in sim.calls} == {"ok"}, "a paced client was throttled or refused"
        assert len(sim.calls) >= 3
        check_against_ground_truth(sim, name, day, observations)
        types = {o.type for o in observations}
        assert {EventType.DELIVERED, EventType.INVALID, EventType.SOFT_BOUNCE} <= types


async def test_demo_config_drives_a_configured_worker_account():
    """demo_worker_accounts() is a valid worker config whose accounts page through the demo."""
    clock = FakeClock()
    config = demo_config(seed=2, time_scale=100)
    sim_config = SimConfig(seed=config.seed, accounts=config.accounts, time_scale=100, clock=clock)
    from worker.simulator import Simulator

    sim = Simulator(sim_config)
    base = await sim.start()
    try:
        worker_config = parse_config({"kafka": {"bootstrap_servers": "127.0.0.1:9092"},
                                      "accounts": demo_worker_accounts(base)}, demo_worker_env())
        assert {a.name for a in worker_config.accounts} == {a.name for a in config.accounts}
        import aiohttp

        async with aiohttp.ClientSession() as session:
            for account in worker_config.accounts:
                acct = account.context
                day = sim.local_date(acct.name) - timedelta(days=1)
                observations = await page_through_day(sim, session, acct, clock, day)
                check_against_ground_truth(sim, acct.name, day, observations)
        assert {c.outcome for c in sim.calls} == {"ok"}
    finally:
        await sim.stop()


async def test_unisender_err_spam_rejected_is_a_soft_bounce_by_default():
    """PROVIDERS.md 4.4: `err_spam_rejected` -> soft_bounce ("content; do not suppress").

    The simulator files it so by construction. worker/providers/unisender.py instead treats it as a
    sender-side rejection decided by the account's `sender_rejection` policy, whose default is
    invalid (the default PROVIDERS.md gives the SendCloud family's 405/407, which the provider
    itself files as invalid). With the default account this suppresses the recipient.
    """
    clock = FakeClock()
    accts = tuple(a for a in accounts(history_per_day=1200) if a.provider is Provider.UNISENDER)
    async with running(accts, clock=clock) as (sim, base, session):
        rejected = [m for m in sim.messages("uni") if sim.visible_status("uni", m.email_id).provider_status
                    == "err_spam_rejected"]
        assert rejected
        acct = context(sim, "uni", base)
        module = get_module(Provider.UNISENDER)
        now = datetime.fromtimestamp(clock(), tz=timezone.utc)
        query = PollQuery(email_ids=tuple(m.email_id for m in rejected))
        status, headers, body = await fetch(session, module.build_poll_request(acct, query, now))
        page = module.parse_poll_response(acct, query, status, headers, body, now)
        assert {sim.visible_status("uni", o.email_id).type for o in page.observations} == {EventType.SOFT_BOUNCE}
        assert {o.type for o in page.observations} == {EventType.SOFT_BOUNCE}, (
            "worker/providers/unisender.py maps err_spam_rejected to the account's sender_rejection "
            "(default invalid); PROVIDERS.md 4.4 says soft_bounce")


async def test_aurora_english_status_words_page_through_a_day():
    """Aurora's status language is unverified (PROVIDERS.md 3.3); the simulator can serve English."""
    import attrs

    clock = FakeClock()
    accts = tuple(attrs.evolve(a, options={"status_language": "en"})
                  for a in accounts(history_per_day=600) if a.provider is Provider.AURORA_SENDCLOUD)
    async with running(accts, clock=clock) as (sim, base, session):
        day = sim.local_date("au") - timedelta(days=1)
        observations = await page_through_day(sim, session, context(sim, "au", base), clock, day)
        assert {o.provider_status for o in observations} == {"Delivered", "Invalid Mail", "Soft Bounce"}
        check_against_ground_truth(sim, "au", day, observations)
