"""Aurora SendCloud (international SendCloud): emailStatus and HMAC-signed webhooks, form or JSON.

Facts and sources: PROVIDERS.md section 3, seed 002. Same engine as SendCloud China
(`sendcloud.Dialect`); the differences are data here: host and `/api/` path, a 3-day query span,
English status words, the new docs' event names, and the snake_case auth parameter variant.
"""

from __future__ import annotations

from worker.model import EventType, Provider
from worker.providers import sendcloud
from worker.providers.base import CHINA_TZ, Option, ProviderDefaults

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

DIALECT = sendcloud.Dialect(
    provider=NAME,
    defaults=DEFAULTS,
    options=OPTIONS,
    path="/api/data/emailStatus",
    statuses=STATUSES,
    events=EVENTS,
)

build_poll_request = DIALECT.build_poll_request
parse_poll_response = DIALECT.parse_poll_response
verify_webhook = DIALECT.verify_webhook
split_webhook = DIALECT.split_webhook
webhook_observations = DIALECT.webhook_observations
