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
from datetime import datetime, timezone

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from worker import metrics
from worker.config import AccountConfig, Config
from worker.emit import Topics, account_key, dead_letter_record, raw_record, shard_of
from worker.model import Provider
from worker.providers import get_module
from worker.providers.base import BadSignature, MalformedPayload, WebhookRequest

log = logging.getLogger("worker.webhooks")


class WebhookReceiver:
    def __init__(self, config: Config, producer: AIOKafkaProducer | None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.config = config
        self.producer = producer
        self.clock = clock
        self.topics = Topics.from_config(config.kafka)

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
        except Exception:  # noqa: BLE001 - never crash the handler; the provider will retry
            log.exception("webhook failed", extra={"provider": labels[0], "account": labels[1]})
            status = 500
        metrics.WEBHOOK_REQUESTS.labels(*labels, str(status)).inc()
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
        ctx = account.context()
        try:
            outcome["verified"] = module.verify_webhook(ctx, req, now, account.webhook.replay_window_secs)
        except BadSignature as exc:
            outcome["error_type"] = exc.error_type
            return 401
        sends: list[tuple[str, bytes, bytes, list, int | None]] = []
        provider, name = account.provider.value, account.name
        try:
            records = module.split_webhook(req)
        except MalformedPayload as exc:
            sends.append(self._dead(provider, name, exc.error_type, req.body, req.content_type, now, "body",
                                    _verification_headers(req)))
            records = []
        shard = shard_of(provider, name, self.config.kafka.shards)
        for record in records:
            try:
                module.webhook_observations(ctx, record)
            except MalformedPayload as exc:
                sends.append(self._dead(provider, name, exc.error_type, orjson.dumps(record), "application/json", now,
                                        "record"))
                continue
            value = raw_record("webhook", provider, name, now, record=record)
            sends.append((self.topics.raw, account_key(provider, name), value, [], shard))
        outcome["records"] = len(records)
        outcome["dead_letters"] = sum(1 for s in sends if s[0] == self.topics.dead_letter)
        if not sends:
            return 200
        acked = time.monotonic()
        try:
            await asyncio.wait_for(self._produce(sends), self.config.http.ack_timeout_secs)
        except (asyncio.TimeoutError, KafkaError) as exc:
            outcome["error_type"] = type(exc).__name__
            return 503
        metrics.PRODUCE_LATENCY.observe(time.monotonic() - acked)
        for topic, *_ in sends:
            if topic == self.topics.dead_letter:
                metrics.DEAD_LETTERS.labels(provider, name, "malformed").inc()
        return 200

    def _dead(self, provider: str, account: str, reason: str, body: bytes, content_type: str, now: datetime,
              part: str, request_headers: list[tuple[str, bytes]] = ()) -> tuple[str, bytes, bytes, list, int | None]:
        key, value, headers = dead_letter_record(provider=provider, account=account, reason=reason, body=body,
                                                 content_type=content_type, received_at=now, source="webhook",
                                                 part=part, request_headers=request_headers)
        return self.topics.dead_letter, key, value, headers, None

    async def _produce(self, sends) -> None:
        futures = [await self.producer.send(topic, value, key=key, headers=headers or None, partition=partition)
                   for topic, key, value, headers, partition in sends]
        await asyncio.gather(*futures)


def _verification_headers(req: WebhookRequest) -> list[tuple[str, bytes]]:
    """The request headers a provider signs with (EngageLab's X-WebHook-*), kept with a dead letter
    so the body can be re-posted and verified again. Never logged."""
    return [(name, value.encode("utf-8", "surrogateescape")) for name, value in req.headers.items()
            if name.startswith("x-webhook-")]


_REASONS = {401: "bad signature", 404: "unknown provider or account", 413: "body too large",
            503: "not acknowledged by Kafka in time; retry", 500: "internal error; retry"}
