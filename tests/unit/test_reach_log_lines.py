"""What `worker.reach` logs while writes fail between good probes (Kafka audit and review of
2026-12-06): two of three brokers down leave every partition a leader, so each probe succeeds and
each write fails; the log said nothing at first, then a pair of lines a probe (~1,440 an hour).
Now: one "kafka unreachable" naming the failed write, one "kafka reachable" once a whole probe
interval passed with no write failing. The probe's answer (`_ask`) and the writer's failure time
are the seams; no Kafka."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

from worker.configtypes import KafkaConfig
from worker.reach import WRITE_FAILED, Reach


class Scripted(Reach):
    """Reach whose probe answers come from a list."""

    def __init__(self, answers: list[str | None]) -> None:
        super().__init__(KafkaConfig(bootstrap_servers="k:9092"), SimpleNamespace(failed_at=0.0))
        self.answers = answers

    async def _ask(self) -> str | None:
        return self.answers.pop(0)


def lines(caplog) -> list[tuple[str, str]]:
    return [(r.getMessage(), r.problem) for r in caplog.records if r.name == "worker.reach"]


async def test_writes_failing_between_good_probes_log_once_each_way(caplog):
    caplog.set_level(logging.INFO, logger="worker.reach")
    reach = Scripted([None] * 7)
    await reach.probe()                       # start: good
    await reach.probe()                       # a whole interval good: "reachable"
    assert lines(caplog) == [("kafka reachable", "")]
    for _ in range(3):                        # a write fails before each of three good probes
        reach.writer.failed_at = time.monotonic()
        await reach.probe()
        assert reach.snapshot()["reachable"] is True     # ready between probes, as the runbook says
    assert lines(caplog) == [("kafka reachable", ""), ("kafka unreachable", WRITE_FAILED)]
    await reach.probe()                       # no write failed since the last probe
    await reach.probe()
    assert lines(caplog) == [("kafka reachable", ""), ("kafka unreachable", WRITE_FAILED), ("kafka reachable", "")]


async def test_a_probe_that_fails_is_logged_with_its_problem(caplog):
    caplog.set_level(logging.INFO, logger="worker.reach")
    reach = Scripted([None, None, "no metadata: kafka", "no metadata: kafka", None, None])
    for _ in range(6):
        await reach.probe()
    assert lines(caplog) == [("kafka reachable", ""), ("kafka unreachable", "no metadata: kafka"),
                             ("kafka reachable", "")]


def test_the_status_names_a_failed_write():
    reach = Scripted([])
    reach.ok, reach.problem, reach.checked_at = True, "", 10.0   # as a good probe at 10 s leaves it
    reach.writer.failed_at = 11.0
    assert reach.snapshot() == {"reachable": False, "problem": WRITE_FAILED, "write_failed_since_probe": True}
