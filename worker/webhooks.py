"""Webhook receiver: verify → split → write to `_raw` → answer (DESIGN.md section 6).

Any replica takes any webhook; records go to the account's shard through `_raw` (key
`provider/account`, acks=all), and the provider gets 200 only after the broker acknowledged.
Answers: 401 bad signature or path token, 404 unknown provider/account, 413 body too large,
408 body not received within `http.body_read_timeout_secs`, 503 with Retry-After when Kafka did
not acknowledge within `http.ack_timeout_secs` or the receiver is at its cap of requests in
progress or body bytes in flight (load shedding: the provider retries; memory stays bounded), 200
with the input in `_dead_letter` when it is authentic but unusable (unparseable, too many records,
over the field or record caps of worker.intake). Records that carry no delivery status (opens,
clicks, requests) are counted in esw_ignored_statuses_total and dropped here, before `_raw`: the
shard would find nothing in them to emit or to learn. Logs one line per answer other than 200 (at
most 20 a minute per account and status: worker.logs.AnswerThrottle) (and
per 200 at debug level); never bodies or signatures.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiokafka.errors import KafkaError

from worker import metrics
from worker.config import AccountConfig, Config
from worker.deadletter import UNKNOWN, DeadLetter, signed_headers
from worker.errors import KAFKA, TIMEOUT, BadSignature, MalformedPayload, TooManyRecords, Unusable, error_type_of
from worker.intake import Admitted, RawWriter, admit, check_fields, routed
from worker.model import Provider
from worker.providers import get_module
from worker.providers.base import URL_CHECK, ProviderModule, WebhookRequest
from worker.raw import WebhookRecord

log = logging.getLogger("worker.webhooks")

RETRY_AFTER_SECS = 5   # what a 503 asks the provider to wait
GZIP_MAGIC = b"\x1f\x8b"
NO_CONTINUE = web.RequestKey("no_continue", bool)   # a request told its answer instead of 100 Continue
# A body that cannot be read: the client went away, or its Content-Encoding does not decode
# (aiohttp's parser sets RequestPayloadError on the body stream).
UNREADABLE = (OSError, aiohttp.ClientError, web.RequestPayloadError)


class WebhookReceiver:
    def __init__(self, config: Config, writer: RawWriter | None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.writer = writer      # set once the producer is up (worker.app)
        self.clock = clock
        self.active = 0           # requests with their body, being verified, split and written
        self.receiving = 0        # requests still receiving their body
        self.idle = asyncio.Event()   # set while neither is (what a stopping worker waits for)
        self.idle.set()
        self.inflight_bytes = 0   # body bytes they hold (received, not declared)
        self._receivers: dict[asyncio.Future, None] = {}   # their body reads, oldest first

    def routes(self) -> list[web.RouteDef]:
        """The webhook URL of each account, with its path token if it has one, and the same with a
        trailing slash (an operator may paste the URL either way into a provider's console, which
        tests it with GET and POST and refuses anything but 200)."""
        paths = ("/webhooks/{provider}/{account}", "/webhooks/{provider}/{account}/{token}")
        urls = [path + slash for path in paths for slash in ("", "/")]
        return [route for url in urls     # both methods of a URL side by side: one resource each
                for route in (web.post(url, self.handle, expect_handler=self.expect), web.get(url, self.probe))]

    async def expect(self, request: web.Request) -> None:
        """`Expect: 100-continue` (curl and PHP's cURL send it before a larger body): 100 Continue
        only to a request the handler may take. One it refuses without reading the body (an unknown
        account, a bad path token, a declared length over `http.max_body_bytes`) gets no 100: the
        handler's 404, 401 or 413 is the first answer, counted and logged as always, and the sender
        does not upload a body that would be thrown away. Any other expectation is 417 (RFC 9110)."""
        if request.version != aiohttp.HttpVersion11:
            return
        if request.headers.get("Expect", "").lower() != "100-continue":
            raise web.HTTPExpectationFailed(text="unknown expectation")
        _, status = self._account(request)
        declared = request.content_length
        if status == 200 and (declared is None or declared <= self.config.http.max_body_bytes):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0   # what aiohttp's own handler does: the response starts after it
        else:
            request[NO_CONTINUE] = True      # answered without its body: the connection closes after it

    def _account(self, request: web.Request) -> tuple[AccountConfig | None, int]:
        """The addressed account and 200, or the status to answer instead: 404 unknown (no account),
        401 a bad path token (the account it addressed: counted under its name)."""
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
                return account, 401
        elif token is not None:
            return None, 404
        return account, 200

    async def probe(self, request: web.Request) -> web.Response:
        """Providers test a webhook URL with GET and expect 200."""
        _, status = self._account(request)
        return web.json_response({"ok": status == 200}, status=status)

    async def handle(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        account, status = self._account(request)
        labels = (account.provider.value, account.name) if account else (UNKNOWN, UNKNOWN)
        outcome: dict = {}
        try:
            if account is not None and status == 200:
                status = await self._admitted(request, account, outcome)
        except Exception as exc:
            log.exception("webhook failed", extra={"provider": labels[0], "account": labels[1],
                                                   "error_type": error_type_of(exc)})
            metrics.error("webhook", error_type_of(exc))
            status = 500
        metrics.webhook_answered(*labels, status)
        # every answer is counted (esw_webhook_requests_total); a 200 is logged only at debug level:
        # in a campaign's blast, a line per delivery report would be most of the log and of the CPU
        level = logging.DEBUG if status == 200 else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "webhook", extra={"provider": labels[0], "account": labels[1], "status": status,
                                             "ms": round((time.monotonic() - started) * 1000, 1), **outcome})
        if status == 200:
            return web.Response(body=_OK, content_type="application/json", charset="utf-8")
        headers = {"Retry-After": str(RETRY_AFTER_SECS)} if status == 503 else None
        response = web.json_response({"code": status, "message": _REASONS.get(status, "error")}, status=status,
                                     headers=headers)
        if request.get(NO_CONTINUE) or not request.content.is_eof():
            # a body not read (worker.http SERVER_SETTINGS), or one the client, told its answer instead of 100, may
            # skip (RFC 9110): the connection closes, and the answer says so
            response.force_close()
        return response

    async def _admitted(self, request: web.Request, account: AccountConfig, outcome: dict) -> int:
        """Load shedding: past the cap on requests being verified and written, or on body bytes
        held, a request is answered 503 with Retry-After. Bytes count as they arrive, never as
        declared, and requests still receiving their body are capped apart: when their cap is full,
        the one receiving longest is answered 503 (`receiving`) to make room, so slow uploads cannot
        hold the edge: 70 clients declaring 1 MiB and sending a byte a second shed 94 % of genuine
        webhooks (edge audit, 2026-12-06), while a genuine body, received in milliseconds, is never
        the oldest for long. A body alone in flight is always taken up to `http.max_body_bytes`,
        even past a smaller byte budget: the budget bounds what requests hold together, and one it
        could never take would be answered 503 however often it came (config audit of 2026-12-06)."""
        http = self.config.http
        declared = request.content_length
        if declared is not None and declared > http.max_body_bytes:
            return 413
        held = [0]                # this request's share of inflight_bytes: it grows as its body arrives
        try:
            receiving = 0 if request.content.is_eof() else 1
            if not receiving:   # all of it came with the headers (a small webhook): no wait to bound
                body = self._arrived(request, held)
            else:
                if len(self._receivers) >= http.max_concurrent_requests:
                    self._evict_oldest()
                self._enter(0, 1)
                try:
                    body = await self._body(request, held, outcome)
                except BaseException:
                    self._enter(0, -1)
                    raise
            if self.active >= http.max_concurrent_requests and not isinstance(body, int):
                self._enter(0, -receiving)
                return self._shed(outcome, "requests")
            self._enter(1, -receiving)   # one step: `idle` never flickers between the two (the drain waits on it)
            try:
                return await self._receive(request, account, outcome, held, body)
            finally:
                self._enter(-1, 0)
        finally:
            self.inflight_bytes -= held[0]   # only now: the body is held until Kafka has its records

    def _enter(self, active: int, receiving: int) -> None:
        self.active += active
        self.receiving += receiving
        if self.active or self.receiving:
            self.idle.clear()
        else:
            self.idle.set()

    def _evict_oldest(self) -> None:
        """Make room among the requests receiving their body: the one receiving longest gives up."""
        oldest = next(iter(self._receivers))
        del self._receivers[oldest]
        oldest.cancel()

    @staticmethod
    def _shed(outcome: dict, reason: str) -> int:
        metrics.webhook_shed(reason)
        outcome["shed"] = reason
        return 503

    async def _body(self, request: web.Request, held: list[int], outcome: dict) -> bytes | int:
        """A body still arriving: 408 past `http.body_read_timeout_secs`, 503 when a newer request
        took its place (`_evict_oldest`). In a task of its own: a client gone mid-body is counted
        (400) even where the server cancels handlers on disconnect (aiohttp's test server does)."""
        read = asyncio.ensure_future(self._read(request, held))
        self._receivers[read] = None
        try:
            done, _ = await asyncio.wait((read,), timeout=self.config.http.body_read_timeout_secs)
        except asyncio.CancelledError:
            if not read.done() or read.cancelled():
                read.cancel()
                raise
            done = {read}   # the server cancelled us as the read ended (a client gone mid-body): its 400 counts
        finally:
            self._receivers.pop(read, None)
        if not done:
            read.cancel()
            outcome["error_type"] = TIMEOUT
            return 408
        if read.cancelled():
            return self._shed(outcome, "receiving")
        return read.result()

    def _hold(self, size: int, held: list[int]) -> int | None:
        """Count a body of `size` bytes read so far against the caps: 413 past the size cap, 503
        past the in-flight byte budget, else None (and `held` grows to `size`)."""
        http = self.config.http
        if size > http.max_body_bytes:
            return 413
        if size > held[0]:
            grow = size - held[0]
            others = self.inflight_bytes - held[0]
            if others and self.inflight_bytes + grow > http.max_inflight_body_bytes:
                metrics.webhook_shed("bytes")
                return 503
            self.inflight_bytes += grow
            held[0] += grow
        return None

    async def _read(self, request: web.Request, held: list[int]) -> bytes | int:
        """The body, or the status to answer: 413 past the size cap, 503 past the in-flight byte
        budget. A body without a declared length is counted as it arrives, into `held`, and stays
        counted until the request is answered (it waits for Kafka's acknowledgement in memory)."""
        body = bytearray()
        try:
            async for chunk in request.content.iter_chunked(64 * 1024):
                body += chunk
                refused = self._hold(len(body), held)
                if refused is not None:
                    return refused
        except UNREADABLE:
            return 400          # the client went away before its body arrived, or it cannot be decoded
        return bytes(body)

    def _gunzip(self, body: bytes, held: list[int]) -> bytes | int:
        """A gzip body sent without `Content-Encoding` (Unisender Go's `json_post_gzip` format may
        come so; no text body starts with gzip's magic bytes), decompressed under the same caps as
        a declared encoding: 413 past `http.max_body_bytes`, 400 when it does not decode whole. Several
        gzip members are one body, as a declared gzip encoding reads them; anything else after a
        member is 400."""
        cap = self.config.http.max_body_bytes
        plain = bytearray()
        rest = body
        try:
            while rest:
                inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                plain += inflate.decompress(rest, cap + 1 - len(plain))
                if len(plain) > cap:
                    break
                if not inflate.eof or (inflate.unused_data and inflate.unused_data[:2] != GZIP_MAGIC):
                    return 400
                rest = inflate.unused_data
        except zlib.error:
            return 400
        refused = self._hold(len(plain), held)
        return bytes(plain) if refused is None else refused

    def _arrived(self, request: web.Request, held: list[int]) -> bytes | int:
        """`_read` of a body that came whole with the headers (a small webhook): taken from the
        buffer in one piece, with no wait and no copy."""
        try:
            body = request.content.read_nowait(-1)
        except UNREADABLE:
            return 400
        refused = self._hold(len(body), held)
        return body if refused is None else refused

    async def _receive(self, request: web.Request, account: AccountConfig, outcome: dict, held: list[int],
                       body: bytes | int) -> int:
        http = self.config.http
        if not isinstance(body, int) and body[:2] == GZIP_MAGIC and not request.headers.get("Content-Encoding"):
            body = self._gunzip(body, held)
        if isinstance(body, int):
            return body
        if (not body and request.content_length != 0
                and request.headers.get("Content-Encoding", "identity").lower() != "identity"):
            # an encoded body, declared non-empty or sent in chunks, that decodes to nothing: a truncated
            # or garbled stream, which aiohttp's decoder ends without an error; the bytes sent are gone,
            # so ask for them again
            return 400
        now = self.clock()
        req = WebhookRequest(body=body, content_type=request.headers.get("Content-Type", ""),
                             headers={k.lower(): v for k, v in request.headers.items()},
                             query=dict(request.query))
        module = get_module(account.provider)
        ctx = account.context
        try:
            outcome["verified"] = module.verify_webhook(ctx, req, now, account.webhook.replay_window_secs)
        except BadSignature as exc:
            outcome["error_type"] = exc.error_type
            # which check failed (a fixed text: worker.errors.BadSignature), so that a sender's clock
            # off by minutes is not taken for a wrong key
            outcome["reason"] = str(exc)
            return 401
        if outcome["verified"] == URL_CHECK:   # the provider tests the URL: nothing to write
            return 200
        records, dead = self._split(account, req, now)
        outcome["records"] = len(records)
        outcome["dead_letters"] = len(dead)
        if not records and not dead:
            return 200
        acked = time.monotonic()
        assert self.writer is not None, "webhooks are routed only once the producer is up"
        try:   # bounded by the writer: one queue append, no timer or task per request
            await self.writer.write(records, dead, within=http.ack_timeout_secs)
        except (TimeoutError, KafkaError) as exc:
            outcome["error_type"] = TIMEOUT if isinstance(exc, TimeoutError) else KAFKA
            return 503
        metrics.produced(time.monotonic() - acked)
        return 200

    def _split(self, account: AccountConfig, req: WebhookRequest, now: datetime) -> tuple[list[Admitted], list[DeadLetter]]:
        """The records of a verified body, admitted to `_raw`, and the dead letters of what is not:
        the whole body when it cannot be split, splits into too many records, or holds a record
        that cannot be encoded; else each record that cannot be read or is over the caps."""
        module = get_module(account.provider)
        provider, name = account.provider.value, account.name

        def whole_body(reason: str) -> tuple[list[Admitted], list[DeadLetter]]:
            return [], [DeadLetter(provider, name, reason, "webhook", "body", req.body, req.content_type, now,
                                   signed_headers(req.headers.items()))]

        try:
            split = module.split_webhook(req)
        except MalformedPayload as exc:
            return whole_body(exc.error_type)
        if len(split) > self.config.http.max_records_per_body:
            return whole_body(TooManyRecords.error_type)
        records: list[Admitted] = []
        dead: list[DeadLetter] = []
        ignored = 0
        for record in split:
            try:
                admitted = admit(WebhookRecord(account.provider, name, now, record, module.replay_key(req, record)))
            except MalformedPayload as exc:   # not encodable: nothing of it can be written alone
                return whole_body(exc.error_type)
            except Unusable as exc:   # over the record size cap: that record alone, as JSON
                if _silent(module, account, record):   # an inbound mail (`route`): nothing to keep
                    ignored += 1
                    continue
                value = orjson.dumps(record)
                if len(value) > self.config.http.max_body_bytes:
                    # JSON escapes made it larger than any body (a form's %01 is 3 bytes, its JSON 6): the
                    # body itself is smaller and always fits a dead letter (edge audit, 2026-12-06: a 4 MiB
                    # form became an 8 MiB record Kafka refused, 503, and readiness turned red)
                    return whole_body(exc.error_type)
                dead.append(DeadLetter(provider, name, exc.error_type, "webhook", "record", value,
                                       "application/json", now))
                continue
            try:
                observations = module.webhook_observations(account.context, record)
                check_fields(observations)
            except (MalformedPayload, Unusable) as exc:
                dead.append(DeadLetter(provider, name, exc.error_type, "webhook", "record", orjson.dumps(record),
                                       "application/json", now))
                continue
            if not observations:   # an open, a click, a request: no status to decide, nothing to learn
                ignored += 1
                continue
            records.append(routed(admitted, account, observations, self.config.kafka.shards))
        if ignored:
            metrics.ignored(provider, name, ignored)
        return records, dead


def _silent(module: ProviderModule, account: AccountConfig, record: Any) -> bool:
    """A readable record that holds no status (an open, a click, an inbound mail)."""
    try:
        return not module.webhook_observations(account.context, record)
    except (MalformedPayload, Unusable):
        return False


_OK = orjson.dumps({"code": 200, "message": "ok"})
_REASONS = {401: "bad signature", 404: "unknown provider or account", 413: "body too large",
            408: "body not received in time", 400: "body not received",
            503: "busy, or not acknowledged by Kafka in time; retry", 500: "internal error; retry"}
