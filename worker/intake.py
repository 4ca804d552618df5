"""The one writer of `_raw`, used by the webhook receiver, the sent-message feed, the backfill and
the dead-letter replay; and the caps every record passes on its way in.

A record goes to the `_raw` partition of its account's shard, keyed `provider/account`, and
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
from collections.abc import Callable, Iterable, Sequence

import attrs
from aiokafka import AIOKafkaProducer
from aiokafka.errors import InvalidProducerEpoch, OutOfOrderSequenceNumber, ProducerFenced, UnknownProducerId

from worker import metrics, raw
from worker.config import KafkaConfig
from worker.deadletter import DeadLetter
from worker.emit import Topics, account_key, outcome_not_news, shard_of
from worker.errors import FieldTooLong, MalformedPayload, ProducerBroken, RecordTooLarge
from worker.model import Observation

log = logging.getLogger("worker.intake")

MAX_RECORD_BYTES = 262_144    # a poll page of 100 long rows fits; an event built from a record stays far below 1 MiB
RENEW_BACKOFF_SECS = 1.0      # between attempts to start a replacement producer while Kafka is away

# Answers after which an idempotent producer cannot write that partition again.
BREAKING = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch, ProducerFenced)


@attrs.frozen
class Admitted:
    """A record that passed the caps, with its encoded value."""

    record: raw.RawRecord
    value: bytes


def admit(record: raw.RawRecord) -> Admitted:
    """The record encoded, or the Unusable reason it cannot enter `_raw`."""
    try:
        value = raw.encode(record)
    except TypeError as exc:   # orjson: nesting too deep, or not JSON at all
        raise MalformedPayload("record cannot be encoded") from exc
    if len(value) > MAX_RECORD_BYTES:
        raise RecordTooLarge(f"record of {len(value)} bytes")
    return Admitted(record, value)


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

    async def write(self, records: Sequence[raw.RawRecord | Admitted] = (), dead: Sequence[DeadLetter] = ()) -> None:
        """Send every record and dead letter; return when all are acknowledged (raise otherwise).
        Records not admitted yet are admitted here; one that fails the caps raises its Unusable
        error before anything is sent (callers that expect such input admit it themselves)."""
        admitted = [r if isinstance(r, Admitted) else admit(r) for r in records]
        producer = self.producer
        sent: list[asyncio.Future] = []
        try:
            for item in admitted:
                provider = item.record.provider.value
                sent.append(await producer.send(
                    self.topics.raw, item.value, key=account_key(provider, item.record.account),
                    partition=shard_of(provider, item.record.account, self.shards)))
            for letter in dead:
                sent.append(await producer.send(self.topics.dead_letter, letter.body, key=letter.key,
                                                headers=letter.headers))
            await asyncio.gather(*sent)
        except BaseException as exc:   # refused, timed out or cancelled by the caller's deadline
            self.failed_at = time.monotonic()
            for fut in sent:           # the first failure is the one raised; the others are not news
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
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.producer.stop(), self.timeout if bound_secs is None else bound_secs)
