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


def test_a_cluster_id_that_starts_with_a_dash_is_not_taken_for_an_option(tmp_path, monkeypatch):
    """A random cluster id begins with '-' once in 64: the storage tool must not read it as a flag
    (it used to fail `up` then, and with it a whole CI run)."""
    import base64
    import importlib.util
    import uuid

    spec = importlib.util.spec_from_file_location("kafka_script_dash", ROOT / "scripts" / "kafka.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dash = uuid.UUID(bytes=base64.urlsafe_b64decode("-HFJdAm1SU6RhDquKNFwxw=="))
    monkeypatch.setattr(module.uuid, "uuid4", lambda: dash)
    state = tmp_path / "dash"
    try:
        bootstrap = module.up(state)
        assert bootstrap.startswith("127.0.0.1:")
    finally:
        module.down(state)
    assert broker_processes(state) == []
