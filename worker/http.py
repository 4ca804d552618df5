"""Operations endpoints: /healthz, /readyz, /metrics, /status."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker import __version__, metrics


class Ops:
    """`checks` answer readiness; `critical` tasks must be alive for liveness; `status` adds JSON."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.shutting_down = False
        self.checks: dict[str, Callable[[], bool]] = {}
        self.critical: dict[str, Callable[[], bool]] = {}
        self.status: dict[str, Callable[[], Any]] = {}

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/healthz", self.healthz), web.get("/readyz", self.readyz),
                web.get("/metrics", self.metrics), web.get("/status", self.status_json)]

    def _readiness(self) -> dict[str, bool]:
        out = {name: bool(check()) for name, check in self.checks.items()}
        out["not_shutting_down"] = not self.shutting_down
        return out

    async def healthz(self, request: web.Request) -> web.Response:
        dead = [name for name, alive in self.critical.items() if not alive()]
        if dead:
            return web.json_response({"status": "failing", "dead": dead}, status=500)
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        checks = self._readiness()
        ready = all(checks.values())
        metrics.ready(ready)
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        # esw_ready as /readyz would answer now: it was set only by a probe, so a replica nothing
        # probed showed 0 and fired EswNotReady (dashboard audit of 2026-12-06)
        metrics.ready(all(self._readiness().values()))
        return web.Response(body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status_json(self, request: web.Request) -> web.Response:
        body = {"version": __version__, "uptime_secs": round(time.monotonic() - self.started, 1),
                "ready": all(self._readiness().values()), "checks": self._readiness()}
        for name, fn in self.status.items():
            body[name] = fn()
        return web.json_response(body, dumps=_dumps)


def _dumps(value: Any) -> str:
    import orjson

    return orjson.dumps(value, default=str).decode()
