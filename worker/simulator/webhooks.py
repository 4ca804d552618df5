"""The webhook sender: every status change since the last call, as each provider posts it.

Formats (PROVIDERS.md): SendCloud form posts signed HMAC-SHA256(app_key, timestamp+token);
Aurora the same as JSON (or form) with the new or legacy event names; EngageLab JSON with
X-WebHook-* headers, md5(timestamp + "email" + app_key); UniSender batched `events_by_user`
JSON whose `auth` is the MD5 of the body with the API key in its place; Tencent one unsigned JSON
event per request to a path holding the account's token. Like providers, the sender resends on
non-2xx answers (bounded), and can duplicate and reorder deliveries.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import string
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import aiohttp
import attrs
import orjson

from worker.model import Provider
from worker.simulator import codes
from worker.simulator.stream import Entry, Message

_TOKEN_ALPHABET = string.ascii_letters + string.digits
FORM, JSON = "application/x-www-form-urlencoded", "application/json; charset=utf-8"

SC_EVENTS = {"legacy": {"delivered": "deliver", "invalid": "invalid", "soft_bounce": "soft_bounce",
                        "complaint": "report_spam", "unsubscribed": "unsubscribe", "pending": "request"},
             "new": {"delivered": "delivered", "invalid": "invalid_email", "soft_bounce": "soft_bounce",
                     "complaint": "spam-report", "unsubscribed": "unsubscribe", "pending": "request"}}
EL_EVENTS = {"pending": "target", "delivered": "delivered", "invalid": "invalid_email", "soft_bounce": "soft_bounce"}


def fire_delay_ms(m: Message, e: Entry) -> int:
    """How long after the change its webhook fired, 0-999 ms: millisecond webhook timestamps then
    differ from the whole seconds the status APIs report for the same change, as in life. Derived
    from the change itself, so a provider's retry repeats the same timestamp."""
    digest = hashlib.blake2b(f"{m.email_id}|{e.at_ms}|{e.kind}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % 1000


@attrs.define
class SendStats:
    requests: int = 0  # HTTP requests made, retries and duplicates included
    delivered: int = 0  # webhook bodies answered 2xx (duplicates included)
    events: int = 0  # status changes carried by delivered bodies (duplicates not counted)
    skipped: int = 0  # changes the provider sends no webhook for (e.g. Tencent pending)
    duplicates: int = 0
    retries: int = 0
    failed: int = 0  # bodies given up after max_attempts
    statuses: Counter = attrs.Factory(Counter)
    latencies: list[float] = attrs.Factory(list)  # seconds from a body's first attempt to its 2xx


@attrs.frozen(slots=True)
class Delivery:
    account: str
    provider: Provider
    path: str
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    events: int = 1
    duplicate: bool = False


class WebhookSender:
    def __init__(
        self,
        sim: Any,
        target_base_url: str,
        *,
        duplicate_rate: float = 0.0,
        reorder_window: int = 0,
        seed: int = 0,
        path_tokens: Mapping[str, str] | None = None,
        accounts: Iterable[str] | None = None,
        since: float | None = None,
        max_attempts: int = 4,
        retry_base_secs: float = 0.05,
        retry_max_secs: float = 16.0,  # the back-off doubles up to this (providers cap theirs too)
        timeout_secs: float = 3.0,  # providers give up on an answer after 3 s
        concurrency: int = 1,
        aurora_body: str = "json",  # json | form
        aurora_events: str = "new",  # new | legacy | mixed
        unisender_batch: int = 100,
    ) -> None:
        self.sim = sim
        self.target = target_base_url.rstrip("/")
        self.duplicate_rate, self.reorder_window = duplicate_rate, reorder_window
        self.rng = random.Random(seed)
        names = list(accounts) if accounts is not None else list(sim.accounts)
        self.accounts = {n: sim.accounts[n].account for n in names}
        self.path_tokens = {n: t for n, a in self.accounts.items()
                            if (t := (path_tokens or {}).get(n) or a.path_token)}
        for name, acct in self.accounts.items():
            if acct.provider in (Provider.ENGAGELAB, Provider.SENDCLOUD, Provider.AURORA_SENDCLOUD) and not acct.app_key:
                raise ValueError(f"{name}: an app_key is needed to sign {acct.provider.value} webhooks")
        start = sim.clock() if since is None else since
        self.watermarks = dict.fromkeys(self.accounts, start)
        self.max_attempts, self.retry_base_secs, self.retry_max_secs = max_attempts, retry_base_secs, retry_max_secs
        self.timeout = aiohttp.ClientTimeout(total=timeout_secs)
        self.concurrency = max(1, concurrency)
        if aurora_body not in ("json", "form") or aurora_events not in ("new", "legacy", "mixed"):
            raise ValueError("aurora_body is json|form, aurora_events new|legacy|mixed")
        self.aurora_body, self.aurora_events = aurora_body, aurora_events
        self.unisender_batch = unisender_batch
        self._session: aiohttp.ClientSession | None = None
        self.totals = SendStats()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def run(self, interval: float, stop_event: asyncio.Event) -> None:
        """Send what is due every `interval` seconds until `stop_event` is set."""
        try:
            while not stop_event.is_set():
                await self.send_due()
                try:
                    await asyncio.wait_for(stop_event.wait(), interval)
                except TimeoutError:
                    pass
        finally:
            await self.close()

    async def send_due(self, now: float | None = None) -> SendStats:
        """Post every change since the previous call (or construction) up to `now`."""
        now = self.sim.clock() if now is None else now
        stats = SendStats()
        deliveries: list[Delivery] = []
        for name, acct in self.accounts.items():
            changes = list(self.sim.iter_changes(name, self.watermarks[name], now))
            self.watermarks[name] = now
            built, skipped = self._build(name, acct, changes, now)
            deliveries.extend(built)
            stats.skipped += skipped
        deliveries = self._disorder(deliveries, stats)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        if self.concurrency == 1:
            for d in deliveries:
                await self._deliver(d, stats)
        else:
            gate = asyncio.Semaphore(self.concurrency)

            async def one(d: Delivery) -> None:
                async with gate:
                    await self._deliver(d, stats)

            await asyncio.gather(*(one(d) for d in deliveries))
        for field in ("requests", "delivered", "events", "skipped", "duplicates", "retries", "failed"):
            setattr(self.totals, field, getattr(self.totals, field) + getattr(stats, field))
        self.totals.statuses.update(stats.statuses)
        self.totals.latencies += stats.latencies
        return stats

    def _disorder(self, deliveries: list[Delivery], stats: SendStats) -> list[Delivery]:
        out = list(deliveries)
        dups = [i for i in range(len(deliveries)) if self.duplicate_rate and self.rng.random() < self.duplicate_rate]
        for i in reversed(dups):  # a resend comes after the original, anywhere later in the batch
            out.insert(self.rng.randint(i + 1, len(out)), attrs.evolve(deliveries[i], duplicate=True))
            stats.duplicates += 1
        if self.reorder_window > 1:
            for i in range(0, len(out), self.reorder_window):
                window = out[i: i + self.reorder_window]
                self.rng.shuffle(window)
                out[i: i + self.reorder_window] = window
        return out

    async def _deliver(self, d: Delivery, stats: SendStats) -> None:
        assert self._session is not None
        headers = {"Content-Type": d.content_type, **dict(d.headers)}
        started = time.monotonic()
        for attempt in range(1, self.max_attempts + 1):
            retry = attempt - 1 + (1 if d.duplicate else 0)
            url = self.target + d.path
            if d.provider is Provider.UNISENDER and retry:
                url += "?" + urllib.parse.urlencode({"retry_count": retry})
            stats.requests += 1
            if attempt > 1:
                stats.retries += 1
            try:
                async with self._session.post(url, data=d.body, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError):
                status = 0  # no answer: the provider retries as it does on an error
            stats.statuses[status] += 1
            if 200 <= status < 300:
                stats.latencies.append(time.monotonic() - started)
                stats.delivered += 1
                if not d.duplicate:
                    stats.events += d.events
                return
            if attempt < self.max_attempts:
                await asyncio.sleep(min(self.retry_base_secs * 2 ** (attempt - 1), self.retry_max_secs))
        stats.failed += 1

    # -- bodies ---------------------------------------------------------------------------------

    def _build(self, name: str, acct: Any, changes: list[tuple[Message, Entry]], now: float) -> tuple[list[Delivery], int]:
        p = acct.provider
        if p in (Provider.SENDCLOUD, Provider.AURORA_SENDCLOUD):
            return self._sendcloud(name, acct, changes)
        if p is Provider.ENGAGELAB:
            return self._engagelab(name, acct, changes, now)
        if p is Provider.UNISENDER:
            return self._unisender(name, acct, changes)
        return self._tencent(name, acct, changes)

    @staticmethod
    def _groups(changes: list[tuple[Message, Entry]]) -> list[list[tuple[Message, Entry]]]:
        """Per-recipient changes, with the pending ones of one request at one time merged."""
        out: list[list[tuple[Message, Entry]]] = []
        index: dict[tuple[str | None, int], int] = {}
        for m, e in changes:
            if e.kind == "pending" and m.message_id is not None:
                key = (m.message_id, e.at_ms)
                if key in index:
                    out[index[key]].append((m, e))
                    continue
                index[key] = len(out)
            out.append([(m, e)])
        return out

    def _sendcloud(self, name: str, acct: Any, changes: list[tuple[Message, Entry]]) -> tuple[list[Delivery], int]:
        aurora = acct.provider is Provider.AURORA_SENDCLOUD
        desc = codes.SC_SUB_DESC_EN if aurora else codes.SC_SUB_DESC_ZH
        out = []
        for group in self._groups(changes):
            m, e = group[0]
            style = self.aurora_events if aurora else "legacy"
            if style == "mixed":
                style = self.rng.choice(("new", "legacy"))
            ts = str(e.at_ms + fire_delay_ms(m, e))
            token = "".join(self.rng.choice(_TOKEN_ALPHABET) for _ in range(50))
            fields: dict[str, Any] = {
                "event": SC_EVENTS[style][e.kind], "message": e.text or e.kind, "apiUser": acct.api_user,
                "category": acct.api_user, "timestamp": ts, "token": token,
                "signature": hmac.new(acct.app_key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest(),
            }
            if e.kind == "pending":
                fields.update(messageId=m.message_id, recipientSize=len(group),
                              recipientArray=orjson.dumps([g[0].recipient for g in group]).decode(),
                              emailIds=orjson.dumps([g[0].email_id for g in group]).decode())
            else:
                fields.update(emailId=m.email_id, recipient=m.recipient)
                if e.kind in ("delivered", "invalid", "soft_bounce"):
                    fields["outIp"] = "203.0.113.25"
                if e.kind in ("invalid", "soft_bounce"):
                    assert e.sub_status is not None, "failures carry a sub-status"
                    fields.update(substat=int(e.sub_status), substatdesc=desc[e.sub_status])
                if e.kind == "soft_bounce":
                    fields["cause"] = e.text
                if e.kind == "unsubscribed":
                    fields.update(ip="198.51.100.7", explorerName="Chrome", explorerVer="120", oSName="Windows", oSVer="10")
            if aurora and self.aurora_body == "json":
                fields["timestamp"] = int(ts)  # a JSON number; signed as its digits
                if "recipientArray" in fields:
                    fields["recipientArray"] = [g[0].recipient for g in group]
                    fields["emailIds"] = [g[0].email_id for g in group]
                out.append(Delivery(name, acct.provider, f"/webhooks/{acct.provider.value}/{name}", JSON,
                                    orjson.dumps(fields), events=len(group)))
            else:
                body = urllib.parse.urlencode({k: str(v) for k, v in fields.items()}).encode()
                out.append(Delivery(name, acct.provider, f"/webhooks/{acct.provider.value}/{name}", FORM, body,
                                    events=len(group)))
        return out, 0

    def _engagelab(self, name: str, acct: Any, changes: list[tuple[Message, Entry]], now: float) -> tuple[list[Delivery], int]:
        out, skipped = [], 0
        for group in self._groups(changes):
            m, e = group[0]
            if e.kind not in EL_EVENTS:
                skipped += len(group)
                continue
            sender = f"noreply@{name}.example.test"
            if e.kind == "pending":
                data: dict[str, Any] = {"message": "successfully request", "task_id": "-1", "api_user": acct.api_user,
                                        "from": sender, "subject": "Your order", "tos": [g[0].recipient for g in group],
                                        "email_ids": [g[0].email_id for g in group], "label_id": 0}
                envelope = {"message_id": m.message_id, "from": "", "subject": "", "to": ""}
            else:
                data = {"message": e.text, "task_id": -1, "api_user": acct.api_user, "email_id": m.email_id}
                if e.sub_status:
                    data.update(sub_stat=int(e.sub_status), sub_stat_desc=codes.EL_SUB_DESC[e.sub_status])
                envelope = {"message_id": m.message_id, "from": sender, "subject": "Your order", "to": m.recipient}
            body = {**envelope, "server": "email", "itime": e.at_ms + fire_delay_ms(m, e), "custom_args": {},
                    "status": {"message_status": EL_EVENTS[e.kind], "status_data": data}}
            ts = str(int(now * 1000))
            sig = hashlib.md5((ts + "email" + acct.app_key).encode()).hexdigest()
            headers = (("X-WebHook-Timestamp", ts), ("X-WebHook-AppKey", "email"), ("X-WebHook-Signature", sig))
            out.append(Delivery(name, acct.provider, f"/webhooks/engagelab/{name}", JSON, orjson.dumps(body),
                                headers, events=len(group)))
        return out, skipped

    def _unisender(self, name: str, acct: Any, changes: list[tuple[Message, Entry]]) -> tuple[list[Delivery], int]:
        events, skipped = [], 0
        for m, e in changes:
            if e.provider_status == "not_sent":  # notifications start at "sent"
                skipped += 1
                continue
            at = datetime.fromtimestamp(e.at_ms // 1000, tz=codes.MOSCOW_TZ).strftime("%Y-%m-%d %H:%M:%S")
            events.append({"event_name": "email_status", "event_time": at,
                           "event_data": {"email": m.recipient, "status": e.provider_status,
                                          "status_group": codes.uni_status_group(e.provider_status),
                                          "email_id": m.uni_id}})
        out = []
        key = acct.api_key
        for i in range(0, len(events), self.unisender_batch):
            batch = events[i: i + self.unisender_batch]
            doc = {"auth": key, "events_by_user": [{"login": acct.api_user or name, "events": batch}]}
            unsigned = orjson.dumps(doc)
            digest = hashlib.md5(unsigned).hexdigest()
            marker = b'{"auth":' + orjson.dumps(key)
            body = b'{"auth":"' + digest.encode() + b'"' + unsigned[len(marker):]
            out.append(Delivery(name, acct.provider, f"/webhooks/unisender/{name}", JSON, body, events=len(batch)))
        return out, skipped

    def _tencent(self, name: str, acct: Any, changes: list[tuple[Message, Entry]]) -> tuple[list[Delivery], int]:
        out, skipped = [], 0
        token = self.path_tokens.get(name)
        path = f"/webhooks/tencent_ses/{name}" + (f"/{token}" if token else "")
        appid = str(self.sim.accounts[name].stream.appid)
        for m, e in changes:
            event = _tencent_event(e)
            if event is None:
                skipped += 1
                continue
            ev, eventid, bounce_type = event
            body = {"event": ev, "email": m.recipient, "link": "", "bulkId": m.message_id,
                    "timestamp": e.at_ms // 1000, "reason": e.text if e.kind in ("invalid", "soft_bounce") else "",
                    "bounceType": bounce_type, "username": appid, "from": f"noreply@{name}.example.test",
                    "fromDomain": f"{name}.example.test", "templateId": 0, "useragent": "",
                    "subject": "=?UTF-8?B?WW91ciBvcmRlcg==?=", "messageId": f"<{m.seq}.{appid}@{name}.example.test>",
                    "sentTimestamp": m.sent_ms // 1000, "eventid": eventid, "taskId": 0}
            out.append(Delivery(name, acct.provider, path, JSON, orjson.dumps(body)))
        return out, skipped


def _tencent_event(e: Entry) -> tuple[str, int, str] | None:
    if e.kind == "delivered":
        return codes.TC_EVENT_DELIVERED
    if e.kind == "complaint":
        return codes.TC_EVENT_COMPLAINT
    if e.kind == "unsubscribed":
        return codes.TC_EVENT_UNSUB
    if e.kind == "invalid":  # DeliverStatus 3 bounces; DeliverStatus 2 and send-stage rejections are dropped
        return codes.TC_EVENT_HARD if e.tc == (0, 3) else codes.TC_EVENT_DROPPED
    if e.kind == "soft_bounce":
        return codes.TC_EVENT_DEFERRED if e.tc == (0, 8) else codes.TC_EVENT_SOFT
    return None  # pending and Tencent-internal errors: no callback
