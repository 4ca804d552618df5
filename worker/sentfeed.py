"""The optional sent-message feed (`inputs.sent_topic`, schemas/sent-message.v1.json).

Records are written by the service that sends mail, keyed as it likes. Every replica joins one
consumer group on that topic and forwards the records of id-polled and gap-driven accounts
(worker.poll.ids) to `_raw` (key
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

from worker import metrics
from worker.config import Config
from worker.deadletter import UNKNOWN, DeadLetter
from worker.errors import KAFKA, BadSentRecord, MalformedPayload, Unusable, error_type_of
from worker.intake import Admitted, RawWriter, admit
from worker.kafka_tls import client_kwargs
from worker.providers import get_module
from worker.raw import SentMessage

log = logging.getLogger("worker.sentfeed")

BACKOFF_SECS = 2.0


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
            self.config.sent_topic, **client_kwargs(k), group_id=f"{k.group_id}.sent",
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

    def _route(self, value: bytes | None, now: datetime) -> Admitted | DeadLetter | None:
        """The `_raw` record to forward, a dead letter, or None for a record no shard needs."""
        try:
            sent = SentMessage.from_feed(value, now)
            account = self.config.account(sent.provider, sent.account)
            if account is None or not (account.poll.gap_driven or get_module(sent.provider).DEFAULTS.polling == "ids"):
                return None  # only id-polled and gap-driven accounts need to know what was sent
            return admit(sent)
        except (BadSentRecord, Unusable, MalformedPayload) as exc:
            provider = sent.provider.value if exc.error_type != BadSentRecord.error_type else UNKNOWN
            account_name = sent.account if provider != UNKNOWN else UNKNOWN
            return DeadLetter(provider, account_name, exc.error_type, "sent_topic", "sent", value or b"",
                              "application/json", now)

    async def _run(self) -> None:
        """Forward until stopped. Any failure (Kafka down, a bug) is logged, counted and backed off
        from; the feed then reads again from its last commit (forwarding twice is harmless)."""
        assert self.consumer is not None
        while True:
            try:
                await self._step(self.consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                kind = KAFKA if isinstance(exc, KafkaError) else error_type_of(exc)
                log.warning("sent feed failed; going on", exc_info=kind != KAFKA, extra={"error_type": kind})
                metrics.error("sent_feed", kind)
                await asyncio.sleep(BACKOFF_SECS)
                with contextlib.suppress(Exception):
                    await self.consumer.seek_to_committed()

    async def _step(self, consumer: AIOKafkaConsumer) -> None:
        batches = await consumer.getmany(timeout_ms=500, max_records=1000)
        if not batches:
            return
        now = datetime.now(UTC)
        routed = [self._route(record.value, now) for records in batches.values() for record in records]
        sent = [r for r in routed if isinstance(r, Admitted)]
        dead = [r for r in routed if isinstance(r, DeadLetter)]
        await self.writer.write(sent, dead)
        self.forwarded += len(sent) + len(dead)
        await consumer.commit()
