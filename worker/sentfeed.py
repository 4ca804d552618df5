"""The optional sent-message feed (`inputs.sent_topic`, schemas/sent-message.v1.json).

Records are written by the service that sends mail, keyed as it likes. Every replica joins one
consumer group on that topic and forwards the records of id-polled accounts to `_raw` (key
`provider/account`), so each lands on the shard that owns its account; offsets are committed only
after the forwarded records were acknowledged. Others are skipped; unreadable ones are
dead-lettered. A record forwarded twice is harmless: learning a known id changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timezone

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from worker import metrics
from worker.config import Config
from worker.emit import Topics, account_key, dead_letter_record, raw_record, shard_of
from worker.model import Provider
from worker.providers import get_module

log = logging.getLogger("worker.sentfeed")


class SentFeed:
    def __init__(self, config: Config, producer: AIOKafkaProducer) -> None:
        self.config = config
        self.producer = producer
        self.topics = Topics.from_config(config.kafka)
        self.consumer: AIOKafkaConsumer | None = None
        self.task: asyncio.Task | None = None
        self.forwarded = 0

    async def start(self) -> None:
        k = self.config.kafka
        self.consumer = AIOKafkaConsumer(
            self.config.sent_topic, **k.client_kwargs(), group_id=f"{k.group_id}.sent",
            enable_auto_commit=False, auto_offset_reset="earliest", isolation_level="read_committed")
        await self.consumer.start()
        self.task = asyncio.create_task(self._run(), name="sent-feed")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self.consumer is not None:
            with contextlib.suppress(KafkaError):
                await self.consumer.stop()

    def _route(self, value: bytes | None, now: datetime):
        try:
            msg = orjson.loads(value)
            provider, name = Provider(msg["provider"]), str(msg["account"])
            fields = {"email_id": str(msg["email_id"]), "recipient": str(msg["recipient"]),
                      "sent_at": str(msg["sent_at"])}
            datetime.fromisoformat(fields["sent_at"].replace("Z", "+00:00"))
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
            key, body, headers = dead_letter_record(provider="?", account="?", reason="bad_sent_record",
                                                    body=value or b"", content_type="application/json",
                                                    received_at=now, source="sent_topic")
            return self.topics.dead_letter, key, body, headers, None
        account = self.config.account(provider, name)
        if account is None or get_module(provider).DEFAULTS.polling != "ids":
            return None  # only id-polled accounts need to know what was sent
        value = raw_record("sent", provider.value, name, now, **fields)
        return (self.topics.raw, account_key(provider.value, name), value, None,
                shard_of(provider.value, name, self.config.kafka.shards))

    async def _run(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=500, max_records=1000)
            if not batches:
                continue
            now = datetime.now(timezone.utc)
            futures = []
            for records in batches.values():
                for record in records:
                    routed = self._route(record.value, now)
                    if routed is None:
                        continue
                    topic, key, value, headers, partition = routed
                    if topic == self.topics.dead_letter:
                        metrics.DEAD_LETTERS.labels("unknown", "unknown", "bad_sent_record").inc()
                    futures.append(await self.producer.send(topic, value, key=key, headers=headers, partition=partition))
            await asyncio.gather(*futures)
            self.forwarded += len(futures)
            await self.consumer.commit()
