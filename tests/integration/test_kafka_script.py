"""scripts/kafka.py (make kafka-up / kafka-down): a usable broker, and nothing left behind."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError
from aiokafka.helpers import create_ssl_context

from tests.integration.harness import ROOT
from tests.integration.kafka_cluster import (
    client_options,
    create_topic,
    eventually,
    kafka_script,
    partition_zero,
    process_gone,
    produce,
    read,
)

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


# --- TLS and SASL listeners: one broker with every kind, started and stopped by the CLI ---------

SASL = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    state = tmp_path_factory.mktemp("secured") / "broker"
    up = script("up", "--dir", str(state), "--listeners", "plaintext,ssl,sasl_ssl")
    assert up.returncode == 0, up.stderr
    try:
        assert up.stderr.splitlines()[-1] == f"kafka.py: connection details in {state / 'connection.json'}"
        yield state, up.stdout.strip()
    finally:
        down = script("down", "--dir", str(state))
    assert down.returncode == 0, down.stderr
    assert broker_processes(state) == []


def test_up_with_tls_listeners_tells_clients_everything_in_connection_json(secured):
    state, bootstrap = secured
    conn = json.loads((state / "connection.json").read_text())
    assert stat.S_IMODE((state / "connection.json").stat().st_mode) == 0o600
    assert kafka_script().connection(state) == conn
    assert json.loads(script("connection", "--dir", str(state)).stdout) == conn
    assert conn["bootstrap_servers"] == bootstrap and conn["brokers"] == 1
    assert list(conn["listeners"]) == ["plaintext", "ssl", "sasl_ssl"]
    plain, ssl_, sasl = (conn["listeners"][name] for name in ("plaintext", "ssl", "sasl_ssl"))
    assert plain == {"bootstrap_servers": bootstrap, "security_protocol": "PLAINTEXT"}
    tls = state / "tls"
    assert ssl_ == {"bootstrap_servers": ssl_["bootstrap_servers"], "security_protocol": "SSL",
                    "ca_file": str(tls / "ca.pem"), "cert_file": str(tls / "client.crt"),
                    "key_file": str(tls / "client.key"), "key_password": ssl_["key_password"]}
    assert sasl == {"bootstrap_servers": sasl["bootstrap_servers"], "security_protocol": "SASL_SSL",
                    "ca_file": str(tls / "ca.pem"), "sasl_mechanisms": list(SASL), "username": "esw",
                    "password": sasl["password"]}
    assert len(ssl_["key_password"]) == 32 and len(sasl["password"]) == 32
    addresses = [bootstrap, ssl_["bootstrap_servers"], sasl["bootstrap_servers"]]
    assert len(set(addresses)) == 3 and all(a.startswith("127.0.0.1:") for a in addresses)
    assert (tls / "client.key").read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert not (tls / "ca.key").exists()  # nothing more is ever signed by the throwaway CA
    assert sorted(p.name for p in tls.iterdir()) == ["ca.pem", "client.crt", "client.key", "server.crt", "server.pem"]


@pytest.mark.parametrize(("listener", "mechanism"),
                         [("ssl", None), ("sasl_ssl", "PLAIN"), ("sasl_ssl", "SCRAM-SHA-256"),
                          ("sasl_ssl", "SCRAM-SHA-512")])
async def test_a_record_goes_through_each_secured_listener(secured, listener, mechanism):
    state, _ = secured
    options = client_options(kafka_script().connection(state), listener, mechanism)
    topic = f"{listener}-{mechanism or 'cert'}"
    await create_topic(topic, **options)
    await produce(topic, b"over " + topic.encode(), **options)
    assert await read(topic, 1, **options) == [b"over " + topic.encode()]


async def refused(caplog, **options) -> str:
    """Start a producer that must not get in; what aiokafka logged about why."""
    producer = AIOKafkaProducer(**options)
    caplog.clear()
    try:
        with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
            await asyncio.wait_for(producer.start(), 30)
    finally:
        await producer.stop()
    return caplog.text


@pytest.mark.parametrize("mechanism", SASL)
async def test_a_wrong_sasl_password_is_refused(secured, caplog, mechanism):
    options = client_options(kafka_script().connection(secured[0]), "sasl_ssl", mechanism,
                             sasl_plain_password="not-the-password")
    assert "[Error 58] SaslAuthenticationFailed: Authentication failed" in await refused(caplog, **options)


@pytest.mark.parametrize("listener", ["ssl", "sasl_ssl"])
async def test_a_client_without_the_ca_is_refused(secured, caplog, listener):
    conn = kafka_script().connection(secured[0])
    client = conn["listeners"]["ssl"]
    no_ca = create_ssl_context(certfile=client["cert_file"], keyfile=client["key_file"],
                               password=client["key_password"])
    options = client_options(conn, listener, "SCRAM-SHA-512" if listener == "sasl_ssl" else None, ssl_context=no_ca)
    assert "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed" in await refused(caplog, **options)


async def test_the_ssl_listener_wants_a_client_certificate(secured, caplog):
    conn = kafka_script().connection(secured[0])
    options = client_options(conn, "ssl", ssl_context=create_ssl_context(cafile=conn["listeners"]["ssl"]["ca_file"]))
    logged = await refused(caplog, **options)
    assert f'Unable connect to "{conn["nodes"]["1"]["ssl"]}"' in logged


# --- a three-node cluster: kill -9 a partition leader, a new one takes over, the node comes back --

async def test_a_three_node_cluster_survives_kill_9_of_a_partition_leader(tmp_path):
    kafka = kafka_script()
    state = tmp_path / "cluster"
    started = time.monotonic()
    bootstrap = kafka.up(state, brokers=3, listeners=("ssl",))
    timings = {"up": time.monotonic() - started}
    pids = kafka.node_pids(state)
    try:
        addresses = dict(zip((1, 2, 3), bootstrap.split(","), strict=True))
        assert sorted(pids) == [1, 2, 3] and len(set(pids.values())) == 3
        assert len(broker_processes(state)) == 3
        status = script("status", "--dir", str(state))
        assert status.returncode == 0
        assert status.stdout.splitlines() == [
            bootstrap,
            f"node 1 {addresses[1]} pid {pids[1]} up",
            f"node 2 {addresses[2]} pid {pids[2]} up",
            f"node 3 {addresses[3]} pid {pids[3]} up",
        ]
        conn = kafka.connection(state)
        assert conn["brokers"] == 3 and conn["bootstrap_servers"] == bootstrap
        assert [conn["nodes"][str(n)]["plaintext"] for n in (1, 2, 3)] == list(addresses.values())
        await assert_cluster_settings(bootstrap)

        # the producer goes over TLS, to whichever node leads
        await create_topic("failover", 1, 3, bootstrap_servers=bootstrap)
        before = await eventually(lambda: partition_zero(bootstrap, "failover"),
                                  lambda p: isinstance(p, dict) and p.get("isr") == [1, 2, 3])
        assert before == {"leader": before["leader"], "replicas": [1, 2, 3], "isr": [1, 2, 3]}
        tls = client_options(conn, "ssl")
        await produce("failover", b"before", **tls)

        leader = before["leader"]
        survivors = sorted({1, 2, 3} - {leader})
        kafka.kill_node(state, leader, signal.SIGKILL)
        assert process_gone(pids[leader])
        assert sorted(kafka.node_pids(state)) == survivors
        status = script("status", "--dir", str(state))
        assert status.returncode == 1
        assert status.stdout.splitlines()[0] == "degraded"
        assert f"node {leader} {addresses[leader]} pid - down" in status.stdout.splitlines()

        started = time.monotonic()
        await produce("failover", b"after", **tls)  # acks=all: both survivors have it (min ISR 2)
        timings["failover"] = time.monotonic() - started
        alive = ",".join(addresses[n] for n in survivors)
        after = await eventually(lambda: partition_zero(alive, "failover"),
                                 lambda p: isinstance(p, dict) and p.get("isr") == survivors)
        assert after == {"leader": after["leader"], "replicas": [1, 2, 3], "isr": survivors}
        assert after["leader"] in survivors
        assert await read("failover", 2, bootstrap_servers=alive) == [b"before", b"after"]

        started = time.monotonic()
        assert kafka.start_node(state, leader) == addresses[leader]
        timings["restart"] = time.monotonic() - started
        pids = kafka.node_pids(state)
        assert sorted(pids) == [1, 2, 3]
        back = await eventually(lambda: partition_zero(bootstrap, "failover"),
                                lambda p: isinstance(p, dict) and p.get("isr") == [1, 2, 3])
        assert back["isr"] == [1, 2, 3]  # it caught up with "after", which it never saw
        assert await read("failover", 2, bootstrap_servers=addresses[leader]) == [b"before", b"after"]
        assert kafka.status(state) == bootstrap
    finally:
        started = time.monotonic()
        kafka.down(state)
        timings["down"] = time.monotonic() - started
    print("cluster timings:", {k: round(v, 1) for k, v in timings.items()})
    assert kafka.node_pids(state) == {}
    assert all(process_gone(pid) for pid in pids.values())
    assert broker_processes(state) == []
    assert kafka.status(state) is None
    assert script("status", "--dir", str(state)).stdout.splitlines()[0] == "down"


async def assert_cluster_settings(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "2")])
    finally:
        await admin.close()
    (resource,) = response.resources
    entries = {entry[0]: entry[1] for entry in resource[4]}
    wanted = {"default.replication.factor": "3", "min.insync.replicas": "2", "offsets.topic.replication.factor": "3",
              "transaction.state.log.replication.factor": "3", "transaction.state.log.min.isr": "2"}
    assert {key: entries[key] for key in wanted} == wanted
