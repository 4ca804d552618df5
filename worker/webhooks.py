"""Webhook receiver: verify → split → write to `_raw` → answer (DESIGN.md section 6).

Any replica takes any webhook; records go to the account's shard through `_raw` (key
`provider/account`, acks=all), and the provider gets 200 only after the broker acknowledged.
Answers: 401 bad signature or path token, 404 unknown provider/account, 413 body too large,
503 Kafka did not acknowledge within `http.ack_timeout_secs` (the provider retries), 200 with the
body in `_dead_letter` when it is authentic but unparseable. Never logs bodies or signatures.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import orjson
from aiohttp import web
from aiokafka.errors import KafkaError

from worker import metrics
from worker.config import AccountConfig, Config
from worker.deadletter import DeadLetter, signed_headers
from worker.errors import KAFKA, TIMEOUT, BadSignature, MalformedPayload, error_type_of
from worker.intake import RawWriter
from worker.model import Provider
from worker.providers import get_module
from worker.providers.base import WebhookRequest
from worker.raw import WebhookRecord

log = logging.getLogger("worker.webhooks")


class WebhookReceiver:
    def __init__(self, config: Config, writer: RawWriter | None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.writer = writer      # set once the producer is up (worker.app)
        self.clock = clock

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/webhooks/{provider}/{account}", self.handle),
            web.post("/webhooks/{provider}/{account}/{token}", self.handle),
            web.get("/webhooks/{provider}/{account}", self.probe),
            web.get("/webhooks/{provider}/{account}/{token}", self.probe),
        ]

    def _account(self, request: web.Request) -> tuple[AccountConfig | None, int]:
        """The addressed account, or the status to answer instead (404 unknown, 401 bad token)."""
        try:
            provider = Provider(request.match_info["provider"])
        except ValueError:
            return None, 404
        account = self.config.account(provider, request.match_info["account"])
        if account is None or not account.webhook.enabled:
            return None, 404
        token = request.match_info.get("token")
        if account.webhook.path_tokens:
            given = (token or "").encode()
            # compare with every token (no early exit): the time taken says nothing about which
            matches = [hmac.compare_digest(given, t.encode()) for t in account.webhook.path_tokens]
            if token is None or not any(matches):
                return None, 401
        elif token is not None:
            return None, 404
        return account, 200

    async def probe(self, request: web.Request) -> web.Response:
        """Providers test a webhook URL with GET and expect 200."""
        account, status = self._account(request)
        return web.json_response({"ok": account is not None}, status=status)

    async def handle(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        account, status = self._account(request)
        labels = (account.provider.value, account.name) if account else ("unknown", "unknown")
        outcome: dict = {}
        try:
            if account is not None:
                status = await self._receive(request, account, outcome)
        except Exception as exc:
            log.exception("webhook failed", extra={"provider": labels[0], "account": labels[1],
                                                   "error_type": error_type_of(exc)})
            metrics.error("webhook", error_type_of(exc))
            status = 500
        metrics.webhook_answered(*labels, status)
        log.info("webhook", extra={"provider": labels[0], "account": labels[1], "status": status,
                                   "ms": round((time.monotonic() - started) * 1000, 1), **outcome})
        if status == 200:
            return web.json_response({"code": 200, "message": "ok"})
        return web.json_response({"code": status, "message": _REASONS.get(status, "error")}, status=status)

    async def _receive(self, request: web.Request, account: AccountConfig, outcome: dict) -> int:
        limit = self.config.http.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return 413
        body = bytearray()
        async for chunk in request.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > limit:
                return 413
        now = self.clock()
        req = WebhookRequest(body=bytes(body), content_type=request.headers.get("Content-Type", ""),
                             headers={k.lower(): v for k, v in request.headers.items()},
                             query=dict(request.query))
        module = get_module(account.provider)
        ctx = account.context
        try:
            outcome["verified"] = module.verify_webhook(ctx, req, now, account.webhook.replay_window_secs)
        except BadSignature as exc:
            outcome["error_type"] = exc.error_type
            return 401
        provider, name = account.provider.value, account.name
        records: list[WebhookRecord] = []
        dead: list[DeadLetter] = []
        try:
            split = module.split_webhook(req)
        except MalformedPayload as exc:
            dead.append(DeadLetter(provider, name, exc.error_type, "webhook", "body", req.body, req.content_type,
                                   now, signed_headers(req.headers.items())))
            split = []
        for record in split:
            try:
                module.webhook_observations(ctx, record)
            except MalformedPayload as exc:
                dead.append(DeadLetter(provider, name, exc.error_type, "webhook", "record", orjson.dumps(record),
                                       "application/json", now))
                continue
            records.append(WebhookRecord(account.provider, name, now, record))
        outcome["records"] = len(split)
        outcome["dead_letters"] = len(dead)
        if not records and not dead:
            return 200
        acked = time.monotonic()
        try:
            assert self.writer is not None, "webhooks are routed only once the producer is up"
            await asyncio.wait_for(self.writer.write(records, dead), self.config.http.ack_timeout_secs)
        except (TimeoutError, KafkaError) as exc:
            outcome["error_type"] = TIMEOUT if isinstance(exc, asyncio.TimeoutError) else KAFKA
            return 503
        metrics.produced(time.monotonic() - acked)
        return 200


_REASONS = {401: "bad signature", 404: "unknown provider or account", 413: "body too large",
            503: "not acknowledged by Kafka in time; retry", 500: "internal error; retry"}
