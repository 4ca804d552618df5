"""The frozen configuration (DESIGN.md 7a): what worker.config resolves a config file into. Every
default is the schema's (worker.schema `default`), or the provider's where the schema says so."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import attrs

from worker.model import Provider
from worker.providers.base import AccountContext
from worker.schema import default

# Sweeps of a provider without a result cache are at least this far apart by default (a minute:
# the quota window of every provider).
INTERVAL_MIN_WITHOUT_CACHE_SECS = 60.0


# -- the frozen configuration -------------------------------------------------------------------


@attrs.frozen
class KafkaConfig:
    bootstrap_servers: str
    topic_prefix: str = default("kafka", "topic_prefix")
    shards: int = default("kafka", "shards")
    group_id: str = default("kafka", "group_id")
    replication_factor: int = default("kafka", "replication_factor")
    output_partitions: int = default("kafka", "output_partitions")
    # aiokafka's security settings, secrets resolved, and the TLS files (worker.kafka_tls)
    security: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    produce_timeout_secs: float = default("kafka", "produce_timeout_secs")
    transaction_timeout_secs: float = default("kafka", "transaction_timeout_secs")
    batch_max_records: int = default("kafka", "batch_max_records")
    batch_linger_ms: int = default("kafka", "batch_linger_ms")
    session_timeout_ms: int = default("kafka", "session_timeout_ms")
    restore_concurrency: int = default("kafka", "restore_concurrency")


@attrs.frozen
class HttpConfig:
    host: str = default("http", "host")
    port: int = default("http", "port")
    max_body_bytes: int = default("http", "max_body_bytes")
    ack_timeout_secs: float = default("http", "ack_timeout_secs")
    body_read_timeout_secs: float = default("http", "body_read_timeout_secs")
    max_records_per_body: int = default("http", "max_records_per_body")
    max_concurrent_requests: int = default("http", "max_concurrent_requests")
    max_inflight_body_bytes: int = default("http", "max_inflight_body_bytes")
    reuse_port: bool = default("http", "reuse_port")


@attrs.frozen
class DedupConfig:
    tolerance_secs: float = default("dedup", "tolerance_secs")
    webhook_horizon_days: int = default("dedup", "webhook_horizon_days")


@attrs.frozen
class WebhookConfig:
    enabled: bool = default("accounts", "webhook", "enabled")
    path_tokens: tuple[str, ...] = attrs.field(default=(), repr=False)   # current first, then the previous
    replay_window_secs: float = default("accounts", "webhook", "replay_window_secs")


@attrs.frozen
class PollConfig:
    quota_per_minute: int                     # default: the provider's (ProviderDefaults)
    cache_ttl_secs: float                     # default: the provider's
    interval_min_secs: float                  # default: the cache TTL, or a minute without one
    enabled: bool = default("accounts", "poll", "enabled")
    quota_share: float = default("accounts", "poll", "quota_share")
    lookback_days: int = default("accounts", "poll", "lookback_days")
    interval_max_secs: float = default("accounts", "poll", "interval_max_secs")
    quota_window_secs: float = default("accounts", "poll", "quota_window_secs")
    request_timeout_secs: float = default("accounts", "poll", "request_timeout_secs")
    retry_attempts: int = default("accounts", "poll", "retry_attempts")
    retry_max_secs: float = default("accounts", "poll", "retry_max_secs")
    id_max_age_days: int = default("accounts", "poll", "id_max_age_days")
    id_delivered_watch_hours: float = default("accounts", "poll", "id_delivered_watch_hours")
    max_in_flight: int = default("accounts", "poll", "max_in_flight")
    id_min_recheck_secs: float = default("accounts", "poll", "id_min_recheck_secs")
    gap_driven: bool | None = None            # None until resolved: on when a sent feed is configured
    gap_after_secs: float = default("accounts", "poll", "gap_after_secs")
    safety_sweep_secs: float = default("accounts", "poll", "safety_sweep_secs")

    @property
    def calls_per_second(self) -> float:
        """The limiter's ceiling: the configured share of the quota."""
        return self.quota_per_minute * self.quota_share / self.quota_window_secs


@attrs.frozen
class AccountConfig:
    name: str
    provider: Provider
    context: AccountContext        # what the provider module sees (secrets resolved); built once
    webhook: WebhookConfig
    poll: PollConfig
    spread: int = default("accounts", "spread")   # shards deciding its emails (worker.emit shard_of_email)


@attrs.frozen
class Config:
    kafka: KafkaConfig
    http: HttpConfig
    dedup: DedupConfig
    accounts: tuple[AccountConfig, ...]
    emit_raw: bool = default("emit_raw")
    sent_topic: str | None = default("inputs", "sent_topic")
    shutdown_grace_secs: float = default("shutdown", "grace_secs")
    log_level: str = default("logging", "level")
    deliverability_domains: int = default("metrics", "deliverability_domains")
    # Keys the file gives that this account's provider never reads (check-config warns, `run` logs):
    # not problems, so a config that passed before still does.
    notices: tuple[str, ...] = ()

    def account(self, provider: Provider | str, name: str) -> AccountConfig | None:
        return self._by_key.get((Provider(provider), name))

    @functools.cached_property
    def _by_key(self) -> dict[tuple[Provider, str], AccountConfig]:
        return {(a.provider, a.name): a for a in self.accounts}
