"""The public edge under abuse: the worker as a real process, every provider's route, real Kafka.

One `python -m worker run` process (tests.integration.harness.WorkerProcess) with one account per
provider (webhooks only, polling off) and small HTTP caps, so that the caps are reached with a
bounded amount of traffic. The tests run in order on that one process, each an *attack*:

1. per provider, about 480 mutated requests (random bytes, truncations and byte flips of a
   signed body, huge and deeply nested JSON, wrong or missing content types, bad encodings,
   repeated keys, mutated headers and paths, sizes from 0 to just over `http.max_body_bytes`),
   and an unreadable authentic body whose Content-Type is not UTF-8;
2. slow bodies: more stalled uploads than `http.max_concurrent_requests`; uploads abandoned
   mid-body;
3. fan-out bodies (`[{},{},...]` of ~1 MiB, and 501 well-formed records) to Tencent and EngageLab;
4. oversized fields (a 600 KB id, 2,000-character ids and addresses);
5. a captured SendCloud signature replayed with a forged body (as captured, and with the hex of
   the signature in upper case, which verification accepts too); an EngageLab signature reused
   for another status of the same email;
6. statuses dated in 2100 (EngageLab `itime`, Tencent `timestamp`, UniSender `event_time`);
7. poison `_raw` records written straight to the partitions of the real accounts.

After each attack (`Suite.after`): a canary (a genuine signed webhook of a new email id, to the
accounts in turn so that every shard gets some) must be read back committed within 30 s, no
request of the attack may have been answered 500 (seen by the client, or counted by the worker
when the client had gone), the process must still run, and its RSS must stay under `rss_bound`.
At the end: every event in the output topics is a canary or a request sent with a valid
credential (by email id), nothing forged appears, and the dead-letter topic holds each attack's
input under the expected `reason`. Everything is seeded (`random.Random`), loopback only, and
every wait is event-driven with a generous bound; no wall-clock assertion.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import secrets
import socket
import struct
import time
import urllib.parse
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.integration.harness import WorkerProcess, free_port, worker_config
from worker.emit import account_key, shard_of

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

SEED = 20261123
SHARDS = 4
MAX_BODY = 1 << 20                 # http.max_body_bytes (the default, written out)
MAX_INFLIGHT = 4 << 20             # http.max_inflight_body_bytes: four maximal bodies
MAX_CONCURRENT = 16                # http.max_concurrent_requests
READ_TIMEOUT = 3.0                 # http.body_read_timeout_secs
MAX_RECORDS = 500                  # http.max_records_per_body (the default)
CANARY_SECS = 30.0                 # a canary must be committed within this
ANSWER_SECS = 60.0                 # any request must be answered within this (a hang fails)
CLIENTS = 8                        # concurrent connections of a mutation attack
YEAR_2100 = datetime(2100, 1, 1, tzinfo=UTC)
MOSCOW = timezone(timedelta(hours=3))

# Secrets of the accounts (the worker reads them from the environment, like in production).
KEYS = {"engagelab": "el-app-key-abuse", "sendcloud": "sc-app-key-abuse", "aurora_sendcloud": "au-app-key-abuse",
        "unisender": "uni-api-key-abuse"}
TC_TOKEN = "tencent-path-token-abuse-0123456789"
ENV = {"AB_EL": KEYS["engagelab"], "AB_SC": KEYS["sendcloud"], "AB_AU": KEYS["aurora_sendcloud"],
       "AB_UNI": KEYS["unisender"], "AB_TC": TC_TOKEN}
PROVIDERS = ("engagelab", "sendcloud", "aurora_sendcloud", "unisender", "tencent_ses")
FORM = b"application/x-www-form-urlencoded"
JSON = b"application/json"


def account_names() -> dict[str, str]:
    """One account per provider, named so that together they own every shard (the canaries go
    round them, so every shard's transactions are seen to go on after every attack)."""
    wanted = {"engagelab": 0, "sendcloud": 1, "aurora_sendcloud": 2, "unisender": 3, "tencent_ses": 0}
    names = {}
    for provider, shard in wanted.items():
        names[provider] = next(f"abuse-{provider[:2]}-{i}" for i in range(1000)
                               if shard_of(provider, f"abuse-{provider[:2]}-{i}", SHARDS) == shard)
    return names


NAMES = account_names()


def accounts() -> list[dict]:
    off = {"enabled": False}
    return [
        {"name": NAMES["engagelab"], "provider": "engagelab", "poll": off, "webhook": {"app_key_env": "AB_EL"}},
        {"name": NAMES["sendcloud"], "provider": "sendcloud", "poll": off, "webhook": {"app_key_env": "AB_SC"}},
        {"name": NAMES["aurora_sendcloud"], "provider": "aurora_sendcloud", "poll": off,
         "webhook": {"app_key_env": "AB_AU"}},
        {"name": NAMES["unisender"], "provider": "unisender", "poll": off,
         "credentials": {"api_key_env": "AB_UNI"}},
        {"name": NAMES["tencent_ses"], "provider": "tencent_ses", "poll": off,
         "webhook": {"path_token_env": "AB_TC"}},
    ]


# -- requests -------------------------------------------------------------------------------------


@dataclass
class Req:
    """One HTTP request as bytes on the wire; `ids` are the email ids it may legitimately become
    events for (registered before it is sent: anything else emitted is forged)."""

    kind: str
    path: str
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    chunked: bool = False
    length: bytes | None = None        # a Content-Length value to send instead of the real one
    ids: frozenset[str] = frozenset()


def now_ms() -> int:
    return int(time.time() * 1000)


def dumps(doc: Any, splices: dict[str, bytes] | None = None) -> bytes:
    """JSON of `doc`, with each placeholder string `"@@<name>@@"` replaced by raw bytes (JSON
    nested deeper than any encoder writes)."""
    body = orjson.dumps(doc)
    for name, raw_bytes in (splices or {}).items():
        body = body.replace(b'"@@' + name.encode() + b'@@"', raw_bytes, 1)
    return body


def ct(value: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"Content-Type", value)]


class Hook:
    """A provider's webhook as the provider sends it: genuine requests, and a valid credential for
    any content where the provider's scheme allows it (so that mutations reach past the check)."""

    provider: str
    # A captured credential reused with any other content is a replay the worker must refuse
    # (SendCloud, Aurora: the signature names one delivery). Elsewhere the credential covers the
    # whole body (UniSender: no other content verifies), or none of it (EngageLab signs a
    # timestamp, Tencent has a path token): other content with it is authentic by the protocol.
    replay_bound = False

    def __init__(self) -> None:
        self.account = NAMES[self.provider]
        self.shard = shard_of(self.provider, self.account, SHARDS)
        self.path = f"/webhooks/{self.provider}/{self.account}"

    def ids(self, tag: str) -> tuple[str, str]:
        """(email id, recipient) of a new email."""
        rcpt = f"{tag}@example.com"
        return f"{now_ms()}_{tag}.sc-10_1_2_3-inbound0${rcpt}", rcpt

    def record(self, tag: str, **kw: Any) -> dict:
        """One genuine status record of a new email (as the body, or the event, holds it)."""
        raise NotImplementedError

    def genuine(self, tag: str, *, kind: str = "genuine", **kw: Any) -> Req:
        return self.signed_json(self.record(tag, **kw), kind)

    def signed_json(self, doc: Any, kind: str, splices: dict[str, bytes] | None = None) -> Req:
        """A JSON document sent with a valid credential; for a body-signed scheme, a document
        that is not an object cannot carry one and goes unsigned. `ids`: the email ids in it."""
        raise NotImplementedError

    def signed_bytes(self, body: bytes, content_type: bytes | None, kind: str) -> Req:
        """Arbitrary bytes with the request's credential (headers, path token) valid; where the
        scheme signs the body itself, the credential cannot be valid and is absent."""
        return Req(kind, self.path, body, ct(content_type) if content_type else [])

    def ids_in(self, body: bytes) -> set[str]:
        """Email ids a body with a valid credential could name, read test-side and liberally (a
        superset); empty where the credential covers the whole body (no other body verifies)."""
        return set()


class SendCloudHook(Hook):
    """HMAC-SHA256(app key, timestamp + token) in the body; the rest of the body is not signed."""

    replay_bound = True

    def __init__(self, provider: str) -> None:
        self.provider = provider
        super().__init__()
        self.key = KEYS[provider]

    def sign(self, fields: dict, ts_ms: int | None = None) -> dict:
        ts = str(ts_ms if ts_ms is not None else now_ms())
        token = secrets.token_hex(25)
        sig = hmac.new(self.key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
        return {"timestamp": ts, "token": token, "signature": sig, **fields}

    def fields(self, email_id: str, rcpt: str, event: str = "deliver", **extra: Any) -> dict:
        return {"event": event, "emailId": email_id, "recipient": rcpt, "apiUser": "abuse",
                "message": "250 2.0.0 OK", **extra}

    def record(self, tag: str, **kw: Any) -> dict:
        return self.fields(*self.ids(tag), **kw)

    def genuine(self, tag: str, *, kind: str = "genuine", ts_ms: int | None = None, **kw: Any) -> Req:
        fields = self.sign(self.record(tag, **kw), ts_ms)
        return Req(kind, self.path, urllib.parse.urlencode(fields).encode(), ct(FORM),
                   ids=frozenset({fields["emailId"]}))

    def signed_json(self, doc: Any, kind: str, splices: dict[str, bytes] | None = None) -> Req:
        if isinstance(doc, dict):
            doc = self.sign(doc)
        return Req(kind, self.path, dumps(doc, splices), ct(JSON), ids=ids_of_fields(doc, ("emailId",)))

    def ids_in(self, body: bytes) -> set[str]:
        form = urllib.parse.parse_qs(body.decode("utf-8", "surrogateescape"), keep_blank_values=True)
        return {v for v in form.get("emailId", []) if v} | {
            t for rec in json_records(body) for v in values(rec, "emailId") if (t := as_text(v))}


class EngageLabHook(Hook):
    """md5(X-WebHook-Timestamp + X-WebHook-AppKey + key) in headers: the body is not signed."""

    provider = "engagelab"

    def headers(self, ts_ms: int | None = None) -> list[tuple[bytes, bytes]]:
        ts = str(ts_ms if ts_ms is not None else now_ms())
        sig = hashlib.md5((ts + "email" + KEYS["engagelab"]).encode()).hexdigest()
        return [(b"X-WebHook-Timestamp", ts.encode()), (b"X-WebHook-AppKey", b"email"),
                (b"X-WebHook-Signature", sig.encode())]

    def envelope(self, email_id: str, rcpt: str, *, event: str = "delivered", itime: int | None = None) -> dict:
        return {"message_id": email_id.partition("$")[0][:-1], "from": "noreply@abuse.example", "subject": "s",
                "to": rcpt, "server": "email", "itime": itime if itime is not None else now_ms(), "custom_args": {},
                "status": {"message_status": event, "status_data": {"message": "250 ok", "task_id": -1,
                                                                    "api_user": "abuse", "email_id": email_id}}}

    def record(self, tag: str, **kw: Any) -> dict:
        return self.envelope(*self.ids(tag), **kw)

    def signed_json(self, doc: Any, kind: str, splices: dict[str, bytes] | None = None) -> Req:
        return self.signed_bytes(dumps(doc, splices), JSON, kind)

    def signed_bytes(self, body: bytes, content_type: bytes | None, kind: str) -> Req:
        return Req(kind, self.path, body, (ct(content_type) if content_type else []) + self.headers(),
                   ids=frozenset(self.ids_in(body)))

    def ids_in(self, body: bytes) -> set[str]:
        out = set()
        for rec in json_records(body):
            for part in values(rec, "status") + values(rec, "response"):
                for data in values(part, "status_data") + values(part, "response_data"):
                    out |= {t for v in values(data, "email_id") if (t := as_text(v))}
        return out


class UniSenderHook(Hook):
    """`auth` = md5 of the body with the key in its place: the whole body is signed."""

    provider = "unisender"

    def ids(self, tag: str) -> tuple[str, str]:
        return f"uni-{tag}", f"{tag}@example.com"

    def event(self, email_id: str, rcpt: str, *, when: datetime | None = None, status: str = "ok_delivered") -> dict:
        at = (when or datetime.now(UTC)).astimezone(MOSCOW).strftime("%Y-%m-%d %H:%M:%S")
        return {"event_name": "email_status", "event_time": at,
                "event_data": {"email": rcpt, "status": status, "status_group": "delivered", "email_id": email_id}}

    def record(self, tag: str, **kw: Any) -> dict:
        return {"events_by_user": [{"login": "abuse", "events": [self.event(*self.ids(tag), **kw)]}]}

    def sign(self, doc: dict, splices: dict[str, bytes] | None = None) -> bytes:
        """The body as UniSender sends it: serialised with the key as `auth`, then the key
        replaced by the md5 of that text."""
        key = KEYS["unisender"]
        unsigned = dumps({"auth": key, **{k: v for k, v in doc.items() if k != "auth"}}, splices)
        marker = b'{"auth":' + orjson.dumps(key)
        return b'{"auth":"' + hashlib.md5(unsigned).hexdigest().encode() + b'"' + unsigned[len(marker):]

    def signed_json(self, doc: Any, kind: str, splices: dict[str, bytes] | None = None) -> Req:
        if not isinstance(doc, dict):
            return Req(kind, self.path, dumps(doc, splices), ct(JSON))
        return Req(kind, self.path, self.sign(doc, splices), ct(JSON), ids=ids_of_fields(doc, ("email_id",)))


class TencentHook(Hook):
    """No signature: the unguessable path token is the credential."""

    provider = "tencent_ses"

    def __init__(self) -> None:
        super().__init__()
        self.path = f"{self.path}/{TC_TOKEN}"

    def event(self, bulk: str, rcpt: str, *, event: str = "delivered", ts: int | None = None) -> dict:
        return {"event": event, "email": rcpt, "link": "", "bulkId": bulk,
                "timestamp": ts if ts is not None else int(time.time()), "reason": "", "bounceType": "",
                "username": "1300000000", "from": "noreply@abuse.example", "fromDomain": "abuse.example",
                "templateId": 0, "eventid": 1, "taskId": 0}

    def record(self, tag: str, **kw: Any) -> dict:
        return self.event(f"qcloudses-{tag}", f"{tag}@example.com", **kw)

    def signed_json(self, doc: Any, kind: str, splices: dict[str, bytes] | None = None) -> Req:
        return self.signed_bytes(dumps(doc, splices), JSON, kind)

    def signed_bytes(self, body: bytes, content_type: bytes | None, kind: str) -> Req:
        return Req(kind, self.path, body, ct(content_type) if content_type else [], ids=frozenset(self.ids_in(body)))

    def ids_in(self, body: bytes) -> set[str]:
        out = set()
        for rec in json_records(body):
            bulks = [v for k, v in rec.pairs if k.lower() == "bulkid"]
            out |= {f"{b}:{e.lower()}" for b in bulks for e in values(rec, "email")
                    if isinstance(b, str) and isinstance(e, str)}
        return out


class _Obj(dict):
    """A JSON object read test-side, with every value of a repeated key kept in `pairs`."""

    pairs: list


def _object(pairs: list) -> _Obj:
    obj = _Obj(pairs)
    obj.pairs = pairs
    return obj


def json_records(body: bytes) -> list[_Obj]:
    """The objects of a JSON body (one, or a list of them), liberally: the standard library also
    reads UTF-16 and NaN, which the worker refuses, so the ids it finds are a superset."""
    try:
        doc = json.loads(body, object_pairs_hook=_object)
    except (ValueError, RecursionError):
        return []
    return [d for d in (doc if isinstance(doc, list) else [doc]) if isinstance(d, _Obj)]


def values(obj: Any, key: str) -> list:
    return [v for k, v in obj.pairs if k == key] if isinstance(obj, _Obj) else []


def as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def ids_of_fields(doc: Any, keys: Iterable[str]) -> frozenset[str]:
    """Every id under `keys` anywhere in a document (the ids a signed document names)."""
    out: set[str] = set()
    stack = [doc]
    for _ in range(100_000):
        if not stack:
            break
        item = stack.pop()
        if isinstance(item, dict):
            out |= {t for k in keys if (t := as_text(item.get(k)))}
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return frozenset(out)


HOOKS: dict[str, Hook] = {"engagelab": EngageLabHook(), "sendcloud": SendCloudHook("sendcloud"),
                          "aurora_sendcloud": SendCloudHook("aurora_sendcloud"), "unisender": UniSenderHook(),
                          "tencent_ses": TencentHook()}


# -- the wire -------------------------------------------------------------------------------------


async def send(port: int, req: Req, *, within: float = ANSWER_SECS) -> int | str:
    """Send a request as raw bytes (any header, any length, any framing) and return the answer's
    status, or what happened instead: `reset` (closed without an answer), `no_answer` (a hang)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), within)
    except (OSError, TimeoutError):
        return "connect_failed"
    head = [f"POST {req.path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    if req.chunked:
        head.append(b"Transfer-Encoding: chunked")
    else:
        head.append(b"Content-Length: " + (req.length if req.length is not None else str(len(req.body)).encode()))
    head += [name + b": " + value for name, value in req.headers]

    async def write() -> None:
        writer.write(b"\r\n".join(head) + b"\r\n\r\n")
        if req.chunked:
            for i in range(0, len(req.body), 65536):
                piece = req.body[i:i + 65536]
                writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(req.body)
        await writer.drain()

    # The answer may come before the body is taken (413, 503): read it while writing.
    writing = asyncio.create_task(write())
    try:
        line = await asyncio.wait_for(reader.readline(), within)
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
            return int(parts[1])
        return "reset" if not line else "garbled"
    except TimeoutError:
        return "no_answer"
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return "reset"
    finally:
        writing.cancel()
        with contextlib.suppress(BaseException):
            await writing
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 5)


async def send_all(port: int, reqs: list[Req], clients: int = CLIENTS) -> list[int | str]:
    """Every request, `clients` at a time; statuses in request order."""
    out: list[int | str] = [""] * len(reqs)
    queue = iter(enumerate(reqs))

    async def client() -> None:
        for i, req in queue:
            out[i] = await send(port, req)

    await asyncio.gather(*(client() for _ in range(clients)))
    return out


# -- reading Kafka back ---------------------------------------------------------------------------


@dataclass
class DeadLetter:
    reason: str
    provider: str
    account: str
    source: str
    part: str
    size: int
    value: bytes          # the first 16 KiB (bodies can be 1 MiB)


class Tail:
    """A read_committed consumer of the output topics and the dead-letter topic, from the
    beginning, for the whole suite; waiters are woken on every new record."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.bootstrap = bootstrap
        self.outputs = [f"{prefix}.{t}" for t in ("delivered", "invalid", "soft_bounce", "complaint", "unsubscribed")]
        self.dead_topic = f"{prefix}._dead_letter"
        self.events: list[dict] = []
        self.event_ids: list[bytes] = []
        self.values: list[bytes] = []
        self.by_email: dict[str, list[dict]] = {}
        self.dead: list[DeadLetter] = []
        self.changed = asyncio.Condition()
        self.consumer: AIOKafkaConsumer | None = None
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, isolation_level="read_committed",
                                         enable_auto_commit=False, auto_offset_reset="earliest",
                                         fetch_max_wait_ms=100, max_partition_fetch_bytes=16 << 20)
        await self.consumer.start()
        parts = []
        for topic in [*self.outputs, self.dead_topic]:
            found = None
            for _ in range(100):
                found = self.consumer.partitions_for_topic(topic)
                if found:
                    break
                await self.consumer._client.force_metadata_update()
                await asyncio.sleep(0.1)
            assert found, f"topic {topic} never appeared"
            parts += [TopicPartition(topic, p) for p in sorted(found)]
        self.consumer.assign(parts)
        await self.consumer.seek_to_beginning(*parts)
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=200, max_records=5000)
            got = False
            for tp, records in batch.items():
                for r in records:
                    got = True
                    headers = {k: v.decode(errors="replace") for k, v in r.headers}
                    if tp.topic == self.dead_topic:
                        self.dead.append(DeadLetter(headers.get("reason", ""), headers.get("provider", ""),
                                                    headers.get("account", ""), headers.get("source", ""),
                                                    headers.get("part", ""), len(r.value or b""),
                                                    (r.value or b"")[:16384]))
                    else:
                        event = orjson.loads(r.value)
                        self.events.append(event)
                        self.values.append(r.value)
                        self.event_ids.append(dict(r.headers).get("event_id", b""))
                        self.by_email.setdefault(event["email_id"], []).append(event)
            if got:
                async with self.changed:
                    self.changed.notify_all()

    async def wait(self, predicate: Callable[[], bool], within: float) -> bool:
        """Whether `predicate` became true within `within` seconds (checked on every new record)."""
        if self.task.done():
            self.task.result()
        try:
            async with self.changed:
                await asyncio.wait_for(self.changed.wait_for(predicate), within)
            return True
        except TimeoutError:
            return predicate()

    def dead_with(self, reason: str, match: Callable[[DeadLetter], bool] = lambda d: True) -> list[DeadLetter]:
        return [d for d in self.dead if d.reason == reason and match(d)]

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        if self.consumer is not None:
            await self.consumer.stop()


# -- the process ----------------------------------------------------------------------------------


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in bytes: its resident set now, and its peak since it started."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values["VmRSS"], values["VmHWM"]


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with session.get(f"{url}/metrics") as r:
        text = await r.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[series] = float(value)
    return out


def total(metrics: dict[str, float], name: str, *labels: str) -> float:
    return sum(v for k, v in metrics.items() if k.startswith(name + "{") and all(lb in k for lb in labels))


Expectation = tuple[str, str, Callable[[DeadLetter], bool]]   # (reasons "a|b", what, match)


@dataclass
class Suite:
    """The worker process, the tail, and the ledger every attack adds to."""

    worker: WorkerProcess
    tail: Tail
    session: aiohttp.ClientSession
    bootstrap: str
    prefix: str
    rss_start: int = 0
    rss_bound: int = 0
    rss_max: int = 0
    allowed: set[str] = field(default_factory=set)                 # email ids sent with a valid credential
    forbidden: set[tuple[str, str]] = field(default_factory=set)    # (email id, type) that must not appear
    forged_marks: set[str] = field(default_factory=set)             # text no event may contain
    canaries: dict[str, int] = field(default_factory=dict)          # canary email id -> shard
    statuses: Counter = field(default_factory=Counter)
    expected_dead: list[Expectation] = field(default_factory=list)
    attacks: int = 0
    flip_ids: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))   # ids only flips named
    first_metrics: dict[str, float] = field(default_factory=dict)
    last_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.worker.port

    async def run(self, reqs: list[Req], clients: int = CLIENTS) -> list[int | str]:
        for req in reqs:
            self.allowed |= req.ids
        got = await send_all(self.port, reqs, clients)
        self.statuses.update(got)
        return got

    async def deliver(self, req: Req, what: str) -> None:
        """A genuine request, retried as a provider would until it is taken (200), within
        CANARY_SECS (503 is load shedding; the suite keeps to its own bound, not Retry-After)."""
        self.allowed |= req.ids
        deadline = time.monotonic() + CANARY_SECS
        status: int | str = ""
        for _ in range(100):
            status = await send(self.port, req)
            self.statuses[status] += 1
            if status == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        assert status == 200, f"{what}: a genuine request was answered {status}\n{self.worker.log_tail()}"

    async def fence(self, hooks: Iterable[Hook], what: str) -> None:
        """A genuine webhook to each account, read back committed: each shard reads `_raw` in
        order, so everything these accounts received before has been processed and committed."""
        reqs = [h.genuine(f"fence-{uuid.uuid4().hex[:10]}", kind="fence") for h in hooks]
        for req in reqs:
            await self.deliver(req, f"{what}: fence")
        ids = {i for r in reqs for i in r.ids}
        assert await self.tail.wait(lambda: ids <= self.tail.by_email.keys(), CANARY_SECS), \
            f"{what}: fence webhooks not committed within {CANARY_SECS:.0f} s\n{self.worker.log_tail()}"

    def emitted(self, mark: str) -> list[str]:
        """Events whose JSON contains `mark`."""
        return [v[:160].decode(errors="replace") for v in self.tail.values if mark.encode() in v]

    async def dead_letters(self, expected: list[Expectation], what: str) -> None:
        """Each expectation met by a dead letter (waited for, bounded); kept for the summary."""
        self.expected_dead += expected

        def missing() -> list[str]:
            return [f"{w} (reason {reasons})" for reasons, w, match in expected
                    if not any(match(d) for r in reasons.split("|") for d in self.tail.dead_with(r))]

        await self.tail.wait(lambda: not missing(), CANARY_SECS)
        gone = missing()
        seen = Counter(d.reason for d in self.tail.dead)
        assert not gone, f"{what}: not in the dead-letter topic: {gone}; dead letters so far by reason: {dict(seen)}"

    async def after(self, attack: str, statuses: Iterable[int | str] = (), detail: str = "") -> None:
        """What must hold after every attack: no 500 and no hang, the process alive and within
        its memory bound, and a canary committed."""
        statuses = list(statuses)
        answered_500 = sum(1 for s in statuses if s == 500)
        hangs = sum(1 for s in statuses if s == "no_answer")
        assert self.worker.running, f"{attack}: the worker process died\n{self.worker.log_tail()}"
        metrics = await scrape(self.session, self.worker.url)
        counted_500 = (total(metrics, "esw_webhook_requests_total", 'status="500"')
                       - total(self.last_metrics, "esw_webhook_requests_total", 'status="500"'))
        webhook_errors = {k: v - self.last_metrics.get(k, 0.0) for k, v in metrics.items()
                          if k.startswith("esw_errors_total{") and 'stage="webhook"' in k
                          and v != self.last_metrics.get(k, 0.0)}
        self.last_metrics = metrics
        rss, peak = memory(self.worker.proc.pid)
        self.rss_max = max(self.rss_max, peak)
        print(f"\n{attack}: worker RSS {rss / 2**20:.0f} MiB, peak so far {peak / 2**20:.0f} MiB")
        hook = HOOKS[PROVIDERS[self.attacks % len(PROVIDERS)]]
        self.attacks += 1
        canary = hook.genuine(f"canary{self.attacks}-{uuid.uuid4().hex[:8]}", kind="canary")
        (email_id,) = canary.ids
        self.canaries[email_id] = hook.shard
        await self.deliver(canary, f"{attack}: canary to {hook.provider}")
        committed = await self.tail.wait(lambda: email_id in self.tail.by_email, CANARY_SECS)
        problems = []
        if answered_500:
            problems.append(f"{answered_500} request(s) answered 500")
        if counted_500 or webhook_errors:
            problems.append(f"the worker counted {counted_500:.0f} answer(s) 500 and webhook errors "
                            f"{webhook_errors} (clients that had gone never saw them)")
        if hangs:
            problems.append(f"{hangs} request(s) not answered within {ANSWER_SECS:.0f} s")
        if peak > self.rss_bound:
            problems.append(f"peak RSS {peak / 2**20:.0f} MiB over the bound {self.rss_bound / 2**20:.0f} MiB "
                            f"(start {self.rss_start / 2**20:.0f} MiB; now {rss / 2**20:.0f} MiB)")
        if not committed:
            problems.append(f"canary {email_id} to {hook.provider} (shard {hook.shard}) not committed "
                            f"within {CANARY_SECS:.0f} s")
        assert not problems, f"after {attack}: " + "; ".join(problems) + detail + f"\n{self.worker.log_tail(8)}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def suite(kafka_bootstrap, tmp_path_factory):
    prefix = f"abuse{uuid.uuid4().hex[:10]}"
    data = worker_config(kafka_bootstrap, prefix, accounts(), shards=SHARDS, port=free_port(),
                         http={"max_body_bytes": MAX_BODY, "max_inflight_body_bytes": MAX_INFLIGHT,
                               "max_concurrent_requests": MAX_CONCURRENT, "body_read_timeout_secs": READ_TIMEOUT,
                               "max_records_per_body": MAX_RECORDS})
    worker = WorkerProcess(data, ENV, tmp_path_factory.mktemp("abuse"))
    await worker.start()
    tail = None
    try:
        await worker.ready(90)
        tail = Tail(kafka_bootstrap, prefix)
        await tail.start()
        async with aiohttp.ClientSession() as session:
            s = Suite(worker, tail, session, kafka_bootstrap, prefix)
            # Every account once (producer metadata, each shard's first transaction), so that the
            # start RSS is the running process's, not a half-started one's.
            await s.fence(HOOKS.values(), "warm-up")
            s.first_metrics = s.last_metrics = await scrape(session, worker.url)
            s.rss_start, _ = memory(worker.proc.pid)
            # The bound: the start RSS, plus every body byte the receiver may hold at once
            # (http.max_inflight_body_bytes), plus a margin for what a held body turns into:
            # - the largest body parsed is 1 MiB of `{},` (fan-out): ~350k empty dicts of 64 B and
            #   their list slots, ~25 MiB, alive until the receiver has split and refused it (the
            #   parse is synchronous, so one such body at a time);
            # - a body kept as a dead letter is copied into the producer's batch and request
            #   (~2 x 1 MiB for each of the <= 4 bodies admitted at once);
            # - aiohttp's read buffers (64 KiB high-water mark, x2) of the 40 slow connections and
            #   8 clients, ~6 MiB; the allocator's fragmentation after all that.
            # 96 MiB covers this with room to spare; a leak per request (thousands of them) or a
            # body buffered per connection rather than per admitted request would not fit.
            s.rss_bound = s.rss_start + MAX_INFLIGHT + (96 << 20)
            s.rss_max = s.rss_start
            yield s
    finally:
        if tail is not None:
            await tail.stop()
        await worker.terminate()


# -- 1. mutated requests, per provider ------------------------------------------------------------


def log_size(rng: random.Random, top: int) -> int:
    """A size from 0 to `top`, log-uniform: mostly small, some near the cap (bounded traffic)."""
    return min(top, int(2 ** rng.uniform(0, top.bit_length())) - 1)


def flip(rng: random.Random, body: bytes) -> bytes:
    """One byte changed: a bit flipped, or replaced by any byte."""
    b = bytearray(body)
    i = rng.randrange(len(b))
    b[i] = b[i] ^ (1 << rng.randrange(8)) if rng.random() < 0.5 else rng.randrange(256)
    return bytes(b)


def nested(rng: random.Random, depth: int) -> bytes:
    """JSON nested `depth` deep (lists and objects), as bytes: no encoder writes it that deep."""
    opens, closes = [], []
    for _ in range(depth):
        if rng.random() < 0.5:
            opens.append(b"[")
            closes.append(b"]")
        else:
            opens.append(b'{"a":')
            closes.append(b"}")
    return b"".join(opens) + rng.choice([b"1", b'"x"', b"[]", b"{}"]) + b"".join(reversed(closes))


CONTENT_TYPES = [None, b"", b"text/plain", JSON, FORM, b"multipart/form-data; boundary=zz",
                 b"application/json; charset=utf-16", b"application/x-www-form-urlencoded; charset=latin-1",
                 b"\xff\xfe\xc3(", b"application/" + b"j" * 4000, b"*/*"]
DEPTHS = [50, 200, 252, 253, 254, 256, 300, 1000, 1023, 1100, 3000, 50000]


def mutations(hook: Hook, rng: random.Random, bases: list[Req]) -> list[Req]:
    """About 480 hostile requests for one route; `bases` (sent before them) are what the flips
    and truncations start from."""
    out: list[Req] = []

    def tag() -> str:
        return f"m{rng.getrandbits(40):x}"

    def keep(base: Req, body: bytes, kind: str) -> Req:
        """`body` with `base`'s credential (path, headers), which the worker has seen with `base`:
        where that makes it a replay, no id of it may become an event."""
        return Req(kind, base.path, body, list(base.headers),
                   ids=frozenset() if hook.replay_bound else frozenset(hook.ids_in(body)))

    for _ in range(100):   # a captured signature with one byte of the content changed
        base = rng.choice(bases)
        out.append(keep(base, flip(rng, base.body), "flip"))
    for _ in range(50):
        base = rng.choice(bases)
        out.append(keep(base, base.body[:rng.randrange(len(base.body))], "truncated"))
    for _ in range(80):   # every size up to just over the cap, with the credential where the scheme allows
        body = rng.randbytes(log_size(rng, MAX_BODY + 1024))
        out.append(hook.signed_bytes(body, rng.choice(CONTENT_TYPES), "random_bytes"))
    for _ in range(25):   # a genuine record padded to 128 KiB .. just over the cap
        size = rng.randint(MAX_BODY // 8, MAX_BODY + 65536)
        pad = "".join(rng.choices("abcdefghij", k=64)) * (size // 64 + 1)
        out.append(with_fields(hook, tag(), {"pad": pad[:size]}, "huge_json"))
    for _ in range(25):   # deep nesting, inside a signed record and as the whole body
        deep = nested(rng, rng.choice(DEPTHS))
        if rng.random() < 0.5:
            out.append(hook.signed_bytes(deep, JSON, "nested_body"))
        else:
            out.append(with_fields(hook, tag(), {"deep": "@@deep@@"}, "nested_field", {"deep": deep}))
    for _ in range(40):   # wrong and missing content types on genuine bodies
        req = hook.genuine(tag(), kind="content_type")
        req.headers = [h for h in req.headers if h[0] != b"Content-Type"]
        value = rng.choice(CONTENT_TYPES)
        if value is not None:
            req.headers.append((b"Content-Type", value))
        out.append(req)
    for _ in range(40):
        out.append(encoded(hook, tag(), rng))
    for _ in range(30):
        out.append(repeated(hook, tag(), rng))
    for _ in range(80):
        out.append(headers_mutated(hook, tag(), rng))
    for size in (0, 1, MAX_BODY - 1, MAX_BODY, MAX_BODY + 1):
        out.append(hook.signed_bytes(b"{" * size, JSON, f"size_{size}"))
    out += [Req("declared_over_cap", hook.path, b"{}", ct(JSON), length=str(MAX_BODY + 1).encode()),
            Req("declared_1TiB", hook.path, b"{}", ct(JSON), length=b"1099511627776"),
            Req("declared_negative", hook.path, b"{}", ct(JSON), length=b"-1"),
            Req("declared_garbage", hook.path, b"{}", ct(JSON), length=b"12abc"),
            Req("declared_short", hook.path, b"{" * 4096, ct(JSON), length=b"100")]
    over = hook.signed_bytes(b"[" * (MAX_BODY + 1), JSON, "chunked_over_cap")
    over.chunked = True
    empty = hook.signed_bytes(b"", JSON, "chunked_empty")
    empty.chunked = True
    return [*out, over, empty]


def with_fields(hook: Hook, tag: str, extra: dict, kind: str, splices: dict[str, bytes] | None = None) -> Req:
    """A genuine record of `hook` with `extra` fields, with a valid credential."""
    record = hook.record(tag)
    if isinstance(hook, UniSenderHook):
        record["events_by_user"][0]["events"][0].update(extra)
    else:
        record.update(extra)
    return hook.signed_json(record, kind, splices)


def encoded(hook: Hook, tag: str, rng: random.Random) -> Req:
    """A genuine request whose body is re-encoded, or has bytes that are not UTF-8 put in."""
    req = hook.genuine(tag, kind="encoding")
    how = rng.choice(["utf16", "utf16le", "bom", "latin1", "invalid", "overlong", "surrogate", "percent"])
    at = b"%40example" if req.body.find(b"%40example") >= 0 else b"@example"
    body = req.body
    if how == "utf16":
        body = body.decode("utf-8").encode("utf-16")
    elif how == "utf16le":
        body = body.decode("utf-8").encode("utf-16-le")
    elif how == "bom":
        body = b"\xef\xbb\xbf" + body
    elif how == "latin1":
        body = body.replace(at, b"\xe9" + at, 1)
    elif how == "invalid":
        body = body.replace(at, b"\xff\xfe" + at, 1)
    elif how == "overlong":
        body = body.replace(at, b"\xc0\xaf" + at, 1)
    elif how == "surrogate":
        body = body.replace(at, b"\\ud800" + at, 1)
    else:
        body = body.replace(at, b"%FF%FE" + at, 1)
    return Req(f"encoding_{how}", req.path, body, req.headers, ids=req.ids | hook.ids_in(body))


def repeated(hook: Hook, tag: str, rng: random.Random) -> Req:
    """Repeated keys: a form field twice (a forged copy before or after the genuine one), or a
    top-level JSON key repeated with another value."""
    req = hook.genuine(tag, kind="repeated_keys")
    if isinstance(hook, SendCloudHook):
        forged_id, _ = hook.ids(f"{tag}-dup")
        name = rng.choice(["emailId", "signature", "timestamp", "token", "event", "recipient", "emailIds"])
        value = {"emailId": forged_id, "signature": "0" * 64, "timestamp": str(now_ms()), "token": "t" * 50,
                 "event": "invalid", "recipient": "dup@evil.example", "emailIds": forged_id}[name]
        extra = urllib.parse.urlencode({name: value}).encode()
        body = req.body + b"&" + extra if rng.random() < 0.5 else extra + b"&" + req.body
        # which of the two copies counts is the worker's choice; both were sent with a valid signature
        return Req("repeated_keys", req.path, body, req.headers, ids=req.ids | {forged_id})
    key = rng.choice([b"email_id", b"email", b"bulkId", b"status", b"itime", b"auth", b"events_by_user", b"event"])
    body = req.body[:-1] + b',"' + key + b'":"dup-' + tag.encode() + b'"}'
    return Req("repeated_keys", req.path, body, req.headers, ids=req.ids | hook.ids_in(body))


def headers_mutated(hook: Hook, tag: str, rng: random.Random) -> Req:
    """A genuine body with its headers (or Tencent's path) removed, garbled, non-ASCII or huge."""
    req = hook.genuine(tag, kind="headers")
    how = rng.choice(["drop_signature", "garble_signature", "non_ascii_signature", "huge_header", "many_headers",
                      "non_ascii_header", "duplicate_signature", "null_byte", "bad_path"])
    headers = list(req.headers)
    signed = (b"X-WebHook-Signature", b"X-WebHook-Timestamp", b"X-WebHook-AppKey")
    if how == "drop_signature":
        headers = [h for h in headers if h[0] not in signed and (h[0] != b"Content-Type" or rng.random() < 0.5)]
    elif how == "garble_signature":
        headers = [(k, bytes(rng.choice(b"0123456789abcdefXYZ ") for _ in v)) if k in signed else (k, v)
                   for k, v in headers]
    elif how == "non_ascii_signature":
        headers = [(k, v[:8] + "\u00e9\u4e2d".encode() + v[8:]) if k in signed else (k, v) for k, v in headers]
        headers.append((b"X-WebHook-Signature", b"\xe9" * 32))
    elif how == "huge_header":
        headers.append((b"X-Padding", b"p" * rng.choice([8000, 9000, 65536])))
    elif how == "many_headers":
        headers += [(f"X-H{i}".encode(), b"v" * 64) for i in range(rng.choice([100, 150, 200]))]
    elif how == "non_ascii_header":
        headers.append((b"X-Name-\xe9", "\u4e2d\u6587".encode() + b"\xff"))
    elif how == "duplicate_signature":   # a wrong copy before the right one
        headers = [(b"X-WebHook-Signature", b"0" * 32), *headers]
    elif how == "null_byte":
        headers.append((b"X-Null", b"a\x00b"))
    else:   # the route: a wrong or missing token or account, a non-ASCII or huge path
        path = rng.choice([hook.path + "x", hook.path.rsplit("/", 1)[0], hook.path + "/extra",
                           f"/webhooks/{hook.provider}/nobody", "/webhooks/mailgun/x", hook.path + "/%FF%FE",
                           hook.path + "/\u00ff\u4e2d", "/webhooks/" + "a" * 9000, hook.path.replace("/", "//")])
        return Req("headers_bad_path", path, req.body, headers)
    # Only EngageLab carries its credential in headers: without it, nothing may be accepted.
    broken = isinstance(hook, EngageLabHook) and how in ("drop_signature", "garble_signature", "non_ascii_signature")
    return Req(f"headers_{how}", req.path, req.body, headers, ids=frozenset() if broken else req.ids)


OVER_CAP = ("size_1048577", "declared_over_cap", "declared_1TiB", "chunked_over_cap")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_mutated_requests(suite: Suite, provider: str):
    """About 480 hostile requests to one provider's route, 8 at a time: none answered 500 or left
    unanswered, bodies over the cap answered 413, and afterwards a canary goes through."""
    hook = HOOKS[provider]
    rng = random.Random(f"{SEED}-{provider}")
    bases = [hook.genuine(f"base-{provider[:2]}{i}-{rng.getrandbits(32):x}", kind="base") for i in range(6)]
    for req in bases:   # taken first: every flip of one is then a reuse of its signature
        await suite.deliver(req, f"{provider}: base")
    reqs = mutations(hook, rng, bases)
    rng.shuffle(reqs)
    base_ids = {i for b in bases for i in b.ids}
    suite.flip_ids[provider] |= {i for r in reqs if r.kind == "flip" for i in r.ids} - base_ids
    got = await suite.run(reqs)
    by_kind: dict[str, Counter] = defaultdict(Counter)
    for req, status in zip(reqs, got, strict=True):
        by_kind[req.kind][status] += 1
    print(f"\n{provider}: {len(reqs)} requests: " + "; ".join(f"{k} {dict(v)}" for k, v in sorted(by_kind.items())))
    over = {req.kind: status for req, status in zip(reqs, got, strict=True) if req.kind in OVER_CAP}
    assert set(over.values()) == {413}, f"{provider}: bodies over max_body_bytes answered {over}"
    failed = [f"{r.kind} to {r.path[:60]} (Content-Type {dict(r.headers).get(b'Content-Type')!r}, "
              f"{len(r.body)} bytes: {r.body[:24]!r})" for r, s in zip(reqs, got, strict=True) if s == 500]
    await suite.after(f"mutated requests to {provider}", got, f"; answered 500: {failed}" if failed else "")


async def test_unreadable_body_with_a_content_type_that_is_not_utf8(suite: Suite):
    """An authentic webhook (EngageLab: signed headers; Tencent: the path token) whose body cannot
    be read and whose Content-Type header holds bytes that are not UTF-8 (HTTP allows obs-text
    there). It belongs in the dead-letter topic, kept whole with its content type, answered 200;
    never a 500 (the provider would retry it for days, and each retry is an error with a trace)."""
    reqs = [HOOKS["engagelab"].signed_bytes(b"not json at all", b"text/plain; charset=\xff\xfe", "non_utf8_ct"),
            HOOKS["tencent_ses"].signed_bytes(b"not json at all", b"application/json\xe9", "non_utf8_ct")]
    got = await suite.run(reqs, clients=1)
    print(f"\nunreadable bodies with a Content-Type that is not UTF-8 answered {got}")
    await suite.after("unreadable bodies with a Content-Type that is not UTF-8", got)
    assert got == [200, 200]
    await suite.dead_letters([("malformed", f"the unreadable body to {r.path.split('/')[2]}",
                               lambda d, a=r.path.split("/")[3]: d.account == a and d.value == b"not json at all")
                              for r in reqs], "unreadable bodies with a Content-Type that is not UTF-8")


# -- 2. slow bodies -------------------------------------------------------------------------------


async def slow_upload(port: int, req: Req, declared: int | None, answered: Callable[[int | str], Any],
                      release: asyncio.Event) -> None:
    """Headers and 1 KiB of a body that never completes (chunked ones then trickle a byte every
    0.5 s); the answer's status goes to `answered`; the socket stays open until `release`."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        await answered("connect_failed")
        return
    trickling = None
    try:
        framing = b"Transfer-Encoding: chunked" if declared is None else f"Content-Length: {declared}".encode()
        head = [f"POST {req.path} HTTP/1.1".encode(), b"Host: 127.0.0.1", framing]
        head += [k + b": " + v for k, v in req.headers]
        part = req.body[:1024]
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + (b"400\r\n" + part + b"\r\n" if declared is None else part))
        await writer.drain()

        async def trickle() -> None:
            for _ in range(int(ANSWER_SECS * 2)):
                await asyncio.sleep(0.5)
                writer.write(b"1\r\nx\r\n")
                await writer.drain()

        if declared is None:
            trickling = asyncio.create_task(trickle())
        try:
            line = await asyncio.wait_for(reader.readline(), ANSWER_SECS)
            parts = line.split()
            await answered(int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else "reset")
        except TimeoutError:
            await answered("no_answer")
        except ConnectionError:
            await answered("reset")
        await asyncio.wait_for(release.wait(), ANSWER_SECS)
    finally:
        if trickling is not None:
            trickling.cancel()
            with contextlib.suppress(BaseException):
                await trickling
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 5)


async def test_slow_bodies(suite: Suite):
    """40 stalled uploads, 2.5x max_concurrent_requests: 24 declaring 64 KiB and 8 declaring
    1 MiB with 1 KiB sent, 8 chunked ones trickling a byte every 0.5 s. Those over the request
    or byte cap are answered 503 at once; the others 408 once body_read_timeout_secs has passed
    (a deadline for the whole body: trickling does not extend it). Meanwhile /healthz answers,
    and a genuine webhook is answered (503 while the caps are full, never a hang)."""
    rng = random.Random(f"{SEED}-slow")
    plan: list[int | None] = [64 << 10] * 24 + [MAX_BODY] * 8 + [None] * 8
    rng.shuffle(plan)
    answers: list[int | str] = []
    changed = asyncio.Condition()
    release = asyncio.Event()

    async def answered(status: int | str) -> None:
        async with changed:
            answers.append(status)
            changed.notify_all()

    async def until(n: int) -> bool:
        with contextlib.suppress(TimeoutError):
            async with changed:
                await asyncio.wait_for(changed.wait_for(lambda: len(answers) >= n), ANSWER_SECS + READ_TIMEOUT)
        return len(answers) >= n

    tasks = []
    for i, declared in enumerate(plan):
        req = HOOKS[PROVIDERS[i % len(PROVIDERS)]].genuine(f"slow-{i}", kind="slow")
        req.body += b" " * 4096
        tasks.append(asyncio.create_task(slow_upload(suite.port, req, declared, answered, release)))
    try:
        # once every upload past the caps has its 503, the admitted ones are stalled in the receiver
        shed_all = await until(len(plan) - MAX_CONCURRENT)
        async with suite.session.get(f"{suite.worker.url}/healthz") as r:
            healthz = r.status
        genuine = HOOKS["sendcloud"].genuine("during-stall")
        suite.allowed |= genuine.ids
        during = await send(suite.port, genuine)
        suite.statuses[during] += 1
        all_answered = await until(len(plan))
    finally:
        release.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), ANSWER_SECS)
    suite.statuses.update(answers)
    got = Counter(answers)
    print(f"\nslow bodies: {len(plan)} stalled uploads, cap {MAX_CONCURRENT}: {dict(got)}; "
          f"a genuine webhook during the stall: {during}; /healthz {healthz}")
    assert shed_all and all_answered, f"only {len(answers)} of {len(plan)} slow uploads answered: {dict(got)}"
    assert healthz == 200, f"/healthz answered {healthz} while uploads stalled"
    assert during in (200, 503), f"a genuine webhook during the stall was answered {during}"
    assert set(got) <= {408, 503}, f"slow uploads answered {dict(got)}"
    assert got[408] and got[503], f"expected some uploads held to the deadline and some shed: {dict(got)}"
    await suite.after("slow bodies", [*answers, during])


async def abandon(port: int, req: Req, reset: bool) -> str:
    """Headers (with `Expect: 100-continue`) and 1 KiB of a declared 64 KiB body, then go: a FIN,
    or a reset. The interim `100 Continue` says the worker has routed the request to its handler,
    so the body it reads is the one that is abandoned."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = [f"POST {req.path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Expect: 100-continue",
                f"Content-Length: {len(req.body) + 65536}".encode()]
        head += [k + b": " + v for k, v in req.headers]
        writer.write(b"\r\n".join(head) + b"\r\n\r\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), ANSWER_SECS)
        writer.write(req.body[:1024])
        await writer.drain()
        return line.split(b" ", 2)[1].decode() if line.count(b" ") else "reset"
    finally:
        if reset:   # SO_LINGER 0: close with RST
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 5)


async def test_abandoned_uploads(suite: Suite):
    """20 clients go away in the middle of a body the worker is reading (10 with a FIN, 10 with a
    reset). Nobody is left to answer, and it is not a failure of the worker: it must count no
    answer 500 and no `unexpected` webhook error for them (those page an operator, and any client
    on the internet can make as many as it likes), and release their share of the caps."""
    hooks = list(HOOKS.values())
    before = total(await scrape(suite.session, suite.worker.url), "esw_webhook_requests_total")
    interim = [await abandon(suite.port, hooks[i % len(hooks)].genuine(f"gone-{i}"), reset=i % 2 == 1)
               for i in range(20)]
    assert set(interim) == {"100"}, f"interim answers {interim}"
    # the worker counts a request when its handler ends: wait (bounded) until all 20 have ended
    deadline = time.monotonic() + ANSWER_SECS
    counted = before
    while time.monotonic() < deadline:
        metrics = await scrape(suite.session, suite.worker.url)
        counted = total(metrics, "esw_webhook_requests_total")
        if counted >= before + 20:
            break
        await asyncio.sleep(0.2)
    counts: Counter = Counter()
    for k, v in metrics.items():
        if k.startswith("esw_webhook_requests_total{") and v != suite.last_metrics.get(k, 0.0):
            counts[k.rpartition('status="')[2].rstrip('"}')] += int(v - suite.last_metrics.get(k, 0.0))
    by_status = dict(counts)
    print(f"\nabandoned uploads: 20 sent, the worker counted them as {by_status}")
    await suite.after("abandoned uploads", [], f"; the worker counted the 20 abandoned uploads as {by_status}")


# -- 3. fan-out -----------------------------------------------------------------------------------


async def test_fan_out_bodies(suite: Suite):
    """~1 MiB of `[{},{},...]` (350k records) to Tencent and EngageLab, and 501 well-formed
    records (one over max_records_per_body) to Tencent, EngageLab and UniSender, all at once
    (the two big ones fill half of max_inflight_body_bytes): answered 200, dead-lettered whole,
    nothing of them emitted."""
    tc, el, uni = HOOKS["tencent_ses"], HOOKS["engagelab"], HOOKS["unisender"]
    empty = b"[" + b",".join([b"{}"] * ((MAX_BODY - 1024) // 3)) + b"]"
    many = MAX_RECORDS + 1
    reqs = [tc.signed_bytes(empty, JSON, "fan_out_empty"), el.signed_bytes(empty, JSON, "fan_out_empty"),
            tc.signed_json([tc.record(f"fan-out-tc{i}") for i in range(many)], "fan_out_records"),
            el.signed_json([el.record(f"fan-out-el{i}") for i in range(many)], "fan_out_records"),
            uni.signed_json({"events_by_user": [{"login": "x", "events": [uni.event(*uni.ids(f"fan-out-uni{i}"))
                                                                          for i in range(many)]}]},
                            "fan_out_records")]
    for req in reqs:
        req.ids = frozenset()   # nothing of a refused body may be emitted
    got = await suite.run(reqs, clients=len(reqs))
    print(f"\nfan-out: {[(r.path.split('/')[2], r.kind, len(r.body), s) for r, s in zip(reqs, got, strict=True)]}")
    assert got == [200] * len(reqs), f"fan-out bodies answered {got}"
    await suite.fence([tc, el, uni], "fan-out")
    suite.forged_marks.add("fan-out-")
    assert not suite.emitted("fan-out-"), f"fan-out records emitted: {suite.emitted('fan-out-')[:3]}"
    await suite.dead_letters([
        ("too_many_records|malformed", f"the 1 MiB fan-out body to {r.path.split('/')[2]}" if r.kind == "fan_out_empty"
         else f"{many} records to {r.path.split('/')[2]}",
         lambda d, a=r.path.split("/")[3], n=len(r.body): d.account == a and d.size == n and d.part == "body")
        for r in reqs], "fan-out")
    await suite.after("fan-out bodies", got)


# -- 4. oversized fields --------------------------------------------------------------------------


async def test_oversized_fields(suite: Suite):
    """A 600 KB id (its record is over the 256 KiB record cap) and 2,000-character ids and
    addresses (over the field caps), each in an otherwise genuine webhook with a valid
    credential: answered 200, dead-lettered, never an event."""
    tc, el, sc, au, uni = (HOOKS[p] for p in ("tencent_ses", "engagelab", "sendcloud", "aurora_sendcloud", "unisender"))
    huge, long_ = "H" * 600_000, "L" * 2_000
    cases = [
        ("record_too_large", "a 600 KB bulkId (tencent_ses)",
         tc.signed_json(tc.event(f"big600k-{huge}", "big@example.com"), "oversized")),
        ("record_too_large", "a 600 KB emailId (sendcloud)",
         sc.signed_json(sc.fields(f"big600k-{huge}$big@example.com", "big@example.com"), "oversized")),
        ("field_too_long", "a 2,000-character email_id (engagelab)",
         el.signed_json(el.envelope(f"long2000-{long_}$l@example.com", "l@example.com"), "oversized")),
        ("field_too_long", "a 2,000-character emailId (aurora_sendcloud)",
         au.signed_json(au.fields(f"long2000-{long_}$l@example.com", "l@example.com"), "oversized")),
        ("field_too_long", "a 2,000-character email_id (unisender)",
         uni.signed_json({"events_by_user": [{"login": "x", "events": [uni.event(f"long2000-{long_}", "l@example.com")]}]},
                         "oversized")),
        ("field_too_long", "a 2,000-character address (tencent_ses)",
         tc.signed_json(tc.event("qcloudses-longaddr", f"long2000-{long_}@example.com"), "oversized")),
    ]
    for _, _, req in cases:
        req.ids = frozenset()
    got = await suite.run([r for _, _, r in cases], clients=2)
    assert got == [200] * len(cases), f"oversized fields answered {got}"
    await suite.fence([tc, el, sc, au, uni], "oversized fields")
    suite.forged_marks |= {"big600k-", "long2000-"}
    emitted = suite.emitted("big600k-") + suite.emitted("long2000-")
    assert not emitted, f"oversized records emitted: {emitted[:3]}"
    marks = [b"big600k-", b"big600k-", b"long2000-", b"long2000-", b"long2000-", b"long2000-"]
    await suite.dead_letters([
        (reason, what, lambda d, a=req.path.split("/")[3], m=m: d.account == a and m in d.value)
        for (reason, what, req), m in zip(cases, marks, strict=True)], "oversized fields")
    await suite.after("oversized fields", got)


# -- 5. a captured signature, replayed with a forged body -----------------------------------------


async def replay(suite: Suite, provider: str, label: str, signature: Callable[[str], str]) -> list:
    """Capture a genuine webhook (taken and committed), then post three forged bodies with its
    timestamp, token and (transformed) signature: other addresses, type invalid. Each must be
    dead-lettered as `replayed_signature`, and none emitted."""
    hook = HOOKS[provider]
    captured = hook.genuine(f"captured-{label}-{uuid.uuid4().hex[:6]}")
    await suite.deliver(captured, f"{label}: the captured webhook")
    (captured_id,) = captured.ids
    assert await suite.tail.wait(lambda: captured_id in suite.tail.by_email, CANARY_SECS)
    fields = dict(urllib.parse.parse_qsl(captured.body.decode()))
    victims = [f"victim-{label}-{i}@forged.example" for i in range(3)]
    forged = [Req("replay", hook.path, urllib.parse.urlencode(
        {**fields, "event": "invalid", "emailId": f"forged-{label}-{i}$" + rcpt, "recipient": rcpt,
         "substat": "406", "substatdesc": "user unknown", "signature": signature(fields["signature"])}).encode(),
        ct(FORM)) for i, rcpt in enumerate(victims)]
    suite.forged_marks |= set(victims)
    suite.forbidden.add((captured_id, "invalid"))
    got = await suite.run(forged, clients=1)
    print(f"\n{label}: forged bodies with the captured signature answered {got}")
    assert all(s in (200, 401) for s in got), f"{label}: forged bodies answered {got}"
    await suite.fence([hook], label)
    emitted = [e for v in victims for e in suite.emitted(v)]
    assert not emitted, f"{label}: {len(emitted)} forged event(s) emitted with a captured signature: {emitted}"
    assert "invalid" not in {e["type"] for e in suite.tail.by_email.get(captured_id, [])}, \
        f"{label}: the captured email's status was forged"
    await suite.dead_letters([("replayed_signature", f"{label}: forged body to {v}", lambda d, m=v.encode(): m in d.value)
                              for v in victims], label)
    return got


async def test_replayed_signature(suite: Suite):
    """SendCloud and Aurora sign only `timestamp + token`: a captured signature verifies with any
    body, so only the shard's replay table stands between it and a forged event."""
    got = await replay(suite, "sendcloud", "sc-exact", lambda s: s)
    got += await replay(suite, "aurora_sendcloud", "au-exact", lambda s: s)
    await suite.after("replayed signature", got)


async def test_replayed_signature_in_upper_case(suite: Suite):
    """The same replay with the signature's hex digits in upper case, which verification accepts
    (it compares case-insensitively): the replay defence must know it for the same signature."""
    got = await replay(suite, "sendcloud", "sc-upper", str.upper)
    await suite.after("replayed signature in upper case", got)


async def test_engagelab_signature_reused_for_the_same_callback(suite: Suite):
    """EngageLab signs only a timestamp, so one signature covers any body sent with it, and genuine
    callbacks sent in the same second share it (a delivered and an unsubscribe for one email, say).
    The worker keys one callback by signature, email, event and event time
    (worker.providers.engagelab, `replay_key`): a forged callback for another email, event or time
    cannot be told from a genuine one (docs/runbook.md#webhook-security), but the captured callback
    replayed with altered content can. Captured: a `delivered` callback for one email. Reused, with
    the same X-WebHook-* headers: that callback with a 406 sub-status and another recipient, and that
    callback unchanged. The altered one is dead-lettered as `replayed_signature`, the unchanged one is
    a duplicate (a provider's retry); the email keeps one `delivered` with the captured recipient. A genuine `unsubscribe` for the same email under the same headers
    is emitted."""
    el = HOOKS["engagelab"]
    email_id, rcpt = el.ids(f"captured-el-{uuid.uuid4().hex[:6]}")
    headers = el.headers()
    itime = now_ms()
    captured_doc = el.envelope(email_id, rcpt, itime=itime)
    captured = Req("genuine", el.path, orjson.dumps(captured_doc), ct(JSON) + headers, ids=frozenset({email_id}))
    await suite.deliver(captured, "engagelab: the captured callback")
    assert await suite.tail.wait(lambda: email_id in suite.tail.by_email, CANARY_SECS)
    altered = el.envelope(email_id, rcpt, itime=itime)
    altered["to"] = "forged-el@abuse.example"
    altered["status"]["status_data"].update(sub_stat=406, sub_stat_desc="address does not exist")
    forged = [Req("replay", el.path, orjson.dumps(doc), ct(JSON) + headers) for doc in (altered, captured_doc)]
    suite.forged_marks.add("forged-el@abuse.example")
    got = await suite.run(forged, clients=1)
    print(f"\nengagelab: the captured signature reused for the same callback answered {got}")
    unsubscribe = {**el.envelope(email_id, rcpt, itime=itime + 200), "status": None,
                   "response": {"event": "unsubscribe", "response_data": {"email_id": email_id}}}
    del unsubscribe["status"]
    await suite.deliver(Req("genuine", el.path, orjson.dumps(unsubscribe), ct(JSON) + headers,
                            ids=frozenset({email_id})), "engagelab: a genuine unsubscribe in the same second")
    await suite.fence([el], "engagelab signature reuse")
    events = suite.tail.by_email.get(email_id, [])
    types = sorted(e["type"] for e in events)
    replays = [d for d in suite.tail.dead_with("replayed_signature") if email_id.encode() in d.value]
    problems = []
    if types != ["delivered", "unsubscribed"]:
        problems.append(f"the captured email's events are {types}, expected ['delivered', 'unsubscribed']")
    if any(e["recipient"] != rcpt for e in events):
        problems.append(f"recipients {[e['recipient'] for e in events]}: the altered replay was emitted")
    if len(replays) != 1:
        problems.append(f"{len(replays)} dead letters replayed_signature for the email, expected the altered reuse")
    await suite.after("engagelab signature reused for the same callback", got)
    assert not problems, "; ".join(problems)
    suite.expected_dead += [("replayed_signature", "engagelab: the signature reused for the same callback",
                             lambda d: email_id.encode() in d.value)]


# -- 6. statuses from the future ------------------------------------------------------------------


async def test_statuses_dated_2100(suite: Suite):
    """Webhooks with a valid credential whose status time is in 2100: EngageLab `itime` (ms),
    Tencent `timestamp` (s), UniSender `event_time`. Dead-lettered as `future_time`, never emitted
    (a forged future time would make every later genuine status of the email stale). SendCloud
    signs its timestamp: a 2100 one is refused (401)."""
    el, tc, uni, sc = (HOOKS[p] for p in ("engagelab", "tencent_ses", "unisender", "sendcloud"))
    t2100 = int(YEAR_2100.timestamp())
    reqs = [el.genuine("future2100-el", itime=t2100 * 1000), tc.genuine("future2100-tc", ts=t2100),
            uni.genuine("future2100-uni", when=YEAR_2100), sc.genuine("future2100-sc", ts_ms=t2100 * 1000)]
    for req in reqs:
        req.ids = frozenset()
    got = await suite.run(reqs, clients=1)
    assert got == [200, 200, 200, 401], f"statuses dated 2100 answered {got}"
    await suite.fence([el, tc, uni], "statuses dated 2100")
    suite.forged_marks.add("future2100-")
    assert not suite.emitted("future2100-"), f"2100-dated statuses emitted: {suite.emitted('future2100-')}"
    await suite.dead_letters([("future_time", f"a status dated 2100 ({h.provider})",
                               lambda d, a=h.account: d.account == a and b"future2100-" in d.value)
                              for h in (el, tc, uni)], "statuses dated 2100")
    await suite.after("statuses dated 2100", got)


# -- 7. poison `_raw` records ---------------------------------------------------------------------


def poison_records(provider: str, account: str, mark: str) -> list[tuple[str, bytes]]:
    """(expected reason, value) of records that are not `_raw` records this release reads."""
    head = {"v": 1, "provider": provider, "account": account, "received_at": now_ms()}
    page = {"send_date": "2026-01-01", "status": None, "offset": 0, "limit": 100}
    return [
        ("bad_raw_record", orjson.dumps([mark, {"v": 1, "kind": "webhook"}])),   # a list, not an object
        ("bad_raw_record", orjson.dumps({**head, "kind": "poll_page", "query": page, "status": 200,
                                         "headers": {}, "body": 12345, "mark": mark})),
        ("unknown_raw_version", orjson.dumps({**head, "v": 99, "kind": "webhook", "record": {"mark": mark}})),
        ("unknown_account", orjson.dumps({**head, "account": f"ghost-{mark}", "kind": "webhook",
                                          "record": {"event": "deliver", "emailId": f"ghost-{mark}"}})),
        ("bad_raw_record", b"\x00\xff garbage " + mark.encode() + b" \xc3\x28"),
        ("bad_raw_record", orjson.dumps({**head, "kind": "webhook", "record": [mark]})),
    ]


async def test_poison_raw_records(suite: Suite):
    """Records written straight to `<prefix>._raw` with aiokafka, on each real account's partition
    (a foreign or a newer writer): each dead-lettered with its reason, and every shard goes on."""
    producer = AIOKafkaProducer(bootstrap_servers=suite.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    sent = []
    try:
        for hook in HOOKS.values():
            for reason, value in poison_records(hook.provider, hook.account, f"poison-{uuid.uuid4().hex[:8]}"):
                await producer.send_and_wait(f"{suite.prefix}._raw", value, partition=hook.shard,
                                             key=account_key(hook.provider, hook.account))
                sent.append((reason, value))
    finally:
        await producer.stop()
    await suite.fence(HOOKS.values(), "poison _raw records")
    suite.forged_marks.add("poison-")
    await suite.dead_letters([(reason, f"poison _raw record {value[:60]!r}", lambda d, v=value: d.value == v)
                              for reason, value in sent], "poison _raw records")
    await suite.after("poison _raw records", [])


# -- the end: what came out -----------------------------------------------------------------------


async def test_nothing_forged_was_emitted(suite: Suite):
    """Every event is a canary or a request sent with a valid credential (by email id); no
    forged address, future, oversized, fan-out or poison content in any event; no event twice;
    the canaries went through every shard."""
    await suite.fence(HOOKS.values(), "the end")   # every shard has processed all it was sent
    unexpected = [e for e in suite.tail.events if e["email_id"] not in suite.allowed]
    forbidden = [e for e in suite.tail.events if (e["email_id"], e["type"]) in suite.forbidden]
    marked = sorted({m for m in suite.forged_marks if suite.emitted(m)})
    dupes = [k for k, n in Counter(suite.tail.event_ids).items() if n > 1]
    missing = [c for c in suite.canaries if c not in suite.tail.by_email]
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} event(s) for email ids never sent with a valid credential: "
                        + "; ".join(f"{e['provider']} {e['type']} {e['email_id'][:80]!r} -> {e['recipient'][:60]!r}"
                                    for e in unexpected[:10]))
    if forbidden:
        problems.append(f"forged status of a captured email: {[(e['email_id'], e['type']) for e in forbidden]}")
    if marked:
        problems.append(f"events carry forged, future, oversized or poison content: {marked}")
    if dupes:
        problems.append(f"{len(dupes)} duplicate event_id(s)")
    if missing:
        problems.append(f"canaries never committed: {missing}")
    if len(suite.canaries) >= len(PROVIDERS) and set(suite.canaries.values()) != set(range(SHARDS)):
        problems.append(f"canaries reached shards {sorted(set(suite.canaries.values()))} only")
    assert not problems, "; ".join(problems)


async def test_dead_letters_and_summary(suite: Suite, capsys):
    """Every refused input of the suite is in the dead-letter topic under its reason; then the
    one-line summary."""
    metrics = await scrape(suite.session, suite.worker.url)
    errors = {k.partition("{")[2].rstrip("}"): v - suite.first_metrics.get(k, 0.0) for k, v in metrics.items()
              if k.startswith("esw_errors_total{") and v != suite.first_metrics.get(k, 0.0)}
    shed = {k.partition("{")[2].rstrip("}"): v for k, v in metrics.items() if k.startswith("esw_webhook_shed_total{")}
    statuses = Counter({str(k): v for k, v in suite.statuses.items()})
    reasons = Counter(d.reason for d in suite.tail.dead)
    # A body the credential does not cover is authentic by the protocol whatever it says: how many
    # one-byte flips of a captured webhook became events for an email never sent (docs/runbook.md).
    flips = {p: sum(1 for i in ids if i in suite.tail.by_email) for p, ids in sorted(suite.flip_ids.items()) if ids}
    lines = suite.worker.log_path.read_bytes().splitlines()
    log_errors = sum(1 for line in lines if b'"level":"error"' in line)
    with capsys.disabled():
        print(f"\nabuse summary: {sum(statuses.values())} requests by status {dict(sorted(statuses.items()))}; "
              f"{len(suite.tail.dead)} dead letters by reason {dict(sorted(reasons.items()))}; "
              f"{len(suite.tail.events)} events ({len(suite.canaries)} canaries); shed {shed}; "
              f"worker errors {errors}; flips of a captured webhook that became events {flips}; "
              f"worker log {len(lines)} lines, {log_errors} at level error; RSS start {suite.rss_start / 2**20:.0f} MiB, "
              f"max {suite.rss_max / 2**20:.0f} MiB (bound {suite.rss_bound / 2**20:.0f} MiB)")
    await suite.dead_letters([], "the end")
    missing = [f"{w} ({r})" for r, w, match in suite.expected_dead
               if not any(match(d) for reason in r.split("|") for d in suite.tail.dead_with(reason))]
    assert not missing, f"not in the dead-letter topic: {missing}"
