"""A shard's staging: what its next transaction writes, and what memory it changes once committed.

No Kafka and no clock here: the shard (worker.shards) owns the producer and decides when to
commit; this module turns `_raw` records and poll results into a `Batch` of writes (events,
`_state` records, dead letters, the `_raw` offset) and keeps the in-memory state (dedup table,
tracked ids) exactly as committed:

- A batch's dedup decisions live in its `overlay` until it commits; lookups see the open batch,
  then the batch in flight, then the table, so two batches never emit the same change twice.
- `committed(batch)` folds the overlay into the table, applies the id changes it learned,
  publishes its tally and resolves its waiters. `failed(batch)` drops it and the open batch (whose
  decisions were made on top of it): memory stays as committed and both are replayed (`_raw` by
  the shard's rewind, polls by their runners).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import datetime

import attrs

from worker import raw
from worker.config import AccountConfig, Config
from worker.deadletter import UNKNOWN, DeadLetter
from worker.dedup import DedupTable, Outcome, decide, email_key, hours_since_2020
from worker.emit import Topics, event_record
from worker.errors import MalformedPayload, UnknownAccount, WorkerError
from worker.metrics import Tally
from worker.model import Observation, Source, StatusEvent
from worker.poll.ids import IdTracker, Tracked
from worker.poll.sink import IdChange, StateChange
from worker.providers import get_module
from worker.state import Restored, StateWrite, change_write, dedup_write

EventRecord = tuple[str, bytes, bytes, list[tuple[str, bytes]]]


@attrs.define
class Batch:
    events: list[EventRecord] = attrs.field(factory=list)
    state: list[StateWrite] = attrs.field(factory=list)
    dead: list[DeadLetter] = attrs.field(factory=list)
    overlay: dict[int, int | None] = attrs.field(factory=dict)    # dedup words decided here; None: deleted
    learned: list[IdChange] = attrs.field(factory=list)            # id changes applied after the commit
    raw_offset: int | None = None                                  # `_raw` position after this batch
    waiters: list[asyncio.Future] = attrs.field(factory=list)
    tally: Tally = attrs.field(factory=Tally)
    size: int = 0

    @property
    def empty(self) -> bool:
        return not (self.events or self.state or self.dead or self.raw_offset is not None or self.waiters)


def retention_secs(config: Config, account: AccountConfig) -> float:
    """How long an email's dedup entry must outlive its update: the furthest poll window (or the
    id-polling age) plus the webhook retry horizon, plus a day of slack for time zones."""
    poll_days = (account.poll.id_max_age_days if get_module(account.provider).DEFAULTS.polling == "ids"
                 else account.poll.lookback_days)
    return (poll_days + config.dedup.webhook_horizon_days + 1) * 86400.0


class Staging:
    def __init__(self, config: Config, accounts: Iterable[AccountConfig], restored: Restored, now: float) -> None:
        self.topics = Topics.from_config(config.kafka)
        self.emit_raw = config.emit_raw
        self.tolerance = config.dedup.tolerance_secs
        self.accounts = {(a.provider, a.name): a for a in accounts}
        self.retention = {a.name: retention_secs(config, a) for a in self.accounts.values()}
        self.table = DedupTable()
        self.table.load(restored.keys, restored.words)
        self.trackers: dict[str, IdTracker] = {
            a.name: IdTracker.for_account(a, restored.ids.get(a.name, {}), now)
            for a in self.accounts.values() if get_module(a.provider).DEFAULTS.polling == "ids"}
        self.batch = Batch()
        self.inflight: Batch | None = None

    # -- input ----------------------------------------------------------------------------------

    def stage_raw(self, records: Iterable, now: datetime) -> None:
        """Stage `_raw` records (aiokafka ConsumerRecords, in offset order) into the open batch."""
        for record in records:
            self._raw_one(record.value, now)
            self.batch.raw_offset = record.offset + 1
            self.batch.size += 1

    def _raw_one(self, value: bytes | None, now: datetime) -> None:
        provider, name = UNKNOWN, UNKNOWN
        try:
            record = raw.decode(value)
            provider, name = record.provider.value, record.account
            account = self.accounts.get((record.provider, record.account))
            if account is None:
                raise UnknownAccount("no such account on this shard")
            module = get_module(record.provider)
            if isinstance(record, raw.WebhookRecord):
                observations = module.webhook_observations(account.context, dict(record.record))
                self._learn(account, observations, record.received_at)
                self.observe(account, observations, Source.WEBHOOK, record.received_at)
            elif isinstance(record, raw.SentMessage):
                self._track(account, record.email_id, record.recipient, record.sent_at.timestamp(), None, False,
                            record.received_at.timestamp())
            else:
                page = module.parse_poll_response(account.context, record.query, record.status, record.headers,
                                                  record.body, record.received_at)
                self.observe(account, page.observations, Source.POLL, record.received_at)
        except WorkerError as exc:
            self.dead_letter(provider, name, exc.error_type, value or b"", now)
        except (KeyError, TypeError, ValueError):
            # A provider module let an untyped error out (a bug): the record is kept, not lost.
            self.dead_letter(provider, name, MalformedPayload.error_type, value or b"", now)

    def dead_letter(self, provider: str, account: str, reason: str, value: bytes, now: datetime) -> None:
        self.batch.dead.append(DeadLetter(provider, account, reason, "shard", "raw", value, "application/json", now))
        self.batch.tally.dead_letter(provider, account, reason)

    def observe(self, account: AccountConfig, observations: Sequence[Observation], source: Source,
                observed_at: datetime) -> int:
        """Stage observations through dedup; return how many become events."""
        emitted = 0
        provider, name = account.provider.value, account.name
        retention = self.retention[name]
        batch = self.batch
        for obs in observations:
            if obs.type is None:
                batch.tally.ignore(provider, name)
                continue
            key = email_key(provider, name, obs.email_id)
            occurred = int(obs.occurred_at.timestamp())
            outcome, word = decide(self._lookup(key), obs.type, occurred, hours_since_2020(occurred + retention),
                                   self.tolerance, obs.exact_time)
            if outcome is not Outcome.EMIT:
                batch.tally.drop(provider, name, outcome.value)
                continue
            event = StatusEvent.from_observation(obs, provider=account.provider, account=name, source=source,
                                                observed_at=observed_at, emit_raw=self.emit_raw)
            batch.events.append(event_record(self.topics, event))
            batch.overlay[key] = word
            batch.state.append(dedup_write(key, word))
            batch.tally.event(provider, name, obs.type.value, source.value)
            emitted += 1
        return emitted

    def persist(self, changes: Sequence[StateChange]) -> asyncio.Future:
        """Stage poll state changes; the future resolves when their batch has committed. The caller
        applies them to its own schedule then (see worker.poll.sink)."""
        self.batch.state.extend(change_write(c) for c in changes)
        self.batch.size += 1
        return self.waiter()

    def waiter(self) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.batch.waiters.append(fut)
        return fut

    def _lookup(self, key: int) -> int | None:
        """The state as it will be once everything staged so far commits: the open batch, then the
        batch being committed, then the table."""
        for batch in (self.batch, self.inflight):
            if batch is not None and key in batch.overlay:
                return batch.overlay[key]
        return self.table.get(key)

    # -- id learning (webhooks and the sent feed tell id-polled accounts what to poll) -----------

    def _learn(self, account: AccountConfig, observations: Sequence[Observation], received: datetime) -> None:
        if account.name not in self.trackers:
            return
        now = received.timestamp()
        for obs in observations:
            sent = obs.sent_at.timestamp() if obs.sent_at else now
            self._track(account, obs.email_id, obs.recipient, sent, obs.provider_status, obs.final, now)

    def _track(self, account: AccountConfig, email_id: str, recipient: str, sent: float, status: str | None,
               final: bool, now: float) -> None:
        tracker = self.trackers.get(account.name)
        if tracker is None:
            return
        change = tracker.learn(email_id, recipient, sent, status, final, now)
        if change is False:
            return
        assert isinstance(change, Tracked)
        learned = IdChange(account.name, email_id, change)
        self.batch.state.append(change_write(learned))
        self.batch.learned.append(learned)

    # -- expiry ---------------------------------------------------------------------------------

    def expired_keys(self, now: float) -> list[int]:
        return self.table.expired(now)

    def stage_deletions(self, keys: Sequence[int], ids: Sequence[IdChange] = ()) -> asyncio.Future:
        """Tombstones for expired dedup entries and tracked ids; applied to memory on commit."""
        for key in keys:
            self.batch.overlay[key] = None
            self.batch.state.append(dedup_write(key, None))
        for change in ids:
            self.batch.state.append(change_write(change))
            self.batch.learned.append(change)
        self.batch.size += 1
        return self.waiter()

    def expired_ids(self, now: float) -> list[IdChange]:
        return [IdChange(name, email_id, None) for name, tracker in self.trackers.items()
                for email_id in tracker.expired(now)]

    # -- the commit protocol --------------------------------------------------------------------

    def take(self) -> Batch:
        """The open batch, now in flight; a new one opens."""
        batch, self.batch = self.batch, Batch()
        self.inflight = batch
        return batch

    def committed(self, batch: Batch, now: float) -> None:
        self.inflight = None
        for key, word in batch.overlay.items():
            if word is None:
                self.table.delete(key)
            else:
                self.table.put(key, word)
        for change in batch.learned:
            self.trackers[change.account].apply_write(change.email_id, change.tracked, now)
        batch.tally.publish()
        for fut in batch.waiters:
            if not fut.done():
                fut.set_result(None)

    def failed(self, batch: Batch, exc: Exception) -> None:
        """The in-flight batch did not commit: it and the open batch (decided on top of it) go."""
        self.inflight = None
        pending, self.batch = self.batch, Batch()
        fail_waiters(batch, exc)
        fail_waiters(pending, exc)

    def close(self, exc: Exception) -> None:
        fail_waiters(self.batch, exc)
        self.batch = Batch()


def fail_waiters(batch: Batch, exc: Exception) -> None:
    for fut in batch.waiters:
        if not fut.done():
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: a poller that already left must not warn
