"""The optional sent-message feed (`inputs.sent_topic`, schemas/sent-message.v1.json).

Records are written by the service that sends mail, keyed as it likes. Every replica joins one
consumer group on that topic and forwards the records of id-polled and gap-driven accounts
(worker.poll.ids) to `_raw` (key
`provider/account`), so each lands on the shard that owns its account; offsets are committed only
after the forwarded records were acknowledged. Others are skipped; unreadable ones are
dead-lettered. A record forwarded twice is harmless: learning a known id changes nothing.

The topic belongs to the sending service, which may create it after this worker first starts: the
feed then waits for it (checked every `TOPIC_WAIT_SECS`, counted as `sent_topic_missing` in
`esw_errors_total{stage="sent_feed"}`, shown in `/status`), while webhooks and date sweeps go on.
Partitions added to the topic are read within `TOPIC_WAIT_SECS` too (the consumer's metadata age),
and the feed group's rebalance that follows.
Before 2026-12-06 the worker's start waited ~40 s for the topic and then exited 1 ("Kafka
unavailable"), so a missing sent topic kept every replica from serving webhooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from worker import metrics
from worker import sent as sent_records
from worker.config import Config
from worker.deadletter import UNKNOWN, DeadLetter
from worker.errors import (
    KAFKA,
    BadSentRecord,
    MalformedPayload,
    SentTopicMissing,
    UnknownAccount,
    Unusable,
    error_type_of,
)
from worker.intake import Admitted, RawWriter, admit
from worker.kafka_tls import client_kwargs
from worker.model import Provider
from worker.raw import SentMessage

log = logging.getLogger("worker.sentfeed")

BACKOFF_SECS = 2.0
UNKNOWN_LOGGED = 100     # unknown (provider, account) names logged once each, at most this many
TOPIC_WAIT_SECS = 30.0   # between two looks for a sent topic that does not exist yet


class SentFeed:
    def __init__(self, config: Config, writer: RawWriter) -> None:
        self.config = config
        self.writer = writer
        self.consumer: AIOKafkaConsumer | None = None
        self.task: asyncio.Task | None = None
        self.forwarded = 0
        self.state = "starting"           # waiting_for_topic, running (module docstring)
        self._unknown_seen: set[tuple[str, str]] = set()   # unknown accounts already logged
        self._looked = 0.0                # when the topic was last looked up (loop time)

    async def start(self) -> None:
        """Join the feed's group; the topic is subscribed to once it exists (`_subscribe`)."""
        k = self.config.kafka
        # metadata refreshed every TOPIC_WAIT_SECS, not aiokafka's 5 minutes: partitions the sending
        # service adds to its topic are read within that (sent-feed audit of 2026-12-06, N7)
        self.consumer = AIOKafkaConsumer(
            **client_kwargs(k), group_id=f"{k.group_id}.sent", metadata_max_age_ms=int(TOPIC_WAIT_SECS * 1000),
            enable_auto_commit=False, auto_offset_reset="earliest", isolation_level="read_committed")
        await self.consumer.start()
        self.task = asyncio.create_task(self._run(), name="sent-feed")

    def alive(self) -> bool:
        return self.task is not None and not self.task.done()

    def snapshot(self) -> dict:
        return {"topic": self.config.sent_topic, "state": self.state, "forwarded": self.forwarded}

    async def _subscribe(self, consumer: AIOKafkaConsumer, gone: bool = False) -> None:
        """Subscribe to the sent topic once the cluster has it; until then look again every
        TOPIC_WAIT_SECS, counted each time, logged once. `gone`: it was read and then deleted."""
        topic = self.config.sent_topic
        assert topic is not None
        warned = False
        while True:
            try:
                if topic in await consumer.topics():
                    break
                self.state = "waiting_for_topic"
                metrics.error("sent_feed", SentTopicMissing.error_type)
                if not warned:
                    log.warning(("inputs.sent_topic was deleted" if gone else "inputs.sent_topic does not exist on "
                                 "the cluster") + ": the sent feed waits for it (gap-driven and UniSender id polling "
                                 "learn no new ids meanwhile; webhooks and date sweeps go on)",
                                extra={"topic": topic, "error_type": SentTopicMissing.error_type})
                    warned = True
            except KafkaError:
                metrics.error("sent_feed", KAFKA)
            await asyncio.sleep(TOPIC_WAIT_SECS)
        consumer.subscribe([topic])
        self.state = "running"
        self._looked = asyncio.get_running_loop().time()
        if warned:
            log.info("inputs.sent_topic exists now: the sent feed reads it", extra={"topic": topic})

    async def _still_there(self, consumer: AIOKafkaConsumer) -> bool:
        """Whether the topic still exists, looked up every TOPIC_WAIT_SECS while it is read. A topic
        deleted under the feed was invisible (`running`, no count, no alert) and, created again,
        read only after the client's metadata refresh, ~5 minutes later (sent-feed audit, 2026-12-06)."""
        now = asyncio.get_running_loop().time()
        if now - self._looked < TOPIC_WAIT_SECS:
            return True
        self._looked = now
        try:
            return self.config.sent_topic in await consumer.topics()
        except KafkaError:
            return True   # Kafka away: the step's own failure says so

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self.consumer is not None:
            with contextlib.suppress(KafkaError):
                await self.consumer.stop()

    def _route(self, value: bytes | None, now: datetime) -> Admitted | DeadLetter | None:
        """The `_raw` record to forward, a dead letter, or None for a record no shard needs (an
        account that is neither id-polled nor gap-driven; one this configuration does not have,
        counted and logged once: the topic may serve other deployments too)."""
        try:
            sent = SentMessage.from_feed(value, now)
        except BadSentRecord as exc:
            return self._letter(*self._named(value), exc.error_type, value, now)
        if not sent.account:   # the schema's minLength: a record that names no account
            return self._letter(UNKNOWN, UNKNOWN, BadSentRecord.error_type, value, now)
        account = self.config.account(sent.provider, sent.account)
        if account is None:
            self._unknown(sent.provider.value, sent.account)
            return None
        if not sent_records.needed(account):
            return None  # only id-polled and gap-driven accounts need to know what was sent
        problem = sent_records.problem(account, sent, now)
        if problem is not None:
            return self._letter(sent.provider.value, sent.account, problem, value, now)
        try:
            return admit(sent)
        except (Unusable, MalformedPayload) as exc:
            return self._letter(sent.provider.value, sent.account, exc.error_type, value, now)

    @staticmethod
    def _letter(provider: str, account: str, reason: str, value: bytes | None, now: datetime) -> DeadLetter:
        return DeadLetter(provider, account, reason, "sent_topic", "sent", value or b"", "application/json", now)

    def _named(self, value: bytes | None) -> tuple[str, str]:
        """The configured account an unreadable record names, so that its dead letter says whose it
        is (`replay-dead-letters --account`, the alert's labels); (unknown, unknown) when none."""
        try:
            d = orjson.loads(value or b"")
            provider, name = Provider(d["provider"]), d["account"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return UNKNOWN, UNKNOWN
        if isinstance(name, str) and self.config.account(provider, name) is not None:
            return provider.value, name
        return UNKNOWN, UNKNOWN

    def _unknown(self, provider: str, account: str) -> None:
        metrics.error("sent_feed", UnknownAccount.error_type)
        if (provider, account) in self._unknown_seen or len(self._unknown_seen) >= UNKNOWN_LOGGED:
            return
        self._unknown_seen.add((provider, account))
        log.warning("sent records name an account this configuration does not have: skipped (counted in "
                    "esw_errors_total{stage=\"sent_feed\",error_type=\"unknown_account\"})",
                    extra={"provider": provider, "account": account[:100], "error_type": UnknownAccount.error_type})

    async def _run(self) -> None:
        """Forward until stopped. Any failure (Kafka down, a bug) is logged, counted and backed off
        from; the feed then reads again from its last commit (forwarding twice is harmless)."""
        assert self.consumer is not None
        await self._subscribe(self.consumer)
        while True:
            try:
                if not await self._still_there(self.consumer):
                    self.consumer.unsubscribe()
                    await self._subscribe(self.consumer, gone=True)   # from its beginning when it is back
                    continue
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
