"""A simulated world for end-to-end tests: provider accounts in the simulator, the matching worker
accounts, and the ground truth the worker's output is compared with."""

from __future__ import annotations

import asyncio
import collections
from datetime import datetime, timezone
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from worker.model import Provider
from worker.simulator import SimAccount
from worker.simulator.codes import Truth, truth_for

ENV = {
    "W_API_KEY": "world-api-key",
    "W_APP_KEY": "world-app-key",
    "W_TC_KEY": "world-tencent-secret",
    "W_TC_TOKEN": "world-tencent-path-token-0123456789",
}
TC_SECRET_ID = "AKIDworldtencent000000000000000000"


def sim_account(provider: Provider, name: str, **kw: Any) -> SimAccount:
    creds: dict[str, Any] = {"api_user": f"user_{name}", "api_key": ENV["W_API_KEY"], "app_key": ENV["W_APP_KEY"]}
    if provider is Provider.TENCENT_SES:
        creds = {"secret_id": TC_SECRET_ID, "secret_key": ENV["W_TC_KEY"], "region": "ap-singapore",
                 "path_token": ENV["W_TC_TOKEN"]}
    elif provider is Provider.UNISENDER:
        creds = {"api_key": ENV["W_API_KEY"]}
    return SimAccount(provider=provider, name=name, **creds, **kw)


def worker_account(acct: SimAccount, base_url: str, *, webhook: bool = True, poll: bool | dict = True) -> dict:
    p = acct.provider
    out: dict[str, Any] = {"name": acct.name, "provider": p.value, "base_url": base_url}
    if p is Provider.TENCENT_SES:
        out["region"] = acct.region
        out["credentials"] = {"secret_id": acct.secret_id, "secret_key_env": "W_TC_KEY"}
        out["webhook"] = {"enabled": webhook, "path_token_env": "W_TC_TOKEN"}
    elif p is Provider.UNISENDER:
        out["credentials"] = {"api_key_env": "W_API_KEY"}
        out["webhook"] = {"enabled": webhook}
    else:
        out["credentials"] = {"api_user": acct.api_user, "api_key_env": "W_API_KEY"}
        out["webhook"] = {"enabled": webhook, "app_key_env": "W_APP_KEY"}
    poll_cfg = {"enabled": bool(poll), "quota_window_secs": acct.quota_window_secs,
                "quota_per_minute": acct.quota_per_minute, "cache_ttl_secs": acct.cache_ttl_secs,
                "interval_min_secs": max(acct.cache_ttl_secs, 2.0), "interval_max_secs": 20,
                "lookback_days": 2, "retry_attempts": 3, "retry_max_secs": 5, "request_timeout_secs": 5}
    if isinstance(poll, dict):
        poll_cfg.update(poll)
    out["poll"] = poll_cfg
    return out


def expected_all_changes(sim, names: list[str], until: float,
                         sources: frozenset[str] = frozenset({"webhook", "poll"})) -> collections.Counter:
    """Every emittable status change the simulator made: what webhooks + polls must produce.

    A change whose webhook and status row map to different types under the contract (Tencent's
    send-stage rejections: the row says invalid, the `dropped` webhook soft_bounce) yields one
    event per type that the given sources report."""
    out: collections.Counter = collections.Counter()
    for name in names:
        for m, e in sim.iter_changes(name, None, until):
            for type_ in _reported_types(e, sources):
                out[(name, m.email_id, type_)] += 1
    return out


def _reported_types(e: Any, sources: frozenset[str]) -> set[str]:
    types = set()
    for source in sources:
        if source == "poll" and not e.api_visible:
            continue  # webhook-only (SendCloud-family engagement)
        truth = truth_for(e, source)
        if truth is not None:
            types.add(truth.type.value)
    return types


def expected_visible(sim, names: list[str], at: float) -> collections.Counter:
    """What a poll-only worker can know: the statuses each record shows at the end."""
    out: collections.Counter = collections.Counter()
    for name in names:
        for message in sim.messages(name, at):
            visible = sim.visible_status(name, message.email_id, at)
            for type_ in visible.types if visible else ():
                out[(name, message.email_id, type_.value)] += 1
    return out


def ever_visible(sim, names: list[str], at: float) -> set:
    """Every (account, email id, type) some status query could have shown at a moment up to `at`.

    A status that is later replaced (delivered, then a complaint an hour on) was visible while it
    lasted, so a poll may rightly have reported it even though `expected_visible(at)` no longer
    lists it."""
    out: set = set()
    for name in names:
        for message in sim.messages(name, at):
            for entry in message.visible_entries(int(at * 1000)):
                if entry.type is not None:
                    out.add((name, message.email_id, entry.type.value))
    return out


def observed(records: list) -> tuple[collections.Counter, list[dict]]:
    events = [orjson.loads(r.value) for r in records]
    return collections.Counter((e["account"], e["email_id"], e["type"]) for e in events), events


def diff(expected: collections.Counter, actual: collections.Counter, limit: int = 8,
         events: list[dict] | None = None) -> str:
    """What is missing and what is extra; with `events`, each extra one's records (its event id,
    source and times tell a record written twice from two decisions)."""
    missing = expected - actual
    extra = actual - expected
    out = (f"missing {sum(missing.values())}: {list(missing.items())[:limit]}\n"
           f"extra/duplicated {sum(extra.values())}: {list(extra.items())[:limit]}")
    for key in list(extra)[:limit] if events else ():
        for e in events or ():
            if (e["account"], e["email_id"], e["type"]) == key:
                out += (f"\n  {key}: event_id {e['event_id']}, source {e['source']}, occurred_at "
                        f"{e['occurred_at']}, observed_at {e['observed_at']}, status {e['provider_status']!r}")
    return out


async def publish_sent(bootstrap: str, topic: str, sim, names: list[str], until: float, done: set | None = None) -> int:
    """Write the sent-message records (schemas/sent-message.v1.json) a mail-sending service would."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    count = 0
    written: list[tuple[str, str]] = []
    sends: list = []
    try:
        for name in names:
            provider = sim.accounts[name].account.provider.value
            for sent in sim.sent_messages(name, until):
                if done is not None and (name, sent.email_id) in done:
                    continue
                written.append((name, sent.email_id))
                record = {"provider": provider, "account": name, "email_id": sent.email_id,
                          "recipient": sent.recipient, "sent_at": sent.sent_at.isoformat().replace("+00:00", "Z")}
                sends.append(await producer.send(topic, orjson.dumps(record), key=sent.email_id.encode()))
                count += 1
        await asyncio.gather(*sends)  # raises if any was not acknowledged: none counts as published then
        if done is not None:
            done.update(written)
    finally:
        await producer.stop()
    return count


def now_ts() -> float:
    return datetime.now(timezone.utc).timestamp()


# -- every event against the change it reports ----------------------------------------------------
# The expected type, reason, scope and final come from the simulator's ground truth
# (worker/simulator/codes.py: typed by hand from the issue-13 contract, never computed by
# worker/providers); a Tencent webhook can differ from the status row of the same change, so the
# truth is per source. Times follow what each channel of each provider reports (whole seconds from
# the status APIs, the webhook's own millisecond timestamp for the SendCloud lineage,
# when-we-saw-it for UniSender's checkEmail).

def expected_truth(provider: Provider, source: str, m: Any, e: Any) -> Truth | None:
    """What the worker must emit for change `e` of message `m` reported by `source`."""
    return truth_for(e, source)


def expected_reason(provider: Provider, source: str, m: Any, e: Any) -> str | None:
    truth = expected_truth(provider, source, m, e)
    return truth.reason if truth else None


def expected_final_scope(provider: Provider, source: str, m: Any, e: Any) -> tuple[bool, str | None] | None:
    truth = expected_truth(provider, source, m, e)
    return (truth.final, truth.scope) if truth else None


def _time_fits(provider: Provider, source: str, m: Any, e: Any, occurred_ms: int, until: float) -> bool:
    from worker.simulator.webhooks import fire_delay_ms

    second = e.at_ms // 1000 * 1000
    if source == "webhook":
        if provider in (Provider.SENDCLOUD, Provider.AURORA_SENDCLOUD, Provider.ENGAGELAB):
            return occurred_ms == e.at_ms + fire_delay_ms(m, e)
        return occurred_ms == second
    if provider is Provider.UNISENDER:      # checkEmail has no time: when the worker saw it
        return second <= occurred_ms <= until * 1000 + 1000
    if provider is Provider.TENCENT_SES and e.kind in ("complaint", "unsubscribed"):
        # the engagement flags carry no time of their own: the row's (its main status's) time
        return occurred_ms in {x.at_ms // 1000 * 1000 for x in m.entries if x.kind not in ("complaint", "unsubscribed")}
    return occurred_ms == second


def check_against_truth(sim: Any, names: list[str], until: float, events: list[dict],
                        sources: frozenset[str] = frozenset({"webhook", "poll"})) -> list[str]:
    """Each event's recipient, source, occurred_at, reason, scope, final and attempt against the
    simulated change it reports; returns the problems found (empty when every event is right)."""
    from worker.model import parse_rfc3339

    # (account, email_id, type, source) -> [(message, entry, truth)]
    truth: dict[tuple[str, str, str, str], list] = collections.defaultdict(list)
    providers = {}
    for name in names:
        providers[name] = sim.accounts[name].account.provider
        for m, e in sim.iter_changes(name, None, until):
            for source in sources:
                t = expected_truth(providers[name], source, m, e)
                if t is not None:
                    truth[(name, m.email_id, t.type.value, source)].append((m, e, t))
    problems = []
    for ev in events:
        key = (ev["account"], ev["email_id"], ev["type"])
        provider, source = providers.get(ev["account"]), ev["source"]
        if source not in sources:
            problems.append(f"{key}: source {source}, expected one of {sorted(sources)}")
            continue
        occurred_ms = int(parse_rfc3339(ev["occurred_at"]).timestamp() * 1000)
        candidates = truth.get((*key, source), [])
        fits = [(m, e, t) for m, e, t in candidates if _time_fits(provider, source, m, e, occurred_ms, until)]
        if not fits:
            problems.append(f"{key}: occurred_at {ev['occurred_at']} by {source} matches no change at "
                            f"{[e.at_ms for _, e, _ in candidates]}")
            continue
        m, e, t = fits[0]
        if ev["recipient"] != m.recipient.lower():
            problems.append(f"{key}: recipient {ev['recipient']!r}, expected {m.recipient.lower()!r}")
        what = f"by {source} ({e.provider_status} {e.sub_status or ''} {e.text!r})"
        if ev["reason"] != t.reason:
            problems.append(f"{key}: reason {ev['reason']} {what}, expected {t.reason}")
        if ev.get("scope", "<absent>") != t.scope:
            problems.append(f"{key}: scope {ev.get('scope', '<absent>')} {what}, expected {t.scope}")
        if ev.get("final", "<absent>") is not t.final:
            problems.append(f"{key}: final {ev.get('final', '<absent>')} {what}, expected {t.final}")
        if ev.get("attempt") is not t.attempt:
            problems.append(f"{key}: attempt {ev.get('attempt')} {what}, expected {t.attempt}")
    return problems
