"""Can this replica write to Kafka right now? The answer behind `/readyz`.

Webhook intake needs only one thing from Kafka: a producer whose writes to `_raw` land. The
producer object alone cannot say so (aiokafka keeps it "started" while every broker is down), so a
probe asks the cluster, every PROBE_EVERY_SECS, for fresh metadata (one MetadataRequest to any
broker the client knows) and checks that every `_raw` partition has a leader. A write that failed
since the last good probe also counts: the replica is unready until a probe succeeds again (a
failed write alone cannot keep it unready for good, since an unready pod gets no more traffic to
prove itself with). Metadata alone cannot see every outage: with two of three brokers gone (a
KRaft quorum lost, or partitions below `min.insync.replicas`) the survivor still names leaders, so
the probe finds nothing and only the failed writes say it; readiness then flickers between probes
and writes (docs/runbook.md, "Kafka unavailable"), and `/status` names the failed write as the
problem (it said none: Kafka audit of 2026-12-06).

Shard restores are not part of readiness (issue 12; DESIGN.md said otherwise): after a rebalance
every replica may be restoring at once, and a Service with no ready endpoint would refuse the
webhooks that need nothing but the producer. Restores are reported on `/status` and in
`esw_shards_restoring`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka.structs import TopicPartition

from worker import metrics
from worker.config import KafkaConfig
from worker.emit import Topics, kafka_error_type
from worker.intake import RawWriter

log = logging.getLogger("worker.reach")

PROBE_EVERY_SECS = 5.0       # while reachable; 1 s while not, so that recovery shows at once
PROBE_UNREACHABLE_SECS = 1.0
WRITE_FAILED = ("a write to _raw failed since the last probe (every partition has a leader: NotEnoughReplicas, "
                "a controller quorum lost, or a timeout)")


class Reach:
    def __init__(self, kafka: KafkaConfig, writer: RawWriter) -> None:
        self.topic = Topics.from_config(kafka).raw
        self.shards = kafka.shards
        self.timeout = kafka.produce_timeout_secs
        self.writer = writer
        self.ok = False
        self.checked_at = 0.0      # monotonic time of the last probe that succeeded
        self.problem = "not probed yet"
        self.logged = False        # the reachability last logged (a change is logged once)
        self._task: asyncio.Task | None = None

    @property
    def reachable(self) -> bool:
        return self.ok and self.writer.failed_at <= self.checked_at

    async def start(self) -> None:
        await self.probe()
        self._task = asyncio.create_task(self._run(), name="kafka-reach")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def probe(self) -> bool:
        """Ask, and log a change: unreachable at once (with the probe's problem, or the failed write
        since the last probe), reachable again only once a whole probe interval passed with no write
        failing (while writes fail between good probes, one line, not two a probe)."""
        steady = self.reachable   # no write failed since the last good probe
        if not steady and self.logged:
            self._log(WRITE_FAILED)
        problem = await self._ask()
        self.ok = problem is None
        self.problem = problem or ""
        if self.ok:
            self.checked_at = time.monotonic()
        metrics.kafka_reachable(self.reachable)
        if not self.reachable and self.logged:
            self._log(self.problem)
        elif self.reachable and steady and not self.logged:
            self._log("")
        return self.ok

    def _log(self, problem: str) -> None:
        self.logged = not self.logged
        log.log(logging.INFO if self.logged else logging.WARNING,
                "kafka reachable" if self.logged else "kafka unreachable", extra={"problem": problem})

    async def _ask(self) -> str | None:
        try:
            cluster = await asyncio.wait_for(self.writer.producer.client.fetch_all_metadata(), self.timeout)
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable", named by type
            return f"no metadata: {kafka_error_type(exc)}"
        leaders = [cluster.leader_for_partition(TopicPartition(self.topic, p)) for p in range(self.shards)]
        leaderless = [leader for leader in leaders if leader is None or leader < 0]
        if leaderless:
            return f"{len(leaderless)} of {self.shards} {self.topic} partitions have no leader"
        return None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(PROBE_EVERY_SECS if self.reachable else PROBE_UNREACHABLE_SECS)
            await self.probe()

    def snapshot(self) -> dict:
        reachable = self.reachable
        return {"reachable": reachable, "problem": self.problem or (None if reachable else WRITE_FAILED),
                "write_failed_since_probe": self.writer.failed_at > self.checked_at}
