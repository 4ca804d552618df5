"""Running the worker in integration tests: in-process (fast) or as a real process (crash tests), and
`Service`, a stand-in for a Kubernetes Service in front of real worker processes (rolling updates)."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from worker.app import build_app
from worker.config import parse_config

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_config(bootstrap: str, prefix: str, accounts: list[dict], *, shards: int = 4, port: int | None = None,
                  **sections: Any) -> dict:
    """A worker config for tests: its own topics and group, short lingers and sessions."""
    kafka = {"bootstrap_servers": bootstrap, "topic_prefix": prefix, "shards": shards, "group_id": f"{prefix}-g",
             "batch_linger_ms": 50, "session_timeout_ms": 6000, "produce_timeout_secs": 5}
    kafka.update(sections.pop("kafka", {}))
    data = {"kafka": kafka, "http": {"host": "127.0.0.1", "port": port or free_port(), "ack_timeout_secs": 2.5},
            "shutdown": {"grace_secs": 10}, "accounts": accounts}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return data


async def wait_ready(url: str, timeout: float = 60.0, session: aiohttp.ClientSession | None = None,
                     restored: bool = True) -> None:
    """Until `/readyz` answers 200 and, with `restored`, `/status` says every assigned shard is
    restored (readiness itself no longer waits for restores: worker.reach)."""
    own = session is None
    session = session or aiohttp.ClientSession()
    deadline = time.monotonic() + timeout
    last = None
    try:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{url}/readyz") as r:
                    last = await r.text()
                    ready = r.status == 200
                if ready and restored:
                    async with session.get(f"{url}/status") as r:
                        status = await r.json()
                        last = f"group: {status.get('group', {}).get('restoring')}"
                        ready = bool(status.get("group", {}).get("restored"))
                if ready:
                    return
            except aiohttp.ClientError as exc:
                last = repr(exc)
            await asyncio.sleep(0.2)
    finally:
        if own:
            await session.close()
    raise TimeoutError(f"worker at {url} not ready after {timeout} s: {last}")


class InProcessWorker:
    """The worker's aiohttp application on a real port, inside the test's event loop."""

    def __init__(self, data: dict, env: dict[str, str]) -> None:
        self.config = parse_config(data, env)
        self.url = f"http://127.0.0.1:{self.config.http.port}"
        self.app = build_app(self.config)
        self.runner = web.AppRunner(self.app, shutdown_timeout=1.0)

    async def __aenter__(self) -> InProcessWorker:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.config.http.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


class WorkerProcess:
    """`python -m worker run --config FILE` as a child process, as Kubernetes would run it."""

    def __init__(self, data: dict, env: dict[str, str], workdir: Path, name: str = "worker", *,
                 python: str | Path = sys.executable, cwd: Path = ROOT) -> None:
        self.data = data
        self.python, self.cwd = str(python), cwd   # another release: its interpreter, run outside the checkout
        self.name = name
        self.port = data["http"]["port"]
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(data))
        self.log_path = workdir / f"{name}.log"
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.env.pop("KAFKA_BOOTSTRAP_SERVERS", None)  # the config file says which broker
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = await asyncio.create_subprocess_exec(
            self.python, "-m", "worker", "run", "--config", str(self.config_path),
            cwd=self.cwd, env=self.env, stdout=log, stderr=asyncio.subprocess.STDOUT)
        log.close()
        self.starts += 1

    async def ready(self, timeout: float = 60.0) -> None:
        try:
            await wait_ready(self.url, timeout)
        except TimeoutError as exc:   # what the worker was doing meanwhile is the diagnosis
            raise TimeoutError(f"{exc}\n{self.name} log tail:\n{self.log_tail(60)}") from None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def kill(self) -> None:
        """kill -9: no goodbye, no commit, no LeaveGroup."""
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def terminate(self, timeout: float = 30.0) -> int:
        if not self.running:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            await self.kill()
            raise

    async def run_to_exit(self, timeout: float = 60.0) -> tuple[int, str]:
        """Start a worker that is expected to stop by itself (refused at start); its exit code and log."""
        await self.start()
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        finally:
            await self.kill()
        return code, self.log_path.read_text(errors="replace")

    async def status(self, session: aiohttp.ClientSession) -> dict:
        async with session.get(f"{self.url}/status") as r:
            return await r.json()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


PRESTOP_SECS = 5.0   # the chart's preStopSleepSeconds


class Service:
    """Round-robin over ready endpoints; 503 when there is none (as a Service with no endpoints
    refuses the connection, which providers retry the same way)."""

    def __init__(self) -> None:
        self.pods: dict[str, bool] = {}       # url -> ready at the last probe
        self.deleting: set[str] = set()
        self._turn = itertools.count()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.no_endpoint = 0

    def endpoints(self) -> list[str]:
        return [url for url, ready in self.pods.items() if ready and url not in self.deleting]

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        ready = self.endpoints()
        if not ready:
            self.no_endpoint += 1
            return web.Response(status=503)
        target = ready[next(self._turn) % len(ready)]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        try:
            async with self.session.post(target + request.path_qs, data=body, headers=headers) as r:
                return web.Response(status=r.status, body=await r.read(),
                                    content_type=r.content_type if r.content_type != "application/octet-stream" else None)
        except (aiohttp.ClientError, TimeoutError):
            return web.Response(status=502)

    async def _probe(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as probe:
            while True:
                for url in list(self.pods):
                    try:
                        async with probe.get(f"{url}/readyz") as r:
                            self.pods[url] = r.status == 200
                    except (aiohttp.ClientError, TimeoutError):
                        self.pods[url] = False
                await asyncio.sleep(1.0)

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/{tail:.*}", self._forward)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        self.prober = asyncio.create_task(self._probe())

    async def stop(self) -> None:
        self.prober.cancel()
        await asyncio.gather(self.prober, return_exceptions=True)
        await self.runner.cleanup()
        await self.session.close()


async def shards_owned(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as r:
        text = await r.text()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("esw_shards_owned ")))
