"""`email-status-worker simulate`: serve the simulated providers, optionally sending webhooks."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import yaml

from worker.simulator.demo import demo_config, demo_worker_accounts, demo_worker_env
from worker.simulator.simconfig import SimAccount, SimConfig

__all__ = ["add_parser", "demo_config", "demo_worker_accounts", "demo_worker_env", "load_sim_config", "run"]


# A worker that starts with the simulator may wait on Kafka for a minute or two before it answers
# webhooks; real providers retry for hours. 0.5 s doubling to 30 s over 12 tries is ~3 minutes.
WEBHOOK_ATTEMPTS = 12
WEBHOOK_RETRY_SECS = 0.5
WEBHOOK_RETRY_MAX_SECS = 30.0


def _number(kind: type, low: float, high: float | None = None, *, above: bool = False) -> Callable[[str], Any]:
    """An argparse type: `kind` (int or float) from `low` (excluded with `above`) to `high`."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value != value or (value <= low if above else value < low) or (high is not None and value > high):
            bound = f"above {low:g}" if above else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"{text} is not {bound}" + (f" and at most {high:g}" if high is not None else ""))
        return value
    return parse


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("simulate", help="run the provider simulator (all five status APIs, webhooks)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=_number(int, 0, 65535), default=8090, help="listen port; 0 picks a free one (default 8090)")
    p.add_argument("--seed", type=int, default=None, help="stream seed (overrides the config file's)")
    p.add_argument("--time-scale", type=_number(float, 0, above=True), default=None,
                   help="status changes happen this many times faster than real delays (default 60 for the demo)")
    p.add_argument("--webhook-target", default=None, metavar="URL",
                   help="also post each provider's webhooks to URL/webhooks/<provider>/<account>")
    p.add_argument("--webhook-interval", type=_number(float, 0, above=True), default=1.0, help="seconds between webhook sends (default 1)")
    p.add_argument("--latency-ms", type=_number(float, 0), default=None, metavar="MS",
                   help="delay every status-API answer by MS milliseconds, as a distant provider would "
                        "(the quota is charged on arrival; webhooks are not delayed; default 0)")
    p.add_argument("--webhook-attempts", type=_number(int, 1), default=WEBHOOK_ATTEMPTS,
                   help="tries per webhook before it is given up, as providers retry for a while "
                        f"(default {WEBHOOK_ATTEMPTS})")
    p.add_argument("--webhook-retry-secs", type=_number(float, 0, above=True), default=WEBHOOK_RETRY_SECS, metavar="SECS",
                   help=f"first back-off after a failed webhook, doubling up to {WEBHOOK_RETRY_MAX_SECS:.0f} s "
                        f"(default {WEBHOOK_RETRY_SECS}): with the defaults a webhook is retried for about "
                        "three minutes, so a worker still waiting on Kafka at start loses none")
    p.add_argument("--duplicate-rate", type=_number(float, 0, 1), default=0.0, help="share of webhooks sent twice")
    p.add_argument("--reorder-window", type=_number(int, 0), default=0, help="shuffle webhooks within windows of this size")
    p.add_argument("--duration", type=_number(float, 0), default=0.0, help="stop after this many seconds (0: until SIGINT/SIGTERM)")
    p.add_argument("--config", default=None, metavar="FILE", help="YAML file describing the accounts (default: the demo)")
    p.set_defaults(func=run)
    return p


def load_sim_config(path: str | Path) -> SimConfig:
    """A YAML file: `seed`, `time_scale`, `latency_ms` and `accounts:` whose keys are SimAccount's fields."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not isinstance(data.get("accounts"), list):
        raise ValueError(f"{path}: expected a mapping with an `accounts:` list")
    accounts = []
    for i, raw in enumerate(data["accounts"]):
        try:
            accounts.append(SimAccount(**raw))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: accounts[{i}]: {exc}") from None
    try:
        latency_ms = float(data.get("latency_ms", 0.0))
        return SimConfig(seed=int(data.get("seed", 1)), time_scale=float(data.get("time_scale", 60.0)),
                         latency_ms=latency_ms, accounts=tuple(accounts))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    try:
        config = load_sim_config(args.config) if args.config else demo_config()
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    overrides: dict[str, Any] = {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.time_scale is not None:
        overrides["time_scale"] = args.time_scale
    if args.latency_ms is not None:
        overrides["latency_ms"] = args.latency_ms
    if overrides:
        import attrs

        try:
            config = attrs.evolve(config, **overrides)
        except ValueError as exc:
            print(f"simulate: {exc}", file=sys.stderr)
            return 2
    return asyncio.run(_serve(config, args))


async def _serve(config: SimConfig, args: argparse.Namespace) -> int:
    from worker.simulator.server import Simulator
    from worker.simulator.webhooks import WebhookSender

    sim = Simulator(config)
    try:
        base = await sim.start(args.host, args.port)
    except OSError as exc:   # the port taken, not ours to bind, a host not on this machine
        await sim.stop()
        print(f"simulate: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    print(orjson.dumps({"simulator": base, "accounts": [a.name for a in config.accounts],
                        "seed": config.seed, "time_scale": config.time_scale,
                        "latency_ms": config.latency_ms}).decode(), flush=True)
    if not args.config:
        print(orjson.dumps({"worker_env": demo_worker_env(),
                            "worker_accounts": demo_worker_accounts(base)}).decode(), flush=True)
    sender_task = None
    if args.webhook_target:
        sender = WebhookSender(sim, args.webhook_target, duplicate_rate=args.duplicate_rate,
                               reorder_window=args.reorder_window, seed=config.seed,
                               max_attempts=args.webhook_attempts, retry_base_secs=args.webhook_retry_secs,
                               retry_max_secs=WEBHOOK_RETRY_MAX_SECS)
        sender_task = asyncio.create_task(sender.run(args.webhook_interval, stop), name="webhook-sender")
    try:
        if args.duration > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), args.duration)
        else:
            await stop.wait()
    finally:
        stop.set()
        if sender_task is not None:  # it ends on `stop`; one still retrying a webhook is cut short
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(sender_task, 5.0)
        await sim.stop()
        print(orjson.dumps({"stopped": base, "stats": {n: sim.stats(n) for n in sim.accounts}}).decode(), flush=True)
    return 0
