"""`wrk`: the webhook path driven by `wrk` (issue 16), against the bare-aiohttp ceiling of the same run.

`wrk` (a C load generator; `apt-get install wrk`, found on PATH, else the benchmark fails) posts
pre-signed SendCloud webhooks through bench/wrk_post.lua: this process signs N bodies per wrk
thread before the clock starts (`bench.webhook.sendcloud_form`, HMAC-SHA256 as SendCloud signs),
writes each thread's slice to its own file, and every request takes the thread's next body. The
same wrk command (threads, connections, duration) measures:

- *bare*: a minimal aiohttp app in a child process that reads the body and answers 200: the
  ceiling of one Python process serving these requests on this machine;
- *floor*: bench/floor_app.py in a child process, the worker's path with nothing but its stack in
  it (aiohttp, the HMAC, the form, an idempotent produce, a read_committed consume and one
  transaction per batch of events): the least CPU per webhook any worker of this design and stack
  spends here, so the worker's own share is what it costs above the floor;
- the worker (a real `python -m worker run` process, one SendCloud account, webhooks only,
  production defaults) with 1 replica, and with 2 replicas sharing the port with
  `http.reuse_port: true` (one consumer group, the shards split between them); and 2 replicas
  with 2 shards and the account spread over both (`accounts[].spread: 2`, one shard each), so
  that both replicas decide its webhooks, not only the owner of its one shard.

Per worker set-up and mix: accepted webhooks/s (wrk's 2xx count / its duration), p50/p99 latency
(wrk's, over every answer), end-to-end committed events/s (the run's events, read back
read_committed, over the time from wrk's start to the last one), worker CPU per webhook (all
replicas, from wrk's start to the last event), and the rate per replica process over the bare
ceiling. Mixes: `deliver` (every body a distinct delivered email), `opens` (60 % SendCloud
`open`/`click` events, which the worker drops at the edge and counts in
esw_ignored_statuses_total), `dups` (20 % of the posts re-post a body posted shortly before).

The check, per run: every event read back is one of the distinct `deliver` emails posted (what wrk
sent, from the script's own count of request() calls), one record each, no duplicate `event_id`;
every answer 2xx and no socket error; the distinct `deliver` emails posted and not read back are
at most the requests wrk had in flight when it stopped (it closes those connections unanswered: a
provider would retry them; their place from the end of their thread is noted); the ignored count
is the opens and clicks posted, less at most those in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import (
    CpuMeter,
    EventTail,
    WorkerProcess,
    check,
    cpu_note,
    cpu_secs,
    delete_topics,
    die_with_parent,
    free_port,
    machine_cpu,
    metric,
    parse_metrics,
    row,
    run_child,
    say,
    scrape,
    worker_config,
)
from bench.webhook import ENV, sendcloud_form

NAME = "wrk"
ACCOUNT = "bench-wrk"
LUA = Path(__file__).resolve().with_name("wrk_post.lua")
THREADS = 2          # wrk threads (each its own slice of bodies)
CONNECTIONS = 32     # in flight at once, over all threads
SHARDS = 4
MIXES = ("deliver", "opens", "dups")
DUP_GAP = 37         # a duplicate re-posts the body posted this many places earlier in its slice
VERIFY_CALLS = {0: 1}  # wrk calls request() once on thread 0 before running (wrk.c script_verify_request)

# The ceiling: a minimal aiohttp app that reads the body and answers 200 (the worker's loop, asyncio's).
BARE_APP = """
import sys
from aiohttp import web

async def hook(request):
    await request.read()
    return web.Response(text="ok")

app = web.Application()
app.router.add_post("/{tail:.*}", hook)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk not found on PATH: install it (Debian/Ubuntu: apt-get install wrk; "
                           ".ci/run installs it when missing)")
    return found


# -- bodies ---------------------------------------------------------------------------------------


def slices(tag: str, mix: str, per_thread: int, threads: int = THREADS) -> list[list[tuple[str, str, bytes]]]:
    """Per wrk thread, its bodies in posting order as (kind, recipient, body); kind is `deliver`,
    `open`, `click`, or `dup` (the same body as an earlier `deliver` of the slice). The recipient,
    lower-cased, is the key of the event a `deliver` becomes; it starts with `u<tag>-`."""
    now_ms = int(time.time() * 1000)
    out = []
    for t in range(threads):
        items: list[tuple[str, str, bytes]] = []
        for i in range(per_thread):
            r = i % 5
            if mix == "dups" and r == 4 and i >= DUP_GAP:
                _, recipient, body = items[i - DUP_GAP]      # (i - 37) % 5 == 2: an original
                items.append(("dup", recipient, body))
                continue
            kind = "deliver"
            if mix == "opens" and r in (0, 2, 4):
                kind = "click" if r == 2 else "open"
            recipient = f"u{tag}-{t}-{i}@example.com"
            mid = f"{now_ms}_{123456}_{t}{i:07d}_{tag}.sc-10_1_2_3-inbound"
            items.append((kind, recipient, sendcloud_form(kind, f"{mid}0${recipient}", recipient.upper(), now_ms - 1000)))
        out.append(items)
    return out


def write_slices(prefix: Path, parts: list[list[tuple[str, str, bytes]]]) -> None:
    for t, items in enumerate(parts):
        with open(f"{prefix}.{t}", "wb") as f:
            for _, _, body in items:
                assert b"\n" not in body
                f.write(body + b"\n")


def posted(parts: list[list[tuple[str, str, bytes]]], calls: list[int]) -> dict:
    """What wrk sent, from the script's count of request() calls per thread: the distinct
    `deliver` recipients (the events expected), opens/clicks, re-posts (a `dup`, or a slice posted
    again from its start), and for each recipient how many posts of its thread came after its last."""
    want: dict[str, int] = {}
    n_posts = opens = reposts = wrapped = 0
    for t, items in enumerate(parts):
        skip = VERIFY_CALLS.get(t, 0)
        for k in range(skip, calls[t]):
            kind, recipient, _ = items[k % len(items)]
            n_posts += 1
            wrapped += k >= len(items)
            if kind in ("open", "click"):
                opens += 1
                continue
            reposts += recipient in want
            want[recipient] = calls[t] - 1 - k
    return {"posts": n_posts, "distinct_delivers": len(want), "opens": opens, "reposts": reposts,
            "wrapped": wrapped, "want": want}


# -- wrk ------------------------------------------------------------------------------------------


class WrkMeter(CpuMeter):
    """A CpuMeter that also names wrk's share (read from its rusage once it has exited: /proc has
    nothing of a reaped process), taken out of `other`; and that can end at its last `mark()`
    (when the last event arrived) rather than when it is stopped."""

    wrk_secs = 0.0
    marked: tuple | None = None

    def mark(self) -> None:
        self.marked = (time.monotonic(), {k: cpu_secs(p) for k, p in self.pids.items()}, machine_cpu())

    def stop(self) -> dict[str, float]:
        if self.marked is None:
            out = super().stop()
        else:
            t, cpus, (busy, steal) = self.marked
            dt = self.elapsed = max(1e-9, t - self.t0)
            out = {k: (cpus[k] - self.c0[k]) / dt for k in self.pids
                   if cpus.get(k) is not None and self.c0.get(k) is not None}
            out["other"] = max(0.0, (busy - self.m0[0]) / dt - sum(out.values()))
            if (steal - self.m0[1]) / dt > 0.01:
                out["steal"] = (steal - self.m0[1]) / dt
        share = self.wrk_secs / self.elapsed
        out["other"] = max(0.0, out["other"] - share)
        out["wrk"] = share
        self.secs = {k: v * self.elapsed for k, v in out.items()}
        return out


async def run_wrk(url: str, prefix: Path, secs: int, meter_pids: dict) -> tuple[dict, WrkMeter, float, float]:
    """One wrk run against `url`; (its WRK_RESULT, the CPU meter (still running), t0, t1)."""
    cmd = [wrk_binary(), "-t", str(THREADS), "-c", str(CONNECTIONS), "-d", f"{secs}s", "--timeout", "5s",
           "-s", str(LUA), url, "--", str(prefix)]
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                preexec_fn=die_with_parent)
    cpu = WrkMeter(meter_pids)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), secs + 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    t1 = time.monotonic()
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)   # wrk is the one child reaped meanwhile
    cpu.wrk_secs = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    lines = [line for line in out.decode(errors="replace").splitlines() if line.startswith("WRK_RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"wrk exited with {proc.returncode}: {err.decode(errors='replace')[-1000:]}"
                           f"{out.decode(errors='replace')[-1000:]}")
    result = json.loads(lines[-1].split(" ", 1)[1])
    result["ok"] = result["requests"] - result["status"]      # wrk counts status >= 400 as errors
    result["secs"] = result["duration_us"] / 1e6
    return result, cpu, t0, t1


async def bare_ceiling(workdir: Path, secs: int, per_thread: int) -> dict:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port)], stdin=subprocess.DEVNULL,
                            preexec_fn=die_with_parent)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the bare aiohttp app did not start") from None
                await asyncio.sleep(0.1)
        prefix = workdir / "bare"
        write_slices(prefix, slices("bare", "deliver", per_thread))
        w, cpu, _, _ = await run_wrk(f"http://127.0.0.1:{port}/webhooks/sendcloud/{ACCOUNT}", prefix, secs,
                                     {"bare": proc.pid, "broker": _broker_pid()})
        shares = cpu.stop()
        return {**w, "cpu": shares, "bare_cpu": cpu.secs.get("bare")}
    finally:
        end_child(proc)


def end_child(proc: subprocess.Popen) -> None:
    """Stop a child app: SIGTERM, then SIGKILL when it has not exited within 10 s."""
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    if proc.poll() is None:
        proc.kill()


async def floor(bootstrap: str, workdir: Path, secs: int, warm_secs: int, per_thread: int,
                timeout: float = 60.0) -> dict:
    """The same wrk run against bench/floor_app.py (the edge and the shard with nothing but aiohttp,
    the HMAC, the form and aiokafka in them): accepted/s, and its CPU per webhook from wrk's start to
    the last record its shard half committed."""
    import aiohttp

    port = free_port()
    prefix = f"bench-floor-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, "-m", "bench.floor_app", str(port), bootstrap, prefix, ENV["BENCH_APP_KEY"]],
                            stdin=subprocess.DEVNULL, preexec_fn=die_with_parent,
                            cwd=Path(__file__).resolve().parent.parent)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            async def counts() -> tuple[int, int]:
                async with session.get(f"{base}/done") as r:
                    answer = await r.json()
                    return answer["done"], answer["transactions"]

            async def done() -> int:
                return (await counts())[0]

            deadline = time.monotonic() + 60
            while True:
                try:
                    await done()
                    break
                except aiohttp.ClientError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the floor app did not start") from None
                    await asyncio.sleep(0.2)
            # warm-up, as the worker gets: connections, the producers' metadata, the first transactions
            warm = workdir / "floor-warm"
            write_slices(warm, slices("floorwarm", "deliver", per_thread // 4))
            w, cpu, _, _ = await run_wrk(f"{base}/webhooks/sendcloud/{ACCOUNT}", warm, warm_secs, {})
            cpu.stop()
            # settled: every answered warm-up request committed, and those still in flight at wrk's stop
            # (up to CONNECTIONS, committed but never counted as answered) too: the count holds still
            settled_by, seen, still_since = time.monotonic() + 30, -1, time.monotonic()
            while time.monotonic() < settled_by:
                now_done = await done()
                if now_done != seen:
                    seen, still_since = now_done, time.monotonic()
                elif now_done >= w["ok"] and time.monotonic() - still_since >= 1.0:
                    break
                await asyncio.sleep(0.05)
            start, txn_start = await counts()
            prefix_files = workdir / "floor"
            write_slices(prefix_files, slices("floor", "deliver", per_thread))
            w, cpu, _, t1 = await run_wrk(f"{base}/webhooks/sendcloud/{ACCOUNT}", prefix_files, secs,
                                          {"floor": proc.pid, "broker": _broker_pid()})
            committed, last_change = await done(), time.monotonic()
            cpu.mark()
            while committed - start < w["ok"] and time.monotonic() - last_change < 2 and time.monotonic() - t1 < timeout:
                await asyncio.sleep(0.05)
                now_done = await done()
                if now_done != committed:
                    committed, last_change = now_done, time.monotonic()
                    cpu.mark()
            shares = cpu.stop()
            transactions = (await counts())[1] - txn_start
        return {**w, "cpu": shares, "floor_cpu": cpu.secs.get("floor"), "committed": committed - start,
                "transactions": transactions}
    finally:
        end_child(proc)
        await delete_topics(bootstrap, prefix)


# -- the worker's replicas ------------------------------------------------------------------------


async def per_process(url: str, replicas: int, timeout: float = 10.0, want_metrics: bool = False) -> dict:
    """{assigned shards: (status, metrics)} of each replica behind the shared port. One connection
    is one process: /status (which says the shards it owns) and /metrics on the same connection."""
    import aiohttp

    found: dict[tuple, tuple[dict, dict]] = {}
    deadline = time.monotonic() + timeout
    while len(found) < replicas and time.monotonic() < deadline:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            async with session.get(f"{url}/status") as r:
                status = await r.json()
            ident = tuple(status.get("group", {}).get("assigned", []))
            if ident in found:
                continue
            m: dict = {}
            if want_metrics:
                async with session.get(f"{url}/metrics") as r:
                    m = parse_metrics(await r.text())
            found[ident] = (status, m)
    return found


async def replicas_ready(url: str, workers: list[WorkerProcess], shards: int, timeout: float = 90.0) -> None:
    """Every replica ready, its shards restored, and the shards split between them (no overlap)."""
    import aiohttp

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        for wp in workers:
            if wp.proc is None or wp.proc.poll() is not None:
                code = wp.proc.returncode if wp.proc else None
                raise RuntimeError(f"worker exited with {code}:\n{wp.log_tail()}")
        try:
            seen = await per_process(url, len(workers), timeout=2.0)
            owned = sorted(p for ident in seen for p in ident)
            ok = all(s.get("ready") and s.get("group", {}).get("restored") for s, _ in seen.values())
            last = f"{len(seen)} replicas answering, shards {sorted(seen)}"
            if len(seen) == len(workers) and ok and owned == list(range(shards)):
                return
        except (aiohttp.ClientError, ValueError) as exc:
            last = repr(exc)
        await asyncio.sleep(0.2)
    raise TimeoutError(f"replicas not ready after {timeout} s: {last}\n" + "\n".join(w.log_tail(10) for w in workers))


async def ignored_total(url: str, replicas: int) -> float | None:
    """esw_ignored_statuses_total summed over every replica (None if not every one answered)."""
    if replicas == 1:
        return metric(await scrape(url), "esw_ignored_statuses_total")
    seen = await per_process(url, replicas, want_metrics=True)
    if len(seen) < replicas:
        return None
    return sum(metric(m, "esw_ignored_statuses_total") for _, m in seen.values())


async def settle(tail: EventTail, want: dict[str, int], seen: set[str], since: float, timeout: float,
                 meter: WrkMeter | None = None, quiet: float = 1.5) -> bool:
    """Wait until every wanted event is seen, or nothing has arrived for `quiet` s (after `since`):
    a request wrk cut at its stop never reaches the worker. True when all were seen. The meter is
    marked whenever events arrive, so that it ends at the last one."""
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        if meter is not None and tail.count != count:
            count = tail.count
            meter.mark()
        if seen.issuperset(want):
            return True
        now = time.monotonic()
        if now - max(since, tail.last or since) > quiet:
            return False
        await asyncio.sleep(0.05)
    return seen.issuperset(want)


async def worker_setup(bootstrap: str, workdir: Path, replicas: int, secs: int, per_thread: int, warm_secs: int,
                       mixes: list[str], profile: bool, spread: int = 1, shards: int = SHARDS,
                       timeout: float = 120.0) -> dict:
    from worker.config import parse_config
    from worker.emit import Topics, ensure_topics

    account = {"name": ACCOUNT, "provider": "sendcloud", "poll": {"enabled": False},
               "webhook": {"app_key_env": "BENCH_APP_KEY"}, "spread": spread}
    prefix = f"bench-wrk-{uuid.uuid4().hex[:8]}"
    data = worker_config(bootstrap, prefix, [account], shards=shards)
    if replicas > 1:
        data["http"]["reuse_port"] = True
    config = parse_config(data, ENV)
    await ensure_topics(config.kafka)
    seen: set[str] = set()        # record keys (the lower-cased recipient) read back
    tail = EventTail(bootstrap, Topics.from_config(config.kafka).outputs,
                     on_record=lambda r, wall: seen.add(r.key.decode()))
    await tail.start()
    workers = [WorkerProcess(data, ENV, workdir / f"r{replicas}-{i}", profile=profile and i == 0)
               for i in range(replicas)]
    base = workers[0].url
    url = f"{base}/webhooks/sendcloud/{ACCOUNT}"
    out: dict = {"replicas": replicas, "spread": spread, "runs": []}
    try:
        for wp in workers:
            wp.start()
        await replicas_ready(base, workers, shards)
        # warm-up: connections, the producer's metadata, the shards' first transactions
        files = workdir / f"r{replicas}-warm"
        parts = slices(f"r{replicas}warm", "deliver", per_thread // 4)
        write_slices(files, parts)
        w, cpu, _, t1 = await run_wrk(url, files, warm_secs, {})
        cpu.stop()
        sent = posted(parts, w["calls"])
        await settle(tail, sent["want"], seen, t1, timeout)
        out["warm"] = {"ok": w["ok"], "events": len(seen), "posts": sent["posts"]}
        await tail.wait_quiet(0.5, 10)
        pids = {f"worker{i + 1}" if replicas > 1 else "worker": wp.pid for i, wp in enumerate(workers)}
        for mix in mixes:
            tag = f"r{replicas}{mix}"
            parts = slices(tag, mix, per_thread)
            files = workdir / f"r{replicas}-{mix}"
            write_slices(files, parts)
            before = tail.count
            ignored0 = await ignored_total(base, replicas)
            w, cpu, t0, t1 = await run_wrk(url, files, secs, {**pids, "broker": _broker_pid(), "bench": "self"})
            sent = posted(parts, w["calls"])
            want = sent.pop("want")
            at_end = tail.count - before
            await settle(tail, want, seen, t1, timeout, cpu)
            got = {k for k in seen if k.startswith(f"u{tag}-")}
            t_last = tail.time_of(before + len(got)) if got else t1
            shares = cpu.stop()
            worker_cpu = sum(v for k, v in cpu.secs.items() if k.startswith("worker"))
            await tail.wait_quiet(0.5, 15)        # anything beyond the expected would show now
            got = {k for k in seen if k.startswith(f"u{tag}-")}
            missing = sorted(want[k] for k in set(want) - got)
            ignored1 = await ignored_total(base, replicas)
            run = {"mix": mix, "wrk": w, "sent": sent, "records": tail.count - before, "expected": len(want),
                   "events": len(got & set(want)), "phantoms": len(got - set(want)),
                   "missing_from_end": missing,   # posts of its thread after each missing one
                   "in_flight": sent["posts"] - w["requests"],   # posted, their answer not read by wrk's stop
                   "committed_at_end": at_end, "e2e_secs": (t_last or t1) - t0, "wrk_wall_secs": t1 - t0,
                   "cpu": shares, "worker_cpu": worker_cpu, "cpu_secs": cpu.elapsed,
                   "ignored": None if ignored0 is None or ignored1 is None else ignored1 - ignored0}
            out["runs"].append(run)
            say(f"wrk: {replicas} replica(s), {mix}: {w['ok']:,} × 2xx in {w['secs']:.1f} s, "
                f"{run['events']:,} events of {len(want):,} distinct deliver posted; {len(missing)} cut by wrk's "
                f"stop ({run['in_flight']} in flight)")
    finally:
        for wp in workers:
            wp.stop()
        await asyncio.sleep(0.5)
        out["duplicates"] = tail.duplicates
        await tail.stop()
        await delete_topics(bootstrap, prefix)
    top = workers[0].profile_top(30)
    if top:
        print(f"--- cProfile of the worker process (wrk, {replicas} replica(s)) ---\n{top}", file=sys.stderr)
    return out


async def measure(bootstrap: str, secs: int, warm_secs: int, per_thread: int, setups: list[list],
                  profile: bool = False) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="esw-bench-wrk-"))
    out: dict = {"bare": await bare_ceiling(workdir, secs, per_thread), "setups": []}
    say(f"wrk: bare aiohttp {out['bare']['ok'] / out['bare']['secs']:,.0f} req/s")
    out["floor"] = await floor(bootstrap, workdir, secs, warm_secs, per_thread)
    say(f"wrk: floor pipeline {out['floor']['ok'] / out['floor']['secs']:,.0f} req/s, "
        f"{out['floor']['committed']:,} committed")
    for replicas, mixes, *spread in setups:
        out["setups"].append(await worker_setup(bootstrap, workdir, replicas, secs, per_thread, warm_secs, mixes,
                                                profile, *spread))
    shutil.rmtree(workdir, ignore_errors=True)  # kept when something failed: the worker logs are there
    return out


def _broker_pid() -> int | None:
    pid = os.environ.get("BENCH_BROKER_PID")
    return int(pid) if pid else None


# -- the table ------------------------------------------------------------------------------------


def ms(us: float) -> float:
    return us / 1e3


def run(ctx) -> list[dict]:
    wrk_binary()    # fails here, with the message, when wrk is missing
    if ctx.quick:
        secs, warm, per_thread = 2, 1, 8_000
        setups = [[1, ["deliver", "opens"]], [2, ["dups"]], [2, ["deliver"], 2, 2]]
    else:
        secs, warm, per_thread = 8, 2, 40_000
        setups = [[1, list(MIXES)], [2, list(MIXES)], [2, list(MIXES), 2, 2]]
    say(f"wrk: -t{THREADS} -c{CONNECTIONS} -d{secs}s; bare aiohttp, the floor pipeline, then the worker with "
        + " and ".join(f"{s[0]} replica(s) ({', '.join(s[1])})" + (f", spread {s[2]} of {s[3]} shards" if s[2:] else "")
                       for s in setups))
    r = run_child("wrk:measure", {"bootstrap": ctx.bootstrap, "secs": secs, "warm_secs": warm,
                                  "per_thread": per_thread, "setups": setups, "profile": ctx.profile}, timeout=600)
    bare = r["bare"]
    ceiling = bare["ok"] / bare["secs"]
    shape = f"wrk -t{THREADS} -c{CONNECTIONS} -d{secs}s"
    rows = [
        row(NAME, "bare aiohttp ceiling (1 process)", ceiling, "req/s",
            f"{bare['ok']:,} × 2xx in {bare['secs']:.1f} s; p50 {ms(bare['p50_us']):.1f} ms, p99 "
            f"{ms(bare['p99_us']):.1f} ms; {shape}; {cpu_note(bare['cpu'])}"),
    ]
    fl = r["floor"]
    fl_rate = fl["ok"] / fl["secs"]
    fl_us = fl["floor_cpu"] / max(1, fl["ok"]) * 1e6
    rows += [
        row(NAME, "floor pipeline: accepted webhooks/s (1 process)", fl_rate, "req/s",
            f"{fl['ok']:,} × 2xx in {fl['secs']:.1f} s, {fl['committed']:,} committed end to end in "
            f"{fl['transactions']:,} transactions; p99 "
            f"{ms(fl['p99_us']):.1f} ms; bench/floor_app.py; {cpu_note(fl['cpu'])}"),
        row(NAME, "floor pipeline: CPU per webhook", fl_us, "µs",
            "aiohttp, HMAC, form, aiokafka produce + consume + transaction: a lower bound on the worker's"),
        row(NAME, "floor pipeline / bare ceiling", fl_rate / ceiling, "ratio",
            f"{fl_rate:,.0f} req/s against {ceiling:,.0f}"),
        check(NAME, "floor pipeline committed what it accepted",
              fl["ok"] <= fl["committed"] <= fl["ok"] + CONNECTIONS and not fl["status"],
              f"{fl['committed']:,} committed, {fl['ok']:,} answered 2xx (at most {CONNECTIONS} more in flight at "
              f"wrk's stop); not 2xx {fl['status']}"),
    ]
    for setup in r["setups"]:
        n = setup["replicas"]
        label = f"{n} replica" + ("s" if n > 1 else "") + (f", spread {setup['spread']}" if setup["spread"] > 1 else "")
        for run_ in setup["runs"]:
            w, sent, mix = run_["wrk"], run_["sent"], run_["mix"]
            rate = w["ok"] / w["secs"]
            at = f"{label}, {mix}"
            rows += [
                row(NAME, f"accepted webhooks/s, {at}", rate, "req/s",
                    f"{w['ok']:,} × 2xx in {w['secs']:.1f} s"
                    + (f"; not 2xx {w['status']:,}" if w["status"] else "")
                    + f"; {sent['opens']:,} opens/clicks, {sent['reposts']:,} re-posts"
                    + (f" ({sent['wrapped']:,} from a slice posted again)" if sent["wrapped"] else "")
                    + f"; {cpu_note(run_['cpu'])}"),
                row(NAME, f"latency p50, {at}", ms(w["p50_us"]), "ms", f"p90 {ms(w['p90_us']):.1f} ms"),
                row(NAME, f"latency p99, {at}", ms(w["p99_us"]), "ms", f"max {ms(w['max_us']):.0f} ms"),
                row(NAME, f"end-to-end committed events/s, {at}", run_["expected"] / run_["e2e_secs"]
                    if run_["expected"] else 0.0, "events/s",
                    f"{run_['expected']:,} events; the last committed {run_['e2e_secs'] - run_['wrk_wall_secs']:.2f} s "
                    f"after wrk ended; {run_['committed_at_end']:,} committed by then"),
                row(NAME, f"worker CPU per webhook, {at}", run_["worker_cpu"] / max(1, w["ok"]) * 1e6, "µs",
                    f"{run_['worker_cpu']:.2f} s of {n} process(es) from wrk's start to the last event, "
                    f"{run_['cpu_secs']:.1f} s"),
                row(NAME, f"per replica process / bare ceiling, {at}", rate / n / ceiling, "ratio",
                    f"{rate / n:,.0f} req/s per process against {ceiling:,.0f}"),
            ]
        problems = []
        for run_ in setup["runs"]:
            w, sent, mix = run_["wrk"], run_["sent"], run_["mix"]
            cut = len(run_["missing_from_end"])
            if run_["phantoms"] or run_["records"] != run_["events"]:
                problems.append(f"{mix}: {run_['records']:,} records read back for {run_['events']:,} posted "
                                f"emails, {run_['phantoms']} never posted")
            if cut > run_["in_flight"]:
                problems.append(f"{mix}: {cut} posted deliver not read back, more than the {run_['in_flight']} "
                                "wrk had in flight at its stop")
            if w["status"] or w["connect"] or w["write"] or w["timeout"]:
                problems.append(f"{mix}: not 2xx {w['status']}, socket errors connect {w['connect']} "
                                f"write {w['write']} timeout {w['timeout']}")
            ign = run_["ignored"]
            if ign is not None and not sent["opens"] - run_["in_flight"] <= ign <= sent["opens"]:
                problems.append(f"{mix}: esw_ignored_statuses_total +{ign:.0f}, {sent['opens']:,} opens/clicks posted")
        if setup["duplicates"]:
            problems.append(f"{setup['duplicates']} duplicate event_id")

        def detail(x: dict) -> str:
            cut = x["missing_from_end"]
            return (f"{x['mix']}: {x['events']:,} of {x['expected']:,} distinct deliver posted read back"
                    + (f" ({len(cut)} cut by wrk's stop, of {x['in_flight']} in flight; each among the last "
                       f"{max(cut) + 1} posts of its thread)" if cut else "")
                    + (f", {x['ignored']:.0f} ignored of {x['sent']['opens']:,} opens/clicks" if x["sent"]["opens"]
                       else ""))

        rows.append(check(NAME, f"read-back, {label}", not problems,
                          ("; ".join(problems) + " | " if problems else "")
                          + "; ".join(detail(x) for x in setup["runs"])
                          + f"; {setup['duplicates']} duplicate event_id"))
    return rows
