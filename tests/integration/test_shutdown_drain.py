"""SIGTERM while a webhook's body is still arriving (config audit of 2026-12-06). aiohttp's own
shutdown closes every connection first and reads nothing more from them, so such a request was
never answered: the connection closed after the requests' share of the grace, no status, no log
line, although `shutdown.grace_secs` promises the requests in progress their share. Now the worker
answers them first (readiness false meanwhile), then stops. A real worker process and broker."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import orjson
import pytest

from tests.integration.harness import WorkerProcess, worker_config
from tests.integration.kafka_utils import read_all
from tests.integration.test_webhooks import ENV, accounts, sendcloud_form

pytestmark = pytest.mark.integration


async def ready_status(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as r:
        return r.status


async def upload_then_sigterm(worker: WorkerProcess, body: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A signed webhook's headers and its first 40 bytes, then SIGTERM 0.3 s later."""
    reader, writer = await asyncio.open_connection("127.0.0.1", worker.port)
    writer.write(f"POST /webhooks/sendcloud/sc HTTP/1.1\r\nHost: x\r\nContent-Type: "
                 f"application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:40])
    await writer.drain()
    await asyncio.sleep(0.3)
    worker.proc.send_signal(signal.SIGTERM)
    return reader, writer


async def test_a_body_still_arriving_at_sigterm_is_answered(kafka_bootstrap, topic_prefix, tmp_path):
    data = worker_config(kafka_bootstrap, topic_prefix, accounts())   # shutdown.grace_secs 10: 2 s for requests
    worker = WorkerProcess(data, ENV, tmp_path)
    await worker.start()
    try:
        await worker.ready()
        body = sendcloud_form("deliver", "m1$drain@x.test")
        reader, writer = await upload_then_sigterm(worker, body)
        await asyncio.sleep(0.5)
        readiness = asyncio.create_task(ready_status(worker.url))   # asked while the body is still due
        await asyncio.sleep(0.3)
        writer.write(body[40:])             # the rest, 0.8 s after the signal
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        assert status_line.startswith(b"HTTP/1.1 200"), (status_line, worker.log_tail())
        assert await readiness == 503       # not ready while it answers what is in progress
        assert await asyncio.wait_for(worker.proc.wait(), 30) == 0
        # answered 200, so in `_raw`: decided by this worker before it stopped, or by its successor
        await worker.start()
        [event] = await read_all(kafka_bootstrap, [f"{topic_prefix}.delivered"], expect=1, timeout=90)
        assert orjson.loads(event.value)["email_id"] == "m1$drain@x.test"
    finally:
        await worker.kill()


async def test_a_second_signal_stops_waiting_and_the_rest_unwinds(kafka_bootstrap, topic_prefix, tmp_path):
    """The second SIGTERM ends the drain at once; the pipeline still unwinds and the process exits 0
    (review of 2026-12-06: the drain left running raised again inside aiohttp's cleanup: exit 1, the
    shards' commits and the producer's flush cut off)."""
    data = worker_config(kafka_bootstrap, topic_prefix, accounts())
    worker = WorkerProcess(data, ENV, tmp_path)
    await worker.start()
    try:
        await worker.ready()
        _, writer = await upload_then_sigterm(worker, sendcloud_form("deliver", "m1$twice@x.test"))   # never finished
        await asyncio.sleep(0.3)
        worker.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.proc.wait(), 30) == 0, worker.log_tail()
        writer.close()
        assert '"event":"stopped"' in worker.log_path.read_text()
    finally:
        await worker.kill()
