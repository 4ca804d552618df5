"""A simulated world for end-to-end tests: provider accounts in the simulator, the matching worker
accounts, and the ground truth the worker's output is compared with."""

from __future__ import annotations

import collections
from datetime import datetime, timezone
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from worker.model import Provider
from worker.simulator import SimAccount

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


def expected_all_changes(sim, names: list[str], until: float) -> collections.Counter:
    """Every emittable status change the simulator made: what webhooks + polls must produce."""
    out: collections.Counter = collections.Counter()
    for name in names:
        for change in sim.changes(name, until):
            if change.type is not None:
                out[(name, change.email_id, change.type.value)] += 1
    return out


def expected_visible(sim, names: list[str], at: float) -> collections.Counter:
    """What a poll-only worker can know: the statuses each record shows at the end."""
    out: collections.Counter = collections.Counter()
    for name in names:
        for message in sim.messages(name, at):
            visible = sim.visible_status(name, message.email_id, at)
            for type_ in visible.types if visible else ():
                out[(name, message.email_id, type_.value)] += 1
    return out


def observed(records: list) -> tuple[collections.Counter, list[dict]]:
    events = [orjson.loads(r.value) for r in records]
    return collections.Counter((e["account"], e["email_id"], e["type"]) for e in events), events


def diff(expected: collections.Counter, actual: collections.Counter, limit: int = 8) -> str:
    missing = expected - actual
    extra = actual - expected
    return (f"missing {sum(missing.values())}: {list(missing.items())[:limit]}\n"
            f"extra/duplicated {sum(extra.values())}: {list(extra.items())[:limit]}")


async def publish_sent(bootstrap: str, topic: str, sim, names: list[str], until: float, done: set | None = None) -> int:
    """Write the sent-message records (schemas/sent-message.v1.json) a mail-sending service would."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    count = 0
    try:
        for name in names:
            provider = sim.accounts[name].account.provider.value
            for sent in sim.sent_messages(name, until):
                if done is not None:
                    if (name, sent.email_id) in done:
                        continue
                    done.add((name, sent.email_id))
                record = {"provider": provider, "account": name, "email_id": sent.email_id,
                          "recipient": sent.recipient, "sent_at": sent.sent_at.isoformat().replace("+00:00", "Z")}
                await producer.send(topic, orjson.dumps(record), key=sent.email_id.encode())
                count += 1
        await producer.flush()
    finally:
        await producer.stop()
    return count


def now_ts() -> float:
    return datetime.now(timezone.utc).timestamp()
