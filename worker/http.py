"""Operations endpoints (/healthz, /readyz, /metrics, /status), and the HTTP server's own settings:
how it treats an unread body (`SERVER_SETTINGS`) and what its parser refuses (`ParserRefusals`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker import __version__, metrics
from worker.deadletter import UNKNOWN

# aiohttp's server settings for the webhook port (worker.app). After answering a request whose body
# it did not read (a 404, 401, 413, 503 answered first), aiohttp "lingers": it reads and throws away
# the rest of the body for up to 10 s to keep the connection, decoding its Content-Encoding as it
# goes. A gzip bomb posted to any URL, with no account and no signature, so cost ~1 s of CPU after
# its 404, and a few a second held the event loop for seconds (edge audit, 2026-12-06). A refused
# body is never read: the connection closes after the answer.
SERVER_SETTINGS = {"lingering_time": 0.0}


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


class ParserRefusals(logging.Filter):
    """What aiohttp's own HTTP parser answers before any handler runs (400: a bad chunk size,
    Transfer-Encoding with Content-Length, a header over its limit, an undecodable encoding): counted
    in esw_webhook_requests_total as provider and account `unknown` (they were counted nowhere: edge
    audit, 2026-12-06), and its log line dropped (a traceback at ERROR that any client on the
    internet can cause is not an error of ours)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, aiohttp.http_exceptions.HttpProcessingError):
            return True   # a handler's own failure (ours catch theirs; /status, /metrics): logged as it comes
        metrics.webhook_answered(UNKNOWN, UNKNOWN, exc.code or 400)
        return False


def count_parser_refusals() -> None:
    """Install `ParserRefusals` on aiohttp's server logger (worker.app, once per process)."""
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ParserRefusals) for f in server.filters):
        server.addFilter(ParserRefusals())
    server.setLevel(logging.ERROR)
