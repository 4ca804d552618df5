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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence

import attrs
from aiokafka import AIOKafkaProducer

from worker import metrics, raw
from worker.config import KafkaConfig
from worker.deadletter import DeadLetter
from worker.emit import Topics, account_key, shard_of
from worker.errors import FieldTooLong, MalformedPayload, RecordTooLarge
from worker.model import Observation

MAX_RECORD_BYTES = 262_144    # a poll page of 100 long rows fits; an event built from a record stays far below 1 MiB


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


class RawWriter:
    def __init__(self, kafka: KafkaConfig, producer: AIOKafkaProducer) -> None:
        self.topics = Topics.from_config(kafka)
        self.shards = kafka.shards
        self.producer = producer
        self.failed_at = 0.0   # monotonic time of the last write Kafka refused (worker.reach reads it)

    async def write(self, records: Sequence[raw.RawRecord | Admitted] = (), dead: Sequence[DeadLetter] = ()) -> None:
        """Send every record and dead letter; return when all are acknowledged (raise otherwise).
        Records not admitted yet are admitted here; one that fails the caps raises its Unusable
        error before anything is sent (callers that expect such input admit it themselves)."""
        admitted = [r if isinstance(r, Admitted) else admit(r) for r in records]
        try:
            sent = []
            for item in admitted:
                provider = item.record.provider.value
                sent.append(await self.producer.send(
                    self.topics.raw, item.value, key=account_key(provider, item.record.account),
                    partition=shard_of(provider, item.record.account, self.shards)))
            for letter in dead:
                sent.append(await self.producer.send(self.topics.dead_letter, letter.body, key=letter.key,
                                                     headers=letter.headers))
            await asyncio.gather(*sent)
        except BaseException:   # refused, timed out or cancelled by the caller's deadline
            self.failed_at = time.monotonic()
            raise
        for letter in dead:
            metrics.dead_letters(letter.provider, letter.account, letter.reason)
