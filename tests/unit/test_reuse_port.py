"""`http.reuse_port`: several worker processes on one host share the webhook port (SO_REUSEPORT),
as pods behind a Service share traffic. The listen options are taken from what `run_worker`
really hands to `web.run_app` (no Kafka is needed: run_app is replaced by a recorder), and two
aiohttp sites bound with them must share one port with the key on, and clash with it off."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from worker import app as worker_app
from worker.config import parse_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_app_options(monkeypatch, reuse_port: bool | None) -> dict[str, Any]:
    """The keyword arguments `run_worker` passes to `web.run_app` for this config."""
    http: dict[str, Any] = {"host": "127.0.0.1", "port": free_port()}
    if reuse_port is not None:
        http["reuse_port"] = reuse_port
    config = parse_config({"kafka": {"bootstrap_servers": "127.0.0.1:9"}, "accounts": [], "http": http}, {})
    seen: dict[str, Any] = {}
    monkeypatch.setattr(worker_app.logs, "setup", lambda level: None)       # leave the root logger alone
    monkeypatch.setattr(worker_app, "build_app", lambda config: web.Application())
    monkeypatch.setattr(worker_app.web, "run_app", lambda app, **kwargs: seen.update(kwargs))
    assert worker_app.run_worker(config) == 0
    return {k: seen[k] for k in ("host", "port", "reuse_port") if k in seen}


async def site(name: str, options: dict[str, Any]) -> web.AppRunner:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=name)

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, **options).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def test_reuse_port_is_off_by_default(monkeypatch):
    assert not run_app_options(monkeypatch, None).get("reuse_port")


async def test_two_workers_share_the_port_with_reuse_port(monkeypatch):
    options = run_app_options(monkeypatch, True)
    first = await site("a", options)
    try:
        second = await site("b", options)        # without SO_REUSEPORT: EADDRINUSE
        try:
            answered = set()
            # a new connection each time: the kernel spreads connections over the two listeners
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
                for _ in range(64):
                    async with session.get(f"http://{options['host']}:{options['port']}/") as r:
                        answered.add(await r.text())
            assert answered == {"a", "b"}
        finally:
            await second.cleanup()
    finally:
        await first.cleanup()


async def test_without_reuse_port_a_second_worker_cannot_bind(monkeypatch):
    options = run_app_options(monkeypatch, False)
    first = await site("a", options)
    try:
        with pytest.raises(OSError):
            await site("b", options)
    finally:
        await first.cleanup()
