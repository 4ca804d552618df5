"""`abuse`: genuine webhooks while the same worker is flooded with bad signatures and slow bodies.

The worker runs as a real process with one SendCloud account, webhooks only, production defaults
except `http.body_read_timeout_secs` (2 s instead of 10, so that the stalled uploads are answered
408 and renewed several times within a quick run). In one run, after a warm-up:

1. *alone*: N signed `deliver` webhooks (each a distinct email) at concurrency 32;
2. *under flood*: N more, at the same concurrency, while at the same time 32 other connections
   post webhooks whose signature is wrong (answered 401; up to a cap) and 48 connections hold
   stalled uploads (headers and 1 KiB of a declared 64 KiB body, re-opened when answered).

Per phase: accepted webhooks/s, p50/p99 latency of their 200 answers; the flood's own rate and
answers; the worker's RSS before, at its highest during the flood (sampled every 50 ms) and
after. Every genuine webhook is read back read_committed; the check fails on a missing or
duplicate event, or any answer 500 (seen by a client, or counted by the worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import random
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
    rss_bytes,
    run_child,
    say,
    scrape,
    worker_config,
)

NAME = "abuse"
ACCOUNT = "bench-abuse"
APP_KEY = "bench-abuse-app-key"
ENV = {"BENCH_ABUSE_KEY": APP_KEY}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CONCURRENCY = 32     # genuine webhooks in flight
FLOOD = 32           # bad-signature requests in flight
SLOW = 48            # stalled uploads held at once
READ_TIMEOUT = 2.0   # http.body_read_timeout_secs
WARMUP = 500
WAIT = 120.0         # bound of every wait for an answer or an event


def form(email_id: str, recipient: str, ts_ms: int, key: str = APP_KEY) -> bytes:
    """A SendCloud webhook as SendCloud signs it: HMAC-SHA256(app key, timestamp + token), hex."""
    timestamp = str(ts_ms)
    token = secrets.token_hex(25)
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return urllib.parse.urlencode({"event": "deliver", "emailId": email_id, "recipient": recipient,
                                   "timestamp": timestamp, "token": token, "signature": signature,
                                   "apiUser": "bench_user", "message": "250 2.0.0 OK: queued"}).encode()


def genuine(tag: str, n: int) -> list[bytes]:
    now_ms = int(time.time() * 1000)
    return [form(f"{now_ms}_{tag}_{i}.sc-10_1_2_3-inbound0$u{i}@example.com", f"U{i}@Example.com", now_ms - 1000)
            for i in range(n)]


def forged(n: int, rng: random.Random) -> list[bytes]:
    """Webhooks an attacker can make without the key: signed with another key, a genuine-looking
    signature with a digit changed, none at all, or a signature from outside the replay window."""
    now_ms = int(time.time() * 1000)
    out = []
    for i in range(n):
        email_id, rcpt = f"{now_ms}_forged_{i}.sc-10_1_2_3-inbound0$victim{i}@example.com", f"victim{i}@example.com"
        kind = i % 4
        if kind == 0:
            body = form(email_id, rcpt, now_ms, key="not-the-key")
        elif kind == 1:
            body = form(email_id, rcpt, now_ms)
            i_sig = body.index(b"signature=") + len(b"signature=")
            body = body[:i_sig] + (b"0" if body[i_sig:i_sig + 1] != b"0" else b"1") + body[i_sig + 1:]
        elif kind == 2:
            body = urllib.parse.urlencode({"event": "deliver", "emailId": email_id, "recipient": rcpt}).encode()
        else:
            body = form(email_id, rcpt, now_ms - 10 * 86400 * 1000)   # older than the 2-day window
        out.append(body + b"&pad=" + rng.randbytes(rng.randrange(64)).hex().encode())
    return out


async def burst(session, url: str, payloads: list[bytes], concurrency: int) -> tuple[list[float], Counter, float, float]:
    """Post every payload, `concurrency` in flight; a 503 is retried (at most 5 times) as a
    provider would. (latencies of the 200 answers, first attempt to answer; statuses; t0; t1)."""
    latencies: list[float] = []
    statuses: Counter = Counter()
    it = iter(payloads)

    async def client() -> None:
        for body in it:
            started = time.monotonic()
            for _ in range(6):
                try:
                    async with session.post(url, data=body, headers=FORM) as r:
                        await r.read()
                        status: int | str = r.status
                except Exception as exc:  # noqa: BLE001 - counted, not fatal
                    status = type(exc).__name__
                statuses[status] += 1
                if status != 503:
                    break
                await asyncio.sleep(0.05)
            if status == 200:
                latencies.append(time.monotonic() - started)

    t0 = time.monotonic()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, statuses, t0, time.monotonic()


async def flood(session, url: str, payloads: list[bytes], stop: asyncio.Event) -> tuple[Counter, list[float]]:
    """Bad-signature requests, FLOOD in flight, until `stop` is set or `payloads` run out:
    (statuses, when each was answered)."""
    statuses: Counter = Counter()
    answered: list[float] = []
    it = iter(payloads)

    async def client() -> None:
        for body in it:
            if stop.is_set():
                return
            try:
                async with session.post(url, data=body, headers=FORM) as r:
                    await r.read()
                    statuses[r.status] += 1
            except Exception as exc:  # noqa: BLE001 - counted, not fatal
                statuses[type(exc).__name__] += 1
            answered.append(time.monotonic())

    await asyncio.gather(*(client() for _ in range(FLOOD)))
    return statuses, answered


async def stalled(port: int, path: str, stop: asyncio.Event, statuses: Counter) -> None:
    """One slot of stalled uploads: headers and 1 KiB of a declared 64 KiB body, then nothing;
    when the worker answers (408 after body_read_timeout_secs, or 503 when shed), again, until
    `stop`. Each is answered before its socket closes (an abandoned upload is another test)."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {64 << 10}\r\n\r\n").encode() + b"x" * 1024
    for _ in range(10_000):
        if stop.is_set():
            return
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as exc:
            statuses[type(exc).__name__] += 1
            return
        try:
            writer.write(head)
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), WAIT)
            parts = line.split()
            statuses[int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else "reset"] += 1
        except (OSError, TimeoutError) as exc:
            statuses[type(exc).__name__] += 1
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 5)


async def sample_rss(pid: int, stop: asyncio.Event, out: list[int]) -> None:
    """The worker's RSS every 50 ms until `stop` (at most 20 minutes of samples)."""
    for _ in range(24_000):
        with contextlib.suppress(OSError):
            out.append(rss_bytes(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)
        if stop.is_set():
            return


def peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


async def measure(bootstrap: str, requests: int, max_flood: int, profile: bool = False) -> dict:
    import aiohttp

    from worker.config import parse_config
    from worker.emit import Topics, ensure_topics

    account = {"name": ACCOUNT, "provider": "sendcloud", "poll": {"enabled": False},
               "webhook": {"app_key_env": "BENCH_ABUSE_KEY"}}
    prefix = f"bench-abuse-{uuid.uuid4().hex[:8]}"
    data = worker_config(bootstrap, prefix, [account])
    data["http"]["body_read_timeout_secs"] = READ_TIMEOUT
    config = parse_config(data, ENV)
    await ensure_topics(config.kafka)
    tail = EventTail(bootstrap, Topics.from_config(config.kafka).outputs)
    await tail.start()
    workdir = Path(tempfile.mkdtemp(prefix="esw-bench-abuse-"))
    worker = WorkerProcess(data, ENV, workdir, profile=profile)
    url = f"{worker.url}/webhooks/sendcloud/{ACCOUNT}"
    rng = random.Random(7)
    out: dict = {}
    try:
        worker.start()
        await worker.ready()
        port = int(data["http"]["port"])

        def connector(n: int):
            return aiohttp.TCPConnector(limit=n, limit_per_host=n)

        async with aiohttp.ClientSession(connector=connector(CONCURRENCY)) as session, \
                aiohttp.ClientSession(connector=connector(FLOOD)) as attacker:
            _, warm, _, _ = await burst(session, url, genuine("warm", WARMUP), CONCURRENCY)
            out["warm_ok"] = warm.get(200, 0)
            if not await tail.wait_for(out["warm_ok"], WAIT):
                raise TimeoutError("warm-up events not committed")
            m0 = await scrape(worker.url)
            out["rss_before"] = rss_bytes(worker.pid)

            # 1. alone
            cpu = CpuMeter({"worker": worker.pid, "broker": _broker_pid(), "bench": "self"})
            before = tail.count
            lat, statuses, t0, t1 = await burst(session, url, genuine("alone", requests), CONCURRENCY)
            ok = statuses.get(200, 0)
            if not await tail.wait_for(before + ok, WAIT):
                raise TimeoutError(f"only {tail.count - before:,} of {ok:,} events committed (alone)")
            out["alone"] = _phase(lat, statuses, t0, t1, cpu.stop(), requests)

            # 2. under flood: the slow uploads and the bad signatures start first, then the same load
            stop, sampling = asyncio.Event(), asyncio.Event()
            samples: list[int] = []
            sampler = asyncio.create_task(sample_rss(worker.pid, sampling, samples))
            slow_statuses: Counter = Counter()
            slow = [asyncio.create_task(stalled(port, f"/webhooks/sendcloud/{ACCOUNT}", stop, slow_statuses))
                    for _ in range(SLOW)]
            flooding = asyncio.create_task(flood(attacker, url, forged(max_flood, rng), stop))
            await asyncio.sleep(0.2)   # let the flood and the stalls get going before the clock starts
            cpu = CpuMeter({"worker": worker.pid, "broker": _broker_pid(), "bench": "self"})
            before = tail.count
            lat, statuses, t0, t1 = await burst(session, url, genuine("flood", requests), CONCURRENCY)
            stop.set()
            bad, times = await asyncio.wait_for(flooding, WAIT)
            await asyncio.wait_for(asyncio.gather(*slow), WAIT)   # each slot's last upload answered
            ok = statuses.get(200, 0)
            if not await tail.wait_for(before + ok, WAIT):
                raise TimeoutError(f"only {tail.count - before:,} of {ok:,} events committed (under flood)")
            out["flood"] = _phase(lat, statuses, t0, t1, cpu.stop(), requests)
            sampling.set()
            await sampler
            # the flood's rate over the genuine burst: what it faced, not the flood's own run
            out["bad"] = {"statuses": {str(k): v for k, v in bad.items()}, "sent": sum(bad.values()),
                          "during": sum(1 for t in times if t0 <= t <= t1), "secs": t1 - t0,
                          "ran_out": max(0.0, t1 - max(times, default=t0))}
            out["slow"] = {str(k): v for k, v in slow_statuses.items()}
            out["rss_max"] = max(samples, default=0)
            out["rss_peak"] = peak_rss(worker.pid)
            await tail.wait_quiet(1.0, 10)
            out["rss_after"] = rss_bytes(worker.pid)
            m1 = await scrape(worker.url)
            out["worker_500"] = (metric(m1, "esw_webhook_requests_total", status="500")
                                 - metric(m0, "esw_webhook_requests_total", status="500"))
            out["worker_401"] = (metric(m1, "esw_webhook_requests_total", status="401")
                                 - metric(m0, "esw_webhook_requests_total", status="401"))
            out["shed"] = metric(m1, "esw_webhook_shed_total") - metric(m0, "esw_webhook_shed_total")
            say(f"abuse: alone {out['alone']['ok']:,} ok in {out['alone']['secs']:.1f} s; under flood "
                f"{out['flood']['ok']:,} ok in {out['flood']['secs']:.1f} s beside {out['bad']['during']:,} bad "
                f"signatures and {sum(slow_statuses.values())} stalled uploads")
    finally:
        worker.stop()
        out["final_events"] = tail.count
        out["duplicates"] = tail.duplicates
        await tail.stop()
        await delete_topics(bootstrap, prefix)
    top = worker.profile_top(30)
    if top:
        import sys

        print(f"--- cProfile of the worker process (abuse) ---\n{top}", file=sys.stderr)
    shutil.rmtree(workdir, ignore_errors=True)
    return out


def _phase(latencies: list[float], statuses: Counter, t0: float, t1: float, cpu: dict, requests: int) -> dict:
    latencies.sort()
    return {"requests": requests, "ok": statuses.get(200, 0), "secs": t1 - t0,
            "statuses": {str(k): v for k, v in statuses.items()},
            "p50_ms": percentile(latencies, 0.50) * 1e3 if latencies else None,
            "p99_ms": percentile(latencies, 0.99) * 1e3 if latencies else None,
            "max_ms": latencies[-1] * 1e3 if latencies else None, "cpu": cpu}


def _broker_pid() -> int | None:
    import os

    pid = os.environ.get("BENCH_BROKER_PID")
    return int(pid) if pid else None


def run(ctx) -> list[dict]:
    requests = 1_500 if ctx.quick else 10_000
    max_flood = 6_000 if ctx.quick else 40_000
    say(f"abuse: {requests:,} genuine webhooks alone, then as many beside up to {max_flood:,} bad signatures "
        f"and {SLOW} stalled uploads")
    r = run_child("abuse:measure", {"bootstrap": ctx.bootstrap, "requests": requests, "max_flood": max_flood,
                                    "profile": ctx.profile}, timeout=900)
    alone, flood_, bad = r["alone"], r["flood"], r["bad"]
    mib = 2 ** 20

    def rate(p: dict) -> float:
        return p["ok"] / p["secs"]

    def not_ok(p: dict) -> str:
        other = {k: v for k, v in p["statuses"].items() if k != "200"}
        return f"; other answers {other}" if other else ""

    rows = [
        row(NAME, f"genuine webhooks/s alone @c={CONCURRENCY}", rate(alone), "req/s",
            f"{alone['ok']:,} × 200 in {alone['secs']:.1f} s{not_ok(alone)}; {cpu_note(alone['cpu'])}"),
        row(NAME, "latency of 200 answers p50, alone", alone["p50_ms"], "ms"),
        row(NAME, "latency of 200 answers p99, alone", alone["p99_ms"], "ms", f"max {alone['max_ms']:.0f} ms"),
        row(NAME, f"genuine webhooks/s under flood @c={CONCURRENCY}", rate(flood_), "req/s",
            f"{flood_['ok']:,} × 200 in {flood_['secs']:.1f} s{not_ok(flood_)}; {cpu_note(flood_['cpu'])}"),
        row(NAME, "latency of 200 answers p50, under flood", flood_["p50_ms"], "ms"),
        row(NAME, "latency of 200 answers p99, under flood", flood_["p99_ms"], "ms", f"max {flood_['max_ms']:.0f} ms"),
        row(NAME, "under flood / alone (same run)", rate(flood_) / rate(alone), "ratio",
            f"p99 {flood_['p99_ms'] / alone['p99_ms']:.1f}x"),
        row(NAME, f"bad-signature requests/s beside them @c={FLOOD}", bad["during"] / bad["secs"], "req/s",
            f"{bad['during']:,} answered during the genuine burst ({bad['sent']:,} in all: {bad['statuses']})"
            + (f"; the flood ran out {bad['ran_out']:.1f} s before the burst ended" if bad["ran_out"] > 0.05 else "")),
        row(NAME, "stalled uploads held at once", SLOW, "conn",
            f"1 KiB of 64 KiB each; answered {r['slow']} (408 after {READ_TIMEOUT:g} s, then re-opened)"),
        row(NAME, "worker RSS before / max during / after", r["rss_max"] / mib, "MiB",
            f"before {r['rss_before'] / mib:.0f} MiB (after the warm-up), max {r['rss_max'] / mib:.0f} MiB "
            f"(sampled every 50 ms; VmHWM {r['rss_peak'] / mib:.0f} MiB), after {r['rss_after'] / mib:.0f} MiB"),
    ]
    expected = r["warm_ok"] + alone["requests"] + flood_["requests"]
    answered = r["warm_ok"] + alone["ok"] + flood_["ok"]
    client_500 = sum(p["statuses"].get("500", 0) for p in (alone, flood_)) + bad["statuses"].get("500", 0) \
        + r["slow"].get("500", 0)
    ok = (r["final_events"] == expected == answered and not r["duplicates"] and not client_500
          and not r["worker_500"])
    rows.append(check(NAME, "read-back", ok,
                      f"{answered:,} of {expected:,} genuine webhooks answered 200; {r['final_events']:,} events read "
                      f"back read_committed; {r['duplicates']} duplicate event_id; answers 500: {client_500} seen, "
                      f"{r['worker_500']:.0f} counted by the worker; {r['shed']:.0f} shed"))
    return rows
