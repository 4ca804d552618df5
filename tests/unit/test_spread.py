"""One account on several shards (`accounts[].spread`, issue 16): where an email goes, what the
configuration refuses, and how a polled page's rows reach the shards that own them.

Expected shards are worked by hand. The home of `sendcloud/cn-main` over 12 shards is 11 (Kafka's
Java partitioner, as in test_emit_routing). An email's shard is home + CRC-32(id) mod spread, wrapped:
the CRC-32 values are the published ones (the "123456789" check value 0xCBF43926 and the common
examples), and their remainders are worked from the decimal digit sums:

    id                                              CRC-32       decimal      mod 3  shard (spread 3)
    "a"                                             0xE8B7BE43   3904355907   0      11
    "The quick brown fox jumps over the lazy dog"   0x414FA339   1095738169   1      0
    "123456789"                                     0xCBF43926   3421780262   2      1
"""

from __future__ import annotations

from types import SimpleNamespace

import attrs
import orjson
import pytest

from tests.integration.harness import worker_config
from tests.unit.test_mutants_staging import NOW, NOW_TS, RECEIVED
from worker import raw
from worker.config import parse_config
from worker.deadletter import DeadLetter
from worker.emit import shard_of_email, shards_of
from worker.errors import BadRawRecord, ConfigError
from worker.intake import admit, page_copies, routed
from worker.letters import Letter, resolve
from worker.model import EventType, Observation, Provider
from worker.placement import ShardMap
from worker.providers.base import PollQuery
from worker.staging import Staging
from worker.state import Restored

FOX = "The quick brown fox jumps over the lazy dog"
ROW = {"status": "无效邮件-IP、域名被拒", "subStatus": "405", "subStatDesc": "IP、域名被拒", "apiUser": "u",
       "recipients": "Dave@126.com", "requestTime": "2026-11-02 14:58:01", "modifiedTime": "2026-11-02 14:59:03",
       "sendLog": None}


def account(**kw) -> dict:
    return {"name": "cn-main", "provider": "sendcloud", "credentials": {"api_user": "u", "api_key_env": "K"},
            "webhook": {"app_key_env": "K"}, "poll": {"lookback_days": 4}, **kw}


def config(*accounts: dict, shards: int = 12, **kw):
    return parse_config(worker_config("127.0.0.1:9", "p", list(accounts), shards=shards, **kw), {"K": "key"})


def problems(*accounts: dict, **kw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config(*accounts, **kw)
    return info.value.problems


def obs(email_id: str) -> Observation:
    return Observation(email_id=email_id, recipient="Bob@Example.com", type=EventType.INVALID, reason=None,
                       occurred_at=NOW, provider_status="s")


def page(*email_ids: str, shard: int | None = None) -> raw.PollPageRecord:
    rows = [dict(ROW, emailId=e) for e in email_ids]
    body = orjson.dumps({"result": True, "statusCode": 200, "message": "ok",
                         "info": {"total": str(len(rows)), "voListSize": len(rows), "voList": rows}})
    return raw.PollPageRecord(Provider.SENDCLOUD, "cn-main", RECEIVED, PollQuery(send_date=None, limit=100), 200,
                              {"content-type": "application/json"}, body, shard)


# -- where an email goes --------------------------------------------------------------------------


@pytest.mark.parametrize(("email_id", "shard"), [("a", 11), (FOX, 0), ("123456789", 1)])
def test_an_email_goes_to_home_plus_its_crc_modulo_the_spread_wrapped(email_id, shard):
    assert shard_of_email("sendcloud", "cn-main", email_id, 3, 12) == shard


@pytest.mark.parametrize("email_id", ["a", FOX, "123456789"])
def test_an_account_of_spread_one_keeps_every_email_at_home(email_id):
    assert shard_of_email("sendcloud", "cn-main", email_id, 1, 12) == 11


def test_an_accounts_shards_are_its_home_then_the_ones_after_it_wrapping():
    assert shards_of("sendcloud", "cn-main", 1, 12) == (11,)
    assert shards_of("sendcloud", "cn-main", 3, 12) == (11, 0, 1)
    assert shards_of("sendcloud", "cn-main", 12, 12) == (11, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)


def test_a_spread_of_four_takes_the_crc_modulo_four():
    # 0xCBF43926 mod 4 = 2 (its last hex digit 6 mod 4); 0x414FA339 mod 4 = 1 (9 mod 4); 0xE8B7BE43 mod 4 = 3
    assert [shard_of_email("sendcloud", "cn-main", e, 4, 12) for e in ("123456789", FOX, "a")] == [1, 0, 2]


# -- configuration ----------------------------------------------------------------------------------


def test_spread_defaults_to_one_and_is_read():
    assert config(account()).accounts[0].spread == 1
    assert config(account(spread=3)).accounts[0].spread == 3


def test_every_spread_problem_is_named_at_once():
    found = problems(
        account(spread=13),
        {"name": "uni", "provider": "unisender", "credentials": {"api_key_env": "K"}, "spread": 2},
        account(name="gaps", spread=2),
        inputs={"sent_topic": "mail.sent"})
    assert found == [
        "accounts[0].spread: 13 is more than kafka.shards (12)",
        "accounts[0].spread: needs poll.gap_driven: false (gap-driven polling keeps its ids on one shard)",
        "accounts[1].spread: unisender is polled by email id; it cannot be spread",
        "accounts[2].spread: needs poll.gap_driven: false (gap-driven polling keeps its ids on one shard)",
    ]


def test_a_gap_driven_account_off_may_be_spread_and_spread_over_the_schema_cap_is_refused():
    ok = config(account(spread=2, poll={"gap_driven": False}), inputs={"sent_topic": "mail.sent"})
    assert ok.accounts[0].spread == 2
    assert problems(account(spread=65), shards=100) == ["accounts[0].spread: violates maximum 64"]


# -- the `_raw` codec -------------------------------------------------------------------------------


def test_a_page_copy_carries_its_shard_and_a_plain_page_writes_none():
    assert b'"shard"' not in raw.encode(page("a"))
    copy = page("a", shard=7)
    assert orjson.loads(raw.encode(copy))["shard"] == 7
    assert raw.decode(raw.encode(copy)) == copy
    assert raw.decode(raw.encode(page("a"))).shard is None


@pytest.mark.parametrize("bad", [True, -1, "7", 1.5])
def test_a_page_with_a_bad_shard_is_a_bad_record(bad):
    value = orjson.loads(raw.encode(page("a")))
    value["shard"] = bad
    with pytest.raises(BadRawRecord):
        raw.decode(orjson.dumps(value))


def test_a_copy_is_admitted_to_its_own_shard():
    assert admit(page("a", shard=7)).shard == 7
    assert admit(page("a")).shard is None


# -- the edge: a webhook record goes to its email's shard -------------------------------------------


def test_a_webhook_record_of_a_spread_account_is_routed_by_its_email_and_others_are_not():
    spread, single = config(account(spread=3), account(name="single")).accounts
    record = admit(raw.WebhookRecord(Provider.SENDCLOUD, "cn-main", RECEIVED, {"emailId": "123456789"}))
    assert routed(record, spread, [obs("123456789")], 12).shard == 1
    assert routed(record, spread, [obs(FOX)], 12).shard == 0
    assert routed(record, spread, [], 12).shard is None
    assert routed(record, single, [obs("123456789")], 12).shard is None


# -- a polled page's rows ---------------------------------------------------------------------------


def test_the_polling_shard_keeps_its_rows_and_copies_the_page_once_for_each_other_shard():
    spread = config(account(spread=3)).accounts[0]
    rows = [obs("a"), obs("123456789"), obs(FOX), obs("123456789")]
    own, copies, unusable = page_copies(page("x"), spread, rows, 11, 12)
    assert [o.email_id for o in own] == ["a"] and unusable is None
    assert [(c.shard, c.record.shard) for c in copies] == [(0, 0), (1, 1)]
    own, copies, _ = page_copies(page("x"), spread, rows, 1, 12)     # the backfill's page at another
    assert [o.email_id for o in own] == ["123456789", "123456789"] and [c.shard for c in copies] == [0, 11]


def test_a_copy_is_never_copied_again():
    spread = config(account(spread=3)).accounts[0]
    own, copies, _ = page_copies(page("x", shard=0), spread, [obs("a"), obs(FOX)], 0, 12)
    assert [o.email_id for o in own] == [FOX] and copies == []


def test_a_page_whose_rows_are_all_at_home_is_not_copied():
    spread = config(account(spread=3)).accounts[0]
    own, copies, _ = page_copies(page("x"), spread, [obs("a")], 11, 12)
    assert len(own) == 1 and copies == []


def staging_at(shard: int, cfg=None) -> Staging:
    cfg = cfg or config(account(spread=3))
    return Staging(cfg, cfg.accounts, Restored.empty(), NOW_TS, shard)


def test_staging_at_home_emits_its_rows_and_forwards_the_page_in_the_same_batch():
    st = staging_at(11)
    src = page("a", FOX, "123456789")
    assert st.observe_page(st.accounts[(Provider.SENDCLOUD, "cn-main")], src, [obs("a"), obs(FOX), obs("123456789")],
                           NOW) == 1
    assert len(st.batch.events) == 1 and not st.batch.quiet
    assert [(shard, key) for shard, key, _ in st.batch.forwarded] == [(0, b"sendcloud/cn-main"),
                                                                      (1, b"sendcloud/cn-main")]
    assert [raw.decode(value) for _, _, value in st.batch.forwarded] == [attrs.evolve(src, shard=0),
                                                                         attrs.evolve(src, shard=1)]


def test_a_copy_in_raw_decides_only_its_shards_rows_and_sets_aside_nothing_again():
    st = staging_at(1)
    copy = page("a", FOX, "123456789", "bad", shard=1)
    body = orjson.loads(copy.body)
    body["info"]["voList"].append(5)                    # an unreadable row: dead-lettered where polled
    body["info"]["voListSize"] = 5
    copy = attrs.evolve(copy, body=orjson.dumps(body))
    st.stage_raw([SimpleNamespace(offset=4, value=raw.encode(copy))], NOW)
    [(topic, key, value, _)] = st.batch.events
    assert orjson.loads(value)["email_id"] == "123456789"
    assert st.batch.forwarded == [] and st.batch.dead == []


def test_the_backfills_page_at_home_is_forwarded_from_raw_too():
    st = staging_at(11)
    st.stage_raw([SimpleNamespace(offset=4, value=raw.encode(page("a", FOX)))], NOW)
    assert len(st.batch.events) == 1
    assert [shard for shard, _, _ in st.batch.forwarded] == [0]


def test_a_single_shard_account_decides_every_row_and_forwards_nothing():
    cfg = config(account())
    st = Staging(cfg, cfg.accounts, Restored.empty(), NOW_TS, 11)
    assert st.observe_page(cfg.accounts[0], page("a", FOX), [obs("a"), obs(FOX)], NOW) == 2
    assert st.batch.forwarded == []


def test_a_copy_too_large_for_raw_keeps_the_page_whole_in_the_dead_letter_topic_and_home_rows_still_count():
    st = staging_at(11)
    big = page("a", FOX, "x" * 300_000)
    emitted = st.observe_page(st.accounts[(Provider.SENDCLOUD, "cn-main")], big, [obs("a"), obs(FOX)], NOW)
    assert emitted == 1 and len(st.batch.events) == 1 and st.batch.forwarded == []   # "a" is home's (11)
    assert st.batch.dead == [DeadLetter("sendcloud", "cn-main", "record_too_large", "shard", "raw", raw.encode(big),
                                        "application/json", NOW)]


def test_a_batch_with_copies_alone_is_not_quiet_nor_empty():
    st = staging_at(11)
    st.observe_page(st.accounts[(Provider.SENDCLOUD, "cn-main")], page("x"), [obs(FOX)], NOW)
    assert st.batch.events == [] and st.batch.forwarded
    assert not st.batch.quiet and not st.batch.empty


# -- placement and the dead-letter replay -----------------------------------------------------------


def test_check_config_shows_each_shard_of_a_spread_account_home_first():
    shard_map = ShardMap.from_config(config(account(spread=3)))
    assert [(p.shard, p.home) for p in shard_map.placements] == [(11, True), (0, False), (1, False)]
    assert shard_map.occupied == 3
    assert shard_map.lines()[:3] == ["  sendcloud  cn-main  shard 0 (spread)", "  sendcloud  cn-main  shard 1 (spread)",
                                     "  sendcloud  cn-main  shard 11"]


def test_a_replayed_webhook_record_of_a_spread_account_goes_to_its_emails_shard():
    cfg = config(account(spread=3))
    record = {"event": "soft_bounce", "emailId": "123456789", "recipient": "bob@example.com",
              "timestamp": "1793606400000", "subStat": "503", "subStatDesc": "421 4.4.2 connection timed out"}
    value = raw.encode(raw.WebhookRecord(Provider.SENDCLOUD, "cn-main", RECEIVED, record))
    letter = Letter(provider="sendcloud", account="cn-main", reason="kafka", part="raw",
                    content_type="application/json", received_at=RECEIVED, request_headers={}, value=value)
    [admitted] = resolve(cfg, letter).records
    assert admitted.shard == 1


def test_the_group_puts_a_spread_account_on_each_of_its_shards_and_polls_it_from_home():
    from worker.group import ShardManager

    cfg = config(account(spread=3), account(name="single"))
    manager = ShardManager(cfg, session=None)  # type: ignore[arg-type]   # no shard opens here
    spread, single = cfg.accounts
    # "single" on 12 shards: murmur2("sendcloud/single") as Kafka's Java client gives it
    home_single = next(p for p, accts in manager.by_shard.items() if single in accts)
    assert {p for p, accts in manager.by_shard.items() if spread in accts} == {11, 0, 1}
    assert [a.name for a in manager.homed(11)] == ["cn-main"] + (["single"] if home_single == 11 else [])
    assert spread not in manager.homed(0) and spread not in manager.homed(1)
    assert single in manager.homed(home_single)


# -- webhook records with a replay key: checked on one shard, decided on their email's ---------------


def sc_record(email_id: str) -> dict:   # bounced a minute before it was received (RECEIVED, 07:00 UTC)
    return {"event": "soft_bounce", "emailId": email_id, "recipient": "bob@example.com",
            "timestamp": "1793602740000", "subStat": "503", "subStatDesc": "421 4.4.2 connection timed out"}


def webhook_value(email_id: str, replay: str | None, shard: int | None = None) -> bytes:
    return raw.encode(raw.WebhookRecord(Provider.SENDCLOUD, "cn-main", RECEIVED, sc_record(email_id), replay, shard))


def test_a_webhook_record_with_a_replay_key_is_routed_by_the_key_not_the_email():
    spread = config(account(spread=3)).accounts[0]
    record = admit(raw.WebhookRecord(Provider.SENDCLOUD, "cn-main", RECEIVED, sc_record(FOX), "123456789"))
    assert routed(record, spread, [obs(FOX)], 12).shard == 1            # the key's shard; the email's is 0
    forwarded = admit(raw.WebhookRecord(Provider.SENDCLOUD, "cn-main", RECEIVED, sc_record(FOX), "123456789", 0))
    assert forwarded.shard == 0 and routed(forwarded, spread, [obs(FOX)], 12).shard == 0


def test_a_forwarded_webhook_record_keeps_its_shard_through_the_codec_and_a_bad_one_is_refused():
    record = raw.decode(webhook_value(FOX, "sig", 0))
    assert record.shard == 0 and orjson.loads(webhook_value(FOX, "sig", 0))["shard"] == 0
    assert b'"shard"' not in webhook_value(FOX, "sig")
    value = orjson.loads(webhook_value(FOX, "sig"))
    value["shard"] = "0"
    with pytest.raises(BadRawRecord):
        raw.decode(orjson.dumps(value))


def test_the_replay_keys_shard_checks_the_key_and_forwards_the_record_to_its_emails_shard():
    st = staging_at(1)
    st.stage_raw([SimpleNamespace(offset=4, value=webhook_value(FOX, "123456789"))], NOW)
    assert st.batch.events == [] and st.batch.dead == []
    [(shard, key, value)] = st.batch.forwarded
    assert (shard, key) == (0, b"sendcloud/cn-main")
    assert raw.decode(value) == raw.WebhookRecord(Provider.SENDCLOUD, "cn-main", RECEIVED, sc_record(FOX),
                                                  "123456789", 0)
    assert len(st.batch.replays) == 1                    # the signature is remembered here, with this batch


def test_a_reused_signature_claiming_another_email_is_refused_on_the_keys_shard():
    st = staging_at(1)
    st.stage_raw([SimpleNamespace(offset=4, value=webhook_value(FOX, "123456789"))], NOW)
    forged = webhook_value("a", "123456789")              # its email's shard (11) never saw the signature
    st.stage_raw([SimpleNamespace(offset=5, value=forged)], NOW)
    assert [d.reason for d in st.batch.dead] == ["replayed_signature"]
    assert len(st.batch.forwarded) == 1 and st.batch.events == []


def test_a_record_whose_email_is_on_the_keys_shard_is_decided_there():
    st = staging_at(1)
    st.stage_raw([SimpleNamespace(offset=4, value=webhook_value("123456789", "123456789"))], NOW)
    assert len(st.batch.events) == 1 and st.batch.forwarded == []


def test_the_emails_shard_decides_a_forwarded_record_without_checking_the_key_again():
    st = staging_at(0)
    st.stage_raw([SimpleNamespace(offset=4, value=webhook_value("a", "123456789"))], NOW)   # key seen here
    assert [shard for shard, _, _ in st.batch.forwarded] == [11]
    st.stage_raw([SimpleNamespace(offset=5, value=webhook_value(FOX, "123456789", 0))], NOW)
    assert len(st.batch.events) == 1 and st.batch.dead == []


# -- spread 2, and records that arrive where their account is not at home ---------------------------
# Spread 2 over 12 shards from home 11: CRC-32 mod 2 is the value's parity. 0x414FA339 (FOX) and
# 0xE8B7BE43 ("a") are odd: shard 0; 0xCBF43926 ("123456789") is even: shard 11.


def test_spread_two_decides_even_crcs_at_home_and_forwards_odd_ones():
    st = staging_at(11, config(account(spread=2)))
    acct = st.accounts[(Provider.SENDCLOUD, "cn-main")]
    assert st.observe_page(acct, page("x"), [obs(FOX), obs("123456789"), obs("a")], NOW) == 1
    assert [shard for shard, _, _ in st.batch.forwarded] == [0]
    st.stage_raw([SimpleNamespace(offset=4, value=webhook_value(FOX, "123456789"))], NOW)   # key: shard 11
    assert [shard for shard, _, _ in st.batch.forwarded] == [0, 0]


def test_a_staging_outside_a_shard_stands_for_shard_zero():
    cfg = config(account(spread=3))
    st = Staging(cfg, cfg.accounts, Restored.empty(), NOW_TS)          # a bench's or a test's staging
    assert st.observe_page(cfg.accounts[0], page("x"), [obs(FOX), obs("123456789")], NOW) == 1   # FOX: shard 0
    assert [shard for shard, _, _ in st.batch.forwarded] == [1]


def test_a_record_of_an_account_on_one_shard_is_decided_wherever_it_lands():
    # A replica whose configuration names another shard count (a rollout) may route a record elsewhere:
    # it is decided where it lands, never sent on, whatever its replay key.
    st = staging_at(5, config(account()))
    st.stage_raw([SimpleNamespace(offset=4, value=webhook_value(FOX, "123456789"))], NOW)
    assert len(st.batch.events) == 1 and st.batch.forwarded == []
