import pytest
from aiokafka import AIOKafkaProducer

from worker.emit import Topics, account_key, batch_with, shard_of
from worker.model import EventType


@pytest.mark.parametrize(("provider", "account", "shard"), [
    # computed with Kafka's Java client: Utils.toPositive(Utils.murmur2(key)) % 12
    ("sendcloud", "cn-main", 11), ("engagelab", "engagelab-demo", 0), ("tencent_ses", "tencent-demo", 11),
    ("unisender", "unisender-demo", 5), ("aurora_sendcloud", "aurora-demo", 5),
])
def test_shard_of_matches_kafkas_java_partitioner(provider, account, shard):
    assert shard_of(provider, account, 12) == shard


def test_topic_names():
    topics = Topics("email.status", 12)
    assert topics.raw == "email.status._raw" and topics.state == "email.status._state"
    assert topics.dead_letter == "email.status._dead_letter"
    assert topics.output(EventType.SOFT_BOUNCE) == "email.status.soft_bounce"
    assert len(topics.outputs) == 5
    assert account_key("sendcloud", "cn-main") == b"sendcloud/cn-main"


async def test_a_record_past_the_batch_size_gets_a_batch_of_its_own() -> None:
    # a real (unstarted) aiokafka producer: its builders are what Batches and Gathered fill
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", max_batch_size=1024)
    try:
        builder = batch_with(producer, b"k", b"x" * 5000, [("event_type", b"delivered")])
        assert builder.record_count() == 1 and builder.size() > 5000
        # full: the next record is refused, and the caller opens another batch for it
        assert builder.append(timestamp=None, key=b"k2", value=b"y", headers=[]) is None
        small = batch_with(producer, None, b"y", [])
        assert small.append(timestamp=None, key=b"k3", value=b"z", headers=[]) is not None
        assert small.record_count() == 2
    finally:
        await producer.stop()
