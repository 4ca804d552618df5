"""The simulator's configuration and value classes: accounts, faults, ground truth, call log."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

import attrs

from worker.model import EventType, Provider

# The providers' documented quotas (PROVIDERS.md): per minute, per account or key.
DEFAULT_QUOTA_PER_MINUTE: dict[Provider, int] = {
    Provider.ENGAGELAB: 60,
    Provider.SENDCLOUD: 3000,
    Provider.AURORA_SENDCLOUD: 3000,
    Provider.UNISENDER: 1200,
    Provider.TENCENT_SES: 1200,  # 20 requests per second
}
# The 10-minute result cache is documented for these three only.
DEFAULT_CACHE_TTL_SECS: dict[Provider, float] = {
    Provider.ENGAGELAB: 600.0,
    Provider.SENDCLOUD: 600.0,
    Provider.AURORA_SENDCLOUD: 600.0,
    Provider.UNISENDER: 0.0,
    Provider.TENCENT_SES: 0.0,
}

# Documented variants the simulator can serve (SimAccount.options).
OPTIONS: dict[str, tuple[str, ...]] = {
    # Aurora's `status` strings are not documented for the international edition.
    "status_language": ("zh", "en"),
}


def _quota_default(self: SimAccount) -> int:
    return DEFAULT_QUOTA_PER_MINUTE[self.provider]


def _cache_default(self: SimAccount) -> float:
    return DEFAULT_CACHE_TTL_SECS[self.provider]


@attrs.frozen(kw_only=True)
class SimAccount:
    """One simulated provider account: its credentials, quota, cache and mail stream."""

    provider: Provider = attrs.field(converter=Provider)
    name: str
    api_user: str | None = None
    api_key: str | None = attrs.field(default=None, repr=False)
    secret_id: str | None = None
    secret_key: str | None = attrs.field(default=None, repr=False)
    app_key: str | None = attrs.field(default=None, repr=False)  # webhook signing key
    region: str | None = None  # Tencent: when set, X-TC-Region must equal it
    path_token: str | None = attrs.field(default=None, repr=False)  # Tencent webhook path token
    quota_per_minute: int = attrs.field(default=attrs.Factory(_quota_default, takes_self=True))
    quota_window_secs: float = 60.0
    cache_ttl_secs: float = attrs.field(default=attrs.Factory(_cache_default, takes_self=True))
    history_days: int = 3
    history_per_day: int = 200
    live_per_sec: float = 1.0
    live_max: int | None = 1000
    page_limit: int = 100
    options: Mapping[str, str] = attrs.field(factory=dict)

    def option(self, name: str) -> str:
        return self.options.get(name, OPTIONS[name][0])


def _accounts(accounts: Iterable[SimAccount]) -> tuple[SimAccount, ...]:
    return tuple(accounts)


@attrs.frozen(kw_only=True)
class SimConfig:
    seed: int
    accounts: tuple[SimAccount, ...] = attrs.field(converter=_accounts)
    time_scale: float = attrs.field(default=1.0, converter=float, validator=attrs.validators.gt(0))
    clock: Callable[[], float] = time.time
    anchor: float | None = None  # when the live stream starts; default: the clock at construction
    call_log_max: int = 200_000  # older calls are dropped from Simulator.calls (stats keep counting)
    # Round trip added to every status-API answer (the provider's distance); Simulator.set_latency
    # changes it at run time, for every account or for one.
    latency_ms: float = attrs.field(default=0.0, converter=float, validator=attrs.validators.ge(0))

    def account(self, name: str) -> SimAccount:
        for acct in self.accounts:
            if acct.name == name:
                return acct
        raise KeyError(name)


@attrs.frozen(kw_only=True)
class Faults:
    """Failure injection for one account's status API; rates are probabilities per call."""

    error_5xx_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_secs: float = 30.0  # how long a "timeout" hangs before answering 504 (ends early on stop)
    slow_rate: float = 0.0
    slow_secs: float = 0.0
    malformed_rate: float = 0.0
    bad_row_rate: float = 0.0  # one row of the answer is broken (its address or id blanked)
    seed: int = 0


@attrs.frozen(slots=True)
class Change:
    """One status change of one recipient, as the provider reports it (ground truth)."""

    email_id: str
    message_id: str | None
    recipient: str
    type: EventType | None  # None: pending and other statuses the service does not emit
    occurred_at: datetime  # UTC, whole seconds (what every status API reports)
    provider_status: str
    sub_status: str | None
    sent_at: datetime | None = None


@attrs.frozen(slots=True)
class SentMessage:
    email_id: str
    recipient: str
    sent_at: datetime


@attrs.frozen(slots=True)
class Visible:
    """What the status API shows for one email at one instant."""

    email_id: str
    message_id: str | None
    recipient: str
    sent_at: datetime
    type: EventType | None  # ground-truth type of the latest visible status
    types: frozenset[EventType]  # every emittable type the record states (Tencent flags add some)
    provider_status: str
    sub_status: str | None
    occurred_at: datetime


@attrs.frozen(slots=True)
class Call:
    account: str | None  # None when the credentials named no account
    provider: Provider
    query_key: tuple
    at: float
    outcome: str  # ok | throttled | fault | auth_error | bad_request
    cached: bool = False
    fault: str | None = None  # 5xx | timeout | malformed | slow (slow calls keep their real outcome)
    rows: int = 0  # status rows answered afresh (0 for cached, faulty and error answers)
