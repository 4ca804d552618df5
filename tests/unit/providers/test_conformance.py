"""One conformance suite over all five provider modules (issue 3).

Every test here is parametrized over the registry (`worker.providers.all_modules`), so a sixth
provider is covered by registering it and recording its fixtures. It checks:

1. the module contract of `worker/providers/base.py` (NAME, DEFAULTS, OPTIONS, the functions and
   their signatures);
2. every recorded case of `tests/fixtures/<provider>/` through one shared runner, with a loader
   that is strict about the README format and knows each provider's documented extensions;
3. the common HTTP answers (429 + Retry-After, 5xx and 200 proxy pages);
4. request building (base URL, date in the provider's zone, offset, ids, no secrets in URLs);
5. property tests: random, truncated and mutated bodies, headers and records fed to every parser
   and verifier; only the typed errors may escape (`PollError` from polling, `WebhookError` from
   the webhook functions), and whatever comes out must encode to a schema-valid event.
"""

from __future__ import annotations

import copy
import email.utils
import functools
import inspect
import json
import traceback
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support import golden_events, validate_event
from worker import errors
from worker.errors import MalformedPayload, PollError, ProviderError, Retriable, Throttled, WebhookError
from worker.model import EventType, Observation, Provider, Source, StatusEvent, parse_rfc3339
from worker.providers import all_modules, base, get_module
from worker.providers.base import (
    AccountContext,
    HttpRequest,
    Option,
    PollPage,
    PollQuery,
    ProviderDefaults,
    WebhookRequest,
)
from worker.rows import Rows

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PROVIDERS: list[Provider] = list(all_modules())
NOW = datetime(2024, 1, 1, 17, 0, tzinfo=UTC)  # already 2024-01-02 in UTC+8

by_provider = pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.value)


def module_of(provider: Provider) -> ModuleType:
    return get_module(provider)  # type: ignore[return-value]


# ==============================================================================================
# 1. The module contract
# ==============================================================================================

# The five functions of base.py's module docstring, with their documented parameters in order.
DOCUMENTED_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "build_poll_request": ("acct", "query", "now"),
    "parse_poll_response": ("acct", "query", "status", "headers", "body", "now"),
    "verify_webhook": ("acct", "req", "now", "replay_window_secs"),
    "split_webhook": ("req",),
    "webhook_observations": ("acct", "record"),
    "replay_key": ("req", "record"),
}
EMITTED_FILTERS = {EventType.INVALID, EventType.SOFT_BOUNCE, EventType.DELIVERED}


def _protocol_parameters(name: str) -> tuple[str, ...]:
    params = list(inspect.signature(getattr(base.ProviderModule, name)).parameters)
    assert params[0] == "self"
    return tuple(params[1:])


def test_documented_signatures_match_the_protocol() -> None:
    """The list this suite checks against is the one `base.ProviderModule` declares."""
    protocol = {name for name, value in vars(base.ProviderModule).items()
                if callable(value) and not name.startswith("_")}
    assert protocol == set(DOCUMENTED_FUNCTIONS)
    for name, params in DOCUMENTED_FUNCTIONS.items():
        assert _protocol_parameters(name) == params, name


def test_registry_covers_every_provider() -> None:
    assert set(all_modules()) == set(Provider)


@by_provider
def test_name_matches_the_registry_key(provider: Provider) -> None:
    module = module_of(provider)
    assert isinstance(module.NAME, Provider)
    assert module.NAME is provider
    assert all_modules()[provider] is module


@by_provider
def test_defaults_are_sane(provider: Provider) -> None:
    d = module_of(provider).DEFAULTS
    assert isinstance(d, ProviderDefaults)
    assert isinstance(d.base_url, str) and d.base_url.startswith("https://")
    assert urllib.parse.urlsplit(d.base_url).netloc
    assert isinstance(d.quota_per_minute, int) and d.quota_per_minute > 0
    assert isinstance(d.cache_ttl_secs, int) and d.cache_ttl_secs >= 0
    assert d.tz.utcoffset(datetime(2024, 1, 1)) is not None
    assert isinstance(d.retention_days, int) and d.retention_days > 0
    assert isinstance(d.page_limit, int) and 1 <= d.page_limit <= 500
    assert d.polling in ("date", "ids")
    assert isinstance(d.status_filters, tuple)
    assert all(isinstance(s, EventType) for s in d.status_filters)
    assert len(set(d.status_filters)) == len(d.status_filters)
    assert isinstance(d.max_window_days, int) and d.max_window_days >= 1
    if d.polling == "ids":
        assert isinstance(d.id_batch, int) and 0 < d.id_batch <= d.page_limit
    else:
        assert set(d.status_filters) <= EMITTED_FILTERS


@by_provider
def test_options_are_options_with_a_valid_default(provider: Provider) -> None:
    options = module_of(provider).OPTIONS
    assert isinstance(options, dict)
    for name, option in options.items():
        assert isinstance(name, str) and name, name
        assert isinstance(option, Option), name
        assert isinstance(option.choices, tuple) and option.choices, name
        assert all(isinstance(choice, str) for choice in option.choices), name
        assert len(set(option.choices)) == len(option.choices), name
        assert option.default in option.choices, name
        assert isinstance(option.doc, str) and option.doc.strip(), name


@by_provider
@pytest.mark.parametrize("function", list(DOCUMENTED_FUNCTIONS))
def test_functions_have_the_documented_signature(provider: Provider, function: str) -> None:
    """Positional parameters exactly as documented; any extra one is keyword-only with a default
    (UniSender's `recipients=`), so the poll runner and the shard can call every module alike."""
    fn = getattr(module_of(provider), function, None)
    assert fn is not None and callable(fn), f"{provider.value}.{function} missing"
    params = list(inspect.signature(fn).parameters.values())
    documented = DOCUMENTED_FUNCTIONS[function]
    head, extra = params[: len(documented)], params[len(documented):]
    assert tuple(p.name for p in head) == documented
    for p in head:
        assert p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD), p
        assert p.default is p.empty, p
    for p in extra:
        assert p.kind is p.KEYWORD_ONLY and p.default is not p.empty, p


# ==============================================================================================
# 2. The recorded fixtures, through one runner
# ==============================================================================================

POLL_KEYS = frozenset({"note", "account", "query", "status", "headers", "now", "expect"})
WEBHOOK_KEYS = frozenset({"note", "account", "content_type", "headers", "query", "now",
                          "replay_window_secs", "expect"})
# Documented per-provider extensions of the README format: kind -> extra top-level keys.
EXTENSIONS: dict[Provider, dict[str, frozenset[str]]] = {
    # checkEmail answers without addresses; the id tracker supplies them (unisender.parse_poll_response).
    Provider.UNISENDER: {"poll": frozenset({"recipients"})},
}
ACCOUNT_FIELDS = frozenset(f.name for f in attrs.fields(AccountContext)) - {"name", "provider"}
QUERY_KEYS = frozenset(f.name for f in attrs.fields(PollQuery))
POLL_SUCCESS_KEYS = frozenset({"rows", "next_offset", "total", "unknown_ids", "events"})
# Optional: the rows that could not be read, as [index in the page's list, error_type]; absent means none.
POLL_OPTIONAL_KEYS = frozenset({"rejected"})
WEBHOOK_EXPECT_KEYS = frozenset({"verify", "split_error", "records", "events"})


def _error_classes() -> dict[str, type[ProviderError]]:
    found = {}
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, ProviderError):
            found[value.error_type] = value
    return found


ERROR_CLASSES = _error_classes()


@attrs.frozen
class Case:
    provider: Provider
    stem: str
    kind: str                     # "poll" or "webhook"
    spec: dict[str, Any]
    body: bytes
    acct: AccountContext
    now: datetime
    query: PollQuery | None = None
    req: WebhookRequest | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)   # extension keyword arguments

    @property
    def expect(self) -> dict[str, Any]:
        return self.spec["expect"]

    def parse(self) -> PollPage:
        return module_of(self.provider).parse_poll_response(
            self.acct, self.query, self.spec["status"], self.spec["headers"], self.body, self.now, **self.extra)

    def request(self, body: bytes) -> WebhookRequest:
        assert self.req is not None
        return attrs.evolve(self.req, body=body)


def fixture_stems(provider: Provider) -> list[str]:
    return sorted(p.stem for p in (FIXTURES / provider.value).glob("*.json"))


def _check_string_map(value: Any, what: str, *, lower_keys: bool = False) -> None:
    assert isinstance(value, dict), f"{what} must be an object"
    for k, v in value.items():
        assert isinstance(k, str) and isinstance(v, str), f"{what}: {k!r} must map to a string"
        if lower_keys:
            assert k == k.lower(), f"{what}: header names are lower-cased, got {k!r}"


def account_from_spec(provider: Provider, spec: dict[str, Any]) -> AccountContext:
    """README: `account` holds AccountContext fields other than name/provider; base_url defaults
    to the provider's; `sender_rejection` is stored as a string, `webhook_keys` as a list."""
    assert isinstance(spec, dict), "account must be an object"
    unknown = set(spec) - ACCOUNT_FIELDS
    assert not unknown, f"unknown account fields {sorted(unknown)}"
    fields = {"base_url": module_of(provider).DEFAULTS.base_url, **spec}
    if fields.get("sender_rejection") is not None:
        fields["sender_rejection"] = EventType(fields["sender_rejection"])
    if "webhook_keys" in fields:
        keys = fields["webhook_keys"]
        assert isinstance(keys, list) and all(isinstance(k, str) for k in keys), "webhook_keys: list of strings"
        fields["webhook_keys"] = tuple(keys)
    if "options" in fields:
        options = fields["options"]
        _check_string_map(options, "account.options")
        module_options = module_of(provider).OPTIONS
        for name, value in options.items():
            assert name in module_options, f"unknown option {name!r}"
            assert value in module_options[name].choices, f"option {name}={value!r} not among its choices"
    return AccountContext(name="acct", provider=provider, **fields)


def query_from_spec(spec: dict[str, Any]) -> PollQuery:
    assert isinstance(spec, dict), "query must be an object"
    unknown = set(spec) - QUERY_KEYS
    assert not unknown, f"unknown query fields {sorted(unknown)}"
    ids = spec.get("email_ids", [])
    assert isinstance(ids, list) and all(isinstance(i, str) for i in ids), "email_ids: list of strings"
    return PollQuery(
        send_date=date.fromisoformat(spec["send_date"]) if spec.get("send_date") else None,
        status=EventType(spec["status"]) if spec.get("status") else None,
        offset=spec.get("offset", 0),
        limit=spec.get("limit", 100),
        email_ids=tuple(ids),
    )


def _check_expect(provider: Provider, kind: str, expect: Any) -> None:
    assert isinstance(expect, dict), "expect must be an object"
    if kind == "poll":
        if "error" in expect:
            assert set(expect) <= {"error", "retry_after"}, f"unexpected expect keys {sorted(expect)}"
            error = ERROR_CLASSES.get(expect["error"])
            assert error is not None and issubclass(error, PollError), f"not a poll error_type: {expect['error']!r}"
            if "retry_after" in expect:
                assert error is Throttled and isinstance(expect["retry_after"], (int, float))
        else:
            assert POLL_SUCCESS_KEYS <= set(expect) <= POLL_SUCCESS_KEYS | POLL_OPTIONAL_KEYS, (
                f"expect keys {sorted(expect)}: {sorted(POLL_SUCCESS_KEYS)} and maybe {sorted(POLL_OPTIONAL_KEYS)}")
            assert isinstance(expect["rows"], int) and expect["rows"] >= 0
            for pair in expect.get("rejected", []):
                assert isinstance(pair, list) and len(pair) == 2, f"rejected: [index, reason] pairs, got {pair!r}"
                index, reason = pair
                assert isinstance(index, int) and 0 <= index < expect["rows"], f"rejected index {index!r}"
                assert reason in ERROR_CLASSES, f"rejected reason {reason!r} is not an error_type"
            assert expect["next_offset"] is None or isinstance(expect["next_offset"], int)
            assert expect["total"] is None or isinstance(expect["total"], int)
            assert isinstance(expect["unknown_ids"], list)
    else:
        unknown = set(expect) - WEBHOOK_EXPECT_KEYS
        assert not unknown, f"unknown expect keys {sorted(unknown)}"
        verify = expect["verify"]
        if isinstance(verify, dict):
            assert verify == {"error": "bad_signature"}, verify
        else:
            assert isinstance(verify, str) and verify, verify
            assert ("records" in expect) != ("split_error" in expect), "a verified case says records or split_error"
        if "split_error" in expect:
            assert expect["split_error"] == "malformed" and "events" not in expect
        if "records" in expect:
            assert isinstance(expect["records"], int) and expect["records"] >= 0 and "events" in expect
    events = expect.get("events", [])
    assert isinstance(events, list)
    for event in events:
        validate_event(event)
        # README: rendered for account `acct`, observed at 2030-01-01T00:00:00Z, from this source.
        assert (event["provider"], event["account"], event["observed_at"], event["source"]) == (
            provider.value, "acct", "2030-01-01T00:00:00Z", kind), event["event_id"]


def load_case(provider: Provider, stem: str) -> Case:
    """Read one recorded case, strictly: the README's keys plus the provider's extensions, no others."""
    path = FIXTURES / provider.value / f"{stem}.json"
    spec = json.loads(path.read_text(encoding="utf-8"))
    body_path = path.with_suffix(".body")
    assert body_path.is_file(), f"{stem}: no .body"
    kind = stem.partition("_")[0]
    assert kind in ("poll", "webhook"), f"{stem}: stems start with poll_ or webhook_"
    assert isinstance(spec, dict)
    required = POLL_KEYS if kind == "poll" else WEBHOOK_KEYS
    allowed = required | EXTENSIONS.get(provider, {}).get(kind, frozenset())
    assert required <= set(spec), f"{stem}: missing {sorted(required - set(spec))}"
    assert set(spec) <= allowed, f"{stem}: unknown top-level keys {sorted(set(spec) - allowed)}"
    assert isinstance(spec["note"], str) and spec["note"].strip(), f"{stem}: note"
    _check_string_map(spec["headers"], f"{stem}: headers", lower_keys=True)
    _check_expect(provider, kind, spec["expect"])
    acct = account_from_spec(provider, spec["account"])
    now = parse_rfc3339(spec["now"])
    body = body_path.read_bytes()
    if kind == "poll":
        assert isinstance(spec["status"], int) and 100 <= spec["status"] <= 599
        extra: dict[str, Any] = {}
        if "recipients" in spec:
            _check_string_map(spec["recipients"], f"{stem}: recipients")
            extra["recipients"] = spec["recipients"]
        return Case(provider, stem, kind, spec, body, acct, now, query=query_from_spec(spec["query"]), extra=extra)
    assert isinstance(spec["content_type"], str)
    _check_string_map(spec["query"], f"{stem}: query")
    assert isinstance(spec["replay_window_secs"], (int, float)) and spec["replay_window_secs"] >= 0
    req = WebhookRequest(body=body, content_type=spec["content_type"], headers=spec["headers"], query=spec["query"])
    return Case(provider, stem, kind, spec, body, acct, now, req=req)


@functools.cache
def cases_of(provider: Provider) -> tuple[Case, ...]:
    return tuple(load_case(provider, stem) for stem in fixture_stems(provider))


def run_case(case: Case) -> None:
    """Replay one recorded case and compare with its goldens (tests/fixtures/README.md)."""
    module = module_of(case.provider)
    expect = case.expect
    if case.kind == "poll":
        # the recorded query must also build a request with the recorded account
        assert isinstance(module.build_poll_request(case.acct, case.query, case.now), HttpRequest)
        if "error" in expect:
            with pytest.raises(PollError) as caught:
                case.parse()
            assert caught.value.error_type == expect["error"]
            if "retry_after" in expect:
                assert caught.value.retry_after == expect["retry_after"]
            return
        page = case.parse()
        assert isinstance(page, PollPage)
        assert (page.rows, page.next_offset, page.total, list(page.unknown_ids)) == (
            expect["rows"], expect["next_offset"], expect["total"], expect["unknown_ids"])
        assert [[row.index, row.reason] for row in page.rejected] == expect.get("rejected", [])
        assert golden_events(list(page.observations), case.provider, Source.POLL) == expect["events"]
        return
    req, window = case.req, case.spec["replay_window_secs"]
    verify = expect["verify"]
    if isinstance(verify, dict):
        with pytest.raises(WebhookError) as refused:
            module.verify_webhook(case.acct, req, case.now, window)
        assert refused.value.error_type == verify["error"]
    else:
        assert module.verify_webhook(case.acct, req, case.now, window) == verify
    if expect.get("split_error") == "malformed":
        with pytest.raises(MalformedPayload):
            module.split_webhook(req)
        return
    if "records" not in expect:
        return
    records = module.split_webhook(req)
    assert len(records) == expect["records"]
    stored = orjson.loads(orjson.dumps(records))  # what the receiver writes to _raw and the shard reads
    assert stored == records
    observations = [obs for record in stored for obs in module.webhook_observations(case.acct, record)]
    assert golden_events(observations, case.provider, Source.WEBHOOK) == expect["events"]


ALL_CASES = [(p, stem) for p in PROVIDERS for stem in fixture_stems(p)]


@pytest.mark.parametrize(("provider", "stem"), ALL_CASES, ids=[f"{p.value}/{s}" for p, s in ALL_CASES])
def test_recorded_case(provider: Provider, stem: str) -> None:
    run_case(load_case(provider, stem))


@by_provider
def test_fixture_folder_is_well_formed(provider: Provider) -> None:
    folder = FIXTURES / provider.value
    jsons = {p.stem for p in folder.glob("*.json")}
    bodies = {p.stem for p in folder.glob("*.body")}
    assert jsons, f"no fixtures for {provider.value}"
    assert jsons == bodies, f"unpaired files: {sorted(jsons ^ bodies)}"
    assert {p.suffix for p in folder.iterdir()} <= {".json", ".body"}


def _has(cases: list[Case], predicate: Callable[[Case], bool]) -> bool:
    return any(predicate(c) for c in cases)


@by_provider
def test_fixture_folder_covers_the_required_kinds(provider: Provider) -> None:
    cases = cases_of(provider)
    polls = [c for c in cases if c.kind == "poll"]
    hooks = [c for c in cases if c.kind == "webhook"]
    missing = []
    if not _has(polls, lambda c: "error" not in c.expect and c.expect["rows"] > 0 and c.expect["events"]):
        missing.append("poll success with events")
    if not _has(polls, lambda c: c.expect.get("error") == "throttled"):
        missing.append("poll throttled")
    if not _has(polls, lambda c: c.expect.get("error") == "fatal_config"):
        missing.append("poll auth failure (fatal_config)")
    if not _has(hooks, lambda c: isinstance(c.expect["verify"], str) and c.expect.get("events")):
        missing.append("webhook success with events")
    if provider is not Provider.TENCENT_SES:  # Tencent signs nothing (PROVIDERS.md 5.5)
        if not _has(hooks, lambda c: c.expect["verify"] == {"error": "bad_signature"}):
            missing.append("webhook bad signature")
    if not _has(hooks, lambda c: c.expect.get("split_error") == "malformed"):
        missing.append("webhook malformed")
    assert not missing, f"{provider.value} lacks: {missing}"


# ==============================================================================================
# 3. Common HTTP behaviour
# ==============================================================================================

API_KEY = "SECRET-api-key-7f3e"
SECRET_ID = "AKIDsecret-id-51c2"
SECRET_KEY = "SECRET-secret-key-9d0b"
WEBHOOK_KEYS_ANY = ("test_appkey", "my_app_secret", "APIKEY123")
HTML = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway"
        b"</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")


def account(provider: Provider, **fields: Any) -> AccountContext:
    module = module_of(provider)
    spec = {"base_url": module.DEFAULTS.base_url, "api_user": "user", "api_key": API_KEY, "secret_id": SECRET_ID,
            "secret_key": SECRET_KEY, "webhook_keys": WEBHOOK_KEYS_ANY, **fields}
    return AccountContext(name="acct", provider=provider, **spec)


def standard_query(provider: Provider, **fields: Any) -> PollQuery:
    if module_of(provider).DEFAULTS.polling == "ids":
        return PollQuery(**{"email_ids": ("11", "22"), **fields})
    return PollQuery(**{"send_date": date(2024, 1, 2), "offset": 0, "limit": 100, **fields})


def as_received(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names as the poll runner hands them over: lower-cased."""
    return {k.lower(): v for k, v in headers.items()}


def parse_answer(provider: Provider, status: int, headers: Mapping[str, str], body: bytes) -> PollPage:
    return module_of(provider).parse_poll_response(
        account(provider), standard_query(provider), status, as_received(headers), body, NOW)


@by_provider
@pytest.mark.parametrize("body", [b"", HTML, b"Too Many Requests", b'{"code": 429, "message": "Too Many Requests"}'],
                         ids=["empty", "html", "text", "json"])  # json: the body recorded in engagelab/poll_http_429
def test_http_429_with_retry_after_is_throttled(provider: Provider, body: bytes) -> None:
    with pytest.raises(Throttled) as caught:
        parse_answer(provider, 429, {"Retry-After": "30"}, body)
    assert caught.value.retry_after == 30


@by_provider
def test_http_429_with_an_http_date_retry_after(provider: Provider) -> None:
    when = email.utils.format_datetime(NOW + timedelta(seconds=45), usegmt=True)
    with pytest.raises(Throttled) as caught:
        parse_answer(provider, 429, {"Retry-After": when}, HTML)
    assert caught.value.retry_after == 45


ODD_RETRY_AFTER = {
    "superscript-two": "\u00b2",          # str.isdigit() is true, float() refuses it
    "circled-one": "\u2460",              # likewise
    "arabic-indic-three": "\u0663",
    "fullwidth-30": "\uff13\uff10",
    "one-half": "\u00bd",
    "exponent": "1e3",
    "negative": "-5",
    "fraction": "30.5",
    "blank": " ",
    "lone-surrogate": "\udcff",          # a header byte decoded with surrogateescape
}


@by_provider
@pytest.mark.parametrize("value", list(ODD_RETRY_AFTER.values()), ids=list(ODD_RETRY_AFTER))
def test_http_429_with_an_odd_retry_after_is_still_throttled(provider: Provider, value: str) -> None:
    """Header values are arbitrary text: whatever Retry-After says, a 429 is a Throttled (with some
    non-negative wait or none), never an untyped error."""
    with pytest.raises(Throttled) as caught:
        parse_answer(provider, 429, {"Retry-After": value}, HTML)
    assert caught.value.retry_after is None or caught.value.retry_after >= 0


@by_provider
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_html_is_retriable(provider: Provider, status: int) -> None:
    with pytest.raises(Retriable):
        parse_answer(provider, status, {"Content-Type": "text/html"}, HTML)


@by_provider
@pytest.mark.parametrize("body", [HTML, b"", b"OK", b"<?xml version='1.0'?><error/>"],
                         ids=["html", "empty", "text", "xml"])
def test_200_proxy_page_is_retriable(provider: Provider, body: bytes) -> None:
    with pytest.raises(Retriable):
        parse_answer(provider, 200, {"Content-Type": "text/html"}, body)


# ==============================================================================================
# 4. Request building
# ==============================================================================================

DATE_PROVIDERS = [p for p in PROVIDERS if module_of(p).DEFAULTS.polling == "date"]
IDS_PROVIDERS = [p for p in PROVIDERS if module_of(p).DEFAULTS.polling == "ids"]
BASE_URLS = ["default", "http://127.0.0.1:9000", "http://127.0.0.1:9000/"]


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    elif value is not None:
        yield str(value)


def request_values(req: HttpRequest) -> list[str]:
    """Every value the request carries in its query string, params and body, decoded."""
    values = [v for _, v in urllib.parse.parse_qsl(urllib.parse.urlsplit(req.url).query)]
    values += [v for _, v in req.params]
    if req.body:
        content_type = dict((k.lower(), v) for k, v in req.headers).get("content-type", "")
        if "json" in content_type:
            values += list(_leaves(orjson.loads(req.body)))
        else:
            values += [v for _, v in urllib.parse.parse_qsl(req.body.decode("utf-8"), keep_blank_values=True)]
    return values


def _check_request_shape(req: HttpRequest, acct: AccountContext) -> None:
    assert isinstance(req, HttpRequest)
    assert req.method in ("GET", "POST")
    base_url = acct.base_url.rstrip("/")
    assert req.url.startswith(base_url) and req.url[len(base_url):][:1] in ("", "/", "?"), req.url
    if req.method == "GET":
        assert req.body is None
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in req.params)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in req.headers)


@pytest.mark.parametrize("provider", DATE_PROVIDERS, ids=lambda p: p.value)
@pytest.mark.parametrize("base_url", BASE_URLS)
def test_date_request_carries_base_url_date_and_offset(provider: Provider, base_url: str) -> None:
    module = module_of(provider)
    acct = account(provider, **({} if base_url == "default" else {"base_url": base_url}))
    query = PollQuery(send_date=date(2023, 12, 30), offset=300, limit=min(50, module.DEFAULTS.page_limit))
    req = module.build_poll_request(acct, query, NOW)
    _check_request_shape(req, acct)
    values = request_values(req)
    assert "300" in values
    assert "2023-12-30" in values
    assert "2024-01-01" not in values  # NOW's UTC date: the queried date is sent, not a clock date


@pytest.mark.parametrize("provider", DATE_PROVIDERS, ids=lambda p: p.value)
def test_date_request_for_today_uses_the_provider_zone(provider: Provider) -> None:
    module = module_of(provider)
    acct = account(provider)
    req = module.build_poll_request(acct, PollQuery(send_date=None, offset=0, limit=10), NOW)
    today = NOW.astimezone(module.DEFAULTS.tz).date()
    assert today != NOW.date()  # the chosen NOW separates the zones
    values = request_values(req)
    assert today.isoformat() in values
    assert NOW.date().isoformat() not in values


@pytest.mark.parametrize("provider", DATE_PROVIDERS, ids=lambda p: p.value)
def test_date_request_serves_every_status_filter_and_a_full_page(provider: Provider) -> None:
    module = module_of(provider)
    acct = account(provider)
    plain = module.build_poll_request(acct, standard_query(provider), NOW)
    for status in module.DEFAULTS.status_filters:
        filtered = module.build_poll_request(acct, standard_query(provider, status=status), NOW)
        _check_request_shape(filtered, acct)
        assert filtered != plain, status
    full = module.build_poll_request(acct, standard_query(provider, limit=module.DEFAULTS.page_limit), NOW)
    assert str(module.DEFAULTS.page_limit) in request_values(full)


@pytest.mark.parametrize("provider", IDS_PROVIDERS, ids=lambda p: p.value)
@pytest.mark.parametrize("base_url", BASE_URLS)
def test_ids_request_carries_the_ids_comma_joined(provider: Provider, base_url: str) -> None:
    module = module_of(provider)
    acct = account(provider, **({} if base_url == "default" else {"base_url": base_url}))
    req = module.build_poll_request(acct, PollQuery(email_ids=("11", "22", "33")), NOW)
    _check_request_shape(req, acct)
    assert "11,22,33" in request_values(req)
    batch = tuple(str(10**9 + i) for i in range(module.DEFAULTS.id_batch))
    full = module.build_poll_request(acct, PollQuery(email_ids=batch), NOW)
    assert ",".join(batch) in request_values(full)


@by_provider
def test_secrets_stay_out_of_the_url(provider: Provider) -> None:
    """With the default options (SendCloud/Aurora POST, UniSender POST, Tencent signed POST,
    EngageLab Basic auth) neither the URL nor its parameters carry a secret."""
    module = module_of(provider)
    acct = account(provider)
    req = module.build_poll_request(acct, standard_query(provider), NOW)
    in_url = req.url + "?" + urllib.parse.urlencode(req.params)
    for secret in (API_KEY, SECRET_KEY):
        assert secret not in in_url and urllib.parse.quote(secret) not in in_url
    if provider in (Provider.SENDCLOUD, Provider.AURORA_SENDCLOUD, Provider.UNISENDER, Provider.TENCENT_SES):
        assert req.method == "POST" and req.body is not None and not req.params
    if provider is Provider.TENCENT_SES:  # TC3 signs with the key and never sends it
        everything = repr((req.url, req.params, req.headers)) + (req.body or b"").decode("utf-8")
        assert SECRET_KEY not in everything


# ==============================================================================================
# 5. Property tests: only the typed errors, never a crash
# ==============================================================================================

FUZZ = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


def _collect_vocabulary() -> tuple[list[str], list[Any]]:
    """Field names and scalar values of every recorded body: the fuzzers' words."""
    keys: set[str] = set()
    values: set[Any] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                keys.add(k)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif not isinstance(node, float):
            values.add(node)

    for path in sorted(FIXTURES.glob("*/*.body")):
        raw = path.read_bytes()
        try:
            walk(orjson.loads(raw))
        except orjson.JSONDecodeError:
            try:
                for k, v in urllib.parse.parse_qsl(raw.decode("utf-8"), keep_blank_values=True):
                    keys.add(k)
                    values.add(v)
            except UnicodeDecodeError:
                pass
    return sorted(keys), sorted(values, key=repr)


FIELD_NAMES, FIELD_VALUES = _collect_vocabulary()
SIGNATURE_HEADERS = ["x-webhook-timestamp", "x-webhook-signature", "x-webhook-appkey", "authorization",
                     "content-type", "retry-after"]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=24),
    st.sampled_from(FIELD_VALUES),
    st.sampled_from([0, 1, -1, 404, 406, 505, 10**12, 10**13, 10**13 - 1, 253402300800, 1e17, 1e300, -1e300,
                     "0", "", "1e3", "2024-13-45 25:61:61", "0001-01-01 00:00:00", "9999-12-31 23:59:59",
                     "9999-12-31T23:59:59+1400", "0001-01-01T00:00:00-1400", "99999999999999999",
                     "550 5.1.1 unknown", "421 4.7.0 try later", "\u0663", "\u00b2"]),
)
json_keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_keys, inner, max_size=5),
    max_leaves=16,
)
json_objects = st.dictionaries(json_keys, json_values, max_size=8)
header_values = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=4),  # digit-like unicode
    st.sampled_from(["\udcff", "30", "0", "1676615711325", "9" * 30, "Wed, 21 Oct 2015 07:28:00 GMT",
                     "Mon, 01 Jan 99999 00:00:00 GMT", "a9d5ea2634e13031de0d3ececed4ec7a", "email",
                     "application/json", "text/html"]),
    st.sampled_from(FIELD_VALUES).map(str),
)
random_headers = st.dictionaries(st.sampled_from(SIGNATURE_HEADERS) | st.text(max_size=12).map(str.lower),
                                 header_values, max_size=5)
statuses = st.sampled_from([200, 200, 200, 201, 204, 301, 400, 401, 403, 404, 429, 500, 502, 503])
content_types = st.sampled_from(["application/json", "application/json; charset=utf-8",
                                 "application/x-www-form-urlencoded", "", "text/plain", "multipart/form-data"])
form_bodies = st.lists(st.tuples(json_keys, st.text(max_size=24) | st.sampled_from(FIELD_VALUES).map(str)),
                       max_size=8).map(lambda pairs: urllib.parse.urlencode(pairs).encode())


def check_observation(provider: Provider, obs: Any, source: Source) -> None:
    """An Observation with an aware occurred_at; if emitted, a schema-valid event (raw on and off)."""
    assert isinstance(obs, Observation), type(obs)
    assert isinstance(obs.occurred_at, datetime), obs.occurred_at
    assert obs.occurred_at.tzinfo is not None and obs.occurred_at.utcoffset() is not None, obs.occurred_at
    if obs.type is None:
        return
    assert isinstance(obs.type, EventType)
    if provider is Provider.UNISENDER and source is Source.POLL and obs.recipient == "":
        # checkEmail returns no addresses; the caller fills them in before building an event.
        obs = attrs.evolve(obs, recipient="filled-in@example.com")
    (event,) = golden_events([obs], provider, source)
    assert event["type"] == obs.type.value
    # With emit_raw the provider's record goes out too, and must still make a valid event.
    with_raw = StatusEvent.from_observation(obs, provider=provider, account="acct", source=source,
                                            observed_at=NOW, emit_raw=True)
    validate_event(orjson.loads(with_raw.encode()))


def poll_only_typed(provider: Provider, acct: AccountContext, query: PollQuery, status: int,
                    headers: Mapping[str, str], body: bytes, now: datetime, **extra: Any) -> PollPage | None:
    try:
        page = module_of(provider).parse_poll_response(acct, query, status, headers, body, now, **extra)
    except PollError as exc:
        if isinstance(exc, Throttled):
            assert exc.retry_after is None or (isinstance(exc.retry_after, (int, float)) and exc.retry_after >= 0)
        return None
    assert isinstance(page, PollPage)
    assert isinstance(page.rows, int) and page.rows >= 0
    assert page.next_offset is None or page.next_offset > query.offset  # paging always advances
    assert all(isinstance(i, str) for i in page.unknown_ids)
    assert isinstance(page.observations, tuple | Rows)
    for obs in page.observations:
        check_observation(provider, obs, Source.POLL)
    if isinstance(page.observations, Rows):
        check_columns(page.observations)
    return page


def check_columns(rows: Rows) -> None:
    """What dedup decides on without building a row (worker.model `Rows`) is what the built row says."""
    built = list(rows)
    assert rows.email_ids == [o.email_id for o in built]
    assert rows.types == [o.type for o in built]
    assert rows.times == [int(o.occurred_at.timestamp()) for o in built]
    assert rows.exact == [o.exact_time for o in built]
    assert rows.finals == [o.final for o in built]
    assert all(not o.oversized for o, plain in zip(built, rows.plain, strict=True) if plain)


def observations_only_typed(provider: Provider, acct: AccountContext, record: Any) -> None:
    try:
        observations = module_of(provider).webhook_observations(acct, record)
    except WebhookError:
        return
    assert isinstance(observations, list)
    for obs in observations:
        check_observation(provider, obs, Source.WEBHOOK)


def webhook_only_typed(provider: Provider, acct: AccountContext, req: WebhookRequest, now: datetime,
                       window: float) -> None:
    """verify, split and observe as the receiver and the shard do; each may refuse, none may crash."""
    module = module_of(provider)
    try:
        variant = module.verify_webhook(acct, req, now, window)
    except WebhookError:
        pass
    else:
        assert isinstance(variant, str) and variant
    try:
        records = module.split_webhook(req)
    except WebhookError:
        return
    assert isinstance(records, list)
    assert all(isinstance(r, dict) for r in records)
    stored = orjson.loads(orjson.dumps(records))  # the receiver writes them to _raw as JSON
    assert stored == records
    for record in stored:
        observations_only_typed(provider, acct, record)


def hook_window(case: Case | None = None) -> float:
    return case.spec["replay_window_secs"] if case else 259200.0


# -- parse_poll_response ------------------------------------------------------------------------


@by_provider
@FUZZ
@given(body=st.binary(max_size=300), status=statuses, headers=random_headers)
@example(body=b"", status=429, headers={"retry-after": "\u00b2"})  # isdigit() but not float()
def test_fuzz_poll_random_bytes(provider: Provider, body: bytes, status: int, headers: dict[str, str]) -> None:
    poll_only_typed(provider, account(provider), standard_query(provider), status, headers, body, NOW)


@by_provider
@FUZZ
@given(doc=json_values, status=statuses, headers=random_headers, single=st.booleans())
def test_fuzz_poll_random_json(provider: Provider, doc: Any, status: int, headers: dict[str, str],
                               single: bool) -> None:
    ids_single = single and provider in IDS_PROVIDERS  # UniSender's single-id answer form
    query = standard_query(provider, email_ids=("11",)) if ids_single else standard_query(provider)
    poll_only_typed(provider, account(provider), query, status, headers, orjson.dumps(doc), NOW)


def _paths(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _twins(value: Any) -> list[Any]:
    """Plausible wrong-typed stand-ins for a value: the mistakes a real API makes."""
    out: list[Any] = [None, "", [], {}, True, 0, -1]
    if isinstance(value, str):
        out += [value[: len(value) // 2], value + "x", value.upper(), " " + value]
        if value.isascii() and value.isdigit():
            out += [int(value), int(value) * 1000, value + "000000"]
    if isinstance(value, bool):
        out += [not value, str(value).lower()]
    elif isinstance(value, int):
        out += [str(value), value * 1000, -value, value + 0.5, 2**63 - 1, 2**64 - 1, -(2**63)]
    if isinstance(value, list):
        out += [value[:1], value * 2, value[0] if value else None]
    if isinstance(value, dict):
        out += [list(value.values()), [value]]
    # JSON as orjson writes it: integers within 64 bits.
    return [v for v in out if not isinstance(v, int) or -(2**63) <= v <= 2**64 - 1]


@st.composite
def mutated(draw: Any, doc: Any, max_mutations: int = 3, keep_object: bool = False) -> Any:
    """`doc` with 1..n subtrees replaced by random values or typed twins, or removed."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, max_mutations))):
        path = draw(st.sampled_from(list(_paths(doc))))
        if not path:
            # A record handed to webhook_observations is always an object (split_webhook's contract).
            doc = draw(json_objects if keep_object else st.one_of(json_values, st.sampled_from(_twins(doc))))
            continue
        parent = functools.reduce(lambda node, key: node[key], path[:-1], doc)
        action = draw(st.sampled_from(["replace", "twin", "delete"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "twin":
            parent[path[-1]] = draw(st.sampled_from(_twins(parent[path[-1]])))
        else:
            parent[path[-1]] = draw(json_values)
    return doc


def _json_body(body: bytes) -> Any | None:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def poll_cases(provider: Provider) -> list[Case]:
    return [c for c in cases_of(provider) if c.kind == "poll"]


def webhook_cases(provider: Provider) -> list[Case]:
    return [c for c in cases_of(provider) if c.kind == "webhook"]


@functools.cache
def recorded_records(provider: Provider) -> list[tuple[Case, dict[str, Any]]]:
    """Every record split_webhook makes of the recorded bodies, as the shard reads it from _raw."""
    split = module_of(provider).split_webhook
    return [(case, record) for case in webhook_cases(provider) if case.expect.get("records")
            for record in orjson.loads(orjson.dumps(split(case.req)))]


@by_provider
@FUZZ
@given(data=st.data())
def test_fuzz_poll_mutated_fixture_json(provider: Provider, data: Any) -> None:
    candidates = [c for c in poll_cases(provider) if _json_body(c.body) is not None]
    case = data.draw(st.sampled_from(candidates), label="case")
    doc = data.draw(mutated(_json_body(case.body)), label="doc")
    status = data.draw(st.sampled_from([case.spec["status"], 200]), label="status")
    poll_only_typed(provider, case.acct, case.query, status, case.spec["headers"], orjson.dumps(doc), case.now,
                    **case.extra)


def truncations(cases: list[Case]) -> Iterator[tuple[Case, str, bytes]]:
    """Every recorded body cut at every point."""
    for case in cases:
        for cut in range(len(case.body) + 1):
            yield case, f"cut at {cut}", case.body[:cut]


# One single-byte mutation per position, the kind rotating: structure, encoding and digit breakers.
MUTATIONS: list[tuple[str, Callable[[bytes, int], bytes]]] = [
    ("delete", lambda b, i: b[:i] + b[i + 1:]),
    ("0xff", lambda b, i: b[:i] + b"\xff" + b[i + 1:]),
    ("quote", lambda b, i: b[:i] + b'"' + b[i + 1:]),
    ("digit", lambda b, i: b[:i] + b"9" + b[i + 1:]),
    ("brace", lambda b, i: b[:i] + b"}" + b[i + 1:]),
    ("ampersand", lambda b, i: b[:i] + b"&" + b[i + 1:]),
    ("percent", lambda b, i: b[:i] + b"%" + b[i + 1:]),
]


def byte_mutations(cases: list[Case]) -> Iterator[tuple[Case, str, bytes]]:
    for case in cases:
        for i in range(len(case.body)):
            kind, mutate = MUTATIONS[i % len(MUTATIONS)]
            yield case, f"{kind} at {i}", mutate(case.body, i)


def exhaustively(name: str, variants: Iterator[tuple[Case, str, bytes]],
                 check: Callable[[Case, bytes], None]) -> None:
    """Run `check` on every variant; report every distinct failure (by where it was raised)."""
    failures: dict[str, str] = {}
    for case, label, body in variants:
        try:
            check(case, body)
        except Exception as exc:  # noqa: BLE001 - collected and reported below
            where = traceback.extract_tb(exc.__traceback__)[-1]
            signature = f"{type(exc).__name__} at {Path(where.filename).name}:{where.lineno}"
            failures.setdefault(signature, f"{case.provider.value}/{case.stem} {label} "
                                           f"(...{body[-60:]!r}): {exc!r}")
    assert not failures, f"{name}:\n" + "\n".join(f"  {k}: {v}" for k, v in failures.items())


@by_provider
def test_poll_every_truncation_of_every_recorded_body(provider: Provider) -> None:
    def check(case: Case, body: bytes) -> None:
        for status in {case.spec["status"], 200}:
            poll_only_typed(provider, case.acct, case.query, status, case.spec["headers"], body, case.now,
                            **case.extra)

    exhaustively("parse_poll_response", truncations(poll_cases(provider)), check)


# -- verify_webhook, split_webhook, webhook_observations -------------------------------------------


@by_provider
@FUZZ
@given(body=st.binary(max_size=300), content_type=content_types, headers=random_headers)
@example(body=b"{}", content_type="application/json",  # header byte 0xff as aiohttp decodes it
         headers={"x-webhook-timestamp": "\udcff", "x-webhook-signature": "0", "x-webhook-appkey": "email"})
def test_fuzz_webhook_random_bytes(provider: Provider, body: bytes, content_type: str,
                                   headers: dict[str, str]) -> None:
    req = WebhookRequest(body=body, content_type=content_type, headers=headers)
    webhook_only_typed(provider, account(provider), req, NOW, hook_window())


@by_provider
@FUZZ
@given(doc=json_values | json_objects, form=form_bodies, content_type=content_types, headers=random_headers,
       as_form=st.booleans())
def test_fuzz_webhook_random_json_and_forms(provider: Provider, doc: Any, form: bytes, content_type: str,
                                            headers: dict[str, str], as_form: bool) -> None:
    body = form if as_form else orjson.dumps(doc)
    req = WebhookRequest(body=body, content_type=content_type, headers=headers)
    webhook_only_typed(provider, account(provider), req, NOW, hook_window())


UNDECODABLE = {"lone-surrogate": "\udcff", "surrogate-in-digits": "1676615711\udcff", "nul": "\x00",
               "non-ascii-digits": "\u0661\u0666\u0667\u0666", "superscript": "\u00b2"}


@by_provider
@pytest.mark.parametrize("value", list(UNDECODABLE.values()), ids=list(UNDECODABLE))
def test_webhook_header_values_that_are_not_clean_text(provider: Provider, value: str) -> None:
    """The receiver passes aiohttp's header strings on, and aiohttp decodes header bytes with
    surrogateescape: a byte 0xff arrives as '\\udcff'. Each signature header of each verified
    recorded case, set to such a value, may be refused (BadSignature) but must not crash."""
    for case in webhook_cases(provider):
        if not isinstance(case.expect["verify"], str):
            continue
        for name in sorted(set(case.spec["headers"]) | set(SIGNATURE_HEADERS)):
            req = attrs.evolve(case.req, headers={**case.spec["headers"], name: value})
            try:
                webhook_only_typed(provider, case.acct, req, case.now, hook_window(case))
            except Exception as exc:
                raise AssertionError(f"{case.stem} with {name}: {value!r} -> {exc!r}") from exc


@by_provider
@FUZZ
@given(record=json_objects)
def test_fuzz_webhook_observations_random_records(provider: Provider, record: dict[str, Any]) -> None:
    observations_only_typed(provider, account(provider), record)


@by_provider
@FUZZ
@given(data=st.data())
def test_fuzz_webhook_single_byte_mutations(provider: Provider, data: Any) -> None:
    case = data.draw(st.sampled_from(webhook_cases(provider)), label="case")
    assert case.body, "every recorded webhook case has a body to mutate"
    position = data.draw(st.integers(0, len(case.body) - 1), label="position")
    byte = data.draw(st.sampled_from(b'"{}[],:=&%\\0 \x00\xff\xc3') | st.integers(0, 255), label="byte")
    mode = data.draw(st.sampled_from(["replace", "insert", "delete"]), label="mode")
    body = case.body
    if mode == "replace":
        body = body[:position] + bytes([byte]) + body[position + 1:]
    elif mode == "insert":
        body = body[:position] + bytes([byte]) + body[position:]
    else:
        body = body[:position] + body[position + 1:]
    webhook_only_typed(provider, case.acct, case.request(body), case.now, hook_window(case))


@by_provider
@FUZZ
@given(data=st.data())
def test_fuzz_webhook_mutated_fixture_json(provider: Provider, data: Any) -> None:
    """Structure-aware: the recorded bodies with fields replaced, retyped or removed. The signature
    headers stay valid where they sign only a timestamp, so the mutations reach the parsers."""
    candidates = [c for c in webhook_cases(provider) if _json_body(c.body) is not None]
    assert candidates, "every provider has JSON webhook cases to mutate"
    case = data.draw(st.sampled_from(candidates), label="case")
    doc = data.draw(mutated(_json_body(case.body)), label="doc")
    headers = dict(case.spec["headers"])
    if headers and data.draw(st.booleans(), label="mutate headers"):
        headers = data.draw(mutated(headers, 1, keep_object=True), label="headers")
        headers = {str(k): v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in headers.items()}
    req = attrs.evolve(case.req, body=orjson.dumps(doc), headers=headers)
    webhook_only_typed(provider, case.acct, req, case.now, hook_window(case))


@by_provider
@FUZZ
@given(data=st.data())
def test_fuzz_webhook_observations_mutated_records(provider: Provider, data: Any) -> None:
    """The recorded records (as split_webhook made them, after the _raw JSON round trip) with
    fields replaced, retyped or removed, straight into webhook_observations."""
    case, record = data.draw(st.sampled_from(recorded_records(provider)), label="record")
    observations_only_typed(provider, case.acct, data.draw(mutated(record, keep_object=True), label="mutated"))


def _check_webhook_body(case: Case, body: bytes) -> None:
    webhook_only_typed(case.provider, case.acct, case.request(body), case.now, hook_window(case))


@by_provider
def test_webhook_every_truncation_of_every_recorded_body(provider: Provider) -> None:
    exhaustively("webhook functions", truncations(webhook_cases(provider)), _check_webhook_body)


@by_provider
def test_webhook_a_byte_mutation_at_every_position_of_every_recorded_body(provider: Provider) -> None:
    exhaustively("webhook functions", byte_mutations(webhook_cases(provider)), _check_webhook_body)
