"""`python -m bench`: run the benchmarks and print one table of numbers.

    python -m bench                      everything (about 31 minutes on 2 cores; soak alone ~14)
    python -m bench --quick              smaller sizes, about 3 minutes (CI runs this as a smoke test)
    python -m bench --only poll,webhook  a selection (dedup, ids, restore, poll, webhook, abuse, quota, wrk, soak)
    python -m bench --profile            also print cProfile tops (children and worker processes)
    python -m bench --json out.json      also write the rows as JSON

Every benchmark also checks its own results (read back, nothing lost, no duplicate event_id)
and adds a `check:` row; the exit status is 1 when a check failed, a benchmark raised, or a
benchmark reported no check at all. The figures themselves are printed, never judged.

Kafka: KAFKA_BOOTSTRAP_SERVERS if set, else a single-node broker started in a temp dir with
scripts/kafka.py and stopped at the end. Everything listens on and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from types import SimpleNamespace

from bench import abuse, dedup, ids, poll, quota, restore, shard, soak, webhook, wrk
from bench.common import ROOT, WORKER_TREE, CpuMeter, failed_checks, kafka_broker, row, say, table

BENCHES = {"dedup": dedup, "ids": ids, "restore": restore, "poll": poll, "webhook": webhook, "abuse": abuse, "quota": quota,
           "wrk": wrk, "shard": shard, "soak": soak}
NEEDS_KAFKA = {"restore", "poll", "webhook", "abuse", "quota", "wrk", "shard", "soak"}


def background_load(secs: float = 1.0) -> float:
    """CPU used by the rest of the machine over `secs`, as a share of one core."""
    meter = CpuMeter({})
    time.sleep(secs)
    return meter.stop()["other"]


def git_head() -> str:
    if WORKER_TREE != ROOT:
        return f"{WORKER_TREE} (BENCH_WORKER_TREE)"
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "worker"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return head + ("+changes" if dirty else "") if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=None, help=f"comma-separated subset of {', '.join(BENCHES)}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes; finishes in about 3 minutes")
    parser.add_argument("--profile", action="store_true", help="print cProfile tops to stderr")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    names = list(BENCHES) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")

    background = background_load()
    if background > 0.1:
        say(f"WARNING: other processes use {background * 100:.0f}% of a core right now; the numbers will be lower")
    started = time.monotonic()
    rows: list[dict] = []
    timings: dict[str, float] = {}
    failed = False
    ctx = SimpleNamespace(quick=args.quick, profile=args.profile, bootstrap=None)

    def run_all() -> None:
        nonlocal failed
        for name in names:
            t0 = time.monotonic()
            say(f"== {name}{' (quick)' if args.quick else ''}")
            try:
                got = BENCHES[name].run(ctx)
                rows.extend(got)
                if not any(r["metric"].startswith("check: ") for r in got):
                    failed = True
                    rows.append(row(name, "check: none reported", "FAILED", "", "every benchmark must check its results"))
            except Exception as exc:  # noqa: BLE001 - report and go on with the next benchmark
                failed = True
                traceback.print_exc()
                rows.append(row(name, "ERROR", None, "", f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"))
            timings[name] = time.monotonic() - t0
            say(f"== {name} took {timings[name]:.0f} s")

    if any(n in NEEDS_KAFKA for n in names):
        with kafka_broker() as (bootstrap, pid):
            ctx.bootstrap = bootstrap
            if pid:
                os.environ["BENCH_BROKER_PID"] = str(pid)
            run_all()
    else:
        run_all()

    total = time.monotonic() - started
    cpus = os.cpu_count()
    print(f"\nemail-status-worker benchmarks, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{cpus} cores, Python {platform.python_version()}, {'quick' if args.quick else 'full'} run; "
          f"worker at {git_head()}; other processes used {background * 100:.0f}% of a core at the start\n")
    print(table(rows))
    print("\nruntime: " + ", ".join(f"{n} {s:.0f} s" for n, s in timings.items()) + f"; total {total:.0f} s")
    bad = failed_checks(rows)
    checks = sum(1 for r in rows if r["metric"].startswith("check: "))
    print(f"checks: {checks - len(bad)} of {checks} ok" + "".join(f"\n  FAILED {r['bench']}: {r['metric'][7:]}: {r['note']}"
                                                              for r in bad))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": datetime.now(timezone.utc).isoformat(), "cores": cpus, "quick": args.quick,
                       "worker_commit": git_head(), "background_load": background,
                       "timings": timings, "total_secs": total, "rows": rows}, f, indent=2)
    return 1 if failed or bad else 0


if __name__ == "__main__":
    sys.exit(main())
