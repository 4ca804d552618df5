"""One status API call for one account: limiter, request, retries, parse, metrics, log line.

The only place a poll goes over the network, shared by the poll runner and the backfill. Transport
errors and 5xx are retried here, and only here (tenacity: bounded in attempts and in total time,
jittered exponential waits); every attempt takes a token from the account's limiter. A throttle
answer is handled here too: the limiter halves its rate and pauses, the throttle is counted, and
`Throttled` is raised for the caller to put the query back (its next attempt waits the pause).

Egress: the proxy the environment names for a host (docs/configuration.md, "Egress") is read once
per host, as aiohttp's `trust_env` reads it (`egress`), and passed with each call; the session does
not trust the environment itself, which would read the proxy variables and `~/.netrc` (in a thread)
again on every call: ~8 % of the worker's CPU on a re-sweep (bench quota, py-spy).

POST refused. SendCloud, Aurora and UniSender document their status APIs for GET and POST, and the
worker posts a form by default (the API key stays out of URLs and so out of proxy and access logs).
An API that does not route that POST is asked again at once with GET, the form's fields in the query:
one that answers 405 Method Not Allowed (Aurora's current pages show GET alone) or 404 (a server
that routes the path for GET only, as many do). When the GET is answered, every later call of the
account goes as GET: one WARNING line says so, naming no secret. When the GET fails too, its answer
is the call's (a wrong path stays a bad request) and the account keeps posting. Without this every
window would be parked as a bad request for as long as the worker runs. An authentication failure
is not retried as GET, though an API that reads the credentials from the query alone answers the
form with one: a wrong or rotated key would then travel in a URL at every retry of the account;
`options.method: GET` is the switch for such an API (docs/configuration.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Callable
from datetime import datetime

import aiohttp
import attrs
from aiohttp.helpers import get_env_proxy_for_url
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)
from yarl import URL

from worker import metrics
from worker.config import AccountConfig
from worker.errors import TRANSPORT, PollError, Retriable, Throttled, WorkerError, error_type_of
from worker.poll.limiter import AdaptiveLimiter
from worker.providers import get_module
from worker.providers.base import HttpRequest, PollPage, PollQuery

log = logging.getLogger("worker.poll")

TRANSIENT = (Retriable, aiohttp.ClientError, asyncio.TimeoutError)
FORM = "application/x-www-form-urlencoded"
# What a server answers a form POST it does not route: Method Not Allowed, or Not Found.
POST_NOT_ROUTED = frozenset({404, 405})


def fetch_error_type(exc: BaseException) -> str:
    """The bounded name of a failed call: the provider's error_type, or `transport` for a
    connection failure or timeout."""
    if isinstance(exc, WorkerError):
        return exc.error_type
    if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError)):
        return TRANSPORT
    return error_type_of(exc)


def failure_reason(exc: BaseException) -> str | None:
    """What the provider answered, as a provider module names a failed call (`statusCode 40005`,
    `HTTP 401`, `tencent_ses error AuthFailure.SecretIdNotFound`): built by the module from codes and
    fixed texts, never from a credential; None for a failure that is not a provider's answer."""
    return str(exc)[:200] if isinstance(exc, PollError) else None


Egress = tuple[URL | None, aiohttp.BasicAuth | None]


def as_get(request: HttpRequest) -> HttpRequest | None:
    """The same call as GET, the form's fields after the URL's parameters in the query, for a POST
    of an urlencoded form; None for any other request (a JSON POST has no GET twin)."""
    if request.method != "POST" or request.body is None:
        return None
    kinds = [v.lower().replace(" ", "") for k, v in request.headers if k.lower() == "content-type"]
    if kinds not in ([FORM], [f"{FORM};charset=utf-8"]):   # a form in another charset: no safe twin
        return None
    try:
        text = request.body.decode("ascii")   # what urlencode makes: any other byte is no form of ours
        fields = urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")
    except (UnicodeError, ValueError):
        return None
    headers = tuple((k, v) for k, v in request.headers if k.lower() != "content-type")
    return HttpRequest("GET", request.url, params=request.params + tuple(fields), headers=headers)


def egress(url: str) -> Egress:
    """The proxy and its credentials for `url` from HTTP(S)_PROXY and NO_PROXY (credentials from
    the proxy URL or ~/.netrc), or (None, None) for a direct connection."""
    try:
        return get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None


@attrs.frozen
class Fetched:
    page: PollPage
    status: int
    headers: dict[str, str]
    body: bytes


class Fetcher:
    RTT_WEIGHT = 0.2     # of the newest round trip in the moving average

    def __init__(self, account: AccountConfig, session: aiohttp.ClientSession, limiter: AdaptiveLimiter,
                 clock: Callable[[], datetime]) -> None:
        self.account = account
        self.session = session
        self.limiter = limiter
        self.clock = clock
        self.module = get_module(account.provider)
        self.ctx = account.context
        self.labels = (account.provider.value, account.name)
        self.rtt: float | None = None     # seconds a call takes, moving average (worker.poll.runner)
        self._egress: dict[str, Egress] = {}   # by origin (scheme, host and port)
        self.post_refused = False         # the API answered a form POST with 405: GET from then on

    async def fetch(self, query: PollQuery) -> Fetched:
        p = self.account.poll
        retrying = AsyncRetrying(
            stop=stop_after_attempt(p.retry_attempts) | stop_after_delay(p.retry_max_secs),
            wait=wait_random_exponential(multiplier=0.5, max=min(30.0, p.retry_max_secs)),
            retry=retry_if_exception_type(TRANSIENT),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._call(query)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call(self, query: PollQuery) -> Fetched:
        fetched = await self._attempt(query, self.post_refused)
        if fetched is None:   # the API did not take the form POST: again at once, as GET (its own token)
            fetched = await self._attempt(query, True)
            assert fetched is not None, "a GET is never refused as a POST is"
            if not self.post_refused:   # (calls in flight together may each be refused: one line)
                self.post_refused = True
                log.warning("the status API did not route a form POST (HTTP 404 or 405) and answered the same "
                            "call as GET; this account's calls go as GET from now on, with its credentials in the "
                            "query string",
                            extra={"provider": self.labels[0], "account": self.labels[1]})
        return fetched

    async def _attempt(self, query: PollQuery, get: bool) -> Fetched | None:
        """One call, as GET when `get` and the request has a GET twin: the page, or None when the API
        did not take a form POST (module docstring: POST refused)."""
        asked_at = await self.limiter.acquire()
        request = self.module.build_poll_request(self.ctx, query, self.clock())
        if get:
            request = as_get(request) or request
        origin = "/".join(request.url.split("/", 3)[:3])     # scheme://host:port
        if origin not in self._egress:
            self._egress[origin] = egress(request.url)
        proxy, proxy_auth = self._egress[origin]
        started = time.monotonic()
        outcome: str | None = TRANSPORT
        reason: str | None = None
        try:
            async with self.session.request(
                request.method, request.url, params=list(request.params) or None, headers=dict(request.headers),
                data=request.body, timeout=aiohttp.ClientTimeout(total=self.account.poll.request_timeout_secs),
                proxy=proxy, proxy_auth=proxy_auth,
            ) as response:
                body = await response.read()
                headers = {k.lower(): v for k, v in response.headers.items()}
                status = response.status
            if status in POST_NOT_ROUTED and not get and as_get(request) is not None:   # a form POST not routed
                # a call spent, not a failure (bad_request alerts): counted, not logged (the switch
                # to GET is, once); the GET follows
                metrics.poll_request(*self.labels, "post_refused")
                outcome = None
                return None
            took = time.monotonic() - started
            self.rtt = took if self.rtt is None else self.RTT_WEIGHT * took + (1 - self.RTT_WEIGHT) * self.rtt
            page = self.module.parse_poll_response(self.ctx, query, status, headers, body, self.clock())
            outcome = "ok"
            return Fetched(page, status, headers, body)
        except Throttled as exc:
            outcome, reason = exc.error_type, failure_reason(exc)
            self.limiter.on_throttle(exc.retry_after, asked_at)
            metrics.throttled(*self.labels)
            raise
        except PollError as exc:
            outcome, reason = exc.error_type, failure_reason(exc)
            raise
        finally:
            if outcome is not None:
                self._counted(query, outcome, started, reason)

    def _counted(self, query: PollQuery, outcome: str, started: float, reason: str | None = None) -> None:
        """The call in esw_poll_requests_total and its `poll` log line (with a failure's `reason`)."""
        metrics.poll_request(*self.labels, outcome)
        # a call that went well is counted (esw_poll_requests_total); logged only at debug level:
        # at the quota, a line per call would be most of the log
        log.log(logging.DEBUG if outcome == "ok" else logging.INFO, "poll",
                extra={"provider": self.labels[0], "account": self.labels[1], "outcome": outcome,
                       "send_date": str(query.send_date) if query.send_date else None,
                       "status_filter": query.status.value if query.status else None,
                       "offset": query.offset, "ids": len(query.email_ids),
                       "ms": round((time.monotonic() - started) * 1000, 1),
                       **({"reason": reason} if reason is not None else {})})
