"""A shard: one partition of `_raw` and `_state`, owned by one replica at a time.

The owner restores the shard's dedup table, poll cursors and tracked ids from `_state`, then
turns `_raw` records and poll results into events. Everything one batch produces (output events,
`_state` writes, dead letters, the `_raw` offset) commits in one Kafka transaction of the shard's
own producer (`transactional_id = <group>-<raw topic>-<partition>`: a new owner fences the old).

In memory, a batch's dedup changes live in an overlay until its transaction commits; only then
are they folded into the table, cursors applied and waiters released. A failed transaction thus
leaves memory exactly as committed, and the `_raw` position is rewound to the last commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Any

import attrs
import orjson
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced

from worker import metrics
from worker.config import AccountConfig, Config
from worker.dedup import DedupTable, Outcome, decide, email_key, hours_since_2020, state_key, state_value
from worker.emit import Topics, dead_letter_record, event_record, producer_settings
from worker.model import EventType, Observation, Provider, Source, StatusEvent
from worker.poll.ids import IdTracker
from worker.providers import get_module
from worker.providers.base import MalformedPayload, PollError, PollQuery
from worker.state import id_key, read_partition, release_freed_memory

log = logging.getLogger("worker.shard")

StateWrite = tuple[bytes, bytes | None]


class ShardClosed(Exception):
    """The shard was revoked or fenced; whoever waited on it should stop."""


class CommitFailed(Exception):
    """The batch's transaction did not commit; nothing of it is visible, nothing advanced."""


@attrs.define
class Batch:
    events: list[tuple[str, bytes, bytes, list]] = attrs.field(factory=list)
    state: list[StateWrite] = attrs.field(factory=list)
    dead: list[tuple[bytes, bytes, list]] = attrs.field(factory=list)
    overlay: dict[int, int | None] = attrs.field(factory=dict)
    raw_offset: int | None = None
    waiters: list[asyncio.Future] = attrs.field(factory=list)
    after_commit: list[Callable[[], None]] = attrs.field(factory=list)
    counts: Counter = attrs.field(factory=Counter)
    size: int = 0


class Shard:
    def __init__(self, partition: int, config: Config, accounts: list[AccountConfig],
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.partition = partition
        self.config = config
        self.topics = Topics.from_config(config.kafka)
        self.accounts = {(a.provider, a.name): a for a in accounts}
        self.clock = clock
        self.table = DedupTable()
        self.cursors: dict[str, dict[str, Cursor]] = {a.name: {} for a in accounts}
        self.trackers: dict[str, IdTracker] = {
            a.name: IdTracker(a.poll.id_max_age_days * 86400.0, get_module(a.provider).DEFAULTS.id_batch or 500)
            for a in accounts if get_module(a.provider).DEFAULTS.polling == "ids"
        }
        self.raw_tp = TopicPartition(self.topics.raw, partition)
        self.transactional_id = f"{config.kafka.group_id}-{self.topics.raw}-{partition}"
        self.producer: AIOKafkaProducer | None = None
        self.batch = Batch()
        self.inflight: Batch | None = None   # the batch whose transaction is being committed
        self.committed_offset: int | None = None
        self.restored = False
        self.closed = False
        self.restore_secs = 0.0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self.on_rewind: Callable[[int, int], None] | None = None   # (partition, offset)
        self.on_lost: Callable[[int], None] | None = None
        self._tolerance = config.dedup.tolerance_secs

    # -- lifecycle ------------------------------------------------------------------------------

    def _new_producer(self) -> AIOKafkaProducer:
        k = self.config.kafka
        return AIOKafkaProducer(**producer_settings(
            k, transactional_id=self.transactional_id, transaction_timeout_ms=int(k.transaction_timeout_secs * 1000),
            linger_ms=0, max_batch_size=1 << 20))

    async def start(self) -> None:
        """Fence any previous owner (this aborts its open transaction), then restore."""
        self.producer = self._new_producer()
        await self.producer.start()
        started = time.monotonic()
        restored = await read_partition(self.config.kafka, self.topics.state, self.partition)
        self.table.load(restored.keys, restored.words)
        now = self.clock().timestamp()
        for account in self.cursors:
            self.cursors[account] = restored.cursors.get(account, {})
        for account, tracker in self.trackers.items():
            for email_id, tracked in restored.ids.get(account, {}).items():
                tracker.restore(email_id, tracked, now)
        del restored
        release_freed_memory()
        self.restore_secs = time.monotonic() - started
        self.restored = True
        metrics.STATE_ENTRIES.labels(str(self.partition)).set(len(self.table))
        log.info("shard restored", extra={"shard": self.partition, "entries": len(self.table),
                                          "restore_secs": round(self.restore_secs, 3)})

    async def close(self, *, commit: bool) -> None:
        """Hand the shard over: commit (or abort) what is open, release the producer. Also for a
        shard that already closed itself (fenced): its producer must still be stopped."""
        if commit and not self.closed and self.producer is not None and self.restored:
            try:
                await self.commit()
            except (CommitFailed, ShardClosed):
                pass
        self.closed = True
        self._fail_waiters(self.batch, ShardClosed(f"shard {self.partition} closed"))
        self.batch = Batch()
        self._wake.set()
        producer, self.producer = self.producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception:  # noqa: BLE001 - a fenced or disconnected producer still stops
                pass
        try:
            metrics.STATE_ENTRIES.remove(str(self.partition))
        except KeyError:
            pass

    # -- input ----------------------------------------------------------------------------------

    def process_raw(self, records: list) -> None:
        """Stage `_raw` records (in offset order) into the open batch."""
        for record in records:
            self._raw_one(record)
            self.batch.raw_offset = record.offset + 1
            self.batch.size += 1
        self._nudge()

    def _raw_one(self, record) -> None:
        try:
            msg = orjson.loads(record.value)
            provider, name, kind = Provider(msg["provider"]), msg["account"], msg["kind"]
            received = datetime.fromtimestamp(msg["received_at"] / 1000, tz=timezone.utc)
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
            self._dead(b"?", b"?", "bad_raw_record", record.value or b"", "application/octet-stream")
            return
        account = self.accounts.get((provider, name))
        if account is None:
            self._dead(provider.value.encode(), name.encode(), "unknown_account", record.value, "application/json")
            return
        try:
            if kind == "webhook":
                observations = get_module(provider).webhook_observations(account.context(), msg["record"])
                self._learn_ids(account, observations, received)
                self._observe_all(account, observations, Source.WEBHOOK, received)
            elif kind == "sent":
                self._learn_sent(account, msg, received)
            elif kind == "poll_page":
                q = msg["query"]
                query = PollQuery(send_date=_date(q.get("send_date")), status=_status(q.get("status")),
                                  offset=q.get("offset", 0), limit=q.get("limit", 100))
                page = get_module(provider).parse_poll_response(
                    account.context(), query, msg["status"], msg.get("headers", {}), msg["body"].encode(), received)
                self._observe_all(account, page.observations, Source.POLL, received)
            else:
                raise MalformedPayload(f"unknown raw kind {kind!r}")
        except (MalformedPayload, PollError, KeyError, TypeError, ValueError) as exc:
            reason = getattr(exc, "error_type", "malformed")
            self._dead(provider.value.encode(), name.encode(), reason, record.value, "application/json")

    def _dead(self, provider: bytes, account: bytes, reason: str, body: bytes, content_type: str) -> None:
        key, value, headers = dead_letter_record(
            provider=provider.decode(), account=account.decode(), reason=reason, body=body,
            content_type=content_type, received_at=self.clock(), source="shard")
        self.batch.dead.append((key, value, headers))
        self.batch.counts[("dead", provider.decode(), account.decode(), reason)] += 1

    def submit_poll(self, account: AccountConfig, observations: tuple[Observation, ...] | list[Observation],
                    observed_at: datetime, writes: Callable[[int], list[StateWrite]]) -> asyncio.Future:
        """Stage one poll result and the state it moves (`writes(emitted)` → cursor/id writes) into
        the open batch; the future resolves when that batch has committed."""
        if self.closed:
            raise ShardClosed(f"shard {self.partition} closed")
        emitted = self._observe_all(account, observations, Source.POLL, observed_at)
        self.batch.state.extend(writes(emitted))
        self.batch.size += max(1, len(observations))
        fut = asyncio.get_running_loop().create_future()
        self.batch.waiters.append(fut)
        self._nudge()
        # A page is a batch already, and its poller waits for this commit before the next call:
        # lingering would only idle the account's quota. Commit as soon as the committer is free.
        self._full.set()
        return fut

    def stage_state(self, writes: list[StateWrite], after_commit: Callable[[], None] | None = None) -> asyncio.Future:
        """Stage bare state writes (retired cursors, expired entries)."""
        self.batch.state.extend(writes)
        if after_commit:
            self.batch.after_commit.append(after_commit)
        fut = asyncio.get_running_loop().create_future()
        self.batch.waiters.append(fut)
        self.batch.size += 1
        self._nudge()
        return fut

    def _observe_all(self, account: AccountConfig, observations, source: Source, observed_at: datetime) -> int:
        emitted = 0
        provider, name = account.provider.value, account.name
        retention = _retention_secs(self.config, account)
        for obs in observations:
            if obs.type is None:
                self.batch.counts[("ignored", provider, name)] += 1
                continue
            key = email_key(provider, name, obs.email_id)
            occurred = int(obs.occurred_at.timestamp())
            current = self._lookup(key)
            outcome, word = decide(current, obs.type, occurred, hours_since_2020(occurred + retention),
                                   self._tolerance, obs.exact_time)
            if outcome is not Outcome.EMIT:
                self.batch.counts[("drop", provider, name, outcome.value)] += 1
                continue
            event = StatusEvent.from_observation(obs, provider=account.provider, account=name, source=source,
                                                observed_at=observed_at, emit_raw=self.config.emit_raw)
            self.batch.events.append(event_record(self.topics, event))
            self.batch.overlay[key] = word
            self.batch.state.append((state_key(key), state_value(word)))
            self.batch.counts[("event", provider, name, obs.type.value, source.value)] += 1
            emitted += 1
        return emitted

    def _lookup(self, key: int) -> int | None:
        """The state as it will be once everything staged so far commits: the open batch, then the
        batch being committed, then the table."""
        for batch in (self.batch, self.inflight):
            if batch is not None and key in batch.overlay:
                return batch.overlay[key]
        return self.table.get(key)

    def _learn_ids(self, account: AccountConfig, observations, received: datetime) -> None:
        tracker = self.trackers.get(account.name)
        if tracker is None:
            return
        now = received.timestamp()
        for obs in observations:
            sent = obs.sent_at.timestamp() if obs.sent_at else now
            self._track(account, tracker, obs.email_id, obs.recipient, sent, obs.provider_status, obs.final, now)

    def _learn_sent(self, account: AccountConfig, msg: dict, received: datetime) -> None:
        tracker = self.trackers.get(account.name)
        if tracker is None:
            return
        sent = datetime.fromisoformat(msg["sent_at"].replace("Z", "+00:00")).timestamp()
        self._track(account, tracker, str(msg["email_id"]), msg["recipient"], sent, None, False, received.timestamp())

    def _track(self, account, tracker, email_id, recipient, sent, status, final, now) -> None:
        change = tracker.learn(email_id, recipient, sent, status, final, now)
        if change is False:
            return
        self.batch.state.append((id_key(account.name, email_id), change.encode()))
        self.batch.after_commit.append(lambda: tracker.apply_write(email_id, change, self.clock().timestamp()))

    def _nudge(self) -> None:
        self._wake.set()
        if self.batch.size >= self.config.kafka.batch_max_records:
            self._full.set()

    @property
    def backlog(self) -> int:
        return self.batch.size

    # -- commit ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Commit batches: when one is full, or `batch_linger_ms` after its first record."""
        linger = self.config.kafka.batch_linger_ms / 1000
        while not self.closed:
            await self._wake.wait()
            if self.closed:
                return
            try:
                await asyncio.wait_for(self._full.wait(), linger)
            except asyncio.TimeoutError:
                pass
            try:
                await self.commit()
            except CommitFailed:
                await asyncio.sleep(0.5)   # the broker is in trouble; do not spin
            except ShardClosed:
                return

    async def commit(self) -> None:
        async with self._commit_lock:
            batch, self.batch = self.batch, Batch()
            self._wake.clear()
            self._full.clear()
            if not (batch.events or batch.state or batch.dead or batch.raw_offset is not None or batch.waiters):
                return
            if self.closed or self.producer is None:
                self._fail_waiters(batch, ShardClosed(f"shard {self.partition} closed"))
                raise ShardClosed(f"shard {self.partition} closed")
            started = time.monotonic()
            self.inflight = batch
            try:
                await self._transaction(batch)
            except ProducerFenced as exc:
                log.warning("shard fenced by a newer owner", extra={"shard": self.partition})
                metrics.ERRORS.labels("transaction", "fenced").inc()
                self._drop_staged(batch, ShardClosed("fenced"))
                self.closed = True
                if self.on_lost:
                    self.on_lost(self.partition)
                raise ShardClosed("fenced") from exc
            except Exception as exc:  # noqa: BLE001 - any failure: nothing of the batch is visible
                log.warning("transaction failed; rewinding", extra={"shard": self.partition,
                                                                    "error_type": type(exc).__name__})
                metrics.ERRORS.labels("transaction", type(exc).__name__).inc()
                self._drop_staged(batch, CommitFailed(type(exc).__name__))
                await self._recover()
                raise CommitFailed(type(exc).__name__) from exc
            finally:
                self.inflight = None
            metrics.TRANSACTION_LATENCY.observe(time.monotonic() - started)
            self._committed(batch)

    def _drop_staged(self, failed: Batch, exc: Exception) -> None:
        """A failed batch takes the open one with it: that one's dedup decisions were made on top
        of the failed one's. Both are replayed: `_raw` by the rewind, polls by their runners."""
        pending, self.batch = self.batch, Batch()
        self._fail_waiters(failed, exc)
        self._fail_waiters(pending, exc)

    async def _transaction(self, batch: Batch) -> None:
        producer = self.producer
        sent: list[asyncio.Future] = []
        try:
            await producer.begin_transaction()
            for topic, key, value, headers in batch.events:
                sent.append(await producer.send(topic, value, key=key, headers=headers))
            for key, value in batch.state:
                sent.append(await producer.send(self.topics.state, value, key=key, partition=self.partition))
            for key, value, headers in batch.dead:
                sent.append(await producer.send(self.topics.dead_letter, value, key=key, headers=headers))
            if batch.raw_offset is not None:
                await producer.send_offsets_to_transaction({self.raw_tp: batch.raw_offset}, self.config.kafka.group_id)
            await asyncio.wait_for(producer.commit_transaction(), self.config.kafka.produce_timeout_secs * 3)
        except BaseException:
            for fut in sent:  # the records share the transaction's fate; their errors are not news
                fut.add_done_callback(_consume_outcome)
            raise

    async def _recover(self) -> None:
        """After a failed transaction: abort it if we can, else start a fresh producer (which
        aborts it by fencing), and send `_raw` consumption back to the last committed offset."""
        try:
            await asyncio.wait_for(self.producer.abort_transaction(), self.config.kafka.produce_timeout_secs)
        except Exception:  # noqa: BLE001
            try:
                await self.producer.stop()
            except Exception:  # noqa: BLE001
                pass
            self.producer = None
            producer = self._new_producer()
            try:
                await producer.start()
                self.producer = producer
            except Exception:  # noqa: BLE001
                await producer.stop()
                raise
            finally:
                if self.producer is None:
                    self.closed = True
                    if self.on_lost:
                        self.on_lost(self.partition)
        if self.on_rewind and self.committed_offset is not None:
            self.on_rewind(self.partition, self.committed_offset)

    def _committed(self, batch: Batch) -> None:
        for key, word in batch.overlay.items():
            if word is None:
                self.table.delete(key)
            else:
                self.table.put(key, word)
        if batch.raw_offset is not None:
            self.committed_offset = batch.raw_offset
        for action in batch.after_commit:
            action()
        for fut in batch.waiters:
            if not fut.done():
                fut.set_result(None)
        for key, n in batch.counts.items():
            kind = key[0]
            if kind == "event":
                metrics.EVENTS.labels(*key[1:]).inc(n)
            elif kind == "drop":
                metrics.DEDUP_DROPS.labels(*key[1:]).inc(n)
            elif kind == "ignored":
                metrics.IGNORED.labels(*key[1:]).inc(n)
            elif kind == "dead":
                metrics.DEAD_LETTERS.labels(*key[1:]).inc(n)
        metrics.STATE_ENTRIES.labels(str(self.partition)).set(len(self.table))

    @staticmethod
    def _fail_waiters(batch: Batch, exc: Exception) -> None:
        for fut in batch.waiters:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: a poller that already left must not warn

    # -- expiry ---------------------------------------------------------------------------------

    async def expire(self) -> int:
        """Tombstone dedup entries whose email left every window, and tracked ids that aged out;
        returns how many."""
        now = self.clock().timestamp()
        keys = self.table.expired(now)
        for start in range(0, len(keys), 10_000):
            chunk = keys[start:start + 10_000]
            for key in chunk:
                self.batch.overlay[key] = None
            await self.stage_state([(state_key(k), None) for k in chunk])
        ids = 0
        for name, tracker in self.trackers.items():
            old = tracker.expired(now)
            ids += len(old)

            def drop(tracker=tracker, old=old) -> None:
                for email_id in old:
                    tracker.apply_write(email_id, None, now)

            if old:
                await self.stage_state([(id_key(name, e), None) for e in old], after_commit=drop)
        return len(keys) + ids

    def snapshot(self) -> dict[str, Any]:
        return {"shard": self.partition, "restored": self.restored, "entries": len(self.table),
                "restore_secs": round(self.restore_secs, 3), "committed_offset": self.committed_offset,
                "backlog": self.backlog, "accounts": sorted(f"{p.value}/{n}" for p, n in self.accounts),
                "tracked_ids": {name: len(t) for name, t in self.trackers.items()}}


def _consume_outcome(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()


def _retention_secs(config: Config, account: AccountConfig) -> float:
    """How long an email's dedup entry must outlive its update: the furthest poll window (or the
    id-polling age) plus the webhook retry horizon, plus a day of slack for time zones."""
    poll_days = (account.poll.id_max_age_days if get_module(account.provider).DEFAULTS.polling == "ids"
                 else account.poll.lookback_days)
    return (poll_days + config.dedup.webhook_horizon_days + 1) * 86400.0


def _date(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def _status(text: str | None) -> EventType | None:
    return EventType(text) if text else None
