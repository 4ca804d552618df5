"""A shard's staging: what its next transaction writes, and what memory it changes once committed.

No Kafka and no clock here: the shard (worker.shards) owns the producer and decides when to
commit; this module turns `_raw` records and poll results into a `Batch` (worker.batch) of writes (events,
`_state` records, dead letters, page copies for a spread account's other shards, the `_raw` offset) and keeps the in-memory state (dedup table,
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
import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import attrs
import numpy as np
import orjson

from worker import raw
from worker.batch import Batch, Expired, fail_waiters, merge_off_loop
from worker.config import AccountConfig, Config
from worker.deadletter import UNKNOWN, DeadLetter
from worker.dedup import (
    DedupTable,
    Outcome,
    decide,
    email_keys,
    expiry_test,
    hours_since_2020,
    once_seen,
    word_expired,
)
from worker.emit import Topics, account_key, event_record, shard_of_email
from worker.errors import (
    EventTooLarge,
    FieldTooLong,
    FutureTime,
    MalformedPayload,
    PoisonRecord,
    ReplayedSignature,
    UnknownAccount,
    WorkerError,
)
from worker.intake import Admitted, admit, page_copies
from worker.model import CLOCK_SKEW_SECS, MAX_EVENT_BYTES, MAX_ID_CHARS, EventType, Observation, Source, StatusEvent
from worker.poll.ids import IdTracker, Tracked
from worker.poll.sink import IdChange, StateChange
from worker.providers import get_module
from worker.replays import digest_of, record_digest, replay_table_key, replay_word
from worker.rows import Rows
from worker.state import REPLAY, Restored, change_write, dedup_write


def retention_secs(config: Config, account: AccountConfig) -> float:
    """How long an email's dedup entry must outlive its update: the furthest poll window (or the
    id-polling age) plus the webhook retry horizon, plus a day of slack for time zones."""
    poll_days = (account.poll.id_max_age_days if get_module(account.provider).DEFAULTS.polling == "ids"
                 else account.poll.lookback_days)
    return (poll_days + config.dedup.webhook_horizon_days + 1) * 86400.0


class Staging:
    def __init__(self, config: Config, accounts: Iterable[AccountConfig], restored: Restored, now: float,
                 partition: int = 0) -> None:
        self.topics = Topics.from_config(config.kafka)
        self.partition, self.shards = partition, config.kafka.shards   # which emails of a spread account are ours
        self.emit_raw = config.emit_raw
        self.tolerance = config.dedup.tolerance_secs
        self.accounts = {(a.provider, a.name): a for a in accounts}
        self.retention = {a.name: retention_secs(config, a) for a in self.accounts.values()}
        self.table = DedupTable()
        self.table.load(restored.keys, restored.words)
        self.replays = DedupTable()
        self.replays.load(restored.replay_keys, restored.replay_words)
        self.replay_window = {a.name: a.webhook.replay_window_secs for a in self.accounts.values()}
        self.trackers: dict[str, IdTracker] = {
            a.name: IdTracker.for_account(a, restored.ids.get(a.name, {}), now, restored.settled.get(a.name))
            for a in self.accounts.values() if get_module(a.provider).DEFAULTS.polling == "ids" or a.poll.gap_driven}
        self.batch = Batch()
        self.inflight: Batch | None = None
        for name, tracker in self.trackers.items():
            tracker.staged = functools.partial(self._staged_id, name)
        self.tables = [self.table, self.replays, *(t for tr in self.trackers.values() for t in tr.settled.tables)]
        for table in self.tables:
            table.background = True     # merged off the loop (`merge_off_loop`, after each commit)

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
                if record.replay is not None and record.shard is None and self._replayed(record):
                    raise ReplayedSignature("a signature seen before with another record")
                observations = Rows.of(module.webhook_observations(account.context, dict(record.record)))
                if account.spread > 1 and record.shard is None and observations:
                    # routed by its replay key (worker.intake `routed`): checked here, decided by its email's shard
                    target = shard_of_email(provider, name, observations.email_ids[0], account.spread, self.shards)
                    if target != self.partition:
                        self._forward(account, [admit(attrs.evolve(record, shard=target))])
                        return
                self.learn(account, observations, record.received_at, Source.WEBHOOK)
                self.observe(account, observations, Source.WEBHOOK, record.received_at)
            elif isinstance(record, raw.SentMessage):
                email_id = module.DEFAULTS.sent_email_id(record.email_id, record.recipient)
                self._track(account, email_id, record.recipient, record.sent_at.timestamp(), None, False,
                            record.received_at.timestamp())
                if account.name in self.trackers:
                    self.trackers[account.name].fed = True
            else:
                page = module.parse_poll_response(account.context, record.query, record.status, record.headers,
                                                  record.body, record.received_at)
                if page.rejected and record.shard is None:   # the page, whole, for its unreadable rows (a
                    # copy's were set aside where it was polled); the others still count
                    self.dead_letter(provider, name, page.rejected[0].reason, value or b"", now)
                self.observe_page(account, record, page.observations, record.received_at)
        except WorkerError as exc:
            self.dead_letter(provider, name, exc.error_type, value or b"", now)
        except (KeyError, TypeError, ValueError):
            # A provider module let an untyped error out (a bug): the record is kept, not lost.
            self.dead_letter(provider, name, MalformedPayload.error_type, value or b"", now)

    def _replayed(self, record: raw.WebhookRecord) -> bool:
        """Whether the record's replay key came before with another record (worker.replays); if
        it is new, it is remembered (with this batch) until the replay window has passed."""
        assert record.replay is not None
        key = replay_table_key(record.provider.value, record.account, record.replay)
        digest = record_digest(record.record)
        seen = self._replay_lookup(key)
        if seen is not None:
            return digest_of(seen) != digest
        expire_h = hours_since_2020(record.received_at.timestamp() + self.replay_window[record.account])
        word = replay_word(digest, expire_h)
        self.batch.replays[key] = word
        self.batch.state.append(dedup_write(key, word, REPLAY))
        return False

    def dead_letter(self, provider: str, account: str, reason: str, value: bytes, now: datetime) -> None:
        self.batch.dead.append(DeadLetter(provider, account, reason, "shard", "raw", value, "application/json", now))
        self.batch.tally.dead_letter(provider, account, reason)

    def observe_page(self, account: AccountConfig, page: raw.PollPageRecord, observations: Sequence[Observation],
                     observed_at: datetime) -> int:
        """A polled page's rows through `observe`. A spread account's page decides here only the
        rows of emails this shard owns, and the shard that polled it forwards it, in this batch,
        to each other shard that owns some of its rows (worker.intake `page_copies`)."""
        if account.spread == 1:
            return self.observe(account, observations, Source.POLL, observed_at)
        own, copies, unusable = page_copies(page, account, observations, self.partition, self.shards)
        if unusable is not None:   # copies Kafka would refuse: the page kept whole for the other shards' rows
            self.dead_letter(account.provider.value, account.name, unusable, raw.encode(page), observed_at)
        self._forward(account, copies)
        return self.observe(account, own, Source.POLL, observed_at)

    def _forward(self, account: AccountConfig, records: Sequence[Admitted]) -> None:
        """Records for other shards of a spread account, written to `_raw` with this batch."""
        key = account_key(account.provider.value, account.name)
        self.batch.forwarded.extend((r.shard, key, r.value) for r in records if r.shard is not None)

    def observe(self, account: AccountConfig, observations: Sequence[Observation], source: Source,
                observed_at: datetime) -> int:
        """Stage observations through dedup; return how many become events. Decided on the rows'
        columns (worker.rows `Rows`): an observation is built only for a row that becomes an event
        or may be unusable (not plainly within the caps, or dated near or past the skew)."""
        emitted = 0
        provider, name = account.provider.value, account.name
        retention = self.retention[name]
        batch = self.batch
        rows = Rows.of(observations)
        # a whole-second time t stands for one in [t, t + 1): it may be past the skew only above this
        latest = observed_at.timestamp() + CLOCK_SKEW_SECS - 1
        # the table's words of the page's keys in one vectorised step (the batches' overlays, which
        # this loop changes, are still asked first, row by row); a webhook's one or two: a get each
        keys = email_keys(provider, name, rows.email_ids)
        undecided: Iterable[int]
        if len(keys) < self.table.FEW:
            words, undecided = self.table.words(keys), range(len(keys))
        else:
            column = self.table.get_many(np.array(keys, dtype=np.uint64))
            words, undecided = column.tolist(), self._undecided(provider, name, rows, keys, column, latest)
        for index in undecided:
            type_, occurred, key, table_word = rows.types[index], rows.times[index], keys[index], words[index]
            if type_ is None:
                batch.tally.ignore(provider, name)
                continue
            if not rows.plain[index] or occurred > latest:
                obs = rows[index]
                unusable = self._unusable(obs, observed_at)
                if unusable is not None:
                    self._set_aside(account, obs, source, unusable, observed_at)
                    continue
            outcome, word = decide(self._lookup(key, table_word), type_, occurred,
                                   hours_since_2020(occurred + retention), self.tolerance, rows.exact[index])
            if outcome is not Outcome.EMIT:
                batch.tally.drop(provider, name, outcome.value)
                continue
            obs = rows[index]
            event = StatusEvent.from_observation(obs, provider=account.provider, account=name, source=source,
                                                observed_at=observed_at, emit_raw=self.emit_raw)
            try:
                record = event_record(self.topics, event)
            except TypeError:                         # its `raw` is nested deeper than JSON encoders go
                self._set_aside(account, obs, source, MalformedPayload.error_type, observed_at)
                continue
            if len(record[2]) > MAX_EVENT_BYTES:      # never a record Kafka would refuse for ever
                self._set_aside(account, obs, source, EventTooLarge.error_type, observed_at)
                continue
            batch.events.append(record)
            batch.overlay[key] = word
            batch.state.append(dedup_write(key, word))
            batch.tally.event(provider, name, type_.value, source.value)
            emitted += 1
        return emitted

    def _undecided(self, provider: str, name: str, rows: Rows, keys: list[int], column: np.ndarray,
                   latest: float) -> Iterable[int]:
        """The rows of a page (at least `DedupTable.FEW` rows) `observe` must look at one by one,
        given the table's words of their keys (`column`). The page drops at once, counted, the rows
        plainly within the caps and not near the skew whose table word already holds their type's
        once-bit (`once_seen`, decide's first rule) and whose key no staged batch has touched (a
        staged expiry deletes it): a re-sweep's duplicates."""
        seen = once_seen(column, rows.types)
        seen &= np.fromiter(rows.plain, dtype=bool, count=len(keys))
        seen &= np.fromiter(rows.times, dtype=np.int64, count=len(keys)) <= latest
        overlays = [b.overlay for b in (self.batch, self.inflight) if b is not None and b.overlay]
        for i in np.flatnonzero(seen).tolist() if overlays else ():
            if any(keys[i] in overlay for overlay in overlays):
                seen[i] = False
        dropped = int(np.count_nonzero(seen))
        if not dropped:
            return range(len(keys))
        self.batch.tally.drop(provider, name, Outcome.DUPLICATE.value, dropped)
        return np.flatnonzero(~seen).tolist()

    @staticmethod
    def _unusable(obs: Observation, observed_at: datetime) -> str | None:
        """Why an observation must not become an event, or None: its fields are over the caps, or it
        is dated after it was received (a forged or broken time would make every later genuine
        status stale, and never expire)."""
        if obs.oversized:
            return FieldTooLong.error_type
        if (obs.occurred_at - observed_at).total_seconds() > CLOCK_SKEW_SECS:
            return FutureTime.error_type
        return None

    def _set_aside(self, account: AccountConfig, obs: Observation, source: Source, reason: str,
                   at: datetime) -> None:
        """An observation that cannot be an event: the provider's record goes to the dead-letter
        topic (part `record` for a webhook record, `row` for a status-API row); nothing enters dedup."""
        try:
            body = orjson.dumps(obs.raw)
        except TypeError:   # nested too deep to encode: keep what can be kept
            body = orjson.dumps({"email_id": obs.email_id[:MAX_ID_CHARS], "provider_status": obs.provider_status[:128]})
        self.batch.dead.append(DeadLetter(account.provider.value, account.name, reason, "shard",
                                          "record" if source is Source.WEBHOOK else "row", body, "application/json", at))
        self.batch.tally.dead_letter(account.provider.value, account.name, reason)

    def stage_poison(self, record: Any, now: datetime) -> None:
        """A `_raw` record the breaker set aside (worker.breaker): to the dead-letter topic as it is."""
        provider, name = UNKNOWN, UNKNOWN
        try:
            decoded = raw.decode(record.value)
            provider, name = decoded.provider.value, decoded.account
        except WorkerError:
            pass
        self.dead_letter(provider, name, PoisonRecord.error_type, record.value or b"", now)
        self.batch.raw_offset = record.offset + 1
        self.batch.size += 1

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

    def _replay_lookup(self, key: int) -> int | None:
        """A replay key's word once everything staged so far commits (`_lookup`'s order)."""
        for batch in (self.batch, self.inflight):
            if batch is not None and key in batch.replays:
                return batch.replays[key]
        return self.replays.get(key)

    def _lookup(self, key: int, table_word: int) -> int | None:
        """The state as it will be once everything staged so far commits: the open batch, then the
        batch being committed, then `table_word` (the table's; 0 when absent, as None to `decide`)."""
        for batch in (self.batch, self.inflight):
            if batch is not None and key in batch.overlay:
                return batch.overlay[key]
        return table_word

    # -- id learning (webhooks, the sent feed and sweeps tell the id trackers what to poll) --------

    def learn(self, account: AccountConfig, observations: Sequence[Observation], received: datetime,
              source: Source) -> None:
        """What webhooks (and, for gap-driven accounts, polled rows) say of tracked ids. A gap-driven
        tracker learns only from delivery statuses: opens and clicks would only churn `_state`; and it
        checks by id only what the sent feed named: a status that is not final starts no check (a
        sweep finds an email the feed missed, and the sweeps stay its net). A soft bounce a webhook
        reports ends an id's checks by id: its webhooks arrive, so the outcome of a retry will too;
        one a poll found (its webhook lost) keeps it checked."""
        tracker = self.trackers.get(account.name)
        if tracker is None:
            return
        now = received.timestamp()
        gap_driven = tracker.gap_driven
        by_webhook = source is Source.WEBHOOK
        rows = Rows.of(observations)
        for index, (type_, final) in enumerate(zip(rows.types, rows.finals, strict=True)):
            if gap_driven:
                if type_ is None:
                    continue
                final = final or (by_webhook and type_ is EventType.SOFT_BOUNCE)
                if not final and self._staged_id(account.name, rows.email_ids[index]) is None:
                    continue
            obs = rows[index]
            sent = obs.sent_at.timestamp() if obs.sent_at else now
            self._track(account, obs.email_id, obs.recipient, sent, obs.provider_status, final, now)

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
        self.batch.state.append(change_write(IdChange(account.name, email_id, tracker.record(change))))
        self.batch.learned[account.name, email_id] = learned

    def _staged_id(self, account: str, email_id: str) -> Tracked | None:
        """A tracked id as it will be once everything staged so far commits (`_lookup`'s order):
        what a poll answer is compared with (worker.poll.ids `plan`)."""
        for batch in (self.batch, self.inflight):
            if batch is not None and (account, email_id) in batch.learned:
                return batch.learned[account, email_id].tracked
        return self.trackers[account].ids.get(email_id)

    # -- expiry ---------------------------------------------------------------------------------

    def expiry_job(self, now: float) -> Callable[[], Expired]:
        """What the expiry pass tombstones at `now`, found off the event loop: called on the loop it
        takes the tables' snapshots (worker.dedup `scan_job`: the columns as they are and a copy of
        their recent writes, no merge) and judges the open tracked ids; the function it returns may
        run in a thread (numpy lets go of the GIL over the columns). Writes made meanwhile are not
        seen: `stage_deletions(..., now=)` re-checks every key against what is staged by then."""
        test = expiry_test(now)
        keys, replays = self.table.scan_job(test), self.replays.scan_job(test)
        trackers = {name: tracker.expiry_job(now) for name, tracker in self.trackers.items()}

        def scan() -> Expired:
            ids: list[IdChange] = []
            hashed: dict[str, list[int]] = {}
            for name, job in trackers.items():
                tombstone, hashed[name] = job()
                ids += [IdChange(name, email_id, None) for email_id in tombstone]
            return Expired(keys(), ids, replays(), hashed)
        return scan

    def expired(self, now: float) -> Expired:
        """`expiry_job` here and now."""
        return self.expiry_job(now)()

    def drop_hashed(self, account: str, keys: Iterable[int]) -> int:
        """Forget final ids kept by hash only (`Expired.hashed`): they have no record to tombstone."""
        return self.trackers[account].settled.drop_hashed(keys)

    def stage_deletions(self, keys: Sequence[int], ids: Sequence[IdChange] = (),
                        replays: Sequence[int] = (), now: float | None = None) -> asyncio.Future:
        """Tombstones for expired dedup entries, tracked ids and replay entries; applied to memory on
        commit. With `now`, a dedup or replay key is staged only if it is still expired then, as
        everything staged so far leaves it (found by a scan that ran while writes went on)."""
        for key in keys:
            if now is None or word_expired(self._lookup(key, self.table.get(key) or 0) or 0, now):
                self.batch.overlay[key] = None
                self.batch.state.append(dedup_write(key, None))
        for key in replays:
            if now is None or word_expired(self._replay_lookup(key) or 0, now):
                self.batch.replays[key] = None
                self.batch.state.append(dedup_write(key, None, REPLAY))
        for change in ids:
            self.batch.state.append(change_write(change))
            self.batch.learned[change.account, change.email_id] = change
        self.batch.size += 1
        return self.waiter()

    # -- the commit protocol --------------------------------------------------------------------

    def take(self) -> Batch:
        """The open batch, now in flight; a new one opens."""
        batch, self.batch = self.batch, Batch()
        self.inflight = batch
        return batch

    def committed(self, batch: Batch, now: float) -> None:
        self.inflight = None
        self.table.apply(batch.overlay)
        self.replays.apply(batch.replays)
        for change in batch.learned.values():
            self.trackers[change.account].apply_write(change.email_id, change.tracked, now)
        batch.tally.publish()
        for fut in batch.waiters:
            if not fut.done():
                fut.set_result(None)

    def merge_off_loop(self, every: bool = False) -> list[asyncio.Future]:
        """Each table with enough recent writes (`every`: with any) merges with its copying in a
        thread (call on the event loop: after a commit; `every` before an expiry pass, so that the
        recent writes of a small table, ~100 B each, do not wait for 65,536 of them)."""
        return [merge_off_loop(table.merge_job()) for table in self.tables
                if table.wants_merge or (every and table.may_merge)]

    def failed(self, batch: Batch, exc: Exception) -> None:
        """The in-flight batch did not commit: it and the open batch (decided on top of it) go."""
        self.inflight = None
        pending, self.batch = self.batch, Batch()
        fail_waiters(batch, exc)
        fail_waiters(pending, exc)

    def close(self, exc: Exception) -> None:
        fail_waiters(self.batch, exc)
        self.batch = Batch()
