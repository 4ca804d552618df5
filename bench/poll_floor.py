"""The floor under issue 14's CPU goals: the least an exactly-once date sweep does in this stack.

`POLL_FLOOR_API_KEY=... python -m bench.poll_floor ARGS_JSON` sweeps a SendCloud account's date windows, in one process on
asyncio's loop as the worker does, with nothing in it but what every poller of this design must do:

- the calls: form POSTs to `/apiv2/data/emailStatus` with aiohttp, `in_flight` at a time, paced at
  `rate` calls/s (the worker's quota x share; no adaptive limiter), the first page of a date alone,
  then its other pages in parallel once the first says how many there are;
- each page: `orjson.loads`, then per row one set look-up of (emailId, time text): no field
  checks, no time parsing, no classification, no caps;
- a new row: one small JSON event and one dedup record (the two records the worker writes per
  new event), produced in a transaction with one cursor record per page; pages finished within
  250 ms of the first share a transaction (no more transactions than the worker commits).

It sweeps twice: the first pass (every row new), then the same windows again (every row a
duplicate, the set kept in memory: the worker restores its table before it is ready, which the
worker's figure does not count either). It prints one JSON line: per pass the CPU seconds of this
process (user + system, `time.process_time`), the pages, rows, new rows and transactions. `bench/quota.py`
(`measure_sweep`) runs it against the same simulator after the worker and reports the worker's CPU
per row beside this floor's, as bench/floor_app.py does for the webhook path (issue 16).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.parse

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from worker.transaction import Batches

# Pages finished within this long of the first share a transaction: the worker's re-sweep of the
# bench's 20,000 rows commits ~17 transactions in ~5 s, and a floor must not do more than it.
LINGER_SECS = 0.25
PAGE = 100
PATH = "/apiv2/data/emailStatus"


class Pace:
    """Call starts spaced 1/rate apart: the quota share as a steady rate."""

    def __init__(self, rate: float) -> None:
        self.gap = 1.0 / rate
        self.next = time.monotonic()

    async def wait(self) -> None:
        now = time.monotonic()
        start = max(now, self.next)
        self.next = start + self.gap
        if start > now:
            await asyncio.sleep(start - now)


class Floor:
    def __init__(self, args: dict, producer: AIOKafkaProducer, session: aiohttp.ClientSession) -> None:
        self.args = args
        self.url = args["base_url"].rstrip("/") + PATH
        self.api_key = os.environ["POLL_FLOOR_API_KEY"]     # not on the command line (ps shows it)
        self.producer = producer
        self.session = session
        self.pace = Pace(args["rate"])
        self.seen: set[tuple[str, str]] = set()
        self.done: asyncio.Queue = asyncio.Queue()    # (date, offset, new records) of each page
        self.asked = {"pages": 0, "rows": 0}

    async def call(self, day: str, offset: int) -> dict:
        body = urllib.parse.urlencode([("apiUser", self.args["api_user"]), ("apiKey", self.api_key),
                                       ("startDate", day), ("endDate", day), ("start", offset),
                                       ("limit", PAGE)]).encode()
        while True:
            await self.pace.wait()
            async with self.session.post(self.url, data=body,
                                         headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
                answer = orjson.loads(await r.read())
            if answer.get("statusCode") == 200:
                return answer["info"]
            await asyncio.sleep(1.0)   # the simulator's throttle (not expected at the pace): again

    def page(self, day: str, offset: int, info: dict) -> int:
        """The page's new rows as records, queued for the committer; the page's total."""
        new: list[tuple[bytes, bytes]] = []
        rows = info.get("voList", ())
        self.asked["pages"] += 1
        self.asked["rows"] += len(rows)
        for row in rows:
            key = (row["emailId"], row.get("modifiedTime") or row["requestTime"])
            if key in self.seen:
                continue
            self.seen.add(key)
            new.append((orjson.dumps({"email_id": key[0], "recipient": row["recipients"], "status": row["status"],
                                      "at": key[1]}), orjson.dumps(key)))
        self.done.put_nowait((day, offset, new))
        return int(info.get("total") or 0)

    async def sweep(self) -> None:
        offsets: asyncio.Queue = asyncio.Queue()
        for day in self.args["dates"]:
            total = self.page(day, 0, await self.call(day, 0))
            for offset in range(PAGE, total, PAGE):
                offsets.put_nowait((day, offset))

        async def caller() -> None:
            while not offsets.empty():
                day, offset = offsets.get_nowait()
                self.page(day, offset, await self.call(day, offset))

        await asyncio.gather(*(caller() for _ in range(self.args["in_flight"])))

    async def commit(self, stats: dict) -> None:
        """Forever: the pages finished within LINGER_SECS of the first, in one transaction."""
        topics = self.args["topics"]
        while True:
            pages = [await self.done.get()]
            until = time.monotonic() + LINGER_SECS
            while (left := until - time.monotonic()) > 0:
                try:
                    pages.append(await asyncio.wait_for(self.done.get(), left))
                except TimeoutError:
                    break
            async with self.producer.transaction():
                out = Batches(self.producer)
                for day, offset, new in pages:
                    for event, entry in new:
                        await out.add(topics["events"], None, event, partition=0)
                        await out.add(topics["state"], None, entry, partition=0)
                    await out.add(topics["state"], day.encode(), orjson.dumps({"offset": offset}), partition=0)
                await out.send()
                await asyncio.gather(*out.sent)
            stats["pages"] += len(pages)
            stats["new"] += sum(len(new) for _, _, new in pages)
            stats["transactions"] += 1

    async def run_pass(self, stats: dict) -> dict:
        """One sweep of every date, until its last page is committed: what it cost and did."""
        asked, before = dict(self.asked), dict(stats)
        cpu = time.process_time()
        await self.sweep()
        while stats["pages"] - before["pages"] < self.asked["pages"] - asked["pages"]:
            await asyncio.sleep(0.005)
        return {"cpu_secs": time.process_time() - cpu,
                "rows": self.asked["rows"] - asked["rows"], **{k: stats[k] - before[k] for k in stats}}

    async def passes(self) -> list[dict]:
        stats = {"pages": 0, "new": 0, "transactions": 0}
        committer = asyncio.create_task(self.commit(stats))
        try:
            return [await self.run_pass(stats) for _ in range(2)]
        finally:
            committer.cancel()


async def main(args: dict) -> None:
    topics = {"events": f"{args['prefix']}.events", "state": f"{args['prefix']}.state"}
    args["topics"] = topics
    admin = AIOKafkaAdminClient(bootstrap_servers=args["bootstrap"])
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 1, 1) for t in topics.values()])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=args["bootstrap"], acks="all", enable_idempotence=True,
                                transactional_id=f"{args['prefix']}-tx")
    await producer.start()
    try:
        async with aiohttp.ClientSession() as session:
            floor = Floor(args, producer, session)
            first, again = await floor.passes()
    finally:
        await producer.stop()
    print(json.dumps({"sweep": first, "resweep": again}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
