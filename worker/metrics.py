"""Prometheus metrics (DESIGN.md section 7), and the only functions that change them.

Labels are bounded: provider, account (a config name), type, source, outcome, status, reason
(an `error_type` or a dedup outcome), stage, error_type, shard. Never an address, an id or a
message. Code elsewhere never touches a collector: it calls the named functions below, or fills
a `Tally` that a shard publishes once its transaction has committed.
"""

from __future__ import annotations

from collections import Counter as _Counter

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from worker.errors import ERROR_TYPES

REGISTRY = CollectorRegistry(auto_describe=True)

POLL_REQUESTS = Counter("esw_poll_requests_total", "Status API calls by outcome",
                        ["provider", "account", "outcome"], registry=REGISTRY)
THROTTLES = Counter("esw_throttles_total", "Throttle answers from a provider", ["provider", "account"],
                    registry=REGISTRY)
POLL_RATE = Gauge("esw_poll_rate", "Current limiter rate, calls per second", ["provider", "account"],
                  registry=REGISTRY)
POLL_STALENESS = Gauge("esw_poll_staleness_seconds", "Age of the oldest due but unchecked date window or email id",
                       ["provider", "account"], registry=REGISTRY)
POLL_IN_FLIGHT = Gauge("esw_poll_in_flight", "Status API calls in flight", ["provider", "account"], registry=REGISTRY)
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
WEBHOOK_SHED = Counter("esw_webhook_shed_total", "Webhook requests answered 503 at once to bound load",
                       ["reason"], registry=REGISTRY)
PRODUCE_LATENCY = Histogram("esw_produce_latency_seconds", "Webhook records: write to _raw until acknowledged",
                            registry=REGISTRY, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
TRANSACTION_LATENCY = Histogram("esw_transaction_latency_seconds", "Shard transaction: begin until committed",
                                registry=REGISTRY, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
LOOP_LAG = Histogram("esw_event_loop_lag_seconds", "How much later than asked the event loop woke a 100 ms sleep",
                     registry=REGISTRY, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
RAW_LAG = Gauge("esw_raw_lag", "Records of _raw not yet processed, per owned shard", ["shard"], registry=REGISTRY)
STATE_ENTRIES = Gauge("esw_state_entries", "Dedup entries held, per owned shard", ["shard"], registry=REGISTRY)
SHARDS_OWNED = Gauge("esw_shards_owned", "Shards this replica owns and has restored", registry=REGISTRY)
SHARDS_RESTORING = Gauge("esw_shards_restoring", "Shards assigned to this replica and not restored yet",
                         registry=REGISTRY)
READY = Gauge("esw_ready", "1 when /readyz answers 200", registry=REGISTRY)
KAFKA_REACHABLE = Gauge("esw_kafka_reachable", "1 when the last probe found a leader for every _raw partition "
                        "and no write failed since", registry=REGISTRY)
ERRORS = Counter("esw_errors_total", "Failures by stage and bounded error type", ["stage", "error_type"],
                 registry=REGISTRY)

# Where a failure happened: the `stage` label of esw_errors_total.
STAGES = frozenset({"poll", "transaction", "consume", "restore", "sent_feed", "webhook", "intake"})


def _bounded(error_type: str) -> str:
    if error_type not in ERROR_TYPES:
        raise ValueError(f"error_type {error_type!r} is not in worker.errors.ERROR_TYPES")
    return error_type


# -- polling --------------------------------------------------------------------------------------


def poll_request(provider: str, account: str, outcome: str) -> None:
    """One status-API call; `outcome` is `ok` or the failure's error_type."""
    POLL_REQUESTS.labels(provider, account, outcome if outcome == "ok" else _bounded(outcome)).inc()


def throttled(provider: str, account: str) -> None:
    THROTTLES.labels(provider, account).inc()


def poll_rate(provider: str, account: str, calls_per_sec: float) -> None:
    POLL_RATE.labels(provider, account).set(calls_per_sec)


def poll_staleness(provider: str, account: str, secs: float) -> None:
    POLL_STALENESS.labels(provider, account).set(secs)


def poll_in_flight(provider: str, account: str, calls: int) -> None:
    POLL_IN_FLIGHT.labels(provider, account).set(calls)


# -- webhooks -------------------------------------------------------------------------------------


def webhook_answered(provider: str, account: str, status: int) -> None:
    WEBHOOK_REQUESTS.labels(provider, account, str(status)).inc()


SHED_REASONS = frozenset({"requests", "bytes"})


def webhook_shed(reason: str) -> None:
    """A webhook answered 503 before its body was read: too many requests in progress, or too
    many body bytes in flight."""
    if reason not in SHED_REASONS:
        raise ValueError(f"shed reason {reason!r}")
    WEBHOOK_SHED.labels(reason).inc()


def produced(secs: float) -> None:
    PRODUCE_LATENCY.observe(secs)


def loop_lag(secs: float) -> None:
    LOOP_LAG.observe(secs)


# -- failures -------------------------------------------------------------------------------------


def error(stage: str, error_type: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r} is not one of {sorted(STAGES)}")
    ERRORS.labels(stage, _bounded(error_type)).inc()


def dead_letters(provider: str, account: str, reason: str, n: int = 1) -> None:
    DEAD_LETTERS.labels(provider, account, _bounded(reason)).inc(n)


# -- shards ---------------------------------------------------------------------------------------


def transaction(secs: float) -> None:
    TRANSACTION_LATENCY.observe(secs)


def state_entries(shard: int, entries: int) -> None:
    STATE_ENTRIES.labels(str(shard)).set(entries)


def raw_lag(shard: int, records: int) -> None:
    RAW_LAG.labels(str(shard)).set(records)


def shard_released(shard: int) -> None:
    """A shard left this replica: its per-shard series go with it."""
    for gauge in (STATE_ENTRIES, RAW_LAG):
        try:
            gauge.remove(str(shard))
        except KeyError:
            pass


def shards_owned(n: int, restoring: int = 0) -> None:
    SHARDS_OWNED.set(n)
    SHARDS_RESTORING.set(restoring)


def kafka_reachable(reachable: bool) -> None:
    KAFKA_REACHABLE.set(1 if reachable else 0)


def ready(is_ready: bool) -> None:
    READY.set(1 if is_ready else 0)


@attrs.define
class Tally:
    """What one shard batch did, counted while it is staged and published only once it committed
    (a failed batch is replayed, and must not be counted twice)."""

    events: _Counter = attrs.field(factory=_Counter)     # (provider, account, type, source)
    drops: _Counter = attrs.field(factory=_Counter)      # (provider, account, reason)
    ignored: _Counter = attrs.field(factory=_Counter)    # (provider, account)
    dead: _Counter = attrs.field(factory=_Counter)       # (provider, account, reason)

    def event(self, provider: str, account: str, type_: str, source: str) -> None:
        self.events[(provider, account, type_, source)] += 1

    def drop(self, provider: str, account: str, reason: str) -> None:
        self.drops[(provider, account, reason)] += 1

    def ignore(self, provider: str, account: str) -> None:
        self.ignored[(provider, account)] += 1

    def dead_letter(self, provider: str, account: str, reason: str) -> None:
        self.dead[(provider, account, _bounded(reason))] += 1

    def publish(self) -> None:
        for labels, n in self.events.items():
            EVENTS.labels(*labels).inc(n)
        for labels, n in self.drops.items():
            DEDUP_DROPS.labels(*labels).inc(n)
        for labels, n in self.ignored.items():
            IGNORED.labels(*labels).inc(n)
        for labels, n in self.dead.items():
            DEAD_LETTERS.labels(*labels).inc(n)
