"""The one writer of `_raw`, used by the webhook receiver, the sent-message feed and the backfill.

A record goes to the `_raw` partition of its account's shard, keyed `provider/account`, and
`write` returns only once the broker acknowledged every record (acks=all, idempotent producer):
whoever answers a provider or commits an input offset does so after `write` returned. Input that
cannot become a `_raw` record goes to the dead-letter topic in the same call, so the caller has one
await for everything one request or batch produced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from worker import metrics, raw
from worker.config import KafkaConfig
from worker.deadletter import DeadLetter
from worker.emit import Topics, account_key, shard_of


class RawWriter:
    def __init__(self, kafka: KafkaConfig, producer: AIOKafkaProducer) -> None:
        self.topics = Topics.from_config(kafka)
        self.shards = kafka.shards
        self.producer = producer

    async def write(self, records: Sequence[raw.RawRecord] = (), dead: Sequence[DeadLetter] = ()) -> None:
        """Send every record and dead letter; return when all are acknowledged (raise otherwise)."""
        sent = []
        for record in records:
            provider = record.provider.value
            sent.append(await self.producer.send(
                self.topics.raw, raw.encode(record), key=account_key(provider, record.account),
                partition=shard_of(provider, record.account, self.shards)))
        for letter in dead:
            sent.append(await self.producer.send(self.topics.dead_letter, letter.body, key=letter.key,
                                                 headers=letter.headers))
        await asyncio.gather(*sent)
        for letter in dead:
            metrics.dead_letters(letter.provider, letter.account, letter.reason)
