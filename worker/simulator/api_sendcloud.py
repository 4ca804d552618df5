"""SendCloud (China) `/apiv2/data/emailStatus` and Aurora SendCloud `/api/data/emailStatus`.

Seeds 001 and 002; PROVIDERS.md sections 2 and 3. Errors and throttling answer HTTP 200 with the
`result: false` envelope. Error codes the docs do not assign (a bad `status`, a missing window,
a span over the limit) use 40009 / 40007 / 40008: our choice.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any

from aiohttp import web

from worker.model import Provider
from worker.simulator import codes
from worker.simulator.query import AccountState, Answer, ApiRequest, BadParams, json_answer, strip
from worker.simulator.stream import Entry, Message

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SECRET = ("apiUser", "apiKey")


def _error(code: int, message: str) -> BadParams:
    return BadParams(json_answer({"result": False, "statusCode": code, "message": message, "info": {}}))


async def read_params(request: web.Request) -> dict[str, str]:
    """Query and form fields; a repeated key (`status=1&status=4`) is joined with commas."""
    params: dict[str, str] = {}
    sources: list[Any] = [request.query]
    if request.method == "POST":
        sources.append(await request.post())
    for source in sources:
        for key in set(source.keys()):
            values = [str(v) for v in source.getall(key)]
            params[key] = ",".join(values)
    return params


def parse_date(text: str) -> date | None:
    if not _DATE.match(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def int_param(params: dict[str, str], name: str, default: int, lo: int, hi: int | None,
              empty_code: int, bad_code: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if raw.strip() == "":
        raise _error(empty_code, f"{name}为空")
    if not raw.strip().isdigit():
        raise _error(bad_code, f"{name}格式错误")
    value = int(raw)
    if value < lo or (hi is not None and value > hi):
        raise _error(bad_code, f"{name}格式错误")
    return value


class SendCloudApi:
    def __init__(self, sim: Any, provider: Provider) -> None:
        self.sim = sim
        self.provider = provider
        self.aurora = provider is Provider.AURORA_SENDCLOUD
        self.max_span_days = 3 if self.aurora else 30
        self.throttle_message = "interface frequency limited" if self.aurora else "interface frequency is limited"

    async def read(self, request: web.Request) -> ApiRequest:
        params = await read_params(request)
        st = self.sim.lookup(self.provider, params.get("apiUser"))
        if st is None or not params.get("apiKey") or params["apiKey"] != st.account.api_key:
            return ApiRequest(params, st, _error(40005, "apiUser或apiKey错误, 认证失败").answer)
        return ApiRequest(params, st)

    def query_key(self, params: dict[str, str]) -> tuple:
        return strip(params, _SECRET)

    def throttled(self, st: AccountState, retry_after: float) -> Answer:
        # The documented throttle body spells the code key in lower case.
        return json_answer({"result": False, "statuscode": 50000, "message": self.throttle_message, "info": {}})

    def answer(self, st: AccountState, params: dict[str, str], now_ms: int, request: web.Request) -> Answer:
        acct = st.account
        start = int_param(params, "start", 0, 0, None, 40001, 40002)
        limit = int_param(params, "limit", 100, 0, acct.page_limit, 40003, 40004)
        dates = self._dates(st, params, now_ms)
        pred, key = self._filters(st, params)
        candidates = None
        if "emailIds" in params:
            st.stream.advance(now_ms)  # an id sent since the last call is known only after this
            ids = dict.fromkeys(i for i in params["emailIds"].split(";") if i)  # an id asked twice is one row
            candidates = [m for i in ids if (m := st.stream.by_id.get(i)) is not None]
        msgs = st.select(dates, now_ms, key, pred, candidates)
        page = msgs[start: start + limit]
        rows = [self._row(st, m, m.shown(now_ms)) for m in page]
        ok = "success" if self.aurora else "请求成功"
        return json_answer({"result": True, "statusCode": 200, "message": ok,
                            "info": {"total": str(len(msgs)), "voListSize": len(rows), "voList": rows}},
                           rows=len(rows))

    def _dates(self, st: AccountState, params: dict[str, str], now_ms: int) -> tuple[date, ...]:
        today = st.stream.local_date(now_ms)
        if "days" in params:  # `days` wins when both forms are given (our choice)
            raw = params["days"].strip()
            if not raw.isdigit() or not 1 <= int(raw) <= self.max_span_days:
                raise _error(40006, f"days必须是不超过{self.max_span_days}的正整数")
            return tuple(today - timedelta(days=n) for n in range(int(raw)))
        if "startDate" not in params or "endDate" not in params:
            raise _error(40007, "必须指定days, 或startDate和endDate")
        first, last = parse_date(params["startDate"]), parse_date(params["endDate"])
        if first is None:
            raise _error(40007, "startDate格式错误, 应如2013-03-19")
        if last is None:
            raise _error(40008, "endDate格式错误, 应如2013-03-19")
        span = (last - first).days + 1  # inclusive count of days (our reading of "span")
        if span < 1 or span > self.max_span_days:
            raise _error(40008, f"时间跨度不能超过{self.max_span_days}天")
        return tuple(first + timedelta(days=n) for n in range(span))

    def _filters(self, st: AccountState, params: dict[str, str]) -> tuple[Any, tuple | None]:
        kinds = subs = email = None
        if "status" in params:
            values = [v for v in re.split(r"[,;]", params["status"]) if v.strip()]
            if not values or any(v.strip() not in codes.SC_FILTER for v in values):
                raise _error(40009, "status参数错误, 取值为1, 4, 5, 18")
            kinds = frozenset(codes.SC_FILTER[v.strip()] for v in values)
        if "subStatus" in params:
            values = [v for v in params["subStatus"].split(";") if v.strip()]
            if not values or any(not (v.strip().isdigit() and len(v.strip()) == 3) for v in values):
                raise _error(40009, "subStatus参数错误")
            subs = frozenset(v.strip() for v in values)
        if "email" in params:
            if not params["email"].strip():
                raise _error(40011, "email为空")
            if not _EMAIL.match(params["email"].strip()):
                raise _error(40012, "email格式错误")
            email = params["email"].strip().lower()
        no_match = False
        if "labelId" in params:
            if not params["labelId"].strip():
                raise _error(40014, "labelId为空")
            if not params["labelId"].strip().isdigit():
                raise _error(40015, "labelId格式错误")
            no_match = True  # simulated mail carries no label
        elif params.get("labelName", "").strip():
            no_match = True
        if "apiUserList" in params:
            users = params["apiUserList"].split(";")
            if not params["apiUserList"].strip():
                raise _error(40010, "apiUserList为空")
            if any(not u.strip() for u in users):
                raise _error(40016, "apiUserList格式错误")
            no_match = no_match or st.account.api_user not in {u.strip() for u in users}
        if kinds is None and subs is None and email is None and not no_match:
            return None, None

        def pred(m: Message, e: Entry) -> bool:
            if no_match:
                return False
            if kinds is not None and e.kind not in kinds:
                return False
            if subs is not None and e.sub_status not in subs:
                return False
            return email is None or m.recipient.lower() == email

        return pred, (kinds, subs, email, no_match)

    def _row(self, st: AccountState, m: Message, e: Entry) -> dict[str, Any]:
        table = codes.SC_STATUS_EN if self.aurora and st.account.option("status_language") == "en" else codes.SC_STATUS_ZH
        row: dict[str, Any] = {"emailId": m.email_id, "status": table[e.kind]}
        fmt = lambda ms: datetime.fromtimestamp(ms // 1000, tz=codes.CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
        if self.aurora:
            # Aurora's OpenAPI file types subStatus as an integer and names only subStatusDesc.
            row["subStatus"] = int(e.sub_status) if e.sub_status else None
            row["subStatusDesc"] = codes.SC_SUB_DESC_EN[e.sub_status] if e.sub_status else None
        elif e.sub_status:
            # Seed 001 spells the description key two ways; it is subStatDesc on failed rows.
            row["subStatus"] = e.sub_status
            row["subStatDesc"] = codes.SC_SUB_DESC_ZH[e.sub_status]
        else:
            row["subStatus"] = None
            row["subStatusDesc"] = None
        row.update({"apiUser": st.account.api_user, "recipients": m.recipient,
                    "requestTime": fmt(m.sent_ms), "modifiedTime": fmt(e.at_ms), "sendLog": e.text})
        return row
