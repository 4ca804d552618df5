"""Aurora SendCloud (international SendCloud): emailStatus and HMAC-signed webhooks, form or JSON.

Facts and sources: PROVIDERS.md section 3, seed 002. Same engine as SendCloud China (the
functions of `sendcloud`, run with this module's `Edition`); the differences are data here: host
and `/api/` path, a 3-day query span, English status words, the new docs' event names, and the
snake_case auth parameter variant.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from worker.model import EventType, Observation, Provider
from worker.providers import _sendcloud_family as family
from worker.providers import _sendcloud_webhooks as webhooks
from worker.providers import sendcloud
from worker.providers.base import (
    CHINA_TZ,
    AccountContext,
    HttpRequest,
    Option,
    PollPage,
    PollQuery,
    ProviderDefaults,
    WebhookRequest,
)

NAME = Provider.AURORA_SENDCLOUD

# Regions (doc: api-overview.md); an account is bound to one, the others answer 40005:
#   Singapore  https://api.aurorasendcloud.com   (default)
#   US         https://api-us.aurorasendcloud.com
#   Hong Kong  https://api-hk.aurorasendcloud.com
# Legacy docs use https://api2.sendcloud.net with the same /api/ paths. Pick one with base_url.
DEFAULTS = ProviderDefaults(
    base_url="https://api.aurorasendcloud.com",
    quota_per_minute=3000,
    cache_ttl_secs=600,
    tz=CHINA_TZ,                      # inferred: the webhook API documents Beijing time
    retention_days=30,                # answers 30 days back, queried at most 3 days at a time
    page_limit=100,
    polling="date",
    status_filters=(EventType.INVALID, EventType.SOFT_BOUNCE, EventType.DELIVERED),
    # The seed and the legacy zh doc say 3 days, the legacy en table and Data.yaml 30: the
    # stricter one is safe on either platform.
    max_window_days=3,
    id_batch=family.ID_BATCH,         # `emailIds` per call: no documented maximum
)

OPTIONS: dict[str, Option] = {
    **sendcloud.OPTIONS,
    "auth_params": Option(
        default="apiUser",
        choices=tuple(sendcloud.AUTH_PARAMS),
        doc="names of the credential parameters: apiUser/apiKey (authentication page) "
        "or api_user/api_key (overview examples); switch when apiUser answers 40005",
    ),
}

CREDENTIALS = sendcloud.CREDENTIALS

# The international edition's status language is unverified (PROVIDERS.md 3.3): accept the
# Chinese strings and English words, matched case-insensitively with `_`/`-` read as spaces.
STATUSES: dict[str, EventType | None] = {
    **sendcloud.STATUSES,
    "delivered": EventType.DELIVERED,
    "invalid": EventType.INVALID,
    "soft bounce": EventType.SOFT_BOUNCE,
    "request": None,
    "sending": None,
}

# The new docs rename three events (PROVIDERS.md 3.5); both generations are accepted.
EVENTS: dict[str, EventType | None] = {
    **sendcloud.EVENTS,
    "delivered": EventType.DELIVERED,
    "invalid_email": EventType.INVALID,
    "spam-report": EventType.COMPLAINT,
}

EDITION = sendcloud.Edition(
    provider=NAME,
    defaults=DEFAULTS,
    options=OPTIONS,
    path="/api/data/emailStatus",
    statuses=STATUSES,
    events=EVENTS,
)


def build_poll_request(acct: AccountContext, query: PollQuery, now: datetime) -> HttpRequest:
    return sendcloud.poll_request(EDITION, acct, query, now)


def parse_poll_response(
    acct: AccountContext,
    query: PollQuery,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> PollPage:
    return sendcloud.poll_page(EDITION, acct, query, status, headers, body, now)


def verify_webhook(acct: AccountContext, req: WebhookRequest, now: datetime, replay_window_secs: float) -> str:
    return webhooks.check_signature(EDITION, acct, req, now, replay_window_secs)


def split_webhook(req: WebhookRequest) -> list[dict[str, Any]]:
    return webhooks.webhook_records(EDITION, req)


def webhook_observations(acct: AccountContext, record: dict[str, Any]) -> list[Observation]:
    return webhooks.event_observations(EDITION, acct, record)


def replay_key(req: WebhookRequest, record: dict[str, Any]) -> str | None:
    return webhooks.signature_reuse_key(record)
