"""scripts/kafka.py (make kafka-up / kafka-down): a usable broker, and nothing left behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.harness import ROOT

pytestmark = pytest.mark.integration


def script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "kafka.py"), *args],
                          capture_output=True, text=True, timeout=180)


def broker_processes(state: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-af", "kafka.Kafka"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(state) in line]


async def test_up_prints_a_bootstrap_address_clients_can_use_and_down_leaves_nothing(tmp_path):
    state = tmp_path / "broker"
    up = script("up", "--dir", str(state))
    assert up.returncode == 0, up.stderr
    bootstrap = up.stdout.strip()
    assert bootstrap.startswith("127.0.0.1:") and bootstrap.rsplit(":", 1)[1].isdigit()
    try:
        assert script("status", "--dir", str(state)).stdout.strip() == bootstrap
        assert len(broker_processes(state)) == 1
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic("probe", 1, 1)])
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        await producer.send_and_wait("probe", b"hello")
        await producer.stop()
        consumer = AIOKafkaConsumer("probe", bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        record = await consumer.getone()
        await consumer.stop()
        assert record.value == b"hello"
    finally:
        down = script("down", "--dir", str(state))
    assert down.returncode == 0, down.stderr
    assert broker_processes(state) == []
    assert script("status", "--dir", str(state)).returncode == 1
