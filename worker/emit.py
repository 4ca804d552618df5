"""Where records go in Kafka: topic names, routing, headers, topic creation, dead letters.

Output events go to `<prefix>.<type>`, keyed by the lower-cased recipient. Internal topics:
`<prefix>._raw` (webhook and sent-message records, key `provider/account`), `<prefix>._state`
(compacted changelog of dedup entries and poll cursors), `<prefix>._dead_letter`. `_raw` and
`_state` share the partition count P = `kafka.shards`, so an account's shard has one number in both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import attrs
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner

from worker.config import KafkaConfig
from worker.model import EventType, StatusEvent, rfc3339


class TopicLayoutError(Exception):
    """An existing internal topic does not have the layout the worker needs."""


@attrs.frozen
class Topics:
    prefix: str
    shards: int

    @property
    def raw(self) -> str:
        return f"{self.prefix}._raw"

    @property
    def state(self) -> str:
        return f"{self.prefix}._state"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}._dead_letter"

    def output(self, type_: EventType) -> str:
        return f"{self.prefix}.{type_.value}"

    @property
    def outputs(self) -> list[str]:
        return [self.output(t) for t in EventType]

    @classmethod
    def from_config(cls, kafka: KafkaConfig) -> Topics:
        return cls(kafka.topic_prefix, kafka.shards)


_partitioner = DefaultPartitioner()


def account_key(provider: str, account: str) -> bytes:
    return f"{provider}/{account}".encode("utf-8")


def shard_of(provider: str, account: str, shards: int) -> int:
    """The shard (partition of `_raw` and `_state`) that owns an account: Kafka's default
    partitioner (murmur2 of the key), as any producer of `_raw` would choose it."""
    key = account_key(provider, account)
    return _partitioner(key, list(range(shards)), list(range(shards)))


def event_record(topics: Topics, event: StatusEvent) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    """(topic, key, value, headers) of one output event."""
    return topics.output(event.type), event.key, event.encode(), event.headers


def dead_letter_record(
    *,
    provider: str,
    account: str,
    reason: str,
    body: bytes,
    content_type: str,
    received_at: datetime,
    source: str,
    part: str = "record",
    request_headers: Iterable[tuple[str, bytes]] = (),
) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of a dead letter. The raw bytes travel as the record value, untouched;
    what we know about them travels in headers so a replay tool can re-post the body as is.
    `part` says what the value is: a whole webhook `body` as received (re-post it with its
    content-type and the `request-` headers) or one split `record` (JSON)."""
    headers = [
        ("provider", provider.encode()),
        ("account", account.encode()),
        ("reason", reason.encode()),
        ("content-type", content_type.encode()),
        ("received_at", rfc3339(received_at).encode()),
        ("source", source.encode()),
        ("part", part.encode()),
        *((f"request-{name}", value) for name, value in request_headers),
    ]
    return account_key(provider, account), body, headers


RAW_VERSION = 1


def raw_record(kind: str, provider: str, account: str, received_at: datetime, **fields: Any) -> bytes:
    """The value of one `_raw` record: a webhook record, a sent message, or a backfilled poll page,
    each processed by the shard that owns the account."""
    return orjson.dumps({"v": RAW_VERSION, "kind": kind, "provider": provider, "account": account,
                         "received_at": int(received_at.timestamp() * 1000), **fields})


def producer_settings(kafka: KafkaConfig, **extra: Any) -> dict[str, Any]:
    """Durable, idempotent producer settings shared by every producer of the worker."""
    return {
        **kafka.client_kwargs(),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "request_timeout_ms": int(kafka.produce_timeout_secs * 1000),
        **extra,
    }


async def ensure_topics(kafka: KafkaConfig, *, with_outputs: bool = True) -> None:
    """Create missing topics; refuse an existing `_raw`/`_state` with the wrong partition count."""
    topics = Topics.from_config(kafka)
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        replication, partitions = kafka.replication_factor, kafka.output_partitions
        if -1 in (replication, partitions):
            # aiokafka cannot ask for "the broker's default"; read the defaults and use them.
            broker = str(admin._client.cluster.brokers().pop().nodeId)
            defaults = await describe_config(admin, ConfigResourceType.BROKER, broker)
            if replication == -1:
                replication = int(defaults.get("default.replication.factor", 1))
            if partitions == -1:
                partitions = int(defaults.get("num.partitions", 1))
        wanted: list[NewTopic] = [
            NewTopic(topics.raw, kafka.shards, replication),
            NewTopic(topics.state, kafka.shards, replication,
                     topic_configs={"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}),
            NewTopic(topics.dead_letter, partitions, replication),
        ]
        if with_outputs:
            wanted += [NewTopic(t, partitions, replication) for t in topics.outputs]
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another replica created them first
        await _check_partitions(admin, topics, kafka.shards)
    finally:
        await admin.close()


async def describe_config(admin: AIOKafkaAdminClient, kind: ConfigResourceType, name: str) -> dict[str, str]:
    """The current configuration of one broker or topic, as a plain dict."""
    responses = await admin.describe_configs([ConfigResource(kind, name, configs=None)])
    return {entry[0]: entry[1] for response in responses for res in response.resources for entry in res[4]}


async def _check_partitions(admin: AIOKafkaAdminClient, topics: Topics, shards: int) -> None:
    for attempt in range(20):  # freshly created topics take a moment to show their partitions
        described = {d["topic"]: d for d in await admin.describe_topics([topics.raw, topics.state])}
        counts = {name: len(d.get("partitions") or []) for name, d in described.items()}
        if all(counts.get(name) for name in (topics.raw, topics.state)):
            break
        await asyncio.sleep(0.1 * (attempt + 1))
    wrong = {name: n for name, n in counts.items() if n != shards}
    if wrong:
        detail = ", ".join(f"{name} has {n}" for name, n in sorted(wrong.items()))
        raise TopicLayoutError(
            f"kafka.shards is {shards} but {detail} partition(s). Shards are fixed for the life of "
            f"these topics: set kafka.shards to the existing count, or use a new kafka.topic_prefix."
        )


class EventProducer:
    """Idempotent, acks=all producer of output events (no transaction): a send counts once acked."""

    def __init__(self, kafka: KafkaConfig) -> None:
        self.topics = Topics.from_config(kafka)
        self._producer = AIOKafkaProducer(**producer_settings(kafka))

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, events: Iterable[StatusEvent]) -> None:
        futures = []
        for event in events:
            topic, key, value, headers = event_record(self.topics, event)
            futures.append(await self._producer.send(topic, value, key=key, headers=headers))
        await asyncio.gather(*futures)
