"""`webhook`: events per second through the webhook path.

The worker runs as a real process with one SendCloud account, webhooks only, production defaults.
This process posts signed SendCloud `deliver` webhooks (form bodies, HMAC-SHA256(app key,
timestamp + token) as SendCloud signs them; all signed before the clock starts, each for a distinct
email) with an aiohttp client at a fixed concurrency, and reads the output back read_committed.

Per concurrency level: accepted requests/s (200 answers / wall time of the burst), p50/p99 latency
of the 200 answers, and end-to-end events/s (the burst's events, committed, over the time from
its first request to its last committed event).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import shutil
import tempfile
import time
import urllib.parse
import uuid
from collections import Counter
from pathlib import Path

from bench.common import (
    CpuMeter,
    EventTail,
    WorkerProcess,
    check,
    cpu_note,
    delete_topics,
    metric,
    percentile,
    row,
    run_child,
    say,
    scrape,
    worker_config,
)

NAME = "webhook"
ACCOUNT = "bench-wh"
APP_KEY = "bench-app-key"
ENV = {"BENCH_APP_KEY": APP_KEY}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
WARMUP = 1_000


def sendcloud_form(event: str, email_id: str, recipient: str, ts_ms: int) -> bytes:
    """A SendCloud webhook as SendCloud signs it (tests/integration/test_webhooks.py)."""
    timestamp = str(ts_ms)
    token = secrets.token_hex(25)
    signature = hmac.new(APP_KEY.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    fields = {"event": event, "emailId": email_id, "recipient": recipient, "timestamp": timestamp,
              "token": token, "signature": signature, "apiUser": "bench_user",
              "message": "250 2.0.0 OK: queued"}
    return urllib.parse.urlencode(fields).encode()


def bodies(tag: str, n: int) -> list[bytes]:
    now_ms = int(time.time() * 1000)
    out = []
    for i in range(n):
        mid = f"{now_ms}_{123456}_{10000 + i % 89999}_{tag}.sc-10_1_2_3-inbound"
        out.append(sendcloud_form("deliver", f"{mid}0$u{i}@example.com", f"U{i}@Example.com", now_ms - 1000))
    return out


async def burst(session, url: str, payloads: list[bytes], concurrency: int) -> tuple[list[float], Counter, float, float]:
    """Post every payload with `concurrency` requests in flight; (200 latencies, statuses, t0, t1)."""
    latencies: list[float] = []
    statuses: Counter = Counter()
    it = iter(payloads)

    async def client() -> None:
        for body in it:
            started = time.monotonic()
            try:
                async with session.post(url, data=body, headers=FORM) as r:
                    await r.read()
                    status = r.status
            except Exception as exc:  # noqa: BLE001 - counted, not fatal
                statuses[type(exc).__name__] += 1
                continue
            statuses[status] += 1
            if status == 200:
                latencies.append(time.monotonic() - started)

    t0 = time.monotonic()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, statuses, t0, time.monotonic()


async def measure(bootstrap: str, levels: list[int], requests: int, profile: bool = False,
                  timeout: float = 300.0) -> dict:
    import aiohttp

    from worker.config import parse_config
    from worker.emit import Topics, ensure_topics

    account = {"name": ACCOUNT, "provider": "sendcloud", "poll": {"enabled": False},
               "webhook": {"app_key_env": "BENCH_APP_KEY"}}
    prefix = f"bench-webhook-{uuid.uuid4().hex[:8]}"
    data = worker_config(bootstrap, prefix, [account])
    config = parse_config(data, ENV)
    await ensure_topics(config.kafka)
    tail = EventTail(bootstrap, Topics.from_config(config.kafka).outputs)
    await tail.start()
    workdir = Path(tempfile.mkdtemp(prefix="esw-bench-webhook-"))
    worker = WorkerProcess(data, ENV, workdir, profile=profile)
    url = f"{worker.url}/webhooks/sendcloud/{ACCOUNT}"
    out: dict = {"levels": []}
    try:
        worker.start()
        await worker.ready()
        connector = aiohttp.TCPConnector(limit=max(levels), limit_per_host=max(levels))
        async with aiohttp.ClientSession(connector=connector) as session:
            # warm-up: connections, the producer's metadata, the shard's first transactions
            warm = bodies("warm", WARMUP)
            _, statuses, _, _ = await burst(session, url, warm, 32)
            out["warm_ok"] = statuses.get(200, 0)
            await tail.wait_for(len(warm), 60)
            await asyncio.sleep(0.5)
            for c in levels:
                payloads = bodies(f"c{c}", requests)
                before = tail.count
                m0 = await scrape(worker.url)
                cpu = CpuMeter({"worker": worker.pid, "broker": _broker_pid(), "bench": "self"})
                latencies, statuses, t0, t1 = await burst(session, url, payloads, c)
                at_end = tail.count - before
                ok = statuses.get(200, 0)
                if not await tail.wait_for(before + ok, timeout):
                    raise TimeoutError(f"only {tail.count - before:,} of {ok:,} events after {timeout:.0f} s")
                t_last = tail.time_of(before + ok)
                shares = cpu.stop()
                worker_cpu = cpu.secs.get("worker")
                m1 = await scrape(worker.url)
                latencies.sort()
                out["levels"].append({
                    "concurrency": c, "requests": len(payloads), "ok": ok,
                    "statuses": {str(k): v for k, v in statuses.items()},
                    "burst_secs": t1 - t0, "e2e_secs": t_last - t0, "committed_at_burst_end": at_end,
                    "p50_ms": percentile(latencies, 0.50) * 1e3, "p99_ms": percentile(latencies, 0.99) * 1e3,
                    "max_ms": latencies[-1] * 1e3 if latencies else None, "cpu": shares, "worker_cpu": worker_cpu,
                    "txns": m1.get("esw_transaction_latency_seconds_count", 0) - m0.get("esw_transaction_latency_seconds_count", 0),
                    "events_metric": metric(m1, "esw_events_emitted_total") - metric(m0, "esw_events_emitted_total"),
                })
                say(f"webhook: c={c}: {ok:,} ok in {t1 - t0:.1f} s, events committed after {t_last - t0:.1f} s")
                await asyncio.sleep(0.5)
    finally:
        worker.stop()
        await asyncio.sleep(0.5)
        out["final_events"] = tail.count
        out["duplicates"] = tail.duplicates
        await tail.stop()
        await delete_topics(bootstrap, prefix)
    top = worker.profile_top(30)
    if top:
        import sys

        print(f"--- cProfile of the worker process (webhooks) ---\n{top}", file=sys.stderr)
    shutil.rmtree(workdir, ignore_errors=True)  # kept when something failed: the worker log is there
    return out


def _broker_pid() -> int | None:
    import os

    pid = os.environ.get("BENCH_BROKER_PID")
    return int(pid) if pid else None


def run(ctx) -> list[dict]:
    levels = [32, 64]
    requests = 3_000 if ctx.quick else 20_000
    say(f"webhook: {requests:,} requests at each concurrency {levels}")
    r = run_child("webhook:measure", {"bootstrap": ctx.bootstrap, "levels": levels, "requests": requests,
                                      "profile": ctx.profile}, timeout=900)
    rows = []
    for lv in r["levels"]:
        c = lv["concurrency"]
        failed = {k: v for k, v in lv["statuses"].items() if k != "200"}
        rows += [
            row(NAME, f"accepted requests/s @c={c}", lv["ok"] / lv["burst_secs"], "req/s",
                f"{lv['ok']:,} × 200 in {lv['burst_secs']:.1f} s" + (f"; not 200: {failed}" if failed else "")
                + "; " + cpu_note(lv["cpu"])),
            row(NAME, f"latency of 200 answers p50 @c={c}", lv["p50_ms"], "ms"),
            row(NAME, f"latency of 200 answers p99 @c={c}", lv["p99_ms"], "ms", f"max {lv['max_ms']:.0f} ms"),
            row(NAME, f"end-to-end committed events/s @c={c}", lv["ok"] / lv["e2e_secs"], "events/s",
                f"last event committed {lv['e2e_secs'] - lv['burst_secs']:.2f} s after the last answer; "
                f"{lv['committed_at_burst_end']:,} committed by then; {lv['txns']:.0f} transactions"),
            row(NAME, f"worker CPU per webhook @c={c}", lv["worker_cpu"] / max(1, lv["ok"]) * 1e6, "µs",
                "HTTP in, _raw produce, _raw consume, dedup, transaction"),
        ]
    expected = WARMUP + sum(lv["requests"] for lv in r["levels"])
    answered = r["warm_ok"] + sum(lv["ok"] for lv in r["levels"])
    rows.append(check(NAME, "read-back", r["final_events"] == expected == answered and not r["duplicates"],
                      f"{answered:,} of {expected:,} webhooks answered 200; {r['final_events']:,} events read back "
                      f"read_committed; {r['duplicates']} duplicate event_id"))
    return rows
