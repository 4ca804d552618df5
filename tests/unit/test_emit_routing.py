import pytest

from worker.emit import Topics, account_key, shard_of
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
