"""`make demo`: a local Kafka, the provider simulator (all five providers) and the worker, with a
live view of the normalized events and of the suppression list that examples/suppression_consumer.py
builds from them, until Ctrl-C.

The simulator runs in this process together with its webhook sender and a stand-in for the
mail-sending service that feeds the sent-message topic (UniSender is polled by id). The worker
runs as its own process, exactly as `email-status-worker run --config FILE` runs in production.
Everything listens on 127.0.0.1 and stops on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib.util
import os
import signal
import socket
import sys
import time
from pathlib import Path

import attrs
import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker.model import EventType, Provider  # noqa: E402
from worker.simulator import Simulator, WebhookSender, demo_config, demo_worker_accounts, demo_worker_env  # noqa: E402

RUN = ROOT / ".run" / "demo"
PREFIX = "email.status"
SENT_TOPIC = "mail.sent"
SUPPRESSION_DB = RUN / "suppression.db"
SENDER_STOP_SECS = 10.0   # at most this long for the webhook sender to finish what it is sending
TYPES = [t.value for t in EventType]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _kafka_script():
    return _load("esw_kafka", ROOT / "scripts" / "kafka.py")


suppression = _load("suppression_consumer", ROOT / "examples" / "suppression_consumer.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class View:
    """The console: events per provider and type, and the latest few events."""

    def __init__(self) -> None:
        self.counts: collections.Counter = collections.Counter()
        self.sources: collections.Counter = collections.Counter()
        self.samples: collections.deque = collections.deque(maxlen=6)
        self.started = time.monotonic()

    def add(self, event: dict) -> None:
        self.counts[(event["provider"], event["type"])] += 1
        self.sources[event["source"]] += 1
        self.samples.append(event)

    def render(self, status: str) -> str:
        lines = [f"email-status-worker demo  ({time.monotonic() - self.started:.0f} s)  {status}", ""]
        lines.append(f"{'provider':<18}" + "".join(f"{t:>14}" for t in TYPES))
        for p in Provider:
            lines.append(f"{p.value:<18}" + "".join(f"{self.counts[(p.value, t)]:>14}" for t in TYPES))
        total = sum(self.counts.values())
        lines += ["", f"{total} events ({self.sources['webhook']} from webhooks, {self.sources['poll']} from polls)",
                  ""]
        kinds = suppression.summary(str(SUPPRESSION_DB))
        lines += [f"suppression list (examples/suppression_consumer.py): {sum(kinds.values())} rows in force",
                  "  " + "".join(f"{k} {n:<8}" for k, n in kinds.items()), "", "latest:"]
        for e in reversed(self.samples):
            reason = f" {e['reason']}" if e["reason"] else ""
            lines.append(f"  {e['occurred_at']}  {e['provider']:<16} {e['type']:<13} {e['recipient']:<32}"
                         f"{reason} [{e['source']}]")
        lines += ["", f"topics {PREFIX}.<type> on Kafka; worker log: {RUN / 'worker.log'}", "Ctrl-C to stop"]
        return "\n".join(lines)


async def ensure_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if name not in await admin.list_topics():
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(name, 3, 1)])
    finally:
        await admin.close()


async def feed_sent(sim: Simulator, bootstrap: str, names: list[str], stop: asyncio.Event) -> None:
    """What the mail-sending service would do: one sent-message record per message it sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    done: set = set()
    try:
        while not stop.is_set():
            for name in names:
                provider = sim.accounts[name].account.provider.value
                for sent in sim.sent_messages(name):
                    if (name, sent.email_id) in done:
                        continue
                    done.add((name, sent.email_id))
                    record = {"provider": provider, "account": name, "email_id": sent.email_id,
                              "recipient": sent.recipient,
                              "sent_at": sent.sent_at.isoformat().replace("+00:00", "Z")}
                    await producer.send(SENT_TOPIC, orjson.dumps(record), key=sent.email_id.encode())
            await producer.flush()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
    finally:
        await producer.stop()


async def watch(bootstrap: str, view: View, stop: asyncio.Event, worker: asyncio.subprocess.Process) -> None:
    consumer = AIOKafkaConsumer(*[f"{PREFIX}.{t}" for t in TYPES], bootstrap_servers=bootstrap,
                                isolation_level="read_committed", auto_offset_reset="latest",
                                enable_auto_commit=False, metadata_max_age_ms=5000)
    await consumer.start()
    try:
        last = 0.0
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    view.add(orjson.loads(r.value))
            if time.monotonic() - last > 1.0:
                state = "worker running" if worker.returncode is None else f"worker exited ({worker.returncode})"
                sys.stdout.write("\x1b[2J\x1b[H" + view.render(state) + "\n")
                sys.stdout.flush()
                last = time.monotonic()
    finally:
        await consumer.stop()


async def main(args: argparse.Namespace) -> int:
    RUN.mkdir(parents=True, exist_ok=True)
    kafka = _kafka_script()
    kafka_state = RUN / "kafka"
    kafka_state.mkdir(exist_ok=True)
    print("starting Kafka ...", flush=True)
    bootstrap = kafka.up(kafka_state)
    print(f"Kafka at {bootstrap}", flush=True)

    # The simulator's 10-minute result cache is real; shorten it (on both sides) so the demo's
    # polls find new statuses within seconds instead of minutes.
    base = demo_config(seed=args.seed, time_scale=args.time_scale)
    sim_config = attrs.evolve(base, accounts=tuple(
        attrs.evolve(a, cache_ttl_secs=min(a.cache_ttl_secs, 15.0)) for a in base.accounts))
    sim = Simulator(sim_config)
    sim_url = await sim.start()
    port = free_port()
    accounts = demo_worker_accounts(sim_url)
    for account in accounts:
        account["poll"] = {"cache_ttl_secs": 15, "interval_min_secs": 15, "interval_max_secs": 120, "lookback_days": 2}
    config = {
        "kafka": {"bootstrap_servers": bootstrap, "topic_prefix": PREFIX, "shards": 12, "batch_linger_ms": 100},
        "http": {"host": "127.0.0.1", "port": port},
        "inputs": {"sent_topic": SENT_TOPIC},
        "accounts": accounts,
    }
    config_path = RUN / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    await ensure_topic(bootstrap, SENT_TOPIC)
    SUPPRESSION_DB.unlink(missing_ok=True)  # Kafka starts empty, so does the list (and its offsets)

    log = open(RUN / "worker.log", "ab")
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", "run", "--config", str(config_path), cwd=ROOT,
        # the demo's own broker: a KAFKA_BOOTSTRAP_SERVERS in the caller's environment would override
        # the config's (worker.config) and send the worker to another cluster
        env={**os.environ, **demo_worker_env(), "KAFKA_BOOTSTRAP_SERVERS": bootstrap},
        stdout=log, stderr=asyncio.subprocess.STDOUT)
    print(f"worker on http://127.0.0.1:{port} (/status, /metrics); simulator at {sim_url}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.seconds:
        loop.call_later(args.seconds, stop.set)
    sender = WebhookSender(sim, f"http://127.0.0.1:{port}", duplicate_rate=0.05, reorder_window=4, max_attempts=8,
                           retry_base_secs=0.5)
    view = View()
    tasks = [
        asyncio.create_task(sender.run(1.0, stop)),
        asyncio.create_task(feed_sent(sim, bootstrap, ["unisender-demo"], stop)),
        asyncio.create_task(watch(bootstrap, view, stop, worker)),
        asyncio.create_task(suppression.consume(bootstrap, PREFIX, str(SUPPRESSION_DB), stop=stop)),
    ]
    await stop.wait()
    print("\nstopping ...", flush=True)
    # The webhook sender first, while the worker still answers: against a stopped worker each of its
    # deliveries would be retried with backoff for about a minute, and the demo would not stop.
    await asyncio.wait([tasks[0]], timeout=SENDER_STOP_SECS)
    tasks[0].cancel()
    if worker.returncode is None:
        worker.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(worker.wait(), 30)
        except asyncio.TimeoutError:
            worker.kill()
    await asyncio.gather(*tasks, return_exceptions=True)
    await sim.stop()
    kafka.down(kafka_state)
    print(view.render("stopped"))
    return 0 if sum(view.counts.values()) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=0, help="stop by itself after this long (0: until Ctrl-C)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-scale", type=float, default=60.0, help="how much faster statuses change than in life")
    sys.exit(asyncio.run(main(parser.parse_args())))
