"""Consumer-group ownership of shards: the replica's one consumer of `_raw`.

Assigned partitions are paused, then each is opened in its own task: its producer fences the
previous owner, `_state` is restored, the consumer is positioned at the group's committed offset,
the partition resumes and the shard's pollers start. Revoked partitions stop their pollers and
commit or abort the open batch before the rebalance completes (aiokafka awaits the listener).

A shard holds the accounts placed on it; an account spread over several shards (`accounts[].spread`)
is on each of them and polled only from its home (worker.emit `shards_of`, `shard_of`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from worker import metrics
from worker.assign import sticky_assignor
from worker.config import AccountConfig, Config
from worker.emit import Topics, kafka_error_type, shard_of, shards_of
from worker.errors import KAFKA, ShardClosed, error_type_of
from worker.expiry import expire
from worker.grouplag import measure_periodically
from worker.kafka_tls import client_kwargs
from worker.poll.fetch import Fetcher
from worker.poll.limiter import AdaptiveLimiter
from worker.poll.runner import PollRunner
from worker.shards import Shard
from worker.shardsink import ShardSink

log = logging.getLogger("worker.group")

EXPIRY_EVERY_SECS = 3600.0
# `_raw` records are staged HAND_OVER_STEP at a time; the loop runs again once HAND_OVER_BUDGET_SECS
# have passed. A record costs 40-120 µs to stage, so fixed slices of 128 held the loop 8-15 ms; a
# callback ready meanwhile waits for this slice and the next (asyncio runs the task's step first).
HAND_OVER_STEP = 8
HAND_OVER_BUDGET_SECS = 0.003


class ShardManager(ConsumerRebalanceListener):
    def __init__(self, config: Config, session: aiohttp.ClientSession,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.session = session
        self.clock = clock
        self.topics = Topics.from_config(config.kafka)
        self.by_shard: dict[int, list[AccountConfig]] = {}
        for account in config.accounts:   # a spread account on each of its shards; polled from its home
            for p in shards_of(account.provider.value, account.name, account.spread, config.kafka.shards):
                self.by_shard.setdefault(p, []).append(account)
        self.shards: dict[int, Shard] = {}
        self.opening: dict[int, asyncio.Task] = {}
        # restores at a time: each peaks at several times its shard's steady memory
        self._restores = asyncio.Semaphore(config.kafka.restore_concurrency)
        self.committers: dict[int, asyncio.Task] = {}
        self.pollers: dict[int, list[asyncio.Task]] = {}
        self.runners: dict[int, list[PollRunner]] = {}
        # One limiter per account for the life of the process: what it learned about the
        # provider's real quota (the throttle cap, the probe state) survives every rebalance.
        self.limiters: dict[str, AdaptiveLimiter] = {
            a.name: AdaptiveLimiter(a.poll.calls_per_second, a.poll.quota_window_secs) for a in config.accounts}
        self.positions: dict[int, int] = {}
        self.ticks: Callable[[], float] = time.perf_counter   # the hand-over's budget clock (a test seam)
        self.consumer: AIOKafkaConsumer | None = None
        self.assigned: set[int] = set()
        self._loop_task: asyncio.Task | None = None
        self._expiry_task: asyncio.Task | None = None
        self._group_lag_task: asyncio.Task | None = None
        self.joined = False

    @property
    def _consumer(self) -> AIOKafkaConsumer:
        assert self.consumer is not None, "the consumer starts before any shard is assigned"
        return self.consumer

    # -- readiness ------------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """The consume loop and every open shard's committer run (else liveness fails and the
        pod restarts: a shard that silently stopped committing would stall its accounts)."""
        tasks = [self._loop_task, *(t for p, t in self.committers.items() if p in self.shards)]
        return all(t is not None and not t.done() for t in tasks)

    @property
    def restoring(self) -> list[int]:
        """Assigned shards not restored and open yet (reported, not part of readiness: worker.reach)."""
        return sorted(p for p in self.assigned if p not in self.shards or not self.shards[p].restored)

    @property
    def restored(self) -> bool:
        """Joined the group and every assigned shard restored and open."""
        return self.joined and not self.restoring

    def _count(self) -> None:
        metrics.shards_owned(len(self.shards), len(self.restoring))

    def _held(self) -> list[int]:
        """Shards held in memory, claimed at the next join (worker.assign)."""
        return [p for p, shard in self.shards.items() if not shard.closed]

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        k = self.config.kafka
        self.consumer = AIOKafkaConsumer(
            **client_kwargs(k), group_id=k.group_id, isolation_level="read_committed",
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=k.batch_max_records,
            session_timeout_ms=k.session_timeout_ms, heartbeat_interval_ms=max(300, k.session_timeout_ms // 4),
            rebalance_timeout_ms=int(max(30.0, self.config.shutdown_grace_secs) * 1000),
            # One protocol only: aiokafka sends one JoinGroup per configured assignor, each a full
            # join (aio-libs/aiokafka#1168), so a second assignor doubled every rebalance and could
            # keep two members re-triggering each other's joins for minutes (worker.assign).
            partition_assignment_strategy=(sticky_assignor(self._held),),
        )
        await self._consumer.start()
        self._consumer.subscribe([self.topics.raw], listener=self)
        self._loop_task = asyncio.create_task(self._consume(), name="raw-consumer")
        self._expiry_task = asyncio.create_task(self._expire_periodically(), name="dedup-expiry")
        self._group_lag_task = asyncio.create_task(
            measure_periodically(self._consumer, self.topics.raw, self.config.kafka.shards), name="raw-group-lag")

    async def stop(self) -> None:
        """Graceful: stop pollers, commit what is open, leave the group."""
        for task in (self._group_lag_task, self._expiry_task, self._loop_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for p in list(self.opening):
            self.opening.pop(p).cancel()
        await asyncio.gather(*(self._close(p, commit=True) for p in list(self.shards)), return_exceptions=True)
        if self.consumer is not None:
            with contextlib.suppress(KafkaError):
                await self._consumer.stop()   # sends LeaveGroup: the others take over at once
        metrics.raw_group_lag({})

    # -- the listener ---------------------------------------------------------------------------
    # aiokafka rebalances eagerly: every rebalance revokes everything, then assigns. Restoring a
    # big shard each time would be slow, so revocation only suspends a shard (pollers stopped, open
    # batch committed, table kept) and assignment resumes the shards that came back; the assignor
    # (worker.assign) gives each replica back what it holds, up to its fair share. A shard that
    # went to another replica is fenced there before that replica reads its state, so a suspended
    # shard can never commit over its successor.

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.joined = False
        mine = [tp.partition for tp in revoked if tp.topic == self.topics.raw]
        for p in mine:
            task = self.opening.pop(p, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await asyncio.gather(*(self._suspend(p) for p in mine if p in self.shards), return_exceptions=True)
        self.assigned -= set(mine)
        log.info("shards suspended for a rebalance", extra={"shards": mine})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        mine = {tp.partition for tp in assigned if tp.topic == self.topics.raw}
        gone = [p for p, shard in self.shards.items() if p not in mine or shard.closed]
        await asyncio.gather(*(self._close(p, commit=False) for p in gone), return_exceptions=True)
        self.assigned = mine
        for p in mine:
            tp = TopicPartition(self.topics.raw, p)
            shard = self.shards.get(p)
            if shard is not None and not shard.closed:
                assert shard.committed_offset is not None   # set when it was opened
                shard.resume_at(shard.committed_offset)
                self._consumer.seek(tp, shard.committed_offset)
                self._start_pollers(p)
            elif p not in self.opening:
                self._consumer.pause(tp)
                self.opening[p] = asyncio.create_task(self._open(p), name=f"open-shard-{p}")
        self.joined = True
        self._count()
        log.info("shards assigned", extra={"shards": sorted(mine), "closed": sorted(gone)})

    async def _open(self, p: int) -> None:
        shard = Shard(p, self.config, self.by_shard.get(p, []), clock=self.clock)
        shard.on_rewind = self._rewind
        shard.on_lost = self._lost
        try:
            async with self._restores:
                await shard.start()
            tp = TopicPartition(self.topics.raw, p)
            committed = await self._consumer.committed(tp)
            if committed is None:  # a new group: from the beginning (explicitly; see worker.state.read_partition)
                committed = (await self._consumer.beginning_offsets([tp]))[tp]
            self._consumer.seek(tp, committed)
            shard.resume_at(committed)
        except asyncio.CancelledError:
            await shard.close(commit=False)
            raise
        except Exception as exc:
            log.exception("could not open shard", extra={"shard": p, "error_type": kafka_error_type(exc)})
            metrics.error("restore", kafka_error_type(exc))
            await shard.close(commit=False)
            self.opening.pop(p, None)
            await asyncio.sleep(2.0)
            if p in self.assigned and p not in self.shards:
                self.opening[p] = asyncio.create_task(self._open(p), name=f"open-shard-{p}")
            return
        self.shards[p] = shard
        self.opening.pop(p, None)
        self.committers[p] = asyncio.create_task(shard.run(), name=f"commit-shard-{p}")
        self._start_pollers(p)
        self._consumer.resume(TopicPartition(self.topics.raw, p))
        self._count()

    def homed(self, p: int) -> list[AccountConfig]:
        """The accounts shard `p` polls: those whose home it is (a spread account is on others too)."""
        return [a for a in self.by_shard.get(p, []) if shard_of(a.provider.value, a.name, self.config.kafka.shards) == p]

    def _start_pollers(self, p: int) -> None:
        shard = self.shards[p]
        runners = [PollRunner(a, Fetcher(a, self.session, self.limiters[a.name], self.clock), shard.schedules[a.name],
                              ShardSink(shard, a), clock=self.clock, gaps=shard.gaps.get(a.name))
                   for a in self.homed(p) if a.poll.enabled]
        self.runners[p] = runners
        self.pollers[p] = [asyncio.create_task(r.run(), name=f"poll-{r.account.name}") for r in runners]

    async def _stop_pollers(self, p: int) -> None:
        tasks = self.pollers.pop(p, [])
        self.runners.pop(p, None)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _suspend(self, p: int) -> None:
        await self._stop_pollers(p)
        shard = self.shards.get(p)
        if shard is not None and not shard.closed:
            try:
                await shard.commit()
            except Exception:  # noqa: BLE001 - the shard closes itself if it cannot go on
                log.warning("commit on suspend failed", extra={"shard": p})

    async def _close(self, p: int, *, commit: bool) -> None:
        await self._stop_pollers(p)
        shard = self.shards.pop(p, None)
        if shard is not None:
            await shard.close(commit=commit)
        committer = self.committers.pop(p, None)
        if committer is not None:
            committer.cancel()
            await asyncio.gather(committer, return_exceptions=True)
        self.positions.pop(p, None)
        self._count()
        metrics.shard_released(p)
        metrics.accounts_released((a.provider.value, a.name) for a in self.homed(p))

    def _rewind(self, p: int, offset: int) -> None:
        with contextlib.suppress(Exception):
            self._consumer.seek(TopicPartition(self.topics.raw, p), offset)

    def _lost(self, p: int) -> None:
        """Fenced or producer gone: close the shard. If it is still ours (another replica held it
        for a generation while ours was suspended, or the producer died), open it afresh: a new
        restore reads what the other owner committed."""
        self.opening[p] = asyncio.get_running_loop().create_task(self._reopen(p), name=f"reopen-shard-{p}")

    async def _reopen(self, p: int) -> None:
        await self._close(p, commit=False)
        if p in self.assigned and self.consumer is not None:
            self._consumer.pause(TopicPartition(self.topics.raw, p))
            await self._open(p)
        else:
            self.opening.pop(p, None)

    # -- the consume loop -----------------------------------------------------------------------

    async def _consume(self) -> None:
        """The consume loop survives anything: a failure is logged, counted and backed off from, and
        the records it was handling are read again from their shard's last commit."""
        high = self.config.kafka.batch_max_records * 4
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=100, max_records=self.config.kafka.batch_max_records)
                # each shard's generation now, before any await: a rewind while a fetch is handed
                # over makes the rest of it stale (the consumer drops what it fetched before a seek)
                fetched = [(tp, records, shard.generation) for tp, records in batches.items()
                           if (shard := self.shards.get(tp.partition)) is not None]
                for tp, records, generation in fetched:
                    await self._hand_over(tp, records, generation)
                self._backpressure(high)
                self._lag()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                kind = KAFKA if isinstance(exc, KafkaError) else error_type_of(exc)
                log.warning("consume loop failed; going on", exc_info=kind != KAFKA, extra={"error_type": kind})
                metrics.error("consume", kind)
                await asyncio.sleep(1.0)

    async def _hand_over(self, tp: TopicPartition, records: list, generation: int) -> None:
        """Stage a fetch into its shard HAND_OVER_STEP records at a time, letting the loop run each
        time HAND_OVER_BUDGET_SECS have passed; stop where the shard stops taking (its breaker, a
        rewind, a close)."""
        ran = self.ticks()
        for start in range(0, len(records), HAND_OVER_STEP):
            if start and self.ticks() - ran >= HAND_OVER_BUDGET_SECS:
                await asyncio.sleep(0)
                ran = self.ticks()
            part = records[start:start + HAND_OVER_STEP]
            shard = self.shards.get(tp.partition)
            if shard is None or shard.closed:
                return  # revoked while in flight; the next owner reads them again
            try:
                taken = shard.process_raw(part, generation)
            except ShardClosed:
                return  # closed under us: a reopen or the next owner reads them again
            except Exception:
                if shard.committed_offset is not None:
                    self._consumer.seek(tp, shard.committed_offset)   # read again, nothing skipped
                raise
            if taken:
                self.positions[tp.partition] = part[taken - 1].offset + 1
            if taken < len(part):          # one at a time (its breaker), or not where it goes on
                self._consumer.seek(tp, shard.next_offset if shard.next_offset is not None else part[taken].offset)
                if not taken:
                    await asyncio.sleep(0.005)  # its open batch is committing
                return

    def _backpressure(self, high: int) -> None:
        for p, shard in self.shards.items():
            tp = TopicPartition(self.topics.raw, p)
            if shard.backlog > high:
                self._consumer.pause(tp)
            elif tp in self._consumer.paused() and shard.backlog < high // 2:
                self._consumer.resume(tp)

    def _lag(self) -> None:
        assigned = self._consumer.assignment()
        for p, shard in self.shards.items():
            tp = TopicPartition(self.topics.raw, p)
            if tp not in assigned:
                continue        # moved away in a rebalance a moment ago (aiokafka asserts on it)
            highwater = self._consumer.highwater(tp)
            position = self.positions.get(p, shard.committed_offset)
            if highwater is not None and position is not None:
                metrics.raw_lag(p, max(0, highwater - position))

    async def _expire_periodically(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_EVERY_SECS)
            for shard in list(self.shards.values()):
                try:
                    expired = await expire(shard)
                except Exception as exc:  # noqa: BLE001 - retried at the next round
                    log.warning("expiry failed", extra={"shard": shard.partition, "error_type": error_type_of(exc)})
                    continue
                if expired:
                    log.info("dedup entries expired", extra={"shard": shard.partition, "entries": expired})

    def snapshot(self) -> dict:
        return {
            "joined": self.joined,
            "restored": self.restored,
            "assigned": sorted(self.assigned),
            "restoring": self.restoring,
            "opening": sorted(self.opening),
            "shards": [s.snapshot() for _, s in sorted(self.shards.items())],
            "pollers": [r.snapshot() for p in sorted(self.runners) for r in self.runners[p]],
        }
