"""The emit layer against the real broker: routing, keys, headers, schema, topic layout."""

import socket
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResourceType

from tests.integration.harness import WorkerProcess, worker_config
from tests.integration.kafka_utils import read_all
from tests.integration.test_webhooks import ENV, accounts
from tests.support import validate_event
from worker.config import KafkaConfig
from worker.emit import Topics, describe_config, ensure_topics, event_record, producer_settings
from worker.errors import TopicLayoutError
from worker.model import EventType, Observation, Provider, Reason, Scope, Source, StatusEvent

pytestmark = pytest.mark.integration
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def _events() -> list[StatusEvent]:
    out = []
    for i, type_ in enumerate(EventType):
        obs = Observation(email_id=f"id-{i}", recipient=f"Person{i}@Example.COM", type=type_,
                          reason=Reason.OTHER if type_ is not EventType.DELIVERED else None,
                          occurred_at=T0 + timedelta(seconds=i), provider_status=str(i),
                          scope=Scope.RECIPIENT if type_ is not EventType.DELIVERED else None)
        out.append(StatusEvent.from_observation(obs, provider=list(Provider)[i], account="acct",
                                                source=Source.POLL, observed_at=T0 + timedelta(minutes=1)))
    return out


async def test_events_of_every_type_reach_their_topic_schema_valid(kafka_bootstrap, topic_prefix):
    kafka = KafkaConfig(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, shards=4)
    await ensure_topics(kafka)
    topics = Topics.from_config(kafka)
    producer = AIOKafkaProducer(**producer_settings(kafka))
    await producer.start()
    try:
        events = _events()
        for event in events:   # routed exactly as a shard routes them
            topic, key, value, headers = event_record(topics, event)
            await producer.send(topic, value, key=key, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()

    records = await read_all(kafka_bootstrap, topics.outputs, expect=len(events))
    assert len(records) == len(events)
    by_id = {e.event_id: e for e in events}
    for record in records:
        body = orjson.loads(record.value)
        validate_event(body)
        event = by_id.pop(body["event_id"])
        assert record.topic == f"{topic_prefix}.{event.type.value}"
        assert record.key == event.recipient.encode() and record.key == record.key.lower()
        headers = dict(record.headers)
        assert headers["event_type"] == event.type.value.encode()
        assert headers["event_id"] == event.event_id.encode()
        assert headers["schema"] == b"status-event/v1"
        assert headers["content-type"] == b"application/json"
        assert StatusEvent.decode(record.value) == event
    assert by_id == {}


async def test_internal_topics_are_created_with_the_shard_count(kafka_bootstrap, topic_prefix):
    kafka = KafkaConfig(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, shards=5)
    await ensure_topics(kafka)
    await ensure_topics(kafka)  # idempotent
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        topics = Topics.from_config(kafka)
        described = {d["topic"]: d for d in await admin.describe_topics([topics.raw, topics.state])}
        assert len(described[topics.raw]["partitions"]) == 5
        assert len(described[topics.state]["partitions"]) == 5
        state_config = await describe_config(admin, ConfigResourceType.TOPIC, topics.state)
        assert state_config["cleanup.policy"] == "compact"
    finally:
        await admin.close()


async def test_wrong_partition_count_is_a_clear_startup_error(kafka_bootstrap, topic_prefix):
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{topic_prefix}._raw", 3, 1)])
    finally:
        await admin.close()
    kafka = KafkaConfig(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, shards=6)
    with pytest.raises(TopicLayoutError, match=rf"kafka.shards is 6 but {topic_prefix}._raw has 3 partition"):
        await ensure_topics(kafka)


async def create_uncompacted_state(bootstrap: str, prefix: str) -> None:
    """A `_state` topic made by hand with the default cleanup policy (delete), as a careless operator would."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{prefix}._state", 2, 1, topic_configs={"cleanup.policy": "delete"})])
    finally:
        await admin.close()


async def test_an_existing_state_topic_that_is_not_compacted_is_refused_with_what_to_change(kafka_bootstrap,
                                                                                            topic_prefix):
    kafka = KafkaConfig(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, shards=2)
    await create_uncompacted_state(kafka_bootstrap, topic_prefix)
    with pytest.raises(TopicLayoutError) as refused:
        await ensure_topics(kafka)
    assert f"{topic_prefix}._state has cleanup.policy=delete; it must be compacted" in str(refused.value)
    assert "--add-config cleanup.policy=compact" in str(refused.value)


async def test_an_existing_topic_with_another_replication_factor_is_refused(kafka_bootstrap, topic_prefix):
    await ensure_topics(KafkaConfig(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, shards=2))
    with pytest.raises(TopicLayoutError) as refused:   # the single test broker has one replica of each
        await ensure_topics(KafkaConfig(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, shards=2,
                                        replication_factor=3))
    assert f"{topic_prefix}._raw has replication factor [1] but kafka.replication_factor is 3" in str(refused.value)


async def test_a_worker_refused_its_topics_exits_2_with_one_line_that_says_what_to_change(kafka_bootstrap, topic_prefix,
                                                                                         tmp_path):
    await create_uncompacted_state(kafka_bootstrap, topic_prefix)
    worker = WorkerProcess(worker_config(kafka_bootstrap, topic_prefix, accounts(), shards=2), ENV, tmp_path)
    code, log = await worker.run_to_exit()
    errors = [line for line in map(orjson.loads, filter(lambda s: s.startswith("{"), log.splitlines()))
              if line["level"] == "error"]
    assert code == 2, log[-2000:]
    assert [(e["event"], e["error_type"]) for e in errors] == [("cannot start: topics", "topic_layout")]
    assert f"{topic_prefix}._state has cleanup.policy=delete; it must be compacted" in errors[0]["reason"]
    assert "Traceback" not in log


async def test_a_worker_whose_http_port_is_taken_exits_2_with_one_line_naming_it(kafka_bootstrap, topic_prefix, tmp_path):
    """Audit H: a busy port was a traceback (exit 1) after the worker had joined the group."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = WorkerProcess(worker_config(kafka_bootstrap, topic_prefix, accounts(), shards=2, port=port), ENV,
                               tmp_path)
        code, log = await worker.run_to_exit()
    errors = [line for line in map(orjson.loads, filter(lambda s: s.startswith("{"), log.splitlines()))
              if line["level"] == "error"]
    assert code == 2, log[-2000:]
    assert [(e["event"], e["error_type"]) for e in errors] == [("cannot start: http port", "fatal_config")]
    assert errors[0]["reason"].startswith(f"cannot listen on 127.0.0.1:{port}: ")
    assert "address already in use" in errors[0]["reason"]
    assert "Traceback" not in log
