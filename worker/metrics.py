"""Prometheus metrics (DESIGN.md section 7). Labels are bounded: provider, account (a config
name), type, source, outcome, status, reason, shard. Never an address, an id or a message."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

POLL_REQUESTS = Counter("esw_poll_requests_total", "Status API calls by outcome",
                        ["provider", "account", "outcome"], registry=REGISTRY)
THROTTLES = Counter("esw_throttles_total", "Throttle answers from a provider", ["provider", "account"],
                    registry=REGISTRY)
POLL_RATE = Gauge("esw_poll_rate", "Current limiter rate, calls per second", ["provider", "account"],
                  registry=REGISTRY)
WEBHOOK_REQUESTS = Counter("esw_webhook_requests_total", "Webhook requests by HTTP status answered",
                           ["provider", "account", "status"], registry=REGISTRY)
EVENTS = Counter("esw_events_emitted_total", "Normalized events committed to Kafka",
                 ["provider", "account", "type", "source"], registry=REGISTRY)
DEDUP_DROPS = Counter("esw_dedup_drops_total", "Observations dropped by dedup", ["provider", "account", "reason"],
                      registry=REGISTRY)
DEAD_LETTERS = Counter("esw_dead_letters_total", "Records sent to the dead-letter topic",
                       ["provider", "account", "reason"], registry=REGISTRY)
IGNORED = Counter("esw_ignored_statuses_total", "Statuses that are not emitted (pending, opened, clicked)",
                  ["provider", "account"], registry=REGISTRY)
PRODUCE_LATENCY = Histogram("esw_produce_latency_seconds", "Webhook records: write to _raw until acknowledged",
                            registry=REGISTRY, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
TRANSACTION_LATENCY = Histogram("esw_transaction_latency_seconds", "Shard transaction: begin until committed",
                                registry=REGISTRY, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
RAW_LAG = Gauge("esw_raw_lag", "Records of _raw not yet processed, per owned shard", ["shard"], registry=REGISTRY)
STATE_ENTRIES = Gauge("esw_state_entries", "Dedup entries held, per owned shard", ["shard"], registry=REGISTRY)
SHARDS_OWNED = Gauge("esw_shards_owned", "Shards this replica owns and has restored", registry=REGISTRY)
READY = Gauge("esw_ready", "1 when /readyz answers 200", registry=REGISTRY)
ERRORS = Counter("esw_errors_total", "Failures by stage and bounded error type", ["stage", "error_type"],
                 registry=REGISTRY)
