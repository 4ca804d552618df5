"""The simulator's status APIs over real HTTP on 127.0.0.1: auth, parameters, paging, cache, quota."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from tests.integration.test_simulator_support import T0, FakeClock, accounts, basic, running, tencent_post
from worker.model import EventType, Provider
from worker.providers import get_module
from worker.providers.base import AccountContext, PollPage, PollQuery
from worker.simulator import SimAccount, SimConfig, Simulator

pytestmark = pytest.mark.integration

EL_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+0800$")
SC_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


async def get_json(session, url, **kw):
    async with session.get(url, **kw) as resp:
        return resp.status, dict(resp.headers), orjson.loads(await resp.read())


async def post_json(session, url, **kw):
    async with session.post(url, **kw) as resp:
        return resp.status, dict(resp.headers), orjson.loads(await resp.read())


def yesterday(sim, name):
    return (sim.local_date(name) - timedelta(days=1)).isoformat()


# -- EngageLab ----------------------------------------------------------------------------------


async def test_engagelab_auth_failures_answer_401_code_30000():
    async with running() as (sim, base, s):
        url = base + "/v1/email_status"
        for headers in ({}, basic("el_user", "wrong"), basic("nobody", "el_key"), {"Authorization": "Basic !!"}):
            status, _, body = await get_json(s, url, params={"send_date": "2024-05-09"}, headers=headers)
            assert (status, body) == (401, {"code": 30000, "message": "Authentication failed."})
        assert [c.outcome for c in sim.calls] == ["auth_error"] * 4
        assert sim.calls[1].account == "el" and sim.calls[2].account is None
        assert sim.stats("el")["auth_error"] == 1


async def test_engagelab_parameter_validation():
    async with running() as (sim, base, s):
        url, auth = base + "/v1/email_status", basic("el_user", "el_key")
        for params in ({}, {"send_date": "2024/05/09"}, {"send_date": "2024-05-09", "limit": "101"},
                       {"send_date": "2024-05-09", "offset": "-1"}, {"send_date": "2024-05-09", "status": "2"}):
            status, _, body = await get_json(s, url, params=params, headers=auth)
            assert status == 400 and body["code"] == 30001, params
        assert {c.outcome for c in sim.calls} == {"bad_request"}


async def test_engagelab_pages_cover_the_day_once_with_string_total():
    async with running() as (sim, base, s):
        day = yesterday(sim, "el")
        seen, offset = [], 0
        while True:
            status, _, body = await get_json(s, base + "/v1/email_status", headers=basic("el_user", "el_key"),
                                             params={"send_date": day, "offset": str(offset), "limit": "40"})
            assert status == 200 and isinstance(body["total"], str) and body["count"] == len(body["result"])
            seen += body["result"]
            offset += body["count"]
            if offset >= int(body["total"]):
                break
        expected = [m for m in sim.messages("el") if m.local_date.isoformat() == day]
        assert [r["email_id"] for r in seen] == [m.email_id for m in expected] and len(seen) == 150
        for row in seen:
            assert EL_TIME.match(row["request_time"]) and EL_TIME.match(row["update_time"])
            assert row["request_time"][:10] == day
            vis = sim.visible_status("el", row["email_id"])
            # the provider's class (4 invalid, 5 soft bounce); the truth's type can differ (a 409
            # without recipient evidence is a final soft bounce)
            assert row["status"] == int(vis.provider_status)
            assert vis.type in {1: {EventType.DELIVERED}, 4: {EventType.INVALID, EventType.SOFT_BOUNCE},
                                5: {EventType.SOFT_BOUNCE}}[row["status"]]
            assert (row["sub_status"] is None) == (vis.type is EventType.DELIVERED)


async def test_engagelab_filters():
    async with running() as (sim, base, s):
        day, auth, url = yesterday(sim, "el"), basic("el_user", "el_key"), base + "/v1/email_status"
        _, _, invalid = await get_json(s, url, headers=auth, params={"send_date": day, "status": "4"})
        assert invalid["result"] and {r["status"] for r in invalid["result"]} == {4}
        subs = sorted({str(r["sub_status"]) for r in invalid["result"]})[:2]
        _, _, by_sub = await get_json(s, url, headers=auth,
                                      params={"send_date": day, "status": "1", "sub_status": ";".join(subs)})
        assert by_sub["result"] and {str(r["sub_status"]) for r in by_sub["result"]} == set(subs)  # status ignored
        ids = [r["email_id"] for r in invalid["result"][:3]]
        _, _, by_ids = await get_json(s, url, headers=auth, params={"send_date": day, "email_ids": ";".join(ids)})
        assert [r["email_id"] for r in by_ids["result"]] == ids and by_ids["total"] == "3"
        mixed = next(r for r in invalid["result"] if r["email"] != r["email"].lower()) if any(
            r["email"] != r["email"].lower() for r in invalid["result"]) else invalid["result"][0]
        _, _, by_email = await get_json(s, url, headers=auth, params={"send_date": day, "email": mixed["email"].lower()})
        assert mixed["email_id"] in {r["email_id"] for r in by_email["result"]}


async def test_engagelab_cache_serves_the_stale_body_then_fresh_and_counts_every_call():
    clock = FakeClock()
    accts = accounts(live_per_sec=1.0, live_max=500, cache_ttl_secs=600)
    async with running(accts, clock=clock) as (sim, base, s):
        today = sim.local_date("el").isoformat()
        params, auth = {"send_date": today, "offset": "0", "limit": "100"}, basic("el_user", "el_key")
        _, _, first = await get_json(s, base + "/v1/email_status", headers=auth, params=params)
        clock.advance(300)  # new live mail and status changes meanwhile
        _, _, again = await get_json(s, base + "/v1/email_status", headers=auth, params=params)
        assert again == first
        clock.advance(301)
        _, _, fresh = await get_json(s, base + "/v1/email_status", headers=auth, params=params)
        assert int(fresh["total"]) > int(first["total"])
        assert [(c.outcome, c.cached) for c in sim.calls] == [("ok", False), ("ok", True), ("ok", False)]
        assert sim.stats("el")["calls"] == 3 and sim.stats("el")["cached"] == 1


async def test_engagelab_throttles_with_429_and_retry_after():
    clock = FakeClock()
    async with running(accounts(quota_per_minute=3, quota_window_secs=10), clock=clock) as (sim, base, s):
        url, auth = base + "/v1/email_status", basic("el_user", "el_key")
        statuses = []
        for i in range(5):
            status, headers, body = await get_json(s, url, headers=auth, params={"send_date": "2024-05-09"})
            statuses.append(status)
            clock.advance(1)
        assert statuses == [200, 200, 200, 429, 429]
        assert body == {"code": 429, "message": "Too Many Requests"} and headers["Retry-After"] == "6"
        clock.advance(5)  # the first call leaves the 10 s window
        assert (await get_json(s, url, headers=auth, params={"send_date": "2024-05-09"}))[0] == 200
        assert [c.outcome for c in sim.calls].count("throttled") == 2


# -- SendCloud and Aurora -----------------------------------------------------------------------


async def test_sendcloud_auth_failure_is_statuscode_40005():
    async with running() as (sim, base, s):
        for data in ({"apiUser": "sc_user", "apiKey": "nope"}, {"apiKey": "sc_key"}, {"apiUser": "x", "apiKey": "sc_key"}):
            _, _, body = await post_json(s, base + "/apiv2/data/emailStatus", data={**data, "days": "1"})
            assert body["result"] is False and body["statusCode"] == 40005 and body["info"] == {}
        # Aurora's path does not know SendCloud China's users: accounts are told apart.
        _, _, body = await get_json(s, base + "/api/data/emailStatus",
                                    params={"apiUser": "sc_user", "apiKey": "sc_key", "days": "1"})
        assert body["statusCode"] == 40005


@pytest.mark.parametrize("params, code", [
    ({}, 40007),
    ({"days": "0"}, 40006),
    ({"days": "31"}, 40006),
    ({"startDate": "2024-05-01"}, 40007),
    ({"startDate": "2024/05/01", "endDate": "2024-05-02"}, 40007),
    ({"startDate": "2024-05-01", "endDate": "2024-5-2"}, 40008),
    ({"startDate": "2024-04-01", "endDate": "2024-05-01"}, 40008),  # 31 days
    ({"days": "1", "limit": "101"}, 40004),
    ({"days": "1", "limit": ""}, 40003),
    ({"days": "1", "start": "x"}, 40002),
    ({"days": "1", "email": "not-an-address"}, 40012),
    ({"days": "1", "status": "2"}, 40009),
])
async def test_sendcloud_parameter_validation(params, code):
    async with running() as (sim, base, s):
        _, _, body = await post_json(s, base + "/apiv2/data/emailStatus",
                                     data={"apiUser": "sc_user", "apiKey": "sc_key", **params})
        assert body["result"] is False and body["statusCode"] == code
        assert sim.calls[-1].outcome == "bad_request"


async def test_sendcloud_windows_paging_and_formats():
    async with running() as (sim, base, s):
        creds = {"apiUser": "sc_user", "apiKey": "sc_key"}
        day = yesterday(sim, "sc")
        rows, start = [], 0
        while True:
            _, _, body = await get_json(s, base + "/apiv2/data/emailStatus",
                                        params={**creds, "startDate": day, "endDate": day, "start": start, "limit": 33})
            info = body["info"]
            assert body["statusCode"] == 200 and isinstance(info["total"], str) and info["voListSize"] == len(info["voList"])
            rows += info["voList"]
            start += info["voListSize"]
            if start >= int(info["total"]):
                break
        assert len(rows) == 150 and len({r["emailId"] for r in rows}) == 150
        for r in rows:
            assert SC_TIME.match(r["requestTime"]) and r["requestTime"].startswith(day)
            assert r["status"] in ("送达", "无效邮件", "软退信")
            assert ("subStatDesc" in r) == (r["subStatus"] is not None)  # the seed's two spellings
            assert r["subStatus"] is None or isinstance(r["subStatus"], str)
        # days=3 is today and the two days before: every message of the stream.
        _, _, body = await post_json(s, base + "/apiv2/data/emailStatus", data={**creds, "days": "3", "limit": "1"})
        assert int(body["info"]["total"]) == len(sim.messages("sc"))
        # A repeated `status` key means both (the doc's `status=1,status=4` example).
        _, _, both = await get_json(s, base + "/apiv2/data/emailStatus?status=4&status=5",
                                    params={**creds, "startDate": day, "endDate": day})
        assert {r["status"] for r in both["info"]["voList"]} <= {"无效邮件", "软退信"}
        assert int(both["info"]["total"]) == sum(r["status"] != "送达" for r in rows)


async def test_aurora_three_day_span_integer_substatus_and_throttle_text():
    clock = FakeClock()
    accts = accounts(quota_per_minute=2, quota_window_secs=5)
    async with running(accts, clock=clock) as (sim, base, s):
        creds = {"apiUser": "au_user", "apiKey": "au_key"}
        _, _, body = await get_json(s, base + "/api/data/emailStatus", params={**creds, "days": "4"})
        assert body["statusCode"] == 40006
        _, _, body = await get_json(s, base + "/api/data/emailStatus",
                                    params={**creds, "startDate": "2024-05-08", "endDate": "2024-05-10", "status": "4"})
        assert body["statusCode"] == 200 and body["info"]["voList"]
        assert all(isinstance(r["subStatus"], int) and 401 <= r["subStatus"] <= 409 for r in body["info"]["voList"])
        _, _, body = await get_json(s, base + "/api/data/emailStatus", params={**creds, "days": "1"})
        assert body == {"result": False, "statuscode": 50000, "message": "interface frequency limited", "info": {}}
        clock.advance(5)
        _, _, body = await get_json(s, base + "/api/data/emailStatus", params={**creds, "days": "1"})
        assert body["statusCode"] == 200


async def test_sendcloud_throttle_body_and_runtime_quota():
    clock = FakeClock()
    async with running(accounts(quota_per_minute=1000), clock=clock) as (sim, base, s):
        sim.set_quota("sc", 1)
        data = {"apiUser": "sc_user", "apiKey": "sc_key", "days": "1"}
        await post_json(s, base + "/apiv2/data/emailStatus", data=data)
        _, _, body = await post_json(s, base + "/apiv2/data/emailStatus", data=data)
        assert body == {"result": False, "statuscode": 50000, "message": "interface frequency is limited", "info": {}}
        assert sim.stats("sc")["throttled"] == 1


async def test_sendcloud_cache_keys_ignore_credentials_order_and_method():
    clock = FakeClock()
    async with running(accounts(live_per_sec=2.0, live_max=1000), clock=clock) as (sim, base, s):
        url = base + "/apiv2/data/emailStatus"
        _, _, a = await post_json(s, url, data={"apiUser": "sc_user", "apiKey": "sc_key", "days": "1", "limit": "100"})
        clock.advance(120)
        _, _, b = await get_json(s, url, params={"limit": "100", "days": "1", "apiKey": "sc_key", "apiUser": "sc_user"})
        assert a == b  # the same parameter set: the cached (stale) body
        _, _, c = await get_json(s, url, params={"limit": "99", "days": "1", "apiKey": "sc_key", "apiUser": "sc_user"})
        assert int(c["info"]["total"]) > int(a["info"]["total"])
        assert [c.cached for c in sim.calls] == [False, True, False]
        assert "sc_key" not in repr(sim.calls)


# -- UniSender ----------------------------------------------------------------------------------


async def test_unisender_check_email():
    async with running() as (sim, base, s):
        url = base + "/en/api/checkEmail"
        _, _, body = await post_json(s, url, data={"api_key": "bad", "email_id": "1"})
        assert body["code"] == "invalid_api_key" and "error" in body and "result" not in body
        for data in ({}, {"email_id": ""}, {"email_id": "12,abc"}, {"email_id": ",".join(map(str, range(501)))},
                     {"email_id": "1", "format": "xml"}):
            _, _, body = await post_json(s, url, data={"api_key": "uni_key", **data})
            assert body["code"] == "invalid_arg", data
        sent = sim.sent_messages("uni")
        ids = [m.email_id for m in sent[:3]]
        _, _, body = await post_json(s, url, data={"format": "json", "api_key": "uni_key",
                                                   "email_id": ",".join([*ids, "23"])})
        assert [st["id"] for st in body["result"]["statuses"]] == ids
        for st in body["result"]["statuses"]:
            assert st["status"] == sim.visible_status("uni", st["id"]).provider_status
        assert "status" not in body["result"]
        assert body["failed_email_id"] == [{"23": "email_id does not exist"}]
        _, _, one = await get_json(s, url, params={"format": "json", "api_key": "uni_key", "email_id": ids[0]})
        assert one["result"]["status"] == one["result"]["statuses"][0]["status"]
        assert "failed_email_id" not in one
        async with s.get(base + "/xx/api/checkEmail", params={"api_key": "uni_key", "email_id": ids[0]}) as resp:
            assert resp.status == 404


async def test_unisender_retention_and_foreign_ids():
    accts = (SimAccount(provider=Provider.UNISENDER, name="uni", api_key="k1", history_days=32, history_per_day=3,
                        live_per_sec=0),
             SimAccount(provider=Provider.UNISENDER, name="uni2", api_key="k2", history_days=1, history_per_day=3,
                        live_per_sec=0))
    clock = FakeClock()
    async with running(accts, clock=clock) as (sim, base, s):
        old = [m for m in sim.messages("uni") if clock() * 1000 - m.sent_ms > 30 * 86_400_000]
        recent = [m for m in sim.messages("uni") if clock() * 1000 - m.sent_ms < 29 * 86_400_000]
        foreign = sim.messages("uni2")[0]
        assert old and recent
        ids = [old[0].email_id, recent[0].email_id, foreign.email_id]
        _, _, body = await post_json(s, base + "/ru/api/checkEmail", data={"api_key": "k1", "email_id": ",".join(ids)})
        assert [st["id"] for st in body["result"]["statuses"]] == [recent[0].email_id]
        assert body["failed_email_id"] == [{old[0].email_id: "email_id does not exist"},
                                           {foreign.email_id: "passed email_id doesn't match passed api_key"}]


async def test_unisender_throttle():
    clock = FakeClock()
    async with running(accounts(quota_per_minute=2, quota_window_secs=3), clock=clock) as (sim, base, s):
        data = {"api_key": "uni_key", "email_id": sim.sent_messages("uni")[0].email_id}
        bodies = [(await post_json(s, base + "/en/api/checkEmail", data=data))[2] for _ in range(3)]
        assert "result" in bodies[0] and "result" in bodies[1]
        assert bodies[2]["code"] == "api_call_limit_exceeded_for_api_key" and bodies[2]["error"]
        clock.advance(3)
        assert "result" in (await post_json(s, base + "/en/api/checkEmail", data=data))[2]


# -- Tencent ------------------------------------------------------------------------------------


async def test_tencent_signature_checks():
    clock = FakeClock()
    async with running(clock=clock) as (sim, base, s):
        params = {"RequestDate": "2024-05-09", "Offset": 0, "Limit": 10}
        ok = await tencent_post(s, base, params, clock)
        assert len(ok["Response"]["EmailStatusList"]) == 10 and ok["Response"]["RequestId"]
        bad = await tencent_post(s, base, params, clock, secret_key="wrong")
        assert bad["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure"
        unknown = await tencent_post(s, base, params, clock, secret_id="AKIDnobody")
        assert unknown["Response"]["Error"]["Code"] == "AuthFailure.SecretIdNotFound"
        clock.advance(301)  # the request is signed 301 s before the simulator's now: expired
        body = orjson.dumps(params)
        from tests.integration.test_simulator_support import tencent_headers
        headers = tencent_headers(base, body, timestamp=int(clock()) - 301)
        async with s.post(base + "/", data=body, headers=headers) as resp:
            expired = orjson.loads(await resp.read())
        assert expired["Response"]["Error"]["Code"] == "AuthFailure.SignatureExpire"
        # The body is signed: tampering with it after signing breaks the signature.
        headers = tencent_headers(base, body, timestamp=int(clock()))
        async with s.post(base + "/", data=body.replace(b"10", b"11"), headers=headers) as resp:
            tampered = orjson.loads(await resp.read())
        assert tampered["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure"
        assert [c.outcome for c in sim.calls] == ["ok"] + ["auth_error"] * 4


@pytest.mark.parametrize("params, code", [
    ({"Offset": 0, "Limit": 10}, "MissingParameter"),
    ({"RequestDate": "2024-05-09", "Limit": 10}, "MissingParameter"),
    ({"RequestDate": "2024-05-09", "Offset": 0, "Limit": 101}, "FailedOperation.InvalidLimit"),
    ({"RequestDate": "2024-05-09", "Offset": "0", "Limit": 10}, "InvalidParameter"),
    ({"RequestDate": "20240509", "Offset": 0, "Limit": 10}, "InvalidParameterValue.WrongDate"),
    ({"RequestDate": "2024-04-10", "Offset": 0, "Limit": 10}, "FailedOperation.NotSupportDate"),  # 30 days back
    ({"RequestDate": "2024-05-11", "Offset": 0, "Limit": 10}, "FailedOperation.NotSupportDate"),  # the future
    ({"RequestDate": "2024-05-09", "Offset": 0, "Limit": 10, "Status": 1}, "UnknownParameter"),
])
async def test_tencent_parameter_validation(params, code):
    clock = FakeClock()
    async with running(clock=clock) as (sim, base, s):
        body = await tencent_post(s, base, params, clock)
        assert body["Response"]["Error"]["Code"] == code
        assert sim.calls[-1].outcome == "bad_request"


async def test_tencent_action_version_region():
    clock = FakeClock()
    async with running(clock=clock) as (sim, base, s):
        params = {"RequestDate": "2024-05-09", "Offset": 0, "Limit": 10}
        assert (await tencent_post(s, base, params, clock, action="SendEmail"))["Response"]["Error"]["Code"] == "InvalidAction"
        assert (await tencent_post(s, base, params, clock, region="ap-guangzhou"))["Response"]["Error"]["Code"] == "UnsupportedRegion"


async def test_tencent_pages_without_total_and_filters():
    clock = FakeClock()
    async with running(clock=clock) as (sim, base, s):
        day = yesterday(sim, "tc")
        rows, offset = [], 0
        while True:
            resp = await tencent_post(s, base, {"RequestDate": day, "Offset": offset, "Limit": 100}, clock)
            page = resp["Response"]["EmailStatusList"]
            assert "TotalCount" not in resp["Response"]
            rows += page
            offset += len(page)
            if len(page) < 100:
                break
        expected = [m for m in sim.messages("tc") if m.local_date.isoformat() == day]
        assert [f"{r['MessageId']}:{r['ToEmailAddress'].lower()}" for r in rows] == [m.email_id for m in expected]
        for r in rows:
            assert isinstance(r["RequestTime"], int) and isinstance(r["UserComplainted"], bool)
            vis = sim.visible_status("tc", f"{r['MessageId']}:{r['ToEmailAddress'].lower()}")
            if EventType.COMPLAINT in vis.types:  # either spelling (the newer API leaves the old one false)
                assert (r["UserComplainted"] or r.get("UserComplained")) and r["DeliverStatus"] == 1
        target = rows[5]
        by_mid = await tencent_post(s, base, {"RequestDate": day, "Offset": 0, "Limit": 100,
                                              "MessageId": target["MessageId"]}, clock)
        assert {r["MessageId"] for r in by_mid["Response"]["EmailStatusList"]} == {target["MessageId"]}
        by_rcpt = await tencent_post(s, base, {"RequestDate": day, "Offset": 0, "Limit": 100,
                                               "ToEmailAddress": target["ToEmailAddress"].upper()}, clock)
        assert target in by_rcpt["Response"]["EmailStatusList"]


async def test_tencent_throttle_is_request_limit_exceeded():
    clock = FakeClock()
    async with running(accounts(quota_per_minute=20, quota_window_secs=1), clock=clock) as (sim, base, s):
        codes = []
        for _ in range(22):
            body = await tencent_post(s, base, {"RequestDate": "2024-05-09", "Offset": 0, "Limit": 1}, clock)
            codes.append(body["Response"].get("Error", {}).get("Code"))
        assert codes == [None] * 20 + ["RequestLimitExceeded"] * 2
        clock.advance(1)
        body = await tencent_post(s, base, {"RequestDate": "2024-05-09", "Offset": 0, "Limit": 1}, clock)
        assert "Error" not in body["Response"]


# -- queries by email id (gap-driven polling) -------------------------------------------------------
# The requests come from the provider modules' build_poll_request and the answers go through their
# parse_poll_response; the simulator's stream says which rows the asked ids have.

ID_ACCOUNTS = ["el", "sc", "au", "tc"]


def _context(sim, name: str, base: str) -> AccountContext:
    a = sim.accounts[name].account
    return AccountContext(name=name, provider=a.provider, base_url=base, api_user=a.api_user, api_key=a.api_key,
                          secret_id=a.secret_id, secret_key=a.secret_key, region=a.region)


async def _ask(session, acct: AccountContext, query: PollQuery, clock) -> PollPage:
    module = get_module(acct.provider)
    now = datetime.fromtimestamp(clock(), tz=timezone.utc)
    req = module.build_poll_request(acct, query, now)
    async with session.request(req.method, req.url, params=list(req.params) or None, headers=dict(req.headers),
                               data=req.body) as resp:
        status, headers, body = resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.read()
    return module.parse_poll_response(acct, query, status, headers, body, now)


def _asked_and_expected(sim, name: str, day) -> tuple[tuple[str, ...], list[str]]:
    """Ids to ask for on `day` and the email ids of the rows that answer them, in stream order."""
    msgs = [m for m in sim.messages(name) if m.local_date == day]
    if name == "tc":  # one email id names its MessageId: every recipient of that message answers
        by_mid: dict[str, list[str]] = {}
        for m in msgs:
            by_mid.setdefault(m.message_id, []).append(m.email_id)
        recipients = next(ids for ids in by_mid.values() if len(ids) > 1)
        return (recipients[-1],), recipients
    asked = tuple(m.email_id for m in msgs[::7][:get_module(sim.accounts[name].account.provider).DEFAULTS.id_batch])
    return asked, list(asked)


@pytest.mark.parametrize("name", ID_ACCOUNTS)
async def test_an_id_query_answers_the_rows_of_those_ids_only(name):
    clock = FakeClock()
    async with running(clock=clock) as (sim, base, s):
        acct, day = _context(sim, name, base), sim.local_date(name) - timedelta(days=1)
        asked, expected = _asked_and_expected(sim, name, day)
        assert len(asked) == get_module(acct.provider).DEFAULTS.id_batch  # a full batch
        page = await _ask(s, acct, PollQuery(send_date=day, email_ids=asked, limit=100), clock)
        assert [o.email_id for o in page.observations if o.provider_status != "UserUnsubscribed"
                and o.type is not EventType.COMPLAINT] == expected
        assert (page.rows, page.next_offset, page.rejected) == (len(expected), None, ())
        # Paging still applies: one row a page, in the same order, until the last.
        seen, offset = [], 0
        while offset is not None:
            page = await _ask(s, acct, PollQuery(send_date=day, email_ids=asked, offset=offset, limit=1), clock)
            assert page.rows <= 1
            seen += [o.email_id for o in page.observations][:1]
            offset = page.next_offset
        assert seen == expected


@pytest.mark.parametrize("name", ID_ACCOUNTS)
async def test_an_id_query_keeps_to_its_send_date(name):
    clock = FakeClock()
    async with running(clock=clock) as (sim, base, s):
        acct, today = _context(sim, name, base), sim.local_date(name)
        asked, _ = _asked_and_expected(sim, name, today - timedelta(days=1))
        page = await _ask(s, acct, PollQuery(send_date=today - timedelta(days=2), email_ids=asked), clock)
        assert (page.rows, page.observations) == (0, ())


@pytest.mark.parametrize("name", ID_ACCOUNTS)
async def test_an_id_query_finds_a_message_sent_since_the_last_call(name):
    """The simulator generates live mail lazily: an id query must see mail sent since the last call
    (a twin simulator, never called, says which ids the live stream holds)."""
    accts = accounts(live_per_sec=1.0, live_max=100)
    twin = Simulator(SimConfig(seed=7, accounts=accts, time_scale=100.0, clock=FakeClock()))
    clock = FakeClock()
    async with running(accts, clock=clock) as (sim, base, s):
        clock.advance(30)
        live = [m for m in twin.messages(name, until=clock()) if m.sent_ms > T0 * 1000]
        assert live
        target = live[-1]
        page = await _ask(s, _context(sim, name, base),
                          PollQuery(send_date=target.local_date, email_ids=(target.email_id,)), clock)
        assert target.email_id in {o.email_id for o in page.observations}


async def test_an_id_asked_twice_is_one_row():
    clock = FakeClock()
    async with running(clock=clock) as (sim, base, s):
        day = yesterday(sim, "sc")
        one = next(m.email_id for m in sim.messages("sc") if m.local_date.isoformat() == day)
        _, _, body = await post_json(s, base + "/apiv2/data/emailStatus", data={
            "apiUser": "sc_user", "apiKey": "sc_key", "startDate": day, "endDate": day, "emailIds": f"{one};{one}"})
        assert [r["emailId"] for r in body["info"]["voList"]] == [one] and body["info"]["total"] == "1"


# -- faults and the call log ----------------------------------------------------------------------


async def test_faults_5xx_malformed_timeout_slow_are_logged():
    import asyncio
    import time

    from worker.simulator import Faults

    async with running() as (sim, base, s):
        url, auth, params = base + "/v1/email_status", basic("el_user", "el_key"), {"send_date": "2024-05-09"}
        sim.set_faults("el", Faults(error_5xx_rate=1.0))
        async with s.get(url, headers=auth, params=params) as resp:
            assert resp.status in (500, 502, 503) and "html" in resp.headers["Content-Type"]
        sim.set_faults("el", Faults(malformed_rate=1.0))
        async with s.get(url, headers=auth, params=params) as resp:
            assert resp.status == 200
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(await resp.read())
        sim.set_faults("el", Faults(timeout_rate=1.0, timeout_secs=5))
        import aiohttp

        with pytest.raises(asyncio.TimeoutError):
            async with s.get(url, headers=auth, params=params, timeout=aiohttp.ClientTimeout(total=0.3)):
                pass
        sim.set_faults("el", Faults(slow_rate=1.0, slow_secs=0.3))
        t = time.monotonic()
        status, _, body = await get_json(s, url, headers=auth, params={**params, "limit": "5"})
        assert status == 200 and body["count"] == 5 and time.monotonic() - t >= 0.3
        sim.set_faults("el", Faults(error_5xx_rate=0.5, seed=1))
        outcomes = []
        for _ in range(40):
            async with s.get(url, headers=auth, params=params) as resp:
                outcomes.append(resp.status)
        assert 8 < outcomes.count(200) < 32
        log = [(c.outcome, c.fault) for c in sim.calls[:4]]
        assert log == [("fault", "5xx"), ("fault", "malformed"), ("fault", "timeout"), ("ok", "slow")]
        assert sim.stats("el")["fault"] == 3 + outcomes.count(200) * 0 + (40 - outcomes.count(200))


async def test_cached_answers_count_against_the_quota():
    clock = FakeClock()
    async with running(accounts(quota_per_minute=2, quota_window_secs=60), clock=clock) as (sim, base, s):
        data = {"apiUser": "sc_user", "apiKey": "sc_key", "days": "1"}
        bodies = [(await post_json(s, base + "/apiv2/data/emailStatus", data=data))[2] for _ in range(3)]
        assert bodies[0] == bodies[1] and bodies[2]["statuscode"] == 50000
        assert [(c.outcome, c.cached) for c in sim.calls] == [("ok", False), ("ok", True), ("throttled", False)]


async def test_ground_truth_api():
    clock = FakeClock()
    async with running(accounts(live_per_sec=2.0, live_max=50), clock=clock) as (sim, base, s):
        t0 = clock()
        before = sim.changes("sc")
        assert all(c.occurred_at.timestamp() <= t0 and c.occurred_at.microsecond == 0 for c in before)
        assert [c.occurred_at for c in before] == sorted(c.occurred_at for c in before)
        clock.advance(600)
        later = sim.changes("sc")
        assert later[: len(before)] == before and len(later) > len(before)
        assert sim.changes("sc", until=t0) == before
        assert sim.changes("sc", since=t0) == later[len(before):]
        assert len(sim.sent_messages("sc")) == len(sim.sent_messages("sc", until=t0 - 1)) + 50  # live_max
        assert all(c.sent_at <= c.occurred_at for c in later)
        m = next(m for m in reversed(sim.messages("sc")) if m.entries[1].at_ms > m.sent_ms)
        assert sim.visible_status("sc", m.email_id, at=m.sent_ms / 1000 - 1) is None
        first = sim.visible_status("sc", m.email_id, at=m.sent_ms / 1000)
        assert first.type is None and first.provider_status == "请求中"
        assert sim.visible_status("sc", "no-such-id") is None
