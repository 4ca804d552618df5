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
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from worker.config import Config
from worker.deadletter import UNKNOWN, DeadLetter
from worker.errors import BadSentRecord
from worker.intake import RawWriter
from worker.providers import get_module
from worker.raw import SentMessage

log = logging.getLogger("worker.sentfeed")


class SentFeed:
    def __init__(self, config: Config, writer: RawWriter) -> None:
        self.config = config
        self.writer = writer
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

    def alive(self) -> bool:
        return self.task is not None and not self.task.done()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self.consumer is not None:
            with contextlib.suppress(KafkaError):
                await self.consumer.stop()

    def _route(self, value: bytes | None, now: datetime) -> SentMessage | DeadLetter | None:
        """The `_raw` record to forward, a dead letter, or None for a record no shard needs."""
        try:
            sent = SentMessage.from_feed(value, now)
        except BadSentRecord as exc:
            return DeadLetter(UNKNOWN, UNKNOWN, exc.error_type, "sent_topic", "sent", value or b"",
                              "application/json", now)
        account = self.config.account(sent.provider, sent.account)
        if account is None or get_module(sent.provider).DEFAULTS.polling != "ids":
            return None  # only id-polled accounts need to know what was sent
        return sent

    async def _run(self) -> None:
        assert self.consumer is not None
        while True:
            batches = await self.consumer.getmany(timeout_ms=500, max_records=1000)
            if not batches:
                continue
            now = datetime.now(UTC)
            routed = [self._route(record.value, now) for records in batches.values() for record in records]
            sent = [r for r in routed if isinstance(r, SentMessage)]
            dead = [r for r in routed if isinstance(r, DeadLetter)]
            await self.writer.write(sent, dead)
            self.forwarded += len(sent) + len(dead)
            await self.consumer.commit()
