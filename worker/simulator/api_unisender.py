"""UniSender `/{lang}/api/checkEmail` (seed 003; PROVIDERS.md section 4).

Errors answer HTTP 200 with `{"error": ..., "code": ...}`. Statuses are kept for a month: ids
sent more than 30 days ago are reported in `failed_email_id` as unknown, like ids that never
existed; ids of another simulated UniSender account get the documented "doesn't match" reason.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from worker.model import Provider
from worker.simulator.api_sendcloud import read_params
from worker.simulator.query import AccountState, Answer, ApiRequest, BadParams, json_answer, strip

LANGS = frozenset({"ru", "en", "it", "ua"})
MAX_IDS = 500
RETENTION_MS = 30 * 86_400_000


def _error(code: str, message: str) -> Answer:
    return json_answer({"error": message, "code": code})


class UniSenderApi:
    provider = Provider.UNISENDER

    def __init__(self, sim: Any) -> None:
        self.sim = sim

    async def read(self, request: web.Request) -> ApiRequest:
        if request.match_info.get("lang") not in LANGS:
            raise BadParams(Answer(404, b"Not Found", (("Content-Type", "text/plain"),)))
        params = await read_params(request)
        st = self.sim.lookup(self.provider, params.get("api_key"))
        if st is None:
            return ApiRequest(params, None, _error("invalid_api_key", "Invalid API key. Please check your api_key"))
        return ApiRequest(params, st)

    def query_key(self, params: dict[str, str]) -> tuple:
        return strip(params, ("api_key",))

    def throttled(self, st: AccountState, retry_after: float) -> Answer:
        return _error("api_call_limit_exceeded_for_api_key",
                      "The limit of API calls per minute for this API key has been exceeded")

    def answer(self, st: AccountState, params: dict[str, str], now_ms: int, request: web.Request) -> Answer:
        fmt = params.get("format", "json")
        if fmt != "json":
            raise BadParams(_error("invalid_arg", "Unsupported format, use format=json"))
        raw = params.get("email_id", "").strip()
        if not raw:
            raise BadParams(_error("invalid_arg", "Argument email_id is required"))
        ids = list(dict.fromkeys(i.strip() for i in raw.split(",") if i.strip()))
        if len(ids) > MAX_IDS:
            raise BadParams(_error("invalid_arg", f"No more than {MAX_IDS} email_id values are allowed"))
        if any(not i.isdigit() for i in ids):
            raise BadParams(_error("invalid_arg", "email_id must be a comma-separated list of integers"))
        st.stream.advance(now_ms)
        statuses: list[dict[str, str]] = []
        failed: list[dict[str, str]] = []
        for text in ids:
            m = st.stream.by_uni_id.get(int(text))
            if m is None or m.sent_ms > now_ms:
                if self._other_account(st, int(text), now_ms):
                    failed.append({text: "passed email_id doesn't match passed api_key"})
                else:
                    failed.append({text: "email_id does not exist"})
            elif now_ms - m.sent_ms > RETENTION_MS:
                failed.append({text: "email_id does not exist"})
            else:
                statuses.append({"id": text, "status": m.shown(now_ms).provider_status})
        result: dict[str, Any] = {"statuses": statuses}
        if len(ids) == 1 and statuses:  # kept for backward compatibility (documented)
            result["status"] = statuses[0]["status"]
        body: dict[str, Any] = {"result": result}
        if failed:
            body["failed_email_id"] = failed
        return json_answer(body, rows=len(statuses))

    def _other_account(self, st: AccountState, uni_id: int, now_ms: int) -> bool:
        for other in self.sim.accounts.values():
            if other is not st and other.provider is Provider.UNISENDER:
                other.stream.advance(now_ms)
                m = other.stream.by_uni_id.get(uni_id)
                if m is not None and m.sent_ms <= now_ms:
                    return True
        return False
