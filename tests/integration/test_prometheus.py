"""The shipped alert rules and dashboard against a real Prometheus scraping a real worker.

Prometheus (Debian's package, as CI installs it) scrapes the worker every second and evaluates a
copy of `helm/email-status-worker/files/alerts.yaml` whose windows and `for:` durations are
shortened mechanically (every range to RANGE, every `for:` to FOR); the expressions are otherwise
the shipped ones. Two SendCloud accounts poll the simulator; both get their webhooks at first, then
the providers stop sending one account's webhooks while its polls go on. EswWebhooksSilent must
fire for that account through Prometheus' API, and never for the other. Every query of the
shipped dashboard is then evaluated against the same Prometheus: each must parse, and every panel
must show series (the run produces what the panels show: a 401, a dead letter, an ignored status,
throttles, failed polls; the errors panel's "all errors" line is 0 when nothing failed).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.integration.harness import ROOT, WorkerProcess, free_port, worker_config
from tests.integration.test_webhooks import sendcloud_form
from tests.integration.world import ENV, sim_account, worker_account
from tests.monitoring import dashboard_queries, load_dashboard
from worker.model import Provider
from worker.simulator import Faults, SimConfig, Simulator
from worker.simulator.webhooks import WebhookSender

pytestmark = pytest.mark.integration

RULES = ROOT / "helm" / "email-status-worker" / "files" / "alerts.yaml"
RANGE, FOR = "20s", "5s"
DURATION = re.compile(r"\[\d+[smhdw](?::\d+[smhdw])?\]")


def short_rules(text: str) -> dict:
    """The shipped rules with every range selector RANGE and every `for:` FOR."""
    rules = yaml.safe_load(text)
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["expr"] = DURATION.sub(f"[{RANGE}]", rule["expr"])
            if "for" in rule:
                rule["for"] = FOR
    return rules


def test_short_rules_rewrites_every_window_and_nothing_else():
    text = """groups:
- name: g
  rules:
  - alert: A
    expr: sum(increase(x_total{a="[1m]"}[30m])) > 2 and max_over_time(y[1h:5m]) > 0
    for: 15m
  - alert: B
    expr: z == 0
"""
    rules = short_rules(text)["groups"][0]
    assert rules["interval"] == "1s"
    assert rules["rules"][0] == {"alert": "A", "for": "5s",
                                 "expr": 'sum(increase(x_total{a="[20s]"}[20s])) > 2 and max_over_time(y[20s]) > 0'}
    assert rules["rules"][1] == {"alert": "B", "expr": "z == 0"}


class Prometheus:
    """`prometheus` on a loopback port with its own data directory, stopped at the end."""

    def __init__(self, workdir: Path, target: str, rules: dict) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed: .ci/run installs Debian's `prometheus` package"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (workdir / "rules.yaml").write_text(yaml.safe_dump(rules))
        (workdir / "prometheus.yaml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(workdir / "rules.yaml")],
            "scrape_configs": [{"job_name": "esw", "static_configs": [{"targets": [target]}]}],
        }))
        self.log = open(workdir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yaml'}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)

    async def ready(self, session: aiohttp.ClientSession, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "prometheus exited at start"
            try:
                async with session.get(f"{self.url}/-/ready") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise TimeoutError("prometheus not ready")

    async def query(self, session: aiohttp.ClientSession, expr: str) -> list[dict]:
        async with session.get(f"{self.url}/api/v1/query", params={"query": expr}) as r:
            body = await r.json()
        assert body["status"] == "success", (expr, body)
        return body["data"]["result"]

    async def alerts(self, session: aiohttp.ClientSession) -> list[dict]:
        async with session.get(f"{self.url}/api/v1/alerts") as r:
            body = await r.json()
        return body["data"]["alerts"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def firing(alerts: list[dict], name: str) -> set[str]:
    return {a["labels"].get("account", "") for a in alerts if a["labels"]["alertname"] == name and a["state"] == "firing"}


async def test_silent_webhooks_alert_fires_and_every_dashboard_query_returns_series(tmp_path, kafka_bootstrap,
                                                                                      topic_prefix):
    stream = {"cache_ttl_secs": 2.0, "history_days": 1, "history_per_day": 20, "live_per_sec": 2.0, "live_max": None}
    heard, deaf = (sim_account(Provider.SENDCLOUD, name, **stream) for name in ("heard", "deaf"))
    sim = Simulator(SimConfig(seed=7, accounts=(heard, deaf), time_scale=6000))
    base = await sim.start()
    # the worker believes in a bigger quota than the simulator grants `heard`: it gets throttled
    accounts = [worker_account(heard, base, poll={"quota_per_minute": 600, "interval_max_secs": 4}),
                worker_account(deaf, base, poll={"interval_max_secs": 4})]
    worker = WorkerProcess(worker_config(kafka_bootstrap, topic_prefix, accounts, shards=2), ENV, tmp_path)
    prometheus = Prometheus(tmp_path, f"127.0.0.1:{worker.port}", short_rules(RULES.read_text()))
    stops = {name: asyncio.Event() for name in ("heard", "deaf")}
    senders = {name: WebhookSender(sim, worker.url, accounts=[name], seed=i, since=0, max_attempts=6)
               for i, name in enumerate(stops)}
    tasks: list[asyncio.Task] = []
    try:
        await worker.start()
        await worker.ready(timeout=90)
        sim.set_quota("heard", 60)
        sim.set_faults("heard", Faults(error_5xx_rate=0.2, seed=3))
        tasks = [asyncio.create_task(senders[n].run(0.5, stops[n])) for n in stops]
        async with aiohttp.ClientSession() as session:
            await prometheus.ready(session)
            # a bad signature (401), an authentic body with no email id (a dead letter), an open
            # (a status that is none of the five: ignored)
            for event, email_id, key, status in (("invalid", "", "not-the-key", 401), ("invalid", "", ENV["W_APP_KEY"], 200),
                                                 ("open", "1700000000000_77_1_1.sc-x-inbound0$a@example.com",
                                                  ENV["W_APP_KEY"], 200)):
                async with session.post(f"{worker.url}/webhooks/sendcloud/heard", data=sendcloud_form(event, email_id, key=key),
                                        headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
                    assert r.status == status, (event, await r.text())
            await asyncio.sleep(15)              # both accounts heard: nothing silent yet
            assert not firing(await prometheus.alerts(session), "EswWebhooksSilent")
            stops["deaf"].set()                  # the provider stops sending deaf's webhooks
            fired_after = None
            started = time.monotonic()
            while time.monotonic() - started < 120:
                alerts = await prometheus.alerts(session)
                assert "heard" not in firing(alerts, "EswWebhooksSilent")
                if "deaf" in firing(alerts, "EswWebhooksSilent"):
                    fired_after = time.monotonic() - started
                    break
                await asyncio.sleep(1.0)
            assert fired_after is not None, f"EswWebhooksSilent never fired for deaf: {alerts}"
            print(f"\nEswWebhooksSilent fired {fired_after:.0f} s after deaf's webhooks stopped "
                  f"(range {RANGE}, for {FOR})")
            # a dead letter of a series born now (deaf's first): the time-range table counts it
            # (increase() alone has no earlier sample of it and said 0: dashboard audit, 2026-12-06)
            async with session.post(f"{worker.url}/webhooks/sendcloud/deaf", data=sendcloud_form("invalid", "", key=ENV["W_APP_KEY"]),
                                    headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
                assert r.status == 200, await r.text()
            await asyncio.sleep(4)               # scraped a few times
            [(_, table)] = [(t, e) for t, e in dashboard_queries(load_dashboard(), interval="20s")
                            if t == "Dead letters in the time range"]
            born = [r for r in await prometheus.query(session, table) if r["metric"].get("account") == "deaf"]
            assert [float(r["value"][1]) for r in born] == [1.0], born
            series: dict[str, int] = {}          # panel -> series its queries returned (each must parse)
            for title, expr in dashboard_queries(load_dashboard(), interval="20s"):
                series[title] = series.get(title, 0) + len(await prometheus.query(session, expr))
            empty = sorted(title for title, n in series.items() if not n)
            assert not empty, f"{len(empty)} of {len(series)} dashboard panels showed no series: {empty}"
    finally:
        for event in stops.values():
            event.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        prometheus.stop()
        await worker.kill()
        await sim.stop()
