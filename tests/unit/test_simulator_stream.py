"""The simulator's pure parts: the seeded stream, its timelines and ground truth, quota, cache, TC3."""

from __future__ import annotations

import hashlib
import re
import statistics
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import pytest

from worker.model import EventType, Provider
from worker.simulator import codes
from worker.simulator.api_tencent import canonical_request, tc3_signature
from worker.simulator.quota import CachedAnswer, ResultCache, SlidingWindowQuota
from worker.simulator.simconfig import DEFAULT_CACHE_TTL_SECS, DEFAULT_QUOTA_PER_MINUTE, SimAccount
from worker.simulator.stream import AccountStream

# 2024-05-10 11:00 UTC = 19:00 in China, 14:00 in Moscow.
ANCHOR_MS = int(datetime(2024, 5, 10, 11, 0, tzinfo=timezone.utc).timestamp()) * 1000
CN = timezone(timedelta(hours=8))


def stream(provider: Provider = Provider.SENDCLOUD, *, seed: int = 3, scale: float = 1.0, **kw) -> AccountStream:
    opts = {"history_days": 2, "history_per_day": 400, "live_per_sec": 5.0, "live_max": 200, **kw}
    acct = SimAccount(provider=provider, name=f"{provider.value}-a", api_user="u", api_key="k", **opts)
    return AccountStream(acct, seed, ANCHOR_MS, scale)


def fingerprint(s: AccountStream) -> list[tuple]:
    return [(m.email_id, m.recipient, m.sent_ms, tuple((e.at_ms, e.kind, e.provider_status, e.sub_status, e.text,
                                                           e.truth, e.hook) for e in m.entries)) for m in s.messages]


@pytest.mark.parametrize("provider", list(Provider))
def test_same_seed_same_stream_other_seed_other_stream(provider):
    a, b, c = stream(provider), stream(provider), stream(provider, seed=4)
    for s in (a, b, c):
        s.advance(ANCHOR_MS + 60_000)
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(c)


def test_live_stream_does_not_depend_on_how_often_it_is_advanced():
    a, b = stream(), stream()
    a.advance(ANCHOR_MS + 40_000)
    for step in range(0, 40_001, 700):
        b.advance(ANCHOR_MS + step)
    b.advance(ANCHOR_MS + 40_000)
    assert fingerprint(a) == fingerprint(b)
    assert a.live_count > 150


def test_live_stream_rate_and_bound():
    s = stream(live_per_sec=5.0, live_max=200)
    s.advance(ANCHOR_MS + 10_000)
    assert 45 <= s.live_count <= 55  # 5 per second
    s.advance(ANCHOR_MS + 3_600_000)
    assert s.live_count == 200  # live_max stops it
    live = s.messages[-200:]
    assert all(ANCHOR_MS <= m.sent_ms for m in live)
    assert [m.sent_ms for m in live] == sorted(m.sent_ms for m in live)


@pytest.mark.parametrize("provider", [Provider.SENDCLOUD, Provider.ENGAGELAB, Provider.TENCENT_SES])
def test_history_days_are_provider_local_days(provider):
    s = stream(provider)
    today = date(2024, 5, 10)  # 19:00 in UTC+8
    assert sorted(s.days) == [today - timedelta(days=2), today - timedelta(days=1), today]
    for day, msgs in s.days.items():
        for m in msgs:
            assert datetime.fromtimestamp(m.sent_ms / 1000, tz=CN).date() == day == m.local_date
        if day != today:
            assert len(msgs) == 400
    # Today's history is the part of the day before the anchor: 19 of 24 hours.
    assert len(s.days[today]) == round(400 * 19 / 24)
    assert max(m.sent_ms for m in s.days[today]) < ANCHOR_MS


def test_unisender_days_are_moscow_days():
    s = stream(Provider.UNISENDER)
    msk = timezone(timedelta(hours=3))
    for day, msgs in s.days.items():
        assert all(datetime.fromtimestamp(m.sent_ms / 1000, tz=msk).date() == day for m in msgs)
    assert len(s.days[date(2024, 5, 10)]) == round(400 * 14 / 24)


@pytest.mark.parametrize("provider", list(Provider))
def test_timeline_shape(provider):
    s = stream(provider, history_per_day=1500)
    for m in s.messages:
        e0 = m.entries[0]
        assert e0.kind == "pending" and e0.type is None and e0.at_ms == m.sent_ms
        assert all(e.at_ms % 1000 == 0 for e in m.entries)
        assert [e.at_ms for e in m.entries] == sorted(e.at_ms for e in m.entries)
        kinds = [e.kind for e in m.entries if e.kind != "pending"]
        assert kinds.count("soft_bounce") <= 1 and kinds.count("delivered") <= 1
        if "soft_bounce" in kinds and kinds[-1] != "soft_bounce":
            assert kinds[kinds.index("soft_bounce") + 1] in ("delivered", "invalid")
        if "invalid" in kinds or "error" in kinds:
            assert kinds[-1] in ("invalid", "error")  # final
        for later in ("complaint", "unsubscribed"):
            if later in kinds:
                assert kinds[-2] == "delivered" and kinds[-1] == later
    mix = Counter(e.kind for m in s.messages for e in m.entries)
    n = len(s.messages)
    assert 0.78 * n < mix["delivered"] < 0.93 * n
    assert 0.05 * n < mix["invalid"] < 0.15 * n
    assert 0.03 * n < mix["soft_bounce"] < 0.12 * n


def test_ground_truth_types_are_by_construction_sendcloud_family():
    rows = {(row[1], row[3]): row[2] for row in codes.SC_INVALID + codes.SC_SOFT}
    for provider in (Provider.SENDCLOUD, Provider.AURORA_SENDCLOUD, Provider.ENGAGELAB):
        s = stream(provider, history_per_day=1500)
        subs: Counter = Counter()
        for m in s.messages:
            for e in m.entries:
                fixed = {"pending": None, "delivered": codes.T_DELIVERED, "complaint": codes.T_COMPLAINT,
                         "unsubscribed": codes.T_UNSUBSCRIBED}
                expected = fixed[e.kind] if e.kind in fixed else rows[(e.sub_status, e.text)]
                assert e.truth == expected and e.hook is None
                assert e.type is (expected.type if expected else None)
                if e.kind == "invalid":
                    assert e.sub_status in {str(c) for c in range(401, 410)}
                elif e.kind == "soft_bounce":
                    assert e.sub_status in {"503", "505", "506", "507", "508", "509"}
                else:
                    assert e.sub_status is None
                subs[e.sub_status] += 1
        assert subs["406"] == max(subs[c] for c in subs if c and c.startswith("4"))  # not-exist dominates
        assert len([c for c in subs if c and c.startswith("4")]) >= 7  # a realistic mix


def test_engagement_only_where_the_provider_reports_it():
    kinds = lambda p: Counter(e.kind for m in stream(p, history_per_day=1500).messages for e in m.entries)  # noqa: E731
    assert kinds(Provider.ENGAGELAB)["complaint"] == kinds(Provider.ENGAGELAB)["unsubscribed"] == 0
    for p in (Provider.SENDCLOUD, Provider.UNISENDER, Provider.TENCENT_SES):
        assert kinds(p)["complaint"] > 0 and kinds(p)["unsubscribed"] > 0
    # SendCloud-family complaints and unsubscribes are webhook-only: not visible to the status API.
    for m in stream(Provider.SENDCLOUD, history_per_day=1500).messages:
        for e in m.entries:
            assert e.api_visible == (e.kind not in ("complaint", "unsubscribed"))


def test_unisender_vocabulary_and_types():
    s = stream(Provider.UNISENDER, history_per_day=2000)
    seen = Counter()
    for m in s.messages:
        assert [e.provider_status for e in m.entries[:2]] == ["not_sent", "ok_sent"]
        for e in m.entries:
            seen[e.provider_status] += 1
            if e.type is EventType.DELIVERED:
                assert e.provider_status in ("ok_delivered", "ok_spam_folder")
            elif e.type is EventType.COMPLAINT:
                assert e.provider_status == "ok_fbl"
            elif e.type is EventType.UNSUBSCRIBED:
                assert e.provider_status in ("ok_unsubscribed", "err_unsubscribed")
            elif e.type in (EventType.INVALID, EventType.SOFT_BOUNCE):
                assert e.provider_status.startswith(("err_", "skip_"))
    assert seen["err_user_unknown"] > 0 and seen["err_will_retry"] > 0 and seen["err_internal"] > 0
    ids = [m.uni_id for m in s.messages]
    assert len(set(ids)) == len(ids) and ids == sorted(ids)
    assert all(m.email_id == str(m.uni_id) and m.message_id is None for m in s.messages)


def test_tencent_encoding():
    s = stream(Provider.TENCENT_SES, history_per_day=2000)
    for m in s.messages:
        assert m.email_id == f"{m.message_id}:{m.recipient.lower()}"
        assert re.fullmatch(r"qcloudses-30-\d{10}-date-\d{14}-[A-Za-z0-9]{12}", m.message_id)
        stamp = datetime.fromtimestamp(m.sent_ms / 1000, tz=CN).strftime("%Y%m%d%H%M%S")
        assert f"-date-{stamp}-" in m.message_id
        for e in m.entries:
            send, deliver = e.tc
            if e.kind == "delivered":
                assert (send, deliver) == (0, 1)
            elif e.kind == "invalid":
                assert (send, deliver) in ((0, 2), (0, 3)) or send in (1007, 3020, 3024)
            elif e.kind == "soft_bounce":
                assert (send, deliver) == (0, 8) or send in (1004, 1006, 3008, 3030)
            elif e.kind == "error":
                assert e.type is None and send in (1001, 1005)
    groups = Counter(m.message_id for m in s.messages)
    assert max(groups.values()) >= 2  # some SendEmail calls have several recipients


def test_sendcloud_ids_and_recipients():
    s = stream(Provider.SENDCLOUD)
    shape = re.compile(r"(\d{13}_\d{6}_\d{5}_\d{4}\.sc-10_\d+_\d+_\d+-inbound)(\d)\$(.+)")
    for m in s.messages:
        match = shape.fullmatch(m.email_id)
        assert match and match.group(1) == m.message_id and match.group(3) == m.recipient
        assert int(match.group(2)) == m.rcpt_index
        assert re.fullmatch(r"[uU]\d+@[A-Za-z.-]+\.test", m.recipient)
    upper = [m for m in s.messages if m.recipient != m.recipient.lower()]
    assert 0.05 * len(s.messages) < len(upper) < 0.2 * len(s.messages)


def test_time_scale_divides_the_delays():
    def delivery_delays(scale: float) -> list[int]:
        s = stream(Provider.SENDCLOUD, scale=scale, history_per_day=1500)
        return [m.entries[-1].at_ms - m.sent_ms for m in s.messages if [e.kind for e in m.entries] == ["pending", "delivered"]]

    def retry_delays(scale: float) -> list[int]:
        s = stream(Provider.SENDCLOUD, scale=scale, history_per_day=1500)
        return [m.entries[2].at_ms - m.entries[1].at_ms for m in s.messages
                if len(m.entries) > 2 and m.entries[1].kind == "soft_bounce"]

    slow, fast = statistics.median(delivery_delays(1)), statistics.median(delivery_delays(100))
    assert 3_000 <= slow <= 20_000  # seconds for delivery at time_scale 1
    assert fast <= slow / 5
    assert statistics.median(retry_delays(1)) >= 10 * 60_000  # minutes to hours for a retry
    assert statistics.median(retry_delays(100)) <= statistics.median(retry_delays(1)) / 50


def test_visible_ignores_future_and_webhook_only_entries():
    s = stream(Provider.SENDCLOUD, history_per_day=1500)
    m = next(m for m in s.messages if [e.kind for e in m.entries][-1] == "complaint")
    assert m.visible(m.sent_ms - 1000) is None
    assert m.visible(m.sent_ms).kind == "pending"
    assert m.visible(m.entries[-1].at_ms + 10**9).kind == "delivered"


def test_default_quotas_and_caches_follow_the_docs():
    assert DEFAULT_QUOTA_PER_MINUTE[Provider.ENGAGELAB] == 60
    assert DEFAULT_QUOTA_PER_MINUTE[Provider.SENDCLOUD] == DEFAULT_QUOTA_PER_MINUTE[Provider.AURORA_SENDCLOUD] == 3000
    assert DEFAULT_CACHE_TTL_SECS[Provider.SENDCLOUD] == 600 and DEFAULT_CACHE_TTL_SECS[Provider.TENCENT_SES] == 0
    acct = SimAccount(provider="engagelab", name="x", api_user="u", api_key="k")
    assert (acct.quota_per_minute, acct.cache_ttl_secs) == (60, 600)


def test_sliding_window_quota():
    q = SlidingWindowQuota(3, 10.0)
    assert [q.try_acquire(t) for t in (0, 1, 2, 3)] == [True, True, True, False]
    assert q.retry_after(3) == pytest.approx(7.0)
    assert not q.try_acquire(9.9)
    assert q.try_acquire(10.0)  # the call at 0 left the window
    q.limit = 1  # set_quota at run time
    assert not q.try_acquire(11.5)


def test_result_cache_replays_within_ttl():
    cache = ResultCache(600)
    cache.put("k", CachedAnswer(0.0, 200, (), b"first"))
    assert cache.get("k", 599.0).body == b"first"
    assert cache.get("k", 600.0) is None
    off = ResultCache(0)
    off.put("k", CachedAnswer(0.0, 200, (), b"x"))
    assert off.get("k", 0.0) is None
    small = ResultCache(600, max_entries=2)
    for i in range(5):
        small.put(i, CachedAnswer(float(i), 200, (), b""))
    assert len(small) == 2


def test_tc3_signature_matches_the_documented_vector():
    body = b'{"RequestDate":"2023-11-14","Offset":0,"Limit":100}'
    assert hashlib.sha256(body).hexdigest() == "557be1660a9c91924a7eaedce16554c687294e3773192b62db0bd786bf4d4d64"
    canon = canonical_request("POST", "/", "", {"content-type": "application/json; charset=utf-8",
                                               "host": "ses.tencentcloudapi.com"},
                              ["content-type", "host"], hashlib.sha256(body).hexdigest())
    assert hashlib.sha256(canon.encode()).hexdigest() == "0ed7d70bd1ac30306a6bb1c036600a108c7d349ff83095faec743bf42272e10c"
    sig = tc3_signature("SECRETKEYEXAMPLE", canon, 1700000000, "2023-11-14")
    assert sig == "199ad5e26062789dffbb8d24e5e06a52da1dbe3f5bd201902b0cabdc0d801ef6"


def test_status_tables_cover_the_documented_codes():
    assert {row[1] for row in codes.SC_INVALID} == {str(c) for c in range(401, 410)}
    assert {row[1] for row in codes.SC_SOFT} == {"503", "505", "506", "507", "508", "509"}
    assert set(codes.SC_SUB_DESC_ZH) == set(codes.SC_SUB_DESC_EN) == set(codes.EL_SUB_DESC)


# -- issue 13: the truth's type, reason, scope and final ---------------------------------------

SCOPES = {"recipient", "domain", "sender", "content", "policy", "provider", "unknown"}
REASONS = {"bad_address", "unknown_user", "mailbox_full", "mailbox_disabled", "domain_invalid", "blocklisted",
           "unsubscribed", "spam_rejected", "policy_rejected", "server_unreachable", "deferred", "provider_error",
           "other", "suppressed", "sender_rejected"}


def all_truths() -> list[codes.Truth]:
    tables = (codes.SC_INVALID, codes.SC_SOFT, codes.UNI_INVALID, codes.UNI_SOFT_RETRYING, codes.UNI_SOFT_FINAL,
              codes.UNI_DELIVERED, codes.TC_INVALID, codes.TC_SOFT_RETRYING, codes.TC_SOFT_FINAL)
    out = [codes.T_DELIVERED, codes.T_COMPLAINT, codes.T_UNSUBSCRIBED]
    for table in tables:
        for row in table:
            out += [t for t in row[2:] if isinstance(t, codes.Truth)]
    return out


def test_every_truth_keeps_the_contract():
    for t in all_truths():
        assert t.attempt is None  # no supported provider reports an attempt
        if t.type is EventType.DELIVERED:
            assert (t.reason, t.scope, t.final) == (None, None, True)
            continue
        assert t.scope in SCOPES and (t.reason is None or t.reason in REASONS), t
        if t.type is EventType.INVALID:  # the invariant
            assert t.scope in ("recipient", "domain", "provider"), t
        if not t.final:
            assert t.type is EventType.SOFT_BOUNCE, t  # only an interim soft bounce is not final
        if t.type in (EventType.COMPLAINT, EventType.UNSUBSCRIBED):
            assert t.final and t.scope in ("recipient", "provider")


def find(table, code, text_start=""):
    return next(row for row in table if row[1] == code and row[3].startswith(text_start))


def test_the_spec_worked_examples_in_the_tables():
    T, INV, SOFT = codes.Truth, EventType.INVALID, EventType.SOFT_BOUNCE
    assert find(codes.SC_INVALID, "406")[2] == T(INV, "unknown_user", "recipient", True)  # 1
    assert find(codes.SC_INVALID, "401")[2] == T(INV, "suppressed", "provider", True)  # 2
    assert find(codes.SC_INVALID, "405", "554 5.7.1")[2] == T(SOFT, "policy_rejected", "policy", True)  # 3
    assert find(codes.SC_INVALID, "409", "Other")[2] == T(SOFT, "other", "unknown", True)  # 4
    assert find(codes.SC_INVALID, "409", "550 5.1.1")[2] == T(INV, "unknown_user", "recipient", True)  # 5
    assert find(codes.SC_SOFT, "506", "450 4.1.1")[2] == T(SOFT, "unknown_user", "recipient", True)  # 6
    assert find(codes.UNI_SOFT_RETRYING, "err_will_retry")[2] == T(SOFT, "deferred", "unknown", False)  # 7
    assert find(codes.UNI_INVALID, "err_not_available")[2] == T(INV, "suppressed", "provider", True)  # 8
    dl3 = find(codes.TC_INVALID, (0, 3), "550 5.1.1")
    assert dl3[2] == dl3[4] == T(INV, "unknown_user", "recipient", True)  # 9
    dl3 = find(codes.TC_INVALID, (0, 3), "rejected")
    assert dl3[2] == dl3[4] == T(SOFT, "other", "unknown", True)  # 10
    dropped = find(codes.TC_INVALID, (0, 2), "550 5.1.1")
    assert dropped[2] == dropped[4] == T(SOFT, "suppressed", "provider", True)  # 11
    deferred = find(codes.TC_SOFT_RETRYING, (0, 8), "451 4.7.1")
    assert deferred[2] == deferred[4] == T(SOFT, "policy_rejected", "policy", False)  # 12


@pytest.mark.parametrize("provider", list(Provider))
def test_entries_carry_their_truth(provider):
    s = stream(provider, history_per_day=1500)
    for m in s.messages:
        for e in m.entries:
            assert (e.truth is None) == (e.type is None) and (e.truth is None or e.truth.type is e.type)
            if e.hook is not None:
                assert provider is Provider.TENCENT_SES and e.hook != e.truth
            for source in ("webhook", "poll"):
                assert codes.truth_for(e, source) == (e.hook if source == "webhook" and e.hook else e.truth)
        kinds = [e.kind for e in m.entries]
        # a soft bounce is followed, if at all, by a delivery or by an invalid-typed end: never a
        # second soft bounce (dedup could not tell it from a replay within the same second)
        types = [e.type for e in m.entries if e.type is not None]
        assert types.count(EventType.SOFT_BOUNCE) <= 1, kinds


def seen(provider: Provider, **kw) -> Counter:
    out: Counter = Counter()
    for m in stream(provider, history_days=4, history_per_day=3000, **kw).messages:
        for e in m.entries:
            out[(e.provider_status, e.sub_status, e.text, e.tc)] += 1
    return out


def test_the_new_cases_are_produced_sendcloud_family():
    for provider in (Provider.SENDCLOUD, Provider.AURORA_SENDCLOUD, Provider.ENGAGELAB):
        texts = {(sub, text) for (_, sub, text, _) in seen(provider)}
        assert ("409", "550 5.1.1 no such user") in texts and ("409", "Other(scheduler: deleted)") in texts
        for row in codes.SC_INVALID + codes.SC_SOFT:
            assert (row[1], row[3]) in texts, (provider, row)


def test_the_new_cases_are_produced_unisender():
    statuses = {status for (status, *_) in seen(Provider.UNISENDER)}
    for table in (codes.UNI_INVALID, codes.UNI_SOFT_RETRYING, codes.UNI_SOFT_FINAL):
        for row in table:
            assert row[1] in statuses, row
    assert {"err_skip_letter", "err_not_available", "skip_dup_unreachable", "skip_dup_mailbox_full",
            "skip_dup_temp_unreachable", "err_unsubscribed"} <= statuses


def test_the_new_cases_are_produced_tencent():
    got = seen(Provider.TENCENT_SES)
    cases = {(tc, text) for (_, _, text, tc) in got}
    for table in (codes.TC_INVALID, codes.TC_SOFT_RETRYING, codes.TC_SOFT_FINAL):
        for row in table:
            assert (row[1], row[3]) in cases, row
    spellings = {status for (status, *_) in got if status.startswith("UserComplain")}
    assert spellings == {"UserComplainted", "UserComplained"}


def test_new_cases_have_small_weights():
    share = lambda table, pred: sum(r[0] for r in table if pred(r)) / sum(r[0] for r in table)  # noqa: E731
    assert share(codes.SC_INVALID, lambda r: r[2].scope == "sender" or r[3] == "550 5.1.1 no such user") <= 0.07
    assert share(codes.TC_INVALID, lambda r: r[1] == (0, 2) or r[3] == "rejected") <= 0.12
    assert share(codes.UNI_INVALID, lambda r: r[1] == "err_skip_letter") <= 0.03


def test_tencent_webhook_truth_differs_only_for_send_stage_rows():
    for table in (codes.TC_INVALID, codes.TC_SOFT_RETRYING, codes.TC_SOFT_FINAL):
        for _weight, (send, _deliver), poll, text, hook in table:
            if send == 0:
                assert poll == hook, text  # bounce / dropped / deferred carry the same text
            else:
                assert hook.scope in ("provider", "unknown") and hook.type is EventType.SOFT_BOUNCE
