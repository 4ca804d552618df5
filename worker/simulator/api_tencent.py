"""Tencent Cloud SES `POST /` with `X-TC-Action: GetSendEmailStatus` (seed 004; PROVIDERS.md 5).

Requests must carry a valid TC3-HMAC-SHA256 signature (verified here, on the bytes received)
and a timestamp within 5 minutes of the simulator's clock. Every answer is HTTP 200 with the
`Response` envelope; failures carry `Response.Error`. `RequestDate` is read as a UTC+8 calendar
date (unverified) and must lie within the last 30 days.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import orjson
from aiohttp import web

from worker.model import Provider
from worker.simulator.api_sendcloud import parse_date
from worker.simulator.query import AccountState, Answer, ApiRequest, BadParams, json_answer
from worker.simulator.stream import Message

ACTION, VERSION, SERVICE = "GetSendEmailStatus", "2020-10-02", "ses"
ALGORITHM = "TC3-HMAC-SHA256"
MAX_SKEW_SECS = 300
RETENTION_DAYS = 30
_PARAMS = {"RequestDate", "Offset", "Limit", "MessageId", "ToEmailAddress"}


def tc3_signature(secret_key: str, canonical_request: str, timestamp: int, day: str, service: str = SERVICE) -> str:
    """The TC3-HMAC-SHA256 signature of a canonical request (lowercase hex)."""
    scope = f"{day}/{service}/tc3_request"
    to_sign = "\n".join((ALGORITHM, str(timestamp), scope,
                         hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()))
    key = hmac.new(("TC3" + secret_key).encode("utf-8"), day.encode("utf-8"), hashlib.sha256).digest()
    key = hmac.new(key, service.encode("utf-8"), hashlib.sha256).digest()
    key = hmac.new(key, b"tc3_request", hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def canonical_request(method: str, path: str, query: str, headers: Mapping[str, str],
                      signed_headers: list[str], payload_hash: str) -> str:
    canon = "".join(f"{name}:{headers.get(name, '').strip().lower()}\n" for name in signed_headers)
    return "\n".join((method, path, query, canon, ";".join(signed_headers), payload_hash))


def _error(code: str, message: str) -> Answer:
    return json_answer({"Response": {"Error": {"Code": code, "Message": message}, "RequestId": str(uuid.uuid4())}})


def _bad(code: str, message: str) -> BadParams:
    return BadParams(_error(code, message))


class TencentApi:
    provider = Provider.TENCENT_SES

    def __init__(self, sim: Any) -> None:
        self.sim = sim

    async def read(self, request: web.Request) -> ApiRequest:
        body = await request.read()
        try:
            params = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            params = {}
        if not isinstance(params, dict):
            params = {}
        params = {**params, "__action": request.headers.get("X-TC-Action", "")}
        action = request.headers.get("X-TC-Action")
        if not action:
            raise _bad("MissingParameter", "The request is missing a required parameter `Action`.")
        st, error = self._authenticate(request, body)
        return ApiRequest(params, st, error)

    def _authenticate(self, request: web.Request, body: bytes) -> tuple[AccountState | None, Answer | None]:
        header = request.headers.get("Authorization", "")
        algorithm, _, rest = header.partition(" ")
        fields = dict(part.strip().partition("=")[::2] for part in rest.split(",") if "=" in part)
        credential = fields.get("Credential", "").split("/")
        if algorithm != ALGORITHM or len(credential) != 4 or "SignedHeaders" not in fields or "Signature" not in fields:
            return None, _error("AuthFailure.InvalidAuthorization", "The Authorization header is malformed.")
        secret_id, day, service, terminator = credential
        st = self.sim.lookup(self.provider, secret_id)
        if st is None:
            return None, _error("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
        stamp = request.headers.get("X-TC-Timestamp", "")
        if not stamp.isdigit():
            return st, _error("AuthFailure.InvalidAuthorization", "X-TC-Timestamp is missing or invalid.")
        if abs(int(stamp) - self.sim.clock()) > MAX_SKEW_SECS:
            return st, _error("AuthFailure.SignatureExpire", "Signature expired, the timestamp is more than 5 minutes off.")
        signed = fields["SignedHeaders"].split(";")
        utc_day = datetime.fromtimestamp(int(stamp), tz=UTC).strftime("%Y-%m-%d")
        if (day != utc_day or service != SERVICE or terminator != "tc3_request"
                or "content-type" not in signed or "host" not in signed):
            return st, _error("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
        if request.headers.get("X-TC-Content-SHA256") == "UNSIGNED-PAYLOAD":
            payload_hash = hashlib.sha256(b"UNSIGNED-PAYLOAD").hexdigest()
        else:
            payload_hash = hashlib.sha256(body).hexdigest()
        headers = {k.lower(): v for k, v in request.headers.items()}
        canon = canonical_request(request.method, request.path, request.query_string, headers, signed, payload_hash)
        expected = tc3_signature(st.account.secret_key or "", canon, int(stamp), day)
        if not hmac.compare_digest(expected, fields["Signature"].strip().lower()):
            return st, _error("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
        return st, None

    def query_key(self, params: dict[str, Any]) -> tuple:
        return tuple(sorted((k, orjson.dumps(v).decode()) for k, v in params.items()))

    def throttled(self, st: AccountState, retry_after: float) -> Answer:
        return _error("RequestLimitExceeded", "The number of requests exceeds the frequency limit.")

    def answer(self, st: AccountState, params: dict[str, Any], now_ms: int, request: web.Request) -> Answer:
        action = params.get("__action")
        if action != ACTION:
            raise _bad("InvalidAction", f"The action `{action}` is not found in the API version {VERSION}.")
        if request.headers.get("X-TC-Version") != VERSION:
            raise _bad("NoSuchVersion", "The API version is not valid.")
        region = request.headers.get("X-TC-Region")
        if not region:
            raise _bad("MissingParameter", "The request is missing a required parameter `Region`.")
        if st.account.region and region != st.account.region:
            raise _bad("UnsupportedRegion", f"GetSendEmailStatus does not support the region `{region}`.")
        if not request.headers.get("Content-Type", "").lower().startswith("application/json"):
            raise _bad("InvalidParameter", "The request body must be JSON (Content-Type: application/json).")
        params = {k: v for k, v in params.items() if k != "__action"}
        unknown = sorted(set(params) - _PARAMS)
        if unknown:
            raise _bad("UnknownParameter", f"The parameter `{unknown[0]}` is not recognized.")
        for name in ("RequestDate", "Offset", "Limit"):
            if name not in params:
                raise _bad("MissingParameter", f"The request is missing a required parameter `{name}`.")
        for name in ("Offset", "Limit"):
            if not isinstance(params[name], int) or isinstance(params[name], bool):
                raise _bad("InvalidParameter", f"The parameter `{name}` must be an integer.")
        for name in ("RequestDate", "MessageId", "ToEmailAddress"):
            if name in params and not isinstance(params[name], str):
                raise _bad("InvalidParameter", f"The parameter `{name}` must be a string.")
        day = parse_date(params["RequestDate"])
        if day is None:
            raise _bad("InvalidParameterValue.WrongDate", "Incorrect search date. Make sure the date and its format are valid.")
        today = st.stream.local_date(now_ms)
        if not 0 <= (today - day).days < RETENTION_DAYS:
            raise _bad("FailedOperation.NotSupportDate", "You cannot query email records for this date.")
        limit, offset = params["Limit"], params["Offset"]
        if limit > min(100, st.account.page_limit) or limit < 1:
            raise _bad("FailedOperation.InvalidLimit", "Reached the query limit (100).")
        if offset < 0:
            raise _bad("InvalidParameterValue", "The parameter `Offset` must not be negative.")
        msgs = self._select(st, day, params, now_ms)
        rows = [self._row(st, m, now_ms) for m in msgs[offset: offset + limit]]
        return json_answer({"Response": {"EmailStatusList": rows, "RequestId": str(uuid.uuid4())}}, rows=len(rows))

    @staticmethod
    def _select(st: AccountState, day: date, params: dict[str, Any], now_ms: int) -> list[Message]:
        candidates = None
        if params.get("MessageId"):
            st.stream.advance(now_ms)  # a message sent since the last call is known only after this
            candidates = list(st.stream.by_message_id.get(params["MessageId"], ()))
        msgs = st.select((day,), now_ms, None, None, candidates)
        rcpt = params.get("ToEmailAddress")
        if rcpt:
            msgs = [m for m in msgs if m.recipient.lower() == rcpt.strip().lower()]
        return msgs

    @staticmethod
    def _row(st: AccountState, m: Message, now_ms: int) -> dict[str, Any]:
        entries = m.visible_entries(now_ms)
        main = [e for e in entries if e.kind not in ("complaint", "unsubscribed")][-1]
        unsub = any(e.kind == "unsubscribed" for e in entries)
        complaint = any(e.kind == "complaint" for e in entries)
        send_status, deliver_status = main.tc or (0, 0)
        # A message whose complaint the newer API reports sets `UserComplained` (the SDK's new
        # spelling) and leaves the deprecated `UserComplainted` false; older rows carry only that.
        newer = any(e.kind == "complaint" and e.provider_status == "UserComplained" for e in m.entries)
        flags = {"UserComplainted": False, "UserComplained": complaint} if newer else {"UserComplainted": complaint}
        return {
            "MessageId": m.message_id,
            "ToEmailAddress": m.recipient,
            "FromEmailAddress": f"noreply@{st.account.name}.example.test",
            "SendStatus": send_status,
            "DeliverStatus": deliver_status,
            "DeliverMessage": main.text,
            "RequestTime": m.sent_ms // 1000,
            "DeliverTime": main.at_ms // 1000,
            "UserOpened": unsub or complaint,
            "UserClicked": unsub,
            "UserUnsubscribed": unsub,
            **flags,
        }

