"""Where records go in Kafka: topic names, keys and partitions, producer settings, topic creation.

Output events go to `<prefix>.<type>`, keyed by the lower-cased recipient. Internal topics:
`<prefix>._raw` (worker.raw records, key `provider/account`), `<prefix>._state` (worker.state:
the compacted changelog of dedup entries, poll cursors and tracked ids), `<prefix>._dead_letter`
(worker.deadletter). `_raw` and `_state` share the partition count P = `kafka.shards`, so an
account's shard has one number in both (an account with `spread` > 1 has several: an email's
records all go to the one `shard_of_email` names). Keyed records go where Kafka's default partitioner puts
them (`partition_of`: the Java client's murmur2), whichever producer writes them.
"""

from __future__ import annotations

import asyncio
import functools
import struct
import zlib
from typing import Any

import attrs
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    CorruptRecordException,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
)

from worker.config import KafkaConfig
from worker.errors import KAFKA, TIMEOUT, TopicLayoutError, error_type_of
from worker.kafka_tls import client_kwargs
from worker.model import EventType, StatusEvent


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


_M = 0x5BD1E995


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's `Utils.murmur2`, seed 0x9747b28c) as an unsigned 32-bit
    value: aiokafka's, with the 4-byte words unpacked in one step (half its time per key)."""
    length = len(data)
    h = 0x9747B28C ^ length
    whole = length & ~3
    for (k,) in struct.iter_unpack("<I", data[:whole]):
        k = (k * _M) & 0xFFFFFFFF
        k ^= k >> 24
        h = ((h * _M) ^ (k * _M)) & 0xFFFFFFFF
    tail = length & 3
    if tail:
        if tail == 3:
            h ^= data[whole + 2] << 16
        if tail >= 2:
            h ^= data[whole + 1] << 8
        h = ((h ^ data[whole]) * _M) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * _M) & 0xFFFFFFFF
    return h ^ (h >> 15)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a keyed record (`toPositive(murmur2) % n`)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions

# The largest dead letter: a whole webhook body (http.max_body_bytes is at most 4 MiB) and headers.
DEAD_LETTER_MAX_BYTES = 8 << 20


def account_key(provider: str, account: str) -> bytes:
    return f"{provider}/{account}".encode()


@functools.cache   # one entry per configured account: murmur2 in pure Python is not free
def shard_of(provider: str, account: str, shards: int) -> int:
    """The shard (partition of `_raw` and `_state`) that owns an account: Kafka's default
    partitioner (murmur2 of the key), as any producer of `_raw` would choose it. For an account
    spread over several shards (`accounts[].spread`) this is its home: where it is polled."""
    return partition_of(account_key(provider, account), shards)


def shards_of(provider: str, account: str, spread: int, shards: int) -> tuple[int, ...]:
    """Every shard an account's emails are decided on: its home and the `spread - 1` shards after
    it (wrapping), so that `spread` <= `shards` shards are always distinct."""
    home = shard_of(provider, account, shards)
    return tuple((home + k) % shards for k in range(spread))


def shard_of_email(provider: str, account: str, email_id: str, spread: int, shards: int) -> int:
    """The shard that decides one email of an account: every status of it, from a webhook or a
    poll, on any replica, so that its dedup entry lives in one place. An account of `spread` 1 has
    one shard; else the email's CRC-32 (of its UTF-8 id) modulo `spread` picks one of `shards_of`."""
    home = shard_of(provider, account, shards)
    if spread == 1:
        return home
    return (home + zlib.crc32(email_id.encode("utf-8", "surrogatepass")) % spread) % shards


def event_record(topics: Topics, event: StatusEvent) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    """(topic, key, value, headers) of one output event."""
    return topics.output(event.type), event.key, event.encode(), event.headers


def batch_with(producer: Any, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> Any:
    """A new aiokafka batch (`producer.create_batch()`) holding this record: the batch for a record
    the open one refused. An empty batch takes any record whole (aiokafka lets the first exceed
    the batch size), so a refusal here is a bug, not a full batch."""
    builder = producer.create_batch()
    if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
        raise AssertionError("an empty batch refused a record")
    return builder


def producer_settings(kafka: KafkaConfig, **extra: Any) -> dict[str, Any]:
    """Durable, idempotent producer settings shared by every producer of the worker."""
    return {
        **client_kwargs(kafka),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        # dead letters keep a whole webhook body (http.max_body_bytes, at most 4 MiB) with its headers
        "max_request_size": DEAD_LETTER_MAX_BYTES,
        "request_timeout_ms": int(kafka.produce_timeout_secs * 1000),
        **extra,
    }


async def ensure_topics(kafka: KafkaConfig, *, with_outputs: bool = True) -> None:
    """Create missing topics; refuse existing ones the worker cannot rely on: `_raw`/`_state` with
    the wrong partition count, a `_state` that is not compacted (restores would read every record
    ever written, then lose the old ones to retention), topics with another replication factor
    than `kafka.replication_factor` sets."""
    topics = Topics.from_config(kafka)
    admin = AIOKafkaAdminClient(**client_kwargs(kafka))
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
            NewTopic(topics.dead_letter, partitions, replication,
                     topic_configs={"max.message.bytes": str(DEAD_LETTER_MAX_BYTES)}),
        ]
        if with_outputs:
            wanted += [NewTopic(t, partitions, replication) for t in topics.outputs]
        missing = [t for t in wanted if t.name not in existing]
        created: set[str] = set()
        if missing:
            try:
                response = await admin.create_topics(missing)
                # per topic: (name, error code, ...); 0 is "created now", 36 "already exists"
                created = {entry[0] for entry in getattr(response, "topic_errors", ()) if entry[1] == 0}
            except TopicAlreadyExistsError:
                pass  # another replica created them first
        await _check_partitions(admin, topics, kafka.shards)
        # every topic but those this call created as wanted: another replica (or a stale metadata
        # view) may have created one a moment ago; and a broker that has not caught up with a topic
        # just created answers with the defaults
        await _check_settings(admin, topics, kafka.replication_factor,
                              [t.name for t in wanted if t.name not in created])
    finally:
        await admin.close()


async def describe_config(admin: AIOKafkaAdminClient, kind: ConfigResourceType, name: str) -> dict[str, str]:
    """The current configuration of one broker or topic, as a plain dict."""
    responses = await admin.describe_configs([ConfigResource(kind, name, configs=None)])
    return {entry[0]: entry[1] for response in responses for res in response.resources for entry in res[4]}


async def _check_settings(admin: AIOKafkaAdminClient, topics: Topics, replication: int, existed: list[str]) -> None:
    """Refuse, with what to change, a topic the worker cannot rely on."""
    problems = []
    if topics.state in existed:
        policy = (await describe_config(admin, ConfigResourceType.TOPIC, topics.state)).get("cleanup.policy", "")
        if "compact" not in policy.split(","):
            problems.append(f"{topics.state} has cleanup.policy={policy or 'delete'}; it must be compacted "
                            f"(kafka-configs.sh --alter --entity-type topics --entity-name {topics.state} "
                            f"--add-config cleanup.policy=compact)")
    if replication != -1 and existed:
        for d in await admin.describe_topics(existed):
            counts = {len(p.get("replicas") or []) for p in d.get("partitions") or []}
            if counts and counts != {replication}:
                problems.append(f"{d['topic']} has replication factor {sorted(counts)} but kafka.replication_factor "
                                f"is {replication}: reassign its partitions, or set kafka.replication_factor to match")
    if problems:
        raise TopicLayoutError("; ".join(problems))


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


# Kafka refuses one of the batch's records: replaying the batch fails the same way (worker.breaker).
RECORD_ERRORS = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError, CorruptRecordException)


def about_a_record(exc: BaseException) -> bool:
    """A failure that lies in a record (Kafka refused it, or building it raised), not in Kafka."""
    return isinstance(exc, RECORD_ERRORS) or not isinstance(exc, (KafkaError, TimeoutError))


def outcome_not_news(fut: asyncio.Future) -> None:
    """A done-callback for send futures whose failure the caller already reported another way (the
    first one raised, or the transaction failed): retrieves the outcome so asyncio does not log it."""
    if not fut.cancelled():
        fut.exception()


def kafka_error_type(exc: BaseException) -> str:
    if isinstance(exc, (KafkaTimeoutError, asyncio.TimeoutError)):
        return TIMEOUT
    if isinstance(exc, KafkaError):
        return KAFKA
    return error_type_of(exc)
