"""`python -m worker simulate` as docker-compose runs it: webhooks outlast a worker that is not
answering yet (it waits on Kafka at start), and the demo's event viewer starts at the beginning."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from tests.integration.harness import free_port

ROOT = Path(__file__).resolve().parents[2]
REFUSE_SECS = 6.0   # the worker "waits on Kafka" this long; the old sender gave up after 0.35 s


async def test_webhooks_refused_at_first_are_delivered_once_the_worker_answers(tmp_path):
    first_seen: dict[bytes, float] = {}
    accepted_late: list[bytes] = []          # bodies refused at first and accepted later
    opened = time.monotonic()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.monotonic()
        first_seen.setdefault(body, now)
        if now - opened < REFUSE_SECS:
            return web.Response(status=503)
        if first_seen[body] - opened < REFUSE_SECS:
            accepted_late.append(body)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker", "simulate", "--port", "0", "--time-scale", "6000",
            "--webhook-target", f"http://127.0.0.1:{port}", "--webhook-interval", "0.5", "--duration", "14",
            cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()[-2000:]
    finally:
        await runner.cleanup()
    refused = sum(1 for t in first_seen.values() if t - opened < REFUSE_SECS)
    assert refused > 0, "no webhook was sent while the worker was refusing"
    assert len(set(accepted_late)) == refused, f"{refused - len(set(accepted_late))} of {refused} refused webhooks lost"


def test_the_demo_event_viewer_reads_from_the_beginning_and_the_simulator_retries_long():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "--from-beginning" in compose["services"]["events"]["command"]
    sim = compose["services"]["simulator"]["command"]
    assert sim[sim.index("--webhook-attempts") + 1] == "12"
    assert sim[sim.index("--webhook-retry-secs") + 1] == "0.5"


@pytest.mark.parametrize(("args", "says"), [
    (["--time-scale", "0"], "argument --time-scale: 0 is not above 0"),
    (["--time-scale", "nan"], "argument --time-scale: nan is not above 0"),
    (["--webhook-interval", "-1"], "argument --webhook-interval: -1 is not above 0"),
    (["--duplicate-rate", "1.5"], "argument --duplicate-rate: 1.5 is not at least 0 and at most 1"),
    (["--webhook-attempts", "0"], "argument --webhook-attempts: 0 is not at least 1"),
    (["--port", "70000"], "argument --port: 70000 is not at least 0 and at most 65535"),
    (["--latency-ms", "x"], "argument --latency-ms: 'x' is not a number"),
])
def test_simulate_refuses_unusable_arguments_in_one_line_exit_2(args, says, capsys):
    from worker.__main__ import main

    with pytest.raises(SystemExit) as stopped:
        main(["simulate", *args])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].endswith(says), err
    assert "Traceback" not in err


def test_simulate_on_a_taken_port_says_so_and_exits_2():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "worker", "simulate", "--port", str(port), "--duration", "1"],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.splitlines() == [
        f"simulate: cannot listen on 127.0.0.1:{port}: error while attempting to bind on address "
        f"('127.0.0.1', {port}): address already in use"]
