"""Reading topics back in integration tests, as a downstream consumer would (read_committed)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition


async def read_all(bootstrap: str, topics: list[str], *, timeout: float = 10.0, expect: int | None = None,
                   quiet_secs: float = 1.0, **client: Any) -> list:
    """Every committed record of `topics`, from the beginning. Stops when `expect` records arrived
    (then waits `quiet_secs` more to catch extras) or when nothing new came for `quiet_secs`.
    `client`: more consumer options (TLS, SASL)."""
    consumer = AIOKafkaConsumer(**{"bootstrap_servers": bootstrap, **client}, isolation_level="read_committed",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = []
        for topic in topics:
            for _ in range(50):
                parts = consumer.partitions_for_topic(topic)
                if parts:
                    break
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.1)
            partitions += [TopicPartition(topic, p) for p in sorted(parts or [])]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_new = loop.time()
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            got = [r for rs in batch.values() for r in rs]
            if got:
                records += got
                last_new = loop.time()
            elif expect is None and loop.time() - last_new >= quiet_secs:
                break
            if expect is not None and len(records) >= expect and loop.time() - last_new >= quiet_secs:
                break
        return records
    finally:
        await consumer.stop()
