"""Metrics of the configuration, set once at start (worker.app.config_metrics), and the per-account
poll gauges leaving with their shard (worker.group.ShardManager._close, issue 18 point 3)."""

from __future__ import annotations

import pytest

from worker import metrics
from worker.app import config_metrics
from worker.config import parse_config
from worker.errors import ConfigError
from worker.group import ShardManager
from worker.metrics import REGISTRY

ENV = {"K": "key", "T": "tencent-path-token-0123456789"}
ACCOUNTS = [
    {"name": "sc", "provider": "sendcloud", "credentials": {"api_user": "u", "api_key_env": "K"},
     "webhook": {"app_key_env": "K"}},
    {"name": "sc-poll", "provider": "sendcloud", "credentials": {"api_user": "u", "api_key_env": "K"},
     "webhook": {"enabled": False}},
    {"name": "tx", "provider": "tencent_ses", "credentials": {"secret_id": "AKID", "secret_key_env": "K"},
     "webhook": {"path_token_env": "T"}},
]


def config(**top):
    return parse_config({"kafka": {"bootstrap_servers": "k:9092", "shards": 6}, "accounts": ACCOUNTS, **top}, ENV)


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_shards_configured_and_webhooks_enabled_are_set_from_the_config():
    config_metrics(config())
    assert gauge("esw_shards_configured") == 6.0
    assert gauge("esw_account_webhooks_enabled", provider="sendcloud", account="sc") == 1.0
    assert gauge("esw_account_webhooks_enabled", provider="sendcloud", account="sc-poll") == 0.0
    assert gauge("esw_account_webhooks_enabled", provider="tencent_ses", account="tx") == 1.0


def test_deliverability_domains_comes_from_the_config():
    config_metrics(config(metrics={"deliverability_domains": 0}))
    metrics.deliverability([("p.delivered", b"a@b.com", b"{}", [("event_type", b"delivered")])])
    assert gauge("esw_deliverability_events_total", domain="other", type="delivered") is None
    config_metrics(config())                                   # the default: 20, on
    metrics.deliverability([("p.delivered", b"a@b.com", b"{}", [("event_type", b"delivered")])])
    assert gauge("esw_deliverability_events_total", domain="other", type="delivered") == 1.0


@pytest.mark.parametrize(("given", "parsed"), [(None, 20), (0, 0), (5, 5), (100, 100)])
def test_deliverability_domains_is_parsed(given, parsed):
    top = {} if given is None else {"metrics": {"deliverability_domains": given}}
    assert config(**top).deliverability_domains == parsed


@pytest.mark.parametrize(("given", "problem"), [
    ({"deliverability_domains": -1}, "metrics.deliverability_domains: violates minimum 0"),
    ({"deliverability_domains": 101}, "metrics.deliverability_domains: violates maximum 100"),
    ({"deliverability_domains": "20"}, "metrics.deliverability_domains: must be of type integer"),
    ({"domains": 20}, "metrics: unknown key(s) domains"),
])
def test_bad_deliverability_domains_are_refused(given, problem):
    with pytest.raises(ConfigError) as err:
        config(metrics=given)
    assert err.value.problems == [problem]


async def test_a_released_shard_takes_its_accounts_poll_gauges_with_it():
    # One shard: every account of the config is on shard 0.
    cfg = parse_config({"kafka": {"bootstrap_servers": "k:9092", "shards": 1}, "accounts": ACCOUNTS}, ENV)
    manager = ShardManager(cfg, session=None)  # type: ignore[arg-type]   # no shard opens here
    for provider, account in (("sendcloud", "sc"), ("tencent_ses", "tx"), ("unisender", "elsewhere")):
        metrics.poll_rate(provider, account, 8.5)
        metrics.poll_staleness(provider, account, 12.0)
        metrics.poll_in_flight(provider, account, 3)
    assert gauge("esw_poll_rate", provider="sendcloud", account="sc") == 8.5
    await manager._close(0, commit=False)
    for provider, account in (("sendcloud", "sc"), ("tencent_ses", "tx")):
        for name in ("esw_poll_rate", "esw_poll_staleness_seconds", "esw_poll_in_flight"):
            assert gauge(name, provider=provider, account=account) is None, (name, account)
    # an account of no shard of this config (another replica's, as far as this one knows) stays
    assert gauge("esw_poll_rate", provider="unisender", account="elsewhere") == 8.5
    assert gauge("esw_poll_staleness_seconds", provider="unisender", account="elsewhere") == 12.0
    assert gauge("esw_poll_in_flight", provider="unisender", account="elsewhere") == 3.0
    await manager._close(0, commit=False)  # released twice (a reopen): no error


async def test_only_the_released_shards_accounts_lose_their_gauges():
    cfg = parse_config({"kafka": {"bootstrap_servers": "k:9092", "shards": 64}, "accounts": ACCOUNTS}, ENV)
    manager = ShardManager(cfg, session=None)  # type: ignore[arg-type]
    assert len(manager.by_shard) >= 2, "the accounts must be on at least two shards for this test"
    released, kept = sorted(manager.by_shard)[:2]
    for p in (released, kept):
        for a in manager.by_shard[p]:
            metrics.poll_rate(a.provider.value, a.name, 4.0)
    await manager._close(released, commit=False)
    assert [gauge("esw_poll_rate", provider=a.provider.value, account=a.name) for a in manager.by_shard[released]] \
        == [None] * len(manager.by_shard[released])
    assert [gauge("esw_poll_rate", provider=a.provider.value, account=a.name) for a in manager.by_shard[kept]] \
        == [4.0] * len(manager.by_shard[kept])


def test_shed_and_throttle_counters_exist_at_zero_before_anything_happens():
    from worker import metrics
    from worker.metrics import REGISTRY

    metrics.account_webhooks("sendcloud", "zero-start", True)
    assert REGISTRY.get_sample_value("esw_throttles_total", {"provider": "sendcloud", "account": "zero-start"}) == 0.0
    for reason in ("requests", "bytes"):
        assert REGISTRY.get_sample_value("esw_webhook_shed_total", {"reason": reason}) is not None


def test_a_shards_held_sizes_are_exported_and_go_with_the_shard():
    from worker import metrics
    from worker.metrics import REGISTRY

    metrics.state_entries(41, 1200, 35, 7, 4)
    assert REGISTRY.get_sample_value("esw_state_entries", {"shard": "41"}) == 1200
    assert REGISTRY.get_sample_value("esw_tracked_ids", {"shard": "41"}) == 35
    assert REGISTRY.get_sample_value("esw_replay_entries", {"shard": "41"}) == 7
    assert REGISTRY.get_sample_value("esw_open_ids", {"shard": "41"}) == 4
    metrics.shard_released(41)
    for name in ("esw_state_entries", "esw_tracked_ids", "esw_replay_entries", "esw_open_ids"):
        assert REGISTRY.get_sample_value(name, {"shard": "41"}) is None, name
