"""Shared pieces of the benchmarks: the broker, child processes, the worker process, memory and CPU
probes, metrics scraping, a read_committed tail of the output topics, and the result table.

Everything here talks to 127.0.0.1 only and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Where the worker process runs from (`python -m worker` imports the tree it starts in): this
# checkout, or BENCH_WORKER_TREE, e.g. `git archive <commit>` unpacked somewhere, to measure another
# version of the worker against this checkout's benchmarks and simulator.
WORKER_TREE = Path(os.environ.get("BENCH_WORKER_TREE") or ROOT).resolve()
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


# -- results --------------------------------------------------------------------------------------


def row(bench: str, metric: str, value: float | int | str | None, unit: str = "", note: str = "") -> dict:
    return {"bench": bench, "metric": metric, "value": value, "unit": unit, "note": note}


CHECK_OK, CHECK_FAILED = "ok", "FAILED"


def check(bench: str, what: str, ok: bool, detail: str) -> dict:
    """A benchmark's own correctness check as a table row; any FAILED row fails the run."""
    return row(bench, f"check: {what}", CHECK_OK if ok else CHECK_FAILED, "", detail)


def failed_checks(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["metric"].startswith("check: ") and r["value"] != CHECK_OK]


def fmt_value(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def table(rows: list[dict]) -> str:
    """A Markdown table: benchmark | metric | value | unit | note."""
    head = ["benchmark", "metric", "value", "unit", "note"]
    cells = [[r["bench"], r["metric"], fmt_value(r["value"]), r["unit"], r["note"]] for r in rows]
    widths = [max([len(head[i])] + [len(c[i]) for c in cells]) for i in range(len(head))]

    def line(parts: list[str]) -> str:
        return "| " + " | ".join(p.rjust(w) if i == 2 else p.ljust(w)
                                 for i, (p, w) in enumerate(zip(parts, widths))) + " |"

    out = [line(head), "|" + "|".join(("-" * (w + 1) + ":") if i == 2 else "-" * (w + 2)
                                      for i, w in enumerate(widths)) + "|"]
    return "\n".join(out + [line(c) for c in cells])


def say(*parts: Any) -> None:
    print("[bench]", *parts, file=sys.stderr, flush=True)


# -- memory and CPU -------------------------------------------------------------------------------


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def reset_peak_rss() -> bool:
    """Reset VmHWM (the peak RSS) of this process; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def malloc_trim() -> None:
    """Give freed heap back to the OS (glibc), so RSS shows what is live rather than what is cached."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def cpu_secs(pid: int | str = "self") -> float | None:
    """User + system CPU seconds of a process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, IndexError, ValueError):
        return None


def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, all cores."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / TICKS, steal / TICKS


class CpuMeter:
    """CPU use of named processes over an interval, as a share of one core, plus `other`: what
    every other process on the machine used meanwhile (a benchmark shares the cores with them)."""

    def __init__(self, pids: dict[str, int | str | None]) -> None:
        self.pids = {k: v for k, v in pids.items() if v is not None}
        self.start()

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.c0 = {k: cpu_secs(p) for k, p in self.pids.items()}
        self.m0 = machine_cpu()

    def stop(self) -> dict[str, float]:
        """Shares of one core; `self.elapsed` is the interval and `self.secs` the CPU seconds."""
        dt = max(1e-9, time.monotonic() - self.t0)
        self.elapsed = dt
        out = {}
        for k, p in self.pids.items():
            now = cpu_secs(p)
            if now is not None and self.c0.get(k) is not None:
                out[k] = (now - self.c0[k]) / dt
        busy, steal = machine_cpu()
        out["other"] = max(0.0, (busy - self.m0[0]) / dt - sum(out.values()))
        if (steal - self.m0[1]) / dt > 0.01:
            out["steal"] = (steal - self.m0[1]) / dt
        self.secs = {k: v * dt for k, v in out.items()}
        return out


def cpu_note(shares: dict[str, float]) -> str:
    return "CPU " + ", ".join(f"{k} {v * 100:.0f}%" for k, v in shares.items())


# -- the broker -----------------------------------------------------------------------------------


def kafka_script():
    spec = importlib.util.spec_from_file_location("esw_kafka_script", ROOT / "scripts" / "kafka.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def kafka_broker() -> Iterator[tuple[str, int | None]]:
    """(bootstrap, broker pid): KAFKA_BOOTSTRAP_SERVERS if set, else our own broker in a temp dir."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given, None
        return
    script = kafka_script()
    state = Path(tempfile.mkdtemp(prefix="esw-bench-kafka-"))
    try:
        started = time.monotonic()
        try:
            bootstrap = script.up(state)
        except SystemExit as exc:
            raise RuntimeError(f"could not start Kafka: {exc}") from None
        pid = int((state / "broker.pid").read_text())
        say(f"kafka up at {bootstrap} in {time.monotonic() - started:.1f} s (pid {pid}, dir {state})")
        yield bootstrap, pid
    finally:
        script.down(state)
        shutil.rmtree(state, ignore_errors=True)
        say("kafka down")


# -- child processes ------------------------------------------------------------------------------


def run_child(func: str, args: dict, *, timeout: float, profile: bool = False) -> Any:
    """Run `bench.<module>:<function>(**args)` in a fresh interpreter (clean RSS, own GC history);
    return its JSON result. The child's stderr passes through."""
    cmd = [sys.executable, "-m", "bench._child", func, json.dumps(args)]
    if profile:
        cmd.append("--profile")
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, timeout=timeout, check=False,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=die_with_parent)
    lines = proc.stdout.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{func} failed with exit code {proc.returncode}")
    return json.loads(lines[-1])


def die_with_parent() -> None:
    """In a child, before exec: SIGTERM when the parent dies (a benchmark killed by its timeout
    must not leave a worker behind)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the worker -----------------------------------------------------------------------------------


def worker_config(bootstrap: str, prefix: str, accounts: list[dict], *, shards: int = 4, port: int | None = None,
                  kafka: dict | None = None, log_level: str = "INFO", inputs: dict | None = None) -> dict:
    """A worker config with the production defaults, except: own topics/group, loopback HTTP."""
    k = {"bootstrap_servers": bootstrap, "topic_prefix": prefix, "shards": shards, "group_id": f"{prefix}-g",
         **(kafka or {})}
    data = {"kafka": k, "http": {"host": "127.0.0.1", "port": port or free_port()},
            "shutdown": {"grace_secs": 10}, "logging": {"level": log_level}, "accounts": accounts}
    if inputs:
        data["inputs"] = inputs
    return data


def check_config(data: dict, env: dict[str, str], workdir: Path) -> list[str]:
    """The problems `python -m worker check-config` (of the worker tree that will run) finds in
    `data`; [] when it accepts it."""
    import yaml

    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "check.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = subprocess.run([sys.executable, "-m", "worker", "check-config", "--config", str(path)], cwd=WORKER_TREE,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode == 0:
        return []
    lines = [line.strip() for line in proc.stderr.splitlines()[1:] if line.strip()]
    return lines or [proc.stderr.strip() or f"check-config exited with {proc.returncode}"]


class WorkerProcess:
    """`python -m worker run --config FILE` as a real process (its own core, like in production);
    optionally under cProfile, whose stats are written when it exits on SIGTERM."""

    def __init__(self, data: dict, env: dict[str, str], workdir: Path, profile: bool = False) -> None:
        import yaml

        self.url = f"http://127.0.0.1:{data['http']['port']}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.config_path = workdir / "worker.yaml"
        self.config_path.write_text(yaml.safe_dump(data))
        self.log_path = workdir / "worker.log"
        self.prof_path = workdir / "worker.prof" if profile else None
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.env.pop("KAFKA_BOOTSTRAP_SERVERS", None)  # the config file names the broker
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        prof = ["-m", "cProfile", "-o", str(self.prof_path)] if self.prof_path else []
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *prof, "-m", "worker", "run", "--config", str(self.config_path)],
                cwd=WORKER_TREE, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def ready(self, timeout: float = 90.0) -> None:
        """/readyz answers 200 and /status says every assigned shard is restored."""
        import aiohttp

        deadline = time.monotonic() + timeout
        last = None
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    async with session.get(f"{self.url}/readyz") as r:
                        last = await r.text()
                        ready = r.status == 200
                    if ready:   # and every assigned shard restored (not part of readiness)
                        async with session.get(f"{self.url}/status") as r:
                            group = (await r.json()).get("group", {})
                            last = f"restoring {group.get('restoring')}"
                            if group.get("restored"):
                                return
                except aiohttp.ClientError as exc:
                    last = repr(exc)
                await asyncio.sleep(0.1)
        raise TimeoutError(f"worker not ready after {timeout} s: {last}\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def profile_top(self, n: int = 25) -> str | None:
        if not self.prof_path or not self.prof_path.exists():
            return None
        return profile_text(self.prof_path, n)


def profile_text(path: Path | str, n: int = 25) -> str:
    import io
    import pstats

    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("tottime").print_stats(n)
    out.write("--- the worker's own functions by cumulative time ---\n")
    stats.sort_stats("cumulative").print_stats(r"/worker/", n)
    return out.getvalue()


async def scrape(url: str) -> dict[str, float]:
    """The worker's /metrics, as `parse_metrics` reads them."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as r:
        return parse_metrics(await r.text())


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text as {metric name: summed value} (labels summed away), plus {name{labels}:
    value} entries for the labelled series."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        try:
            v = float(value)
        except ValueError:
            continue
        out[series] = v
        name = series.split("{", 1)[0]
        out[name] = out.get(name, 0.0) + v if series != name else v
    return out


def metric(m: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the series of `name` whose labels include `labels`."""
    total = 0.0
    for series, v in m.items():
        if not series.startswith(name + "{"):
            continue
        if all(f'{k}="{val}"' in series for k, val in labels.items()):
            total += v
    return total


# -- reading the output back ----------------------------------------------------------------------


class EventTail:
    """A downstream consumer (read_committed, from the beginning) of the output topics that notes
    when each committed record arrived and counts distinct event ids (exactly-once check).
    `on_record(record, wall_time)`, when given, sees every record as it arrives."""

    def __init__(self, bootstrap: str, topics: list[str], on_record: Any = None) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.on_record = on_record
        self.count = 0
        self.ids: set[bytes] = set()
        self.arrivals: list[tuple[float, int]] = []  # (monotonic time, records in that fetch)
        self.first: float | None = None
        self.last: float | None = None
        self._task: asyncio.Task | None = None
        self._consumer = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, isolation_level="read_committed",
                                          enable_auto_commit=False, auto_offset_reset="earliest",
                                          fetch_max_wait_ms=50)
        await self._consumer.start()
        parts = []
        for topic in self.topics:
            found = None
            for _ in range(100):
                found = self._consumer.partitions_for_topic(topic)
                if found:
                    break
                await self._consumer._client.force_metadata_update()  # noqa: SLF001
                await asyncio.sleep(0.1)
            if not found:
                raise RuntimeError(f"topic {topic} not found")
            parts += [TopicPartition(topic, p) for p in sorted(found)]
        self._consumer.assign(parts)
        await self._consumer.seek_to_beginning(*parts)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100, max_records=20_000)
            n = 0
            wall = time.time()
            for records in batch.values():
                for r in records:
                    n += 1
                    if self.on_record is not None:
                        self.on_record(r, wall)
                    for k, v in r.headers:
                        if k == "event_id":
                            self.ids.add(v)
                            break
            if n:
                now = time.monotonic()
                self.first = self.first or now
                self.last = now
                self.count += n
                self.arrivals.append((now, n))

    def count_between(self, t0: float, t1: float) -> int:
        return sum(n for t, n in self.arrivals if t0 <= t < t1)

    def time_of(self, nth: int) -> float | None:
        """When the nth record (1-based) arrived."""
        seen = 0
        for t, n in self.arrivals:
            seen += n
            if seen >= nth:
                return t
        return None

    async def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.count < count and time.monotonic() < deadline:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.05)
        return self.count >= count

    async def wait_quiet(self, quiet: float, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.last is None or time.monotonic() - self.last >= quiet:
                return
            await asyncio.sleep(0.1)

    @property
    def duplicates(self) -> int:
        return self.count - len(self.ids)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


async def delete_topics(bootstrap: str, prefix: str) -> None:
    """Remove a benchmark's topics (they matter on a broker given by KAFKA_BOOTSTRAP_SERVERS)."""
    from aiokafka.admin import AIOKafkaAdminClient

    with contextlib.suppress(Exception):
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if t.startswith(prefix + ".")]
            if names:
                await asyncio.wait_for(admin.delete_topics(names), 30)
        finally:
            await admin.close()


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]
