"""Clients for the brokers of scripts/kafka.py with TLS, SASL and several nodes: options built from
connection.json as any client would build them, one record in and out, a partition's leader."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

from tests.integration.harness import ROOT


def kafka_script():
    spec = importlib.util.spec_from_file_location("esw_kafka_cluster_script", ROOT / "scripts" / "kafka.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def client_options(connection: dict, listener: str, mechanism: str | None = None, **overrides: Any) -> dict:
    """aiokafka keyword arguments for one listener of connection.json (`overrides` replace any)."""
    entry = connection["listeners"][listener]
    options: dict[str, Any] = {"bootstrap_servers": entry["bootstrap_servers"],
                               "security_protocol": entry["security_protocol"], "request_timeout_ms": 10000}
    if "ca_file" in entry:
        options["ssl_context"] = create_ssl_context(cafile=entry["ca_file"], certfile=entry.get("cert_file"),
                                                    keyfile=entry.get("key_file"), password=entry.get("key_password"))
    if mechanism is not None:
        options.update(sasl_mechanism=mechanism, sasl_plain_username=entry["username"],
                       sasl_plain_password=entry["password"])
    options.update(overrides)
    return options


async def create_topic(topic: str, partitions: int = 1, replicas: int = 1, **options: Any) -> None:
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, replicas)])
    finally:
        await admin.close()


async def produce(topic: str, *values: bytes, **options: Any) -> None:
    """Send each value to partition 0 with acks=all, waiting for each (at most a minute in all)."""
    producer = AIOKafkaProducer(acks="all", **options)
    await producer.start()
    try:
        for value in values:
            await asyncio.wait_for(producer.send_and_wait(topic, value, partition=0), 60)
    finally:
        await producer.stop()


async def read(topic: str, count: int, within: float = 30.0, **options: Any) -> list[bytes]:
    """The first `count` values of partition 0 (fewer when `within` seconds run out first)."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **options)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        values: list[bytes] = []
        deadline = time.monotonic() + within
        while len(values) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(partition, timeout_ms=500)
            values += [record.value for record in batch.get(partition, [])]
        return values
    finally:
        await consumer.stop()


async def partition_zero(bootstrap: str, topic: str) -> dict:
    """{"leader", "replicas", "isr"} of the topic's partition 0 as a node of `bootstrap` sees it ({}
    while it does not know the topic)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    for partition in described["partitions"]:
        if partition["partition"] == 0:
            return {"leader": partition["leader"], "replicas": sorted(partition["replicas"]),
                    "isr": sorted(partition["isr"])}
    return {}  # the node does not know the topic yet


async def eventually(probe: Callable[[], Awaitable[Any]], accept: Callable[[Any], bool], within: float = 30.0) -> Any:
    """Call `probe` until `accept` takes its result; the last result either way (after `within` s)."""
    deadline = time.monotonic() + within
    while True:
        try:
            result = await probe()
        except (TimeoutError, KafkaError, OSError) as exc:  # a node gone or not caught up yet
            result = exc
        if accept(result) or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.25)


def process_gone(pid: int) -> bool:
    """No such process, or only its zombie entry (no thread of it runs)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    return fields.get("State", "").startswith("Z") and fields.get("Threads", "").strip() == "1"
