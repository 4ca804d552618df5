"""The simulator: one aiohttp server on 127.0.0.1 serving all five providers' status APIs.

Every request goes through the same steps, in the providers' order: credentials (each provider's
own auth error), the account's quota (each provider's own throttle answer; refused calls do not
count), injected faults, the result cache (the first answer to a parameter set is replayed for
cache_ttl_secs), then parameter validation and the answer. All of it happens, and is logged and
charged to the quota, when the request arrives; the answer then waits out the round trip
(`latency_ms`, for every account or per account with `set_latency`) before it is sent, as if the
provider were that far away. Webhooks are sent by `WebhookSender` and never wait for it.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import attrs
import orjson
from aiohttp import web

from worker.model import Provider
from worker.simulator.api_engagelab import EngageLabApi
from worker.simulator.api_sendcloud import SendCloudApi
from worker.simulator.api_tencent import TencentApi
from worker.simulator.api_unisender import UniSenderApi
from worker.simulator.query import AccountState, Answer, ApiRequest, BadParams
from worker.simulator.simconfig import Call, Change, Faults, SentMessage, SimConfig, Visible
from worker.simulator.stream import Entry, Message, utc_seconds

_FAULT_STATUSES = (500, 502, 503)
_REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


class Simulator:
    """The provider simulator. Ground truth (changes, sent messages, visible status) is exact."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.clock = config.clock
        self.anchor = config.anchor if config.anchor is not None else config.clock()
        anchor_ms = int(self.anchor * 1000)
        self.accounts: dict[str, AccountState] = {}
        self._by_cred: dict[tuple[Provider, str], AccountState] = {}
        for acct in config.accounts:
            if acct.name in self.accounts:
                raise ValueError(f"duplicate simulated account name {acct.name!r}")
            st = AccountState(acct, config.seed, anchor_ms, config.time_scale)
            self.accounts[acct.name] = st
            cred = acct.secret_id if acct.provider is Provider.TENCENT_SES else (
                acct.api_key if acct.provider is Provider.UNISENDER else acct.api_user)
            if not cred:
                raise ValueError(f"simulated account {acct.name!r} lacks the credential that identifies it")
            if (acct.provider, cred) in self._by_cred:
                raise ValueError(f"simulated accounts share credentials: {acct.name!r}")
            self._by_cred[(acct.provider, cred)] = st
        self.calls: list[Call] = []
        self.latency_ms = config.latency_ms          # every account's round trip ...
        self._latency_ms: dict[str, float] = {}      # ... unless set for the account itself
        self.in_flight: Counter[str | None] = Counter()      # answers waiting out their round trip, by account
        self.peak_in_flight: Counter[str | None] = Counter()  # the most at once (clear() to measure afresh)
        self._apis = {
            Provider.ENGAGELAB: EngageLabApi(self),
            Provider.SENDCLOUD: SendCloudApi(self, Provider.SENDCLOUD),
            Provider.AURORA_SENDCLOUD: SendCloudApi(self, Provider.AURORA_SENDCLOUD),
            Provider.UNISENDER: UniSenderApi(self),
            Provider.TENCENT_SES: TencentApi(self),
        }
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.base_url: str | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application()

        def route(provider: Provider):
            async def handler(request: web.Request) -> web.StreamResponse:
                return await self._handle(self._apis[provider], request)

            return handler

        app.router.add_get("/v1/email_status", route(Provider.ENGAGELAB))
        for method in ("GET", "POST"):
            app.router.add_route(method, "/apiv2/data/emailStatus", route(Provider.SENDCLOUD))
            app.router.add_route(method, "/api/data/emailStatus", route(Provider.AURORA_SENDCLOUD))
            app.router.add_route(method, "/{lang}/api/checkEmail", route(Provider.UNISENDER))
        app.router.add_post("/", route(Provider.TENCENT_SES))
        app.router.add_get("/_sim/stats", self._stats_handler)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        self._stopping = asyncio.Event()
        self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        bound_host, bound_port = sock.getsockname()[:2]
        self.base_url = f"http://{bound_host}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        self._stopping.set()  # ends injected hangs at once
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- runtime knobs --------------------------------------------------------------------------

    def set_faults(self, account_name: str, faults: Faults) -> None:
        st = self.accounts[account_name]
        st.faults = faults
        st.fault_rng = random.Random(faults.seed)

    def set_quota(self, account_name: str, quota_per_minute: int) -> None:
        self.accounts[account_name].quota.limit = quota_per_minute

    def set_latency(self, latency_ms: float, account_name: str | None = None) -> None:
        """Delay every status-API answer by `latency_ms`: of one account, or (None) of every
        account without its own setting and of requests that name no account."""
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        if account_name is None:
            self.latency_ms = float(latency_ms)
        else:
            if account_name not in self.accounts:
                raise KeyError(account_name)
            self._latency_ms[account_name] = float(latency_ms)

    def latency(self, account_name: str | None) -> float:
        """The round trip added to an answer to `account_name`, in ms."""
        if account_name is not None and account_name in self._latency_ms:
            return self._latency_ms[account_name]
        return self.latency_ms

    def stats(self, account_name: str) -> dict[str, int]:
        """Counters: calls, ok, cached, throttled, fault, auth_error, bad_request, slow."""
        counters = self.accounts[account_name].counters
        return {k: counters.get(k, 0) for k in
                ("calls", "ok", "cached", "throttled", "fault", "auth_error", "bad_request", "slow")}

    # -- ground truth ---------------------------------------------------------------------------

    def _now_ms(self, at: float | None) -> int:
        return int((self.clock() if at is None else at) * 1000)

    def changes(self, account_name: str, until: float | None = None, *, since: float | None = None) -> list[Change]:
        """Every status change (pending included) with since < time <= until, in time order."""
        return [self._change(m, e) for m, e in self.iter_changes(account_name, since, until)]

    def iter_changes(self, account_name: str, since: float | None, until: float | None) -> Iterator[tuple[Message, Entry]]:
        stream = self.accounts[account_name].stream
        until_ms = self._now_ms(until)
        stream.advance(until_ms)
        since_ms = None if since is None else int(since * 1000)
        return stream.events(since_ms, until_ms)

    @staticmethod
    def _change(m: Message, e: Entry) -> Change:
        return Change(m.email_id, m.message_id, m.recipient, e.type, utc_seconds(e.at_ms),
                      e.provider_status, e.sub_status, utc_seconds(m.sent_ms))

    def sent_messages(self, account_name: str, until: float | None = None) -> list[SentMessage]:
        stream = self.accounts[account_name].stream
        until_ms = self._now_ms(until)
        stream.advance(until_ms)
        return [SentMessage(m.email_id, m.recipient, utc_seconds(m.sent_ms))
                for m in stream.messages if m.sent_ms <= until_ms]

    def messages(self, account_name: str, until: float | None = None) -> list[Message]:
        """The raw stream (with timelines) sent up to `until`; for tests and benchmarks."""
        stream = self.accounts[account_name].stream
        until_ms = self._now_ms(until)
        stream.advance(until_ms)
        return [m for m in stream.messages if m.sent_ms <= until_ms]

    def visible_status(self, account_name: str, email_id: str, at: float | None = None) -> Visible | None:
        stream = self.accounts[account_name].stream
        at_ms = self._now_ms(at)
        stream.advance(at_ms)
        m = stream.by_id.get(email_id)
        if m is None or m.sent_ms > at_ms:
            return None
        entries = m.visible_entries(at_ms)
        last = entries[-1]
        types = {last.type} if last.type is not None else set()
        if stream.provider is Provider.TENCENT_SES:  # the row states delivery and every flag raised
            types |= {e.type for e in entries if e.type is not None and e.kind in ("complaint", "unsubscribed")}
            main = [e for e in entries if e.kind not in ("complaint", "unsubscribed")][-1]
            if main.type is not None:
                types.add(main.type)
        return Visible(m.email_id, m.message_id, m.recipient, utc_seconds(m.sent_ms), last.type,
                       frozenset(types), last.provider_status, last.sub_status, utc_seconds(last.at_ms))

    def local_date(self, account_name: str, at: float | None = None) -> date:
        """The provider-local calendar date at `at` (the day its date queries mean)."""
        stream = self.accounts[account_name].stream
        return stream.local_date(self._now_ms(at))

    def lookup(self, provider: Provider, credential: str | None) -> AccountState | None:
        if not credential:
            return None
        return self._by_cred.get((provider, credential))

    # -- the request pipeline -------------------------------------------------------------------

    async def _handle(self, api: Any, request: web.Request) -> web.StreamResponse:
        """Decide the answer at once (quota charged on arrival), then wait out the round trip."""
        account, response = await self._decide(api, request)
        delay = self.latency(account) / 1000.0
        if delay > 0:
            self.in_flight[account] += 1
            self.peak_in_flight[account] = max(self.peak_in_flight[account], self.in_flight[account])
            try:
                await self._wait(delay)
            finally:
                self.in_flight[account] -= 1
        return response

    async def _wait(self, secs: float) -> None:
        """Sleep `secs`, or less when the simulator stops."""
        try:
            await asyncio.wait_for(self._stopping.wait(), secs)
        except TimeoutError:
            pass

    async def _decide(self, api: Any, request: web.Request) -> tuple[str | None, web.StreamResponse]:
        """(the account the credentials named, the answer)."""
        now = self.clock()
        try:
            req: ApiRequest = await api.read(request)
        except BadParams as exc:  # unreadable before any account is known
            self._log(None, api.provider, (), now, "bad_request")
            return None, self._respond(exc.answer)
        st = req.account
        key = api.query_key(req.params)
        if req.auth_error is not None or st is None:
            self._log(st, api.provider, key, now, "auth_error")
            return (st.name if st else None), self._respond(req.auth_error or Answer(401, b""))
        if not st.quota.try_acquire(now):
            self._log(st, api.provider, key, now, "throttled")
            return st.name, self._respond(api.throttled(st, st.quota.retry_after(now)))
        fault = st.roll_fault()
        if fault == "5xx":
            self._log(st, api.provider, key, now, "fault", fault=fault)
            status = _FAULT_STATUSES[st.fault_rng.randrange(len(_FAULT_STATUSES))]
            body = f"<html><body><h1>{status} {_REASONS[status]}</h1></body></html>"
            return st.name, web.Response(status=status, text=body, content_type="text/html")
        if fault == "timeout":
            self._log(st, api.provider, key, now, "fault", fault=fault)
            await self._wait(st.faults.timeout_secs)
            return st.name, web.Response(status=504, text="upstream timed out", content_type="text/plain")
        if fault == "slow":
            st.counters["slow"] += 1
            await self._wait(st.faults.slow_secs)
        hit = st.cached(key, now)
        if hit is not None and fault != "malformed":
            self._log(st, api.provider, key, now, "ok", cached=True, fault=fault)
            return st.name, web.Response(status=hit.status, body=hit.body, headers=dict(hit.headers))
        try:
            answer = api.answer(st, req.params, int(now * 1000), request)
            outcome = "ok"
        except BadParams as exc:
            answer, outcome = exc.answer, "bad_request"
        if fault == "malformed":
            self._log(st, api.provider, key, now, "fault", fault=fault)
            return st.name, web.Response(status=200, body=answer.body[: max(1, len(answer.body) // 2)],
                                         headers=dict(answer.headers))
        if fault == "bad_row" and outcome == "ok":
            answer = _spoil_a_row(api.provider, answer, st.fault_rng)
        if outcome == "ok":
            st.remember(key, now, answer)
        self._log(st, api.provider, key, now, outcome, fault=fault, rows=answer.rows)
        return st.name, self._respond(answer)

    @staticmethod
    def _respond(answer: Answer) -> web.Response:
        return web.Response(status=answer.status, body=answer.body, headers=dict(answer.headers))

    def _log(self, st: AccountState | None, provider: Provider, key: tuple, now: float, outcome: str,
             *, cached: bool = False, fault: str | None = None, rows: int = 0) -> None:
        self.calls.append(Call(st.name if st else None, provider, key, now, outcome, cached, fault, rows))
        if len(self.calls) > self.config.call_log_max:
            del self.calls[: len(self.calls) // 2]
        if st is not None:
            st.counters["calls"] += 1
            st.counters[outcome] += 1
            if cached:
                st.counters["cached"] += 1

    async def _stats_handler(self, request: web.Request) -> web.Response:
        now = self.clock()
        return web.json_response({
            "now": datetime.fromtimestamp(now, tz=UTC).isoformat(),
            "accounts": {name: {"provider": st.provider.value, "messages": len(st.stream.messages),
                                "quota_used": st.quota.used(now), "latency_ms": self.latency(name),
                                **self.stats(name)}
                         for name, st in self.accounts.items()},
        })


# Where each API's rows are, and the field a broken row has blanked (an address, or UniSender's id).
_ROWS: dict[Provider, tuple[tuple[str, ...], str]] = {
    Provider.SENDCLOUD: (("info", "voList"), "recipients"),
    Provider.AURORA_SENDCLOUD: (("info", "voList"), "recipients"),
    Provider.ENGAGELAB: (("result",), "email_id"),
    Provider.TENCENT_SES: (("Response", "EmailStatusList"), "ToEmailAddress"),
    Provider.UNISENDER: (("result", "statuses"), "id"),
}


def _spoil_a_row(provider: Provider, answer: Answer, rng: Any) -> Answer:
    """The `bad_row` fault: one row of the page with its address (UniSender: its id) blanked, as
    providers sometimes answer (EngageLab's own doc example has `"email": ""`)."""
    path, field = _ROWS[provider]
    doc = orjson.loads(answer.body)
    rows = doc
    for part in path:
        rows = rows.get(part) if isinstance(rows, dict) else None
    if not isinstance(rows, list) or not rows:
        return answer
    rows[rng.randrange(len(rows))][field] = ""
    return attrs.evolve(answer, body=orjson.dumps(doc))
