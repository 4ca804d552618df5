"""`esw_kafka_reachable` drops with the first write Kafka does not take, as /readyz does (chaos
audit of 2026-12-06, finding 3: the gauge waited for the next probe, which with the broker frozen
takes `kafka.produce_timeout_secs` to fail, and stayed 1 for seconds while /readyz answered 503;
docs/metrics.md: "1 when the last probe ... and no write failed since"). Its own broker, frozen
with SIGSTOP, as in test_kafka_faults."""

from __future__ import annotations

import os
import signal

import aiohttp
import pytest

from tests.conftest import _kafka_script
from tests.integration.harness import InProcessWorker, wait_ready, worker_config
from tests.integration.test_webhooks import ENV, FORM, post, sendcloud_form

pytestmark = pytest.mark.integration

async def gauge_of(url: str, name: str) -> float | None:
    """An unlabelled gauge from /metrics (None when it is not there)."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as r:
        text = await r.text()
    return next((float(line.split()[1]) for line in text.splitlines() if line.split(" ")[0] == name), None)


ACCOUNTS = [{"name": "sc", "provider": "sendcloud", "poll": {"enabled": False},
             "credentials": {"api_user": "u", "api_key_env": "SC_API"}, "webhook": {"app_key_env": "SC_APP"}}]


async def test_the_gauge_and_readyz_drop_with_the_first_refused_write(tmp_path, topic_prefix):
    script = _kafka_script()
    state = tmp_path / "kafka"
    bootstrap = script.up(state)
    broker = int((state / "broker.pid").read_text())
    # a probe against the frozen broker fails only after produce_timeout_secs (20 s here)
    data = worker_config(bootstrap, topic_prefix, ACCOUNTS, shards=1, kafka={"produce_timeout_secs": 20})
    try:
        async with InProcessWorker(data, ENV) as w:
            await wait_ready(w.url)
            assert await gauge_of(w.url, "esw_kafka_reachable") == 1.0
            os.kill(broker, signal.SIGSTOP)
            try:
                async with aiohttp.ClientSession() as session:
                    status, _ = await post(session, f"{w.url}/webhooks/sendcloud/sc",
                                           sendcloud_form("deliver", "m1$someone@example.com"), FORM)
                    async with session.get(f"{w.url}/readyz") as r:
                        ready = r.status
                    async with session.get(f"{w.url}/status") as r:
                        problem = (await r.json())["kafka"]["problem"]
                gauge = await gauge_of(w.url, "esw_kafka_reachable")
            finally:
                os.kill(broker, signal.SIGCONT)
    finally:
        script.down(state)
    assert (status, ready, gauge) == (503, 503, 0.0)
    # and /status says why (it said nothing while every partition still had a leader: Kafka audit of
    # 2026-12-06, two of three brokers down)
    assert problem == ("a write to _raw failed since the last probe (every partition has a leader: "
                       "NotEnoughReplicas, a controller quorum lost, or a timeout)")
