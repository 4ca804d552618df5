"""The worker against a broker that speaks only TLS and SASL_SSL, as managed clusters do.

One broker from scripts/kafka.py with a plaintext, an SSL (mutual TLS, encrypted client key) and a
SASL_SSL listener (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512). For each secured way in, the worker runs
as a real process configured only through its config file and environment (the documented
`kafka.security` keys, secrets by `*_env`), takes a signed webhook and its event comes out of the
secured listener, read by a client built from connection.json. A password the broker refuses
stops the worker at start with one clear line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import aiohttp
import orjson
import pytest

from tests.integration.harness import ROOT, WorkerProcess, free_port, worker_config
from tests.integration.kafka_cluster import client_options
from tests.integration.kafka_utils import read_all
from tests.integration.test_webhooks import ENV, accounts, sendcloud_form

pytestmark = pytest.mark.integration


def script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "kafka.py"), *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    state = tmp_path_factory.mktemp("secured-worker") / "broker"
    up = script("up", "--dir", str(state), "--listeners", "plaintext,ssl,sasl_ssl")
    assert up.returncode == 0, up.stderr
    try:
        yield json.loads((state / "connection.json").read_text())
    finally:
        down = script("down", "--dir", str(state))
        assert down.returncode == 0, down.stderr


def security(conn: dict, listener: str, mechanism: str | None) -> tuple[dict, dict[str, str]]:
    """The worker's `kafka.security` for a listener of connection.json, and the environment that
    holds its secrets (the config file names variables, never a secret)."""
    entry = conn["listeners"][listener]
    settings: dict = {"security_protocol": entry["security_protocol"], "ssl_cafile": entry["ca_file"]}
    env: dict[str, str] = {}
    if "cert_file" in entry:
        settings.update(ssl_certfile=entry["cert_file"], ssl_keyfile=entry["key_file"],
                        ssl_key_password_env="ESW_TEST_KEY_PASSWORD")
        env["ESW_TEST_KEY_PASSWORD"] = entry["key_password"]
    if mechanism is not None:
        settings.update(sasl_mechanism=mechanism, sasl_plain_username=entry["username"],
                        sasl_plain_password_env="ESW_TEST_SASL_PASSWORD")
        env["ESW_TEST_SASL_PASSWORD"] = entry["password"]
    return settings, env


@pytest.mark.parametrize(("listener", "mechanism"),
                         [("ssl", None), ("sasl_ssl", "PLAIN"), ("sasl_ssl", "SCRAM-SHA-256"),
                          ("sasl_ssl", "SCRAM-SHA-512")])
async def test_a_webhook_becomes_an_event_through_a_secured_listener(broker, tmp_path, listener, mechanism):
    settings, secrets_env = security(broker, listener, mechanism)
    bootstrap = broker["listeners"][listener]["bootstrap_servers"]
    prefix = f"tls{uuid.uuid4().hex[:10]}"
    data = worker_config(bootstrap, prefix, accounts(), shards=2, kafka={"security": settings})
    config_text = json.dumps(data)
    assert all(secret not in config_text for secret in secrets_env.values())  # secrets only in the env
    worker = WorkerProcess(data, {**ENV, **secrets_env}, tmp_path)
    await worker.start()
    try:
        await worker.ready(timeout=90)
        body = sendcloud_form("invalid", f"tls1$someone-{listener}@example.com", substat="406",
                              substatdesc="address does not exist")
        async with aiohttp.ClientSession() as session, \
                session.post(f"{worker.url}/webhooks/sendcloud/sc", data=body,
                             headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
            assert r.status == 200, await r.text()
        options = client_options(broker, listener, mechanism)
        records = await read_all(options.pop("bootstrap_servers"), [f"{prefix}.invalid"], timeout=60, expect=1,
                                 **options)
        assert len(records) == 1, f"{len(records)} events on {prefix}.invalid through {listener}/{mechanism}"
        event = orjson.loads(records[0].value)
        assert (event["type"], event["email_id"], event["provider_sub_status"]) == \
            ("invalid", f"tls1$someone-{listener}@example.com", "406")
        log = worker.log_path.read_text(errors="replace")
        assert all(secret not in log for secret in secrets_env.values())  # no secret in the logs
    finally:
        assert await worker.terminate() == 0


async def test_a_wrong_sasl_password_stops_the_worker_with_one_clear_line(broker, tmp_path):
    """Credentials the broker refuses are found at start: exit status 1 and an error line that says
    Kafka is unavailable (no traceback, no password), so Kubernetes restarts it with back-off."""
    settings, secrets_env = security(broker, "sasl_ssl", "SCRAM-SHA-256")
    secrets_env["ESW_TEST_SASL_PASSWORD"] = "not-the-password-" + uuid.uuid4().hex
    data = worker_config(broker["listeners"]["sasl_ssl"]["bootstrap_servers"], f"bad{uuid.uuid4().hex[:8]}",
                         accounts(), shards=2, port=free_port(), kafka={"security": settings})
    worker = WorkerProcess(data, {**ENV, **secrets_env}, tmp_path)
    code, log = await worker.run_to_exit()
    lines = [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("logger") == "worker.app" and line["level"] == "error"]
    assert code == 1, log[-2000:]
    assert [line["event"] for line in mine] == ["cannot start: Kafka unavailable"], log[-2000:]
    assert mine[0]["error_type"] == "kafka"
    assert "Traceback" not in log
    assert secrets_env["ESW_TEST_SASL_PASSWORD"] not in log
