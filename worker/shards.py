"""A shard: one partition of `_raw` and `_state`, owned by one replica at a time (the Kafka side).

The owner's transactional producer (`transactional_id = <group>-<raw topic>-<partition>`) fences
any previous owner; then `_state` is restored into a `Staging` (worker.staging), which turns
`_raw` records and poll results into batches. Everything one batch produces (events, `_state`
writes, dead letters, the `_raw` offset) commits in one Kafka transaction (worker.transaction),
and only once every record of it is acknowledged. A failed transaction
leaves memory exactly as committed (the staging drops the batch) and the `_raw` position is
rewound to the last commit; a fenced producer closes the shard. A commit whose outcome is
unknown is settled by the group's committed `_raw` offset (`_settle`), or the shard is restored.

A shard decides the emails of its accounts that are routed to it: all of them for an account on one
shard; for a spread account (`accounts[].spread`), those whose id `shard_of_email` gives this shard.
Its home polls it and forwards each page's other rows, as copies of the page, to their shards in
the same transaction (worker.staging `observe_page`). Those transactions leave markers in `_raw`
that a read_committed consumer skips, so a fetch may start past `next_offset`: staleness is told by
the shard's `generation`, new at each rewind and restore, not by offsets.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced

from worker import metrics
from worker.batch import Batch
from worker.breaker import Breaker
from worker.config import AccountConfig, Config
from worker.emit import Topics, about_a_record, kafka_error_type, producer_settings
from worker.errors import CommitFailed, CommitOutcomeUnknown, Fenced, ShardClosed
from worker.poll.ids import IdTracker
from worker.poll.scheduler import DateWindowScheduler
from worker.providers import get_module
from worker.staging import Staging
from worker.state import read_partition, release_freed_memory
from worker.transaction import Unacknowledged, offset_covers, send_and_commit

log = logging.getLogger("worker.shard")

COMMIT_BACKOFF_SECS = 0.5
# A batch of state alone (a re-sweep's cursors, id checks that found nothing new, tombstones) waits
# this long to fill, not `batch_linger_ms`: nobody downstream waits for it, and a transaction costs
# the worker ~1.5 ms of CPU (bench quota, re-sweep). Output joining it, or a full batch, ends the wait.
QUIET_LINGER_SECS = 0.5
# Shard generations, unique in the process: a shard opened again never reuses its predecessor's.
_GENERATIONS = itertools.count(1)


class Shard:
    def __init__(self, partition: int, config: Config, accounts: list[AccountConfig],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.partition = partition
        self.config = config
        self.accounts = accounts
        self.clock = clock
        self.topics = Topics.from_config(config.kafka)
        self.raw_tp = TopicPartition(self.topics.raw, partition)
        self.transactional_id = f"{config.kafka.group_id}-{self.topics.raw}-{partition}"
        self.producer: AIOKafkaProducer | None = None
        self.staging: Staging | None = None
        self.schedules: dict[str, DateWindowScheduler | IdTracker] = {}
        self.gaps: dict[str, IdTracker] = {}          # gap-driven accounts: their sent emails
        self.committed_offset: int | None = None
        self.next_offset: int | None = None      # the `_raw` offset the shard takes next (see process_raw)
        self.generation = 0                       # new at each rewind or resume: older fetches are stale
        self.breaker = Breaker()
        self._batch_first: int | None = None     # first `_raw` offset in the open batch
        self.closed = False
        self.restore_secs = 0.0
        self.state_skipped = 0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._lingering = False          # waiting QUIET_LINGER_SECS for a batch of state alone
        self.on_rewind: Callable[[int, int], None] | None = None   # (partition, offset)
        self.on_lost: Callable[[int], None] | None = None

    @property
    def restored(self) -> bool:
        return self.staging is not None

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
        now = self.clock().timestamp()
        staging = Staging(self.config, self.accounts, restored, now, self.partition)
        self.schedules = {a.name: DateWindowScheduler.for_account(a, restored.cursors.get(a.name, {}))
                          if get_module(a.provider).DEFAULTS.polling == "date" else staging.trackers[a.name]
                          for a in self.accounts}
        self.gaps = {a.name: staging.trackers[a.name] for a in self.accounts if a.poll.gap_driven}
        self.state_skipped = restored.skipped
        del restored
        release_freed_memory()
        self.restore_secs = time.monotonic() - started
        self.staging = staging
        self._held(staging)
        log.info("shard restored", extra={"shard": self.partition, "entries": len(staging.table),
                                          "skipped": self.state_skipped, "restore_secs": round(self.restore_secs, 3)})

    async def close(self, *, commit: bool) -> None:
        """Hand the shard over: commit (or abort) what is open, release the producer. Also for a
        shard that already closed itself (fenced): its producer must still be stopped."""
        if commit and not self.closed and self.producer is not None and self.staging is not None:
            try:
                await self.commit()
            except (CommitFailed, ShardClosed):
                pass
        self.closed = True
        if self.staging is not None:
            self.staging.close(ShardClosed(f"shard {self.partition} closed"))
        self._wake.set()
        producer, self.producer = self.producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception:  # noqa: BLE001 - a fenced or disconnected producer still stops
                pass
        metrics.shard_released(self.partition)

    # -- input ----------------------------------------------------------------------------------

    def process_raw(self, records: Sequence[Any], generation: int) -> int:
        """Stage `_raw` records (in offset order) into the open batch; returns how many were taken
        (the caller seeks back to the first one not taken). `generation`: the shard's when the
        consumer returned them. While the breaker isolates records, one record per batch, and a
        record it judged poisonous goes to the dead-letter topic."""
        staging = self.open_staging()
        if not records:
            return 0
        if generation != self.generation or (self.next_offset is not None and records[0].offset < self.next_offset):
            # Records fetched before a rewind (or past a failed batch while it was being recovered):
            # staging them would commit the `_raw` offset past records that never committed. The
            # caller seeks to `next_offset`. Records of this generation may start past it: the
            # consumer skips transaction markers and aborted records (a spread account's page
            # copies are written in shards' transactions), so offsets have gaps.
            return 0
        if self.breaker.isolating:
            if self._batch_first is not None:
                return 0                       # one record per transaction: wait for this commit
            record = records[0]
            if self.breaker.poison(record.offset):
                log.warning("record set aside after failing alone", extra={"shard": self.partition,
                                                                         "offset": record.offset})
                staging.stage_poison(record, self.clock())
            else:
                staging.stage_raw([record], self.clock())
            self._batch_first = record.offset
            self.next_offset = record.offset + 1
            self.nudge(now=True)
            return 1
        if self._batch_first is None:
            self._batch_first = records[0].offset
        staging.stage_raw(records, self.clock())
        self.next_offset = records[-1].offset + 1
        self.nudge()
        return len(records)

    def resume_at(self, offset: int) -> None:
        """Where `_raw` consumption goes on: the committed offset (after a restore, a rewind or a
        rebalance); records fetched before are refused by process_raw."""
        self.committed_offset = self.next_offset = offset
        self.generation = next(_GENERATIONS)

    def open_staging(self) -> Staging:
        """The staging, or ShardClosed once the shard is closed (a poll runner still running then)."""
        if self.closed or self.staging is None:
            raise ShardClosed(f"shard {self.partition} closed")
        return self.staging

    def nudge(self, now: bool = False) -> None:
        self._wake.set()
        if (now or (self.staging is not None and self.staging.batch.size >= self.config.kafka.batch_max_records)
                or (self._lingering and not self._quiet)):
            self._full.set()

    @property
    def backlog(self) -> int:
        return self.staging.batch.size if self.staging is not None else 0

    # -- commit ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Commit batches: when one is full, or `batch_linger_ms` after its first record."""
        linger = self.config.kafka.batch_linger_ms / 1000
        while not self.closed:
            await self._wake.wait()
            if self.closed:
                return
            await self._linger(linger)
            try:
                await self.commit()
            except CommitFailed:
                await asyncio.sleep(COMMIT_BACKOFF_SECS)   # the broker is in trouble; do not spin
            except ShardClosed:
                return

    async def _linger(self, linger: float) -> None:
        """Until the open batch is full, or `linger` after its first record; QUIET_LINGER_SECS for a
        batch that is still quiet then (state alone), unless output joins it meanwhile (`nudge`)."""
        try:
            await asyncio.wait_for(self._full.wait(), linger)
            return
        except TimeoutError:
            pass
        if not self._quiet:
            return
        self._lingering = True
        try:
            await asyncio.wait_for(self._full.wait(), max(0.0, QUIET_LINGER_SECS - linger))
        except TimeoutError:
            pass
        finally:
            self._lingering = False

    @property
    def _quiet(self) -> bool:
        return self.staging is not None and self.staging.batch.quiet

    async def commit(self) -> None:
        async with self._commit_lock:
            staging = self.open_staging()
            batch = staging.take()
            first, self._batch_first = self._batch_first, None
            self._wake.clear()
            self._full.clear()
            if batch.empty:
                staging.committed(batch, self.clock().timestamp())
                return
            started = time.monotonic()
            try:
                assert self.producer is not None
                await send_and_commit(self.producer, batch, self.topics, self.raw_tp, self.config.kafka)
            except CommitOutcomeUnknown as exc:
                metrics.error("transaction", exc.error_type)
                try:
                    committed = await self._settle(batch, staging)
                except ShardClosed:
                    staging.failed(batch, ShardClosed("closed while its commit was in doubt"))
                    raise
                if not committed:
                    staging.failed(batch, CommitFailed(exc.error_type))
                    self._batch_first = None
                    self._rewind()
                    raise CommitFailed(exc.error_type) from exc
                log.warning("a commit that failed had been applied", extra={"shard": self.partition})
            except ProducerFenced as exc:
                log.warning("shard fenced by a newer owner", extra={"shard": self.partition})
                metrics.error("transaction", Fenced.error_type)
                if await self._landed(batch):  # fenced retrying a commit that had gone through
                    self._committed(staging, batch)
                staging.failed(batch, Fenced("fenced"))
                self.closed = True
                if self.on_lost:
                    self.on_lost(self.partition)
                raise Fenced("fenced") from exc
            except Exception as exc:
                cause = exc.cause if isinstance(exc, Unacknowledged) else exc
                kind = kafka_error_type(cause)
                if about_a_record(cause):
                    self.breaker.failed(first, batch.raw_offset)
                log.warning("transaction failed; rewinding", extra={"shard": self.partition, "error_type": kind,
                                                                    "isolating": self.breaker.isolating})
                metrics.error("transaction", kind)
                staging.failed(batch, CommitFailed(kind))
                self._batch_first = None               # the open batch went with it: replayed after the rewind
                self._rewind()                         # at once: nothing past the failed batch is taken meanwhile
                await self._recover(fresh=isinstance(exc, Unacknowledged))
                raise CommitFailed(kind) from exc
            metrics.transaction(time.monotonic() - started)
            self.breaker.committed(batch.raw_offset)
            if batch.raw_offset is not None:
                self.committed_offset = batch.raw_offset
            self._committed(staging, batch)
            self._held(staging)

    def _held(self, staging: Staging) -> None:
        trackers = staging.trackers.values()
        metrics.state_entries(self.partition, len(staging.table), sum(len(t) for t in trackers),
                              len(staging.replays), sum(len(t.ids) for t in trackers))

    def _committed(self, staging: Staging, batch: Batch) -> None:
        """The batch is in: memory takes it and its counts are published, once (a failed batch is
        dropped and replayed as a new one)."""
        staging.committed(batch, self.clock().timestamp())
        staging.merge_off_loop()
        metrics.deliverability(batch.events)

    async def _recover(self, *, fresh: bool = False) -> None:
        """After a failed transaction (its batch already dropped and `_raw` rewound): abort it if we
        can, else start a fresh producer (which aborts it by fencing). `fresh`: a record of it
        failed, which leaves the idempotent producer's sequence numbers for that partition with a
        gap (aio-libs/aiokafka#1017): only a new producer starts them afresh."""
        if self.closed or self.producer is None:
            return   # handed over meanwhile: the next owner restores from what was committed
        if fresh:
            await self._replace_producer()
            return
        try:
            await asyncio.wait_for(self.producer.abort_transaction(), self.config.kafka.produce_timeout_secs)
        except Exception:  # noqa: BLE001
            await self._replace_producer()

    def _rewind(self) -> None:
        if self.committed_offset is not None:
            self.next_offset = self.committed_offset
            self.generation = next(_GENERATIONS)
            if self.on_rewind:
                self.on_rewind(self.partition, self.committed_offset)

    async def _replace_producer(self) -> None:
        """A fresh producer with the shard's transactional id: its start completes or aborts the open
        transaction for good. Without one the shard is lost; never for a closed (handed over) shard,
        whose new producer would fence the new owner's."""
        if self.closed:
            raise ShardClosed(f"shard {self.partition} closed")
        if self.producer is not None:
            try:
                await self.producer.stop()
            except Exception:  # noqa: BLE001
                pass
        self.producer = None
        producer = self._new_producer()
        try:
            await producer.start()
            self.producer = producer
        except Exception as exc:
            log.warning("could not start a fresh producer; the shard will be restored",
                        extra={"shard": self.partition, "error_type": kafka_error_type(exc)}, exc_info=True)
            await producer.stop()
            raise
        finally:
            if self.producer is None:
                self.closed = True
                if self.on_lost:
                    self.on_lost(self.partition)

    async def _landed(self, batch: Batch) -> bool | None:
        """Whether the group's committed `_raw` offset covers a batch that moved it; None when
        nothing can tell (no `_raw` offset in the batch, or no answer: worker.transaction)."""
        if batch.raw_offset is None:
            return None
        return await offset_covers(self.config.kafka, self.raw_tp, batch.raw_offset)

    async def _settle(self, batch: Batch, staging: Staging) -> bool:
        """Whether a batch whose commit request failed is in, once a fresh producer has settled the
        transaction (worker.shards._landed); when nothing can tell, the shard is restored (lost)."""
        await self._replace_producer()
        landed = await self._landed(batch)
        if landed is None:
            staging.failed(batch, ShardClosed("commit outcome unknown: restoring"))
            self.closed = True
            if self.on_lost:
                self.on_lost(self.partition)
            raise ShardClosed("commit outcome unknown: restoring the shard")
        return landed

    def snapshot(self) -> dict[str, Any]:
        staging = self.staging
        return {"shard": self.partition, "restored": self.restored,
                "entries": len(staging.table) if staging else 0, "state_skipped": self.state_skipped,
                "restore_secs": round(self.restore_secs, 3), "committed_offset": self.committed_offset,
                "backlog": self.backlog, "accounts": sorted(f"{a.provider.value}/{a.name}" for a in self.accounts),
                "tracked_ids": {name: len(t) for name, t in (staging.trackers.items() if staging else ())}}
