"""Each default is written once, in schemas/config.v1.json: a config that gives nothing but the
required keys must come out with exactly the schema's defaults (read here straight from the
schema file), and the provider-dependent ones with the provider's documented values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.config import parse_config

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "config.v1.json").read_text())

MINIMAL = {"kafka": {"bootstrap_servers": "k:9092"},
           "accounts": [{"name": "a", "provider": "sendcloud", "credentials": {"api_user": "u", "api_key_env": "K"},
                         "webhook": {"app_key_env": "K"}},
                        {"name": "t", "provider": "tencent_ses", "credentials": {"secret_id": "AKID",
                                                                                  "secret_key_env": "K"},
                         "webhook": {"path_token_env": "T"}}]}
ENV = {"K": "key", "T": "tencent-path-token-0123456789"}

# schema path -> how to read the value from the parsed config (one row per default in the schema)
READ = {
    ("kafka", "topic_prefix"): lambda c: c.kafka.topic_prefix,
    ("kafka", "shards"): lambda c: c.kafka.shards,
    ("kafka", "group_id"): lambda c: c.kafka.group_id,
    ("kafka", "replication_factor"): lambda c: c.kafka.replication_factor,
    ("kafka", "output_partitions"): lambda c: c.kafka.output_partitions,
    ("kafka", "security"): lambda c: dict(c.kafka.security),
    ("kafka", "produce_timeout_secs"): lambda c: c.kafka.produce_timeout_secs,
    ("kafka", "transaction_timeout_secs"): lambda c: c.kafka.transaction_timeout_secs,
    ("kafka", "batch_max_records"): lambda c: c.kafka.batch_max_records,
    ("kafka", "batch_linger_ms"): lambda c: c.kafka.batch_linger_ms,
    ("kafka", "session_timeout_ms"): lambda c: c.kafka.session_timeout_ms,
    ("kafka", "restore_concurrency"): lambda c: c.kafka.restore_concurrency,
    ("http", "host"): lambda c: c.http.host,
    ("http", "port"): lambda c: c.http.port,
    ("http", "max_body_bytes"): lambda c: c.http.max_body_bytes,
    ("http", "ack_timeout_secs"): lambda c: c.http.ack_timeout_secs,
    ("http", "body_read_timeout_secs"): lambda c: c.http.body_read_timeout_secs,
    ("http", "max_records_per_body"): lambda c: c.http.max_records_per_body,
    ("http", "max_concurrent_requests"): lambda c: c.http.max_concurrent_requests,
    ("http", "max_inflight_body_bytes"): lambda c: c.http.max_inflight_body_bytes,
    ("http", "reuse_port"): lambda c: c.http.reuse_port,
    ("emit_raw",): lambda c: c.emit_raw,
    ("inputs", "sent_topic"): lambda c: c.sent_topic,
    ("dedup", "tolerance_secs"): lambda c: c.dedup.tolerance_secs,
    ("dedup", "webhook_horizon_days"): lambda c: c.dedup.webhook_horizon_days,
    ("shutdown", "grace_secs"): lambda c: c.shutdown_grace_secs,
    ("logging", "level"): lambda c: c.log_level,
    ("metrics", "deliverability_domains"): lambda c: c.deliverability_domains,
    ("accounts", "base_url"): lambda c: None,          # null: the provider's host (checked below)
    ("accounts", "region"): lambda c: c.accounts[0].context.region,
    ("accounts", "spread"): lambda c: c.accounts[0].spread,
    ("accounts", "webhook", "enabled"): lambda c: c.accounts[0].webhook.enabled,
    ("accounts", "webhook", "replay_window_secs"): lambda c: c.accounts[0].webhook.replay_window_secs,
    ("accounts", "poll", "enabled"): lambda c: c.accounts[0].poll.enabled,
    ("accounts", "poll", "quota_share"): lambda c: c.accounts[0].poll.quota_share,
    ("accounts", "poll", "lookback_days"): lambda c: c.accounts[0].poll.lookback_days,
    ("accounts", "poll", "interval_max_secs"): lambda c: c.accounts[0].poll.interval_max_secs,
    ("accounts", "poll", "quota_window_secs"): lambda c: c.accounts[0].poll.quota_window_secs,
    ("accounts", "poll", "request_timeout_secs"): lambda c: c.accounts[0].poll.request_timeout_secs,
    ("accounts", "poll", "retry_attempts"): lambda c: c.accounts[0].poll.retry_attempts,
    ("accounts", "poll", "retry_max_secs"): lambda c: c.accounts[0].poll.retry_max_secs,
    ("accounts", "poll", "id_max_age_days"): lambda c: c.accounts[0].poll.id_max_age_days,
    ("accounts", "poll", "id_delivered_watch_hours"): lambda c: c.accounts[0].poll.id_delivered_watch_hours,
    ("accounts", "poll", "max_in_flight"): lambda c: c.accounts[0].poll.max_in_flight,
    ("accounts", "poll", "id_min_recheck_secs"): lambda c: c.accounts[0].poll.id_min_recheck_secs,
    ("accounts", "poll", "gap_after_secs"): lambda c: c.accounts[0].poll.gap_after_secs,
    ("accounts", "poll", "safety_sweep_secs"): lambda c: c.accounts[0].poll.safety_sweep_secs,
    ("accounts", "sender_rejection"): lambda c: {None: "documented"}.get(c.accounts[0].context.sender_rejection),
    ("accounts", "options"): lambda c: dict(c.accounts[0].context.options),
}


def schema_defaults(node, path=()):
    """Every default of a setting (an object's own default, `{}`, only says it may be left out)."""
    out = {}
    if "default" in node and path and (node.get("type") != "object" or path in OBJECT_SETTINGS):
        out[path] = node["default"]
    for key, child in node.get("properties", {}).items():
        out.update(schema_defaults(child, (*path, key)))
    if isinstance(node.get("items"), dict):
        out.update(schema_defaults(node["items"], path))
    return out


OBJECT_SETTINGS = {("kafka", "security"), ("accounts", "options")}   # maps that are settings themselves
DEFAULTS = schema_defaults(SCHEMA)


def test_every_schema_default_is_read_here():
    assert set(DEFAULTS) == set(READ)


@pytest.mark.parametrize("path", sorted(READ), ids=lambda p: ".".join(p))
def test_an_omitted_setting_takes_the_schema_default(path):
    config = parse_config(MINIMAL, ENV)
    assert READ[path](config) == DEFAULTS[path]


def test_provider_dependent_defaults_come_from_the_provider():
    config = parse_config(MINIMAL, ENV)
    sc, tx = config.accounts
    # PROVIDERS.md: SendCloud 3000/min with a 10-minute cache; Tencent 20/s (1200/min), no cache
    assert (sc.poll.quota_per_minute, sc.poll.cache_ttl_secs, sc.poll.interval_min_secs) == (3000, 600, 600)
    assert (tx.poll.quota_per_minute, tx.poll.cache_ttl_secs, tx.poll.interval_min_secs) == (1200, 0, 60.0)
    assert sc.context.base_url == "https://api.sendcloud.net"
    assert tx.context.base_url == "https://ses.tencentcloudapi.com"
