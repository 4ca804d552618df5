"""EngageLab `GET /v1/email_status` (seed 000; PROVIDERS.md section 1).

Documented: Basic auth, the parameters, `total` as a string, the 401 `{"code": 30000}` envelope
(from another EngageLab endpoint). Not documented, so our assumptions: parameter errors answer
HTTP 400 `{"code": 30001, "message": ...}`, and throttling answers HTTP 429 with `Retry-After`
(seconds) and `{"code": 429, "message": "Too Many Requests"}`.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from datetime import datetime
from typing import Any

from aiohttp import web

from worker.model import Provider
from worker.simulator import codes
from worker.simulator.api_sendcloud import parse_date
from worker.simulator.query import AccountState, Answer, ApiRequest, BadParams, json_answer, strip
from worker.simulator.stream import Entry, Message

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_AUTH_FAILED = json_answer({"code": 30000, "message": "Authentication failed."}, status=401)


def _bad(message: str) -> BadParams:
    return BadParams(json_answer({"code": 30001, "message": message}, status=400))


def _int(params: dict[str, str], name: str, default: int, hi: int | None) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    raw = raw.strip()
    if not raw.isdigit() or (hi is not None and int(raw) > hi):
        raise _bad(f"Invalid parameter: {name}")
    return int(raw)


class EngageLabApi:
    provider = Provider.ENGAGELAB

    def __init__(self, sim: Any) -> None:
        self.sim = sim

    async def read(self, request: web.Request) -> ApiRequest:
        params = {k: ",".join(request.query.getall(k)) for k in set(request.query.keys())}
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic" or not token:
            return ApiRequest(params, None, _AUTH_FAILED)
        try:
            user, sep, key = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return ApiRequest(params, None, _AUTH_FAILED)
        st = self.sim.lookup(self.provider, user)
        if st is None or not sep or key != st.account.api_key:
            return ApiRequest(params, st, _AUTH_FAILED)
        return ApiRequest(params, st)

    def query_key(self, params: dict[str, str]) -> tuple:
        return strip(params, ())

    def throttled(self, st: AccountState, retry_after: float) -> Answer:
        return json_answer({"code": 429, "message": "Too Many Requests"}, status=429,
                           headers=[("Retry-After", str(max(1, math.ceil(retry_after))))])

    def answer(self, st: AccountState, params: dict[str, str], now_ms: int, request: web.Request) -> Answer:
        offset = _int(params, "offset", 0, None)
        limit = _int(params, "limit", 100, st.account.page_limit)
        if "send_date" not in params:
            raise _bad("Missing parameter: send_date")
        day = parse_date(params["send_date"].strip())
        if day is None:
            raise _bad("Invalid parameter: send_date, the format is yyyy-MM-dd")
        pred, key = self._filters(st, params)
        candidates = None
        if "email_ids" in params:
            st.stream.advance(now_ms)  # an id sent since the last call is known only after this
            ids = dict.fromkeys(i for i in params["email_ids"].split(";") if i)  # an id asked twice is one row
            candidates = [m for i in ids if (m := st.stream.by_id.get(i)) is not None]
        msgs = st.select((day,), now_ms, key, pred, candidates)
        rows = [self._row(st, m, m.shown(now_ms)) for m in msgs[offset: offset + limit]]
        return json_answer({"result": rows, "total": str(len(msgs)), "count": len(rows)}, rows=len(rows))

    def _filters(self, st: AccountState, params: dict[str, str]) -> tuple[Any, tuple | None]:
        statuses = subs = email = domain = None
        no_match = False
        if params.get("sub_status", "").strip():
            values = [v.strip() for v in params["sub_status"].split(";") if v.strip()]
            if any(not (v.isdigit() and len(v) == 3) for v in values):
                raise _bad("Invalid parameter: sub_status")
            subs = frozenset(values)  # when given, `status` is ignored (documented)
        elif params.get("status", "").strip():
            value = params["status"].strip()
            if value not in ("1", "4", "5", "18"):
                raise _bad("Invalid parameter: status")
            statuses = frozenset({int(value)})
        if params.get("email", "").strip():
            if not _EMAIL.match(params["email"].strip()):
                raise _bad("Invalid parameter: email")
            email = params["email"].strip().lower()
        if params.get("domain_name", "").strip():
            domain = params["domain_name"].strip().lower()
        if params.get("api_user", "").strip():
            no_match = params["api_user"].strip() != st.account.api_user
        if params.get("label_id", "").strip():
            no_match = True  # simulated mail carries no label
        if statuses is None and subs is None and email is None and domain is None and not no_match:
            return None, None

        def pred(m: Message, e: Entry) -> bool:
            if no_match:
                return False
            if statuses is not None and int(e.provider_status) not in statuses:
                return False
            if subs is not None and e.sub_status not in subs:
                return False
            if email is not None and m.recipient.lower() != email:
                return False
            return domain is None or m.recipient.lower().rpartition("@")[2] == domain

        return pred, (statuses, subs, email, domain, no_match)

    @staticmethod
    def _row(st: AccountState, m: Message, e: Entry) -> dict[str, Any]:
        fmt = lambda ms: datetime.fromtimestamp(ms // 1000, tz=codes.CHINA_TZ).strftime("%Y-%m-%dT%H:%M:%S%z")  # noqa: E731
        status = int(e.provider_status)
        return {
            "email_id": m.email_id,
            "api_user": st.account.api_user,
            "email": m.recipient,
            "request_time": fmt(m.sent_ms),
            "update_time": fmt(e.at_ms),
            "status": status,
            "sub_status": int(e.sub_status) if e.sub_status else None,
            "status_desc": codes.EL_STATUS_DESC[status],
            "sub_status_desc": codes.EL_SUB_DESC[e.sub_status] if e.sub_status else None,
            "response_message": e.text,
        }
