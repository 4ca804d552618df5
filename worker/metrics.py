"""Prometheus metrics (DESIGN.md section 7), and the only functions that change them.

Labels are bounded: provider, account (a config name), type, source, outcome, status, reason
(an `error_type` or a dedup outcome), stage, error_type, shard, and domain (a receiving domain,
at most `metrics.deliverability_domains` of them for the life of the process, plus `other`:
worker.domains). Never an address, an id or a message. Code elsewhere never touches a collector:
it calls the named functions below, or fills a `Tally` that a shard publishes once its
transaction has committed.
"""

from __future__ import annotations

import functools
from collections import Counter as _Counter
from collections.abc import Iterable, Mapping, Sequence

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from worker.domains import EVENT_TYPES, OTHER_DOMAIN, DomainRanking, recipient_domain
from worker.errors import ERROR_TYPES

REGISTRY = CollectorRegistry(auto_describe=True)
# No `<name>_created` series beside every counter and histogram child (prometheus_client's default):
# they doubled the series count, and docs/metrics.md lists only what the worker exports.
disable_created_metrics()

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
DELIVERABILITY = Counter("esw_deliverability_events_total", "Events committed to Kafka by the recipient's domain "
                         "(the top domains by volume, else other)", ["domain", "type"], registry=REGISTRY)
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
RAW_GROUP_LAG = Gauge("esw_raw_group_lag", "Records of _raw after the group's committed offset, for every "
                      "shard whoever owns it", ["shard"], registry=REGISTRY)
STATE_ENTRIES = Gauge("esw_state_entries", "Dedup entries held, per owned shard", ["shard"], registry=REGISTRY)
TRACKED_IDS = Gauge("esw_tracked_ids", "Email ids tracked for polling by id (UniSender, gap-driven accounts), per owned shard",
                    ["shard"], registry=REGISTRY)
OPEN_IDS = Gauge("esw_open_ids", "Tracked email ids whose status is not final yet (full records), per owned shard",
                 ["shard"], registry=REGISTRY)
REPLAY_ENTRIES = Gauge("esw_replay_entries", "Webhook signatures held by the replay defence, per owned shard", ["shard"],
                       registry=REGISTRY)
SHARDS_OWNED = Gauge("esw_shards_owned", "Shards this replica owns and has restored", registry=REGISTRY)
SHARDS_RESTORING = Gauge("esw_shards_restoring", "Shards assigned to this replica and not restored yet",
                         registry=REGISTRY)
SHARDS_CONFIGURED = Gauge("esw_shards_configured", "kafka.shards of the configuration", registry=REGISTRY)
WEBHOOKS_ENABLED = Gauge("esw_account_webhooks_enabled", "1 when the account's webhook is enabled, 0 when it is "
                         "poll-only", ["provider", "account"], registry=REGISTRY)
ACCOUNT_SHARD = Gauge("esw_account_shard", "The shard (partition of _raw and _state) that owns the account",
                      ["provider", "account"], registry=REGISTRY)
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


# Outcomes of a status-API call that are not failures (every other outcome is an error_type).
POLL_OUTCOMES = frozenset({"ok", "post_refused"})
# Counted children the alert rules look at, created at 0 for every account at start.
ALERTED_STATUSES = (401, 503)
ALERTED_OUTCOMES = ("fatal_config", "bad_request")


def poll_request(provider: str, account: str, outcome: str) -> None:
    """One status-API call; `outcome` is one of POLL_OUTCOMES or the failure's error_type."""
    POLL_REQUESTS.labels(provider, account, outcome if outcome in POLL_OUTCOMES else _bounded(outcome)).inc()


def throttled(provider: str, account: str) -> None:
    THROTTLES.labels(provider, account).inc()


def poll_rate(provider: str, account: str, calls_per_sec: float) -> None:
    POLL_RATE.labels(provider, account).set(calls_per_sec)


def poll_staleness(provider: str, account: str, secs: float) -> None:
    POLL_STALENESS.labels(provider, account).set(secs)


def poll_in_flight(provider: str, account: str, calls: int) -> None:
    POLL_IN_FLIGHT.labels(provider, account).set(calls)


def accounts_released(accounts: Iterable[tuple[str, str]]) -> None:
    """The (provider, account) pairs of a shard that left this replica: their poll gauges go with
    it (its new owner reports them)."""
    for labels in accounts:
        for gauge in (POLL_RATE, POLL_STALENESS, POLL_IN_FLIGHT):
            try:
                gauge.remove(*labels)
            except KeyError:
                pass


# -- webhooks -------------------------------------------------------------------------------------


def ignored(provider: str, account: str, n: int) -> None:
    """Webhook records that carry no delivery status (opens, clicks, requests), dropped at the edge
    before `_raw`: counted when the webhook is answered, so a provider's retry counts again."""
    IGNORED.labels(provider, account).inc(n)


def account_webhooks(provider: str, account: str, enabled: bool, polled: bool = True) -> None:
    """Set at start for every configured account (an alert on silent webhooks skips poll-only ones).
    The series the alerts count start at 0 with it, so that the first throttle, the first burst of
    401s or the first refused call is an increase `increase()` sees (a series born at 30 is not:
    EswWebhooksRejected missed a first burst of 30 bad signatures, EswPollFatalConfig the first
    refused call, in the dashboard audit of 2026-12-06) and the dashboard has a series to show."""
    WEBHOOKS_ENABLED.labels(provider, account).set(1 if enabled else 0)
    THROTTLES.labels(provider, account)
    if enabled:
        for status in ALERTED_STATUSES:
            _answered(provider, account, status)
    if polled:
        for outcome in ALERTED_OUTCOMES:
            POLL_REQUESTS.labels(provider, account, outcome)


def account_shard(provider: str, account: str, shard: int) -> None:
    """Set at start for every configured account: where murmur2 placed it (worker.placement)."""
    ACCOUNT_SHARD.labels(provider, account).set(shard)


def webhook_answered(provider: str, account: str, status: int) -> None:
    _answered(provider, account, status).inc()


@functools.lru_cache(maxsize=1024)   # configured accounts (or "unknown") x the few statuses answered
def _answered(provider: str, account: str, status: int) -> Counter:
    """The request counter's child of one label set, looked up once (`labels()` costs ~1.4 µs a
    webhook; the child's `inc` 0.7)."""
    return WEBHOOK_REQUESTS.labels(provider, account, str(status))


SHED_REASONS = frozenset({"requests", "bytes", "receiving"})
for _reason in sorted(SHED_REASONS):   # at 0 from the start: the first shed is an increase
    WEBHOOK_SHED.labels(_reason)


def webhook_shed(reason: str) -> None:
    """A webhook answered 503 to bound load: too many requests being verified and written, too many
    body bytes in flight, or the oldest of the requests still receiving their body making room."""
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


def state_entries(shard: int, entries: int, tracked_ids: int = 0, replay_entries: int = 0, open_ids: int = 0) -> None:
    """What a shard holds in memory: dedup entries, tracked email ids (and how many of them are
    not final), replay-defence signatures."""
    STATE_ENTRIES.labels(str(shard)).set(entries)
    TRACKED_IDS.labels(str(shard)).set(tracked_ids)
    OPEN_IDS.labels(str(shard)).set(open_ids)
    REPLAY_ENTRIES.labels(str(shard)).set(replay_entries)


def raw_lag(shard: int, records: int) -> None:
    RAW_LAG.labels(str(shard)).set(records)


def raw_group_lag(lags: Mapping[int, int]) -> None:
    """The group's lag of every `_raw` partition, as measured last: replaces the previous set (an
    empty mapping removes them all, at stop). Kept while a shard has no owner, unlike esw_raw_lag."""
    RAW_GROUP_LAG.clear()
    for shard, records in lags.items():
        RAW_GROUP_LAG.labels(str(shard)).set(records)


def shard_released(shard: int) -> None:
    """A shard left this replica: its per-shard series go with it."""
    for gauge in (STATE_ENTRIES, TRACKED_IDS, OPEN_IDS, REPLAY_ENTRIES, RAW_LAG):
        try:
            gauge.remove(str(shard))
        except KeyError:
            pass


def shards_configured(n: int) -> None:
    SHARDS_CONFIGURED.set(n)


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

    def drop(self, provider: str, account: str, reason: str, count: int = 1) -> None:
        self.drops[(provider, account, reason)] += count

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


# -- deliverability by receiving domain -----------------------------------------------------------

_ranking = DomainRanking(0)


def deliverability_domains(top: int) -> None:
    """Set once at start: how many receiving domains may get a label (0: the metric is off). A new
    ranking starts with no series."""
    global _ranking
    _ranking = DomainRanking(top)
    DELIVERABILITY.clear()


def deliverability(events: Sequence[tuple[str, bytes | None, bytes, Sequence[tuple[str, bytes]]]]) -> None:
    """A committed batch's event records (topic, key, value, headers), by the recipient's domain and
    the `event_type` header. Call once per committed batch, after the commit."""
    if _ranking.top <= 0 or not events:
        return
    counts: _Counter = _Counter()
    for _, key, _, headers in events:
        type_ = next((v for k, v in headers if k == "event_type"), None)
        if type_ in EVENT_TYPES:
            counts[(recipient_domain(key), type_)] += 1
    weights: _Counter = _Counter()
    for (domain, _), n in counts.items():
        if domain != OTHER_DOMAIN:
            weights[domain] += n
    labels = _ranking.observe(weights)
    series: _Counter = _Counter()
    for (domain, type_), n in counts.items():
        series[(labels.get(domain, OTHER_DOMAIN), type_)] += n
    for (label, type_), n in series.items():
        DELIVERABILITY.labels(label, type_.decode()).inc(n)
