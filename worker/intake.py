"""The one writer of `_raw`, used by the webhook receiver, the sent-message feed, the backfill and
the dead-letter replay; and the caps every record passes on its way in. (A shard's transaction
also carries the copies of a spread account's polled pages for its other shards, worker.staging:
encoded and routed by `admit` here too.)

A record goes to the `_raw` partition of its account's shard (or of its email's, for an account
spread over several: the caller routes it, `Admitted.shard`), keyed `provider/account`, and
`write` returns only once the broker acknowledged every record (acks=all, idempotent producer):
whoever answers a provider or commits an input offset does so after `write` returned. Input that
cannot become a `_raw` record goes to the dead-letter topic in the same call, so the caller has one
await for everything one request or batch produced.

Caps (docs/topics.md#limits). Every record is encoded once, here, and refused when its value is
over MAX_RECORD_BYTES or cannot be encoded at all (JSON nested deeper than the encoder allows):
such a record is a dead letter, never a `_raw` record that no shard could commit. The ids,
address and status of what a record reports are capped too (`check_fields`, the caps of
worker.model): an authentic
webhook with a 600 KB id is kept in the dead-letter topic, not turned into a 1 MB event.

Records go out as aiokafka batches gathered across the writes under way (`Gathered`): one open
batch per partition, sent when no batch of that partition is in flight, so the webhooks that arrive
while one batch waits for its acknowledgement share the next batch and its acknowledgement, instead
of one `producer.send` each (issue 16: the per-record path of aiokafka was the largest part of a
webhook's CPU). A write still returns only when the broker acknowledged the batches holding its
records; dead letters (rare, large) keep `producer.send`.

A write may be bounded (`within`, the receiver's `http.ack_timeout_secs`): its records' futures
then fail with TimeoutError once the bound has passed, checked by one task every DEADLINE_TICK_SECS
for all writes under way (`Deadlines`), so a webhook pays a queue append for its bound, not a timer
of its own (asyncio.timeout: ~7 µs a request, with its timer handle and the task's cancellation).
A write with dead letters, whose sends may themselves wait for metadata, is bounded as a whole.

A broken producer is replaced. aiokafka's idempotent producer numbers each batch per partition
when it takes the batch for sending, and keeps the number when it then gives the batch up (a
batch that waited out its timeout for a partition without a leader, as when every broker of the
cluster was down). The broker then refuses every later batch of that partition as out of order,
and aiokafka, unlike the Java client, never bumps its epoch to start the sequence again
(aio-libs/aiokafka#1017): the partition's writes would fail for ever. So a write that fails with
such an error (or after the producer's sender task died) starts a fresh producer, a new producer
id whose sequences start at zero, in the background; writes meanwhile fail as before (webhooks
answer 503, the provider retries) and the next ones go to the fresh producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import attrs
from aiokafka import AIOKafkaProducer
from aiokafka.errors import InvalidProducerEpoch, OutOfOrderSequenceNumber, ProducerFenced, UnknownProducerId

from worker import metrics, raw
from worker.config import AccountConfig, KafkaConfig
from worker.deadletter import DeadLetter
from worker.emit import Topics, account_key, batch_with, outcome_not_news, shard_of, shard_of_email
from worker.errors import FieldTooLong, MalformedPayload, ProducerBroken, RecordTooLarge, Unusable
from worker.model import Observation
from worker.rows import Rows

if TYPE_CHECKING:
    from aiokafka.producer.message_accumulator import BatchBuilder  # what producer.create_batch() gives

log = logging.getLogger("worker.intake")

DEADLINE_TICK_SECS = 0.05    # how late past its bound a bounded write may fail at most
MAX_RECORD_BYTES = 262_144    # a poll page of 100 long rows fits; an event built from a record stays far below 1 MiB
RENEW_BACKOFF_SECS = 1.0      # between attempts to start a replacement producer while Kafka is away

# Answers after which an idempotent producer cannot write that partition again.
BREAKING = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch, ProducerFenced)


@attrs.frozen
class Admitted:
    """A record that passed the caps, with its encoded value and its shard when that is not its
    account's home (a spread account's email: worker.emit `shard_of_email`)."""

    record: raw.RawRecord
    value: bytes
    shard: int | None = None


def admit(record: raw.RawRecord, shard: int | None = None) -> Admitted:
    """The record encoded, or the Unusable reason it cannot enter `_raw`. A record forwarded to
    one shard of a spread account (a page's copy, a checked webhook record) goes to that shard."""
    if shard is None and not isinstance(record, raw.SentMessage):
        shard = record.shard
    try:
        value = raw.encode(record)
    except TypeError as exc:   # orjson: nesting too deep, or not JSON at all
        raise MalformedPayload("record cannot be encoded") from exc
    if len(value) > MAX_RECORD_BYTES:
        raise RecordTooLarge(f"record of {len(value)} bytes")
    return Admitted(record, value, shard)


def routed(admitted: Admitted, account: AccountConfig, observations: Sequence[Observation], shards: int) -> Admitted:
    """A webhook record of a spread account, sent to the shard of its replay key when it has one
    (that shard checks the key, then forwards the record to its email's: worker.staging), else of
    its email (the first observation's: a provider's record reports one email); any other record
    as it is. A signature is checked on one shard whatever email a reused one claims."""
    record = admitted.record
    if account.spread == 1 or not observations or not isinstance(record, raw.WebhookRecord) or record.shard is not None:
        return admitted
    by = record.replay if record.replay is not None else observations[0].email_id
    return attrs.evolve(admitted, shard=shard_of_email(account.provider.value, account.name, by, account.spread, shards))


def page_copies(page: raw.PollPageRecord, account: AccountConfig, observations: Sequence[Observation], shard: int,
                shards: int) -> tuple[list[Observation], list[Admitted], str | None]:
    """A spread account's polled page on `shard`: the rows this shard decides, the page's copies
    for every other shard that decides some of them, and the Unusable reason when the copies
    cannot enter `_raw` (then there are none). A copy (`page.shard` set) is never copied again."""
    provider, name = account.provider.value, account.name
    rows = Rows.of(observations)   # the ids read as a column: only this shard's rows are built
    own: list[Observation] = []
    others: set[int] = set()
    for i, email_id in enumerate(rows.email_ids):
        target = shard_of_email(provider, name, email_id, account.spread, shards)
        if target == shard:
            own.append(rows[i])
        else:
            others.add(target)
    if page.shard is not None:
        return own, [], None
    try:
        return own, [admit(attrs.evolve(page, shard=target)) for target in sorted(others)], None
    except Unusable as exc:
        return own, [], exc.error_type


def check_fields(observations: Iterable[Observation]) -> None:
    """FieldTooLong when an observation's ids, address or status are over the model's caps."""
    if any(obs.oversized for obs in observations):
        raise FieldTooLong("an id, address or status over the caps")


def broken(producer: AIOKafkaProducer, exc: BaseException) -> bool:
    """Whether a failed write says the producer itself can no longer write (see the module doc)."""
    if isinstance(exc, BREAKING):
        return True
    task = getattr(getattr(producer, "_sender", None), "sender_task", None)
    return task is not None and task.done()   # the sender died: every send fails at once from now on


class _Batch:
    """An aiokafka batch being filled, and the futures of the writes whose records it holds."""

    __slots__ = ("builder", "waiters")

    def __init__(self, builder: BatchBuilder) -> None:
        self.builder = builder
        self.waiters: list[asyncio.Future] = []

    def settle(self, outcome: BaseException | None) -> None:
        for waiter in self.waiters:
            if waiter.done():       # a write that gave up (its deadline) cancelled its own future only
                continue
            if outcome is None:
                waiter.set_result(None)
            elif isinstance(outcome, asyncio.CancelledError):
                waiter.cancel()
            else:
                waiter.set_exception(outcome)


class Gathered:
    """Records of one topic from concurrent writes, in aiokafka batches: per partition, a queue of
    batches being filled and at most one in flight. A batch is sent when its partition has none in
    flight (the send starts on the next turn of the loop, so the writes of this turn join it), and
    the next one when that one is acknowledged or failed. `add` returns a future of its own per
    record: cancelling it (a write past its deadline) touches no other write."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self._queues: dict[int, deque[_Batch]] = {}
        self._busy: set[int] = set()          # partitions with a batch being sent or in flight
        self._idle = asyncio.Event()          # set while no partition is busy
        self._idle.set()
        self._tasks: set[asyncio.Task] = set()

    def add(self, partition: int, key: bytes, value: bytes) -> asyncio.Future:
        waiter = asyncio.get_running_loop().create_future()
        queue = self._queues.get(partition)
        if queue is None:
            queue = self._queues[partition] = deque()
        if not queue or queue[-1].builder.append(timestamp=None, key=key, value=value, headers=[]) is None:
            queue.append(_Batch(batch_with(self.producer, key, value, [])))
        queue[-1].waiters.append(waiter)
        if partition not in self._busy:
            self._busy.add(partition)
            self._idle.clear()
            self._start(partition)
        return waiter

    async def drained(self) -> None:
        """Until every batch was acknowledged or failed."""
        await self._idle.wait()

    def _start(self, partition: int) -> None:
        task = asyncio.ensure_future(self._send(partition))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, partition: int) -> None:
        batch = self._queues[partition].popleft()
        batch.builder.close()   # complete: the producer sends it without lingering
        try:
            sent = await self.producer.send_batch(batch.builder, self.topic, partition=partition)
        except BaseException as exc:   # no metadata in time, a closed producer, or the worker stops
            batch.settle(exc)
            self._next(partition)
            if not isinstance(exc, Exception):
                raise
            return
        sent.add_done_callback(lambda fut: self._done(partition, batch, fut))

    def _done(self, partition: int, batch: _Batch, fut: asyncio.Future) -> None:
        batch.settle(asyncio.CancelledError() if fut.cancelled() else fut.exception())
        self._next(partition)

    def _next(self, partition: int) -> None:
        if self._queues[partition]:
            self._start(partition)
        else:
            self._busy.discard(partition)
            if not self._busy:
                self._idle.set()


class Deadlines:
    """Futures to fail with TimeoutError at their deadline, in the order their writes began. Every
    bound is the same span from the time it is added (one caller, one setting), so deadlines come
    in order: a tick looks only at the front of the queue. The task runs while something waits."""

    def __init__(self) -> None:
        self._queue: deque[tuple[float, list[asyncio.Future]]] = deque()
        self._task: asyncio.Task | None = None

    def add(self, within: float, futures: list[asyncio.Future]) -> None:
        self._queue.append((time.monotonic() + within, futures))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="raw-write-deadlines")

    async def _run(self) -> None:
        queue = self._queue
        while queue:
            await asyncio.sleep(DEADLINE_TICK_SECS)
            now = time.monotonic()
            while queue and (queue[0][0] <= now or all(f.done() for f in queue[0][1])):
                for fut in queue.popleft()[1]:
                    if not fut.done():
                        fut.set_exception(TimeoutError())

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class RawWriter:
    """Writes to `_raw` and the dead-letter topic with one producer at a time. With `renew` (a
    factory of unstarted producers) a broken producer is replaced; without it (the replay's
    transactional producer, whose run fails and is re-run instead) failures only propagate."""

    def __init__(self, kafka: KafkaConfig, producer: AIOKafkaProducer,
                 renew: Callable[[], AIOKafkaProducer] | None = None) -> None:
        self.topics = Topics.from_config(kafka)
        self.shards = kafka.shards
        self.timeout = kafka.produce_timeout_secs
        self.producer = producer
        self.failed_at = 0.0   # monotonic time of the last write Kafka refused (worker.reach reads it)
        self.renewals = 0      # producers replaced so far
        self._renew = renew
        self._renewal: asyncio.Task | None = None
        self._gathered = Gathered(producer, self.topics.raw)
        self._deadlines = Deadlines()

    async def write(self, records: Sequence[raw.RawRecord | Admitted] = (), dead: Sequence[DeadLetter] = (),
                    within: float | None = None) -> None:
        """Send every record and dead letter; return when all are acknowledged (raise otherwise:
        TimeoutError when not acknowledged `within` seconds, give or take DEADLINE_TICK_SECS).
        Records not admitted yet are admitted here; one that fails the caps raises its Unusable
        error before anything is sent (callers that expect such input admit it themselves).
        Every bounded write of one writer must use the same `within` (see `Deadlines`)."""
        if within is not None and dead:   # a dead letter's send may wait before it gives a future
            async with asyncio.timeout(within):
                return await self.write(records, dead)
        admitted = [r if isinstance(r, Admitted) else admit(r) for r in records]
        producer = self.producer
        if self._gathered.producer is not producer:   # replaced: the old one's batches finish on their own
            self._gathered = Gathered(producer, self.topics.raw)
        sent: list[asyncio.Future] = []
        try:
            for item in admitted:
                provider, account = item.record.provider.value, item.record.account
                shard = shard_of(provider, account, self.shards) if item.shard is None else item.shard
                sent.append(self._gathered.add(shard, account_key(provider, account), item.value))
            if within is not None:
                self._deadlines.add(within, sent)
            for letter in dead:
                sent.append(await producer.send(self.topics.dead_letter, letter.body, key=letter.key,
                                                headers=letter.headers))
            for fut in sent:   # in turn: no gathering future and callbacks for the usual one record
                await fut
        except BaseException as exc:   # refused, timed out or cancelled by the caller's deadline
            self.failed_at = time.monotonic()
            metrics.kafka_reachable(False)   # as /readyz says from now on, until a probe succeeds (worker.reach)
            for fut in sent:           # the failure raised is the first in turn; the others are not news
                fut.add_done_callback(outcome_not_news)
            if self._renew is not None and broken(producer, exc):
                self._replace(producer)
            raise
        for letter in dead:
            metrics.dead_letters(letter.provider, letter.account, letter.reason)

    def _replace(self, old: AIOKafkaProducer) -> None:
        if old is not self.producer or (self._renewal is not None and not self._renewal.done()):
            return   # replaced already, or being replaced
        log.warning("the _raw producer cannot write any more; starting a fresh one",
                    extra={"error_type": ProducerBroken.error_type})
        metrics.error("intake", ProducerBroken.error_type)
        self._renewal = asyncio.create_task(self._renewed(old), name="raw-producer-renewal")

    async def _renewed(self, old: AIOKafkaProducer) -> None:
        assert self._renew is not None
        while True:
            fresh = self._renew()
            try:
                await asyncio.wait_for(fresh.start(), self.timeout * 2)
                break
            except BaseException as exc:   # Kafka is still away (try again), or the worker stops
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(fresh.stop(), self.timeout)
                if not isinstance(exc, Exception):
                    raise
            await asyncio.sleep(RENEW_BACKOFF_SECS)
        self.producer = fresh
        self.renewals += 1
        log.info("the _raw producer was replaced", extra={"renewals": self.renewals})
        with contextlib.suppress(Exception):   # its pending writes end (acknowledged or failed) here
            await asyncio.wait_for(old.stop(), self.timeout)

    async def stop(self, bound_secs: float | None = None) -> None:
        """Stop a replacement under way, then the producer (flushing what it holds), within
        `bound_secs` (the produce timeout when None)."""
        if self._renewal is not None and not self._renewal.done():
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
        await self._deadlines.stop()
        bound = self.timeout if bound_secs is None else bound_secs
        deadline = time.monotonic() + bound
        with contextlib.suppress(TimeoutError):   # the gathered batches first: the producer holds the rest
            await asyncio.wait_for(self._gathered.drained(), bound)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.producer.stop(), max(0.1, deadline - time.monotonic()))
