"""A status page's rows, built only when asked for (worker.model `Rows`), and dedup deciding on their
columns (worker.staging `observe`): a duplicate row of a re-sweep is never built; a row that becomes
an event, or may be unusable (not plainly within the caps, or dated near the future skew), is.
Expected values are literals; a counting `build` says which rows were built."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from tests.unit.test_mutants_staging import NOW, SC, staging
from worker.model import EventType, Observation, Reason, Source, plainly_within_caps
from worker.providers import sendcloud
from worker.providers.base import PollQuery
from worker.rows import Rows

T0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)      # 1_793_599_200
T0_TS = 1_793_599_200


def obs(email_id: str, type_: EventType | None = EventType.DELIVERED, at: datetime = T0, **kw) -> Observation:
    return Observation(email_id=email_id, recipient="b@x.test", type=type_, reason=None, occurred_at=at,
                       provider_status="送达", final=type_ is EventType.DELIVERED, **kw)


class Counting:
    """A `build` that hands out prepared observations and counts which were asked for."""

    def __init__(self, built: list[Observation]) -> None:
        self.built = built
        self.asked: list[int] = []

    def __call__(self, index: int) -> Observation:
        self.asked.append(index)
        return self.built[index]


def rows_of(built: list[Observation], plain: list[bool] | None = None) -> tuple[Rows, Counting]:
    build = Counting(built)
    rows = Rows([o.email_id for o in built], [o.type for o in built],
                [int(o.occurred_at.timestamp()) for o in built], [o.exact_time for o in built],
                [o.final for o in built], plain if plain is not None else [True] * len(built), build)
    return rows, build


# -- the sequence ------------------------------------------------------------------------------


def test_of_gives_an_eager_pages_columns():
    rows = Rows.of((obs("a"), obs("b", EventType.SOFT_BOUNCE, T0 + timedelta(seconds=90.7), exact_time=False),
                    obs("c" * 513, None)))
    assert rows.email_ids == ["a", "b", "c" * 513]
    assert rows.types == [EventType.DELIVERED, EventType.SOFT_BOUNCE, None]
    assert rows.times == [T0_TS, T0_TS + 90, T0_TS]          # whole seconds, rounded down
    assert rows.exact == [True, False, True]
    assert rows.finals == [True, False, False]
    assert rows.plain == [True, True, False]                   # an id over 512 characters is oversized


def test_a_row_is_built_once_when_first_asked_for():
    built = [obs("a"), obs("b"), obs("c")]
    rows, build = rows_of(built)
    assert len(rows) == 3 and build.asked == []
    assert rows[1] is built[1] and rows[1] is built[1] and rows[-1] is built[2]
    assert build.asked == [1, 2]
    assert rows[0:2] == (built[0], built[1]) and build.asked == [1, 2, 0]


def test_it_equals_any_sequence_of_the_same_observations():
    built = [obs("a"), obs("b")]
    rows, _ = rows_of(built)
    assert rows == tuple(built) and rows == built and rows == Rows.of(tuple(built))
    assert rows != (built[0],) and rows != (built[1], built[0]) and rows != "ab"


def test_plainly_within_caps_is_the_smallest_cap():
    assert plainly_within_caps("x" * 128, "y") and not plainly_within_caps("x" * 129) and plainly_within_caps()


# -- dedup on the columns ----------------------------------------------------------------------


async def test_a_re_sweeps_duplicate_rows_are_never_built():
    st = staging()
    recent = NOW - timedelta(seconds=60)          # well inside the future skew's reach, still not near it
    first = [obs(f"m{i}$b@x.test", at=recent) for i in range(4)]
    assert st.observe(SC, tuple(first), Source.POLL, NOW) == 4
    st.committed(st.take(), NOW.timestamp())
    again = [obs(f"m{i}$b@x.test", at=recent) for i in range(4)]
    again[2] = obs("m2$b@x.test", EventType.INVALID, recent + timedelta(seconds=5))   # a new status for m2
    rows, build = rows_of(again)
    assert st.observe(SC, rows, Source.POLL, NOW) == 1
    assert build.asked == [2]
    assert st.batch.tally.drops == {("sendcloud", "sc", "duplicate"): 3}


async def test_only_a_duplicate_that_may_be_past_the_skew_is_built():
    # observed at a whole second: a row at +299 s is at most 299.999 s ahead (not built); one at
    # +300 s may be up to 300.999 s ahead (built and judged: exactly 300 s is not past the skew)
    st = staging()
    at = [NOW + timedelta(seconds=299), NOW + timedelta(seconds=300)]
    assert st.observe(SC, tuple(obs(f"s{i}$b@x.test", at=t) for i, t in enumerate(at)), Source.POLL, NOW) == 2
    st.committed(st.take(), NOW.timestamp())
    rows, build = rows_of([obs(f"s{i}$b@x.test", at=t) for i, t in enumerate(at)])
    assert st.observe(SC, rows, Source.POLL, NOW) == 0
    assert build.asked == [1] and st.batch.dead == []


async def test_a_fraction_of_a_second_past_the_skew_is_set_aside():
    st = staging()
    rows = Rows.of((obs("f$b@x.test", at=NOW + timedelta(seconds=300.5)),))
    assert rows.times == [int(NOW.timestamp()) + 300]
    assert st.observe(SC, rows, Source.POLL, NOW) == 0
    assert [d.reason for d in st.batch.dead] == ["future_time"]


async def test_a_row_not_plainly_within_the_caps_is_built_and_judged():
    st = staging()
    long_id, fine = "m" * 600 + "$b@x.test", "n" * 200 + "$b@x.test"   # over the 512 cap; between 128 and 512
    rows, build = rows_of([obs(long_id), obs(fine)], plain=[False, False])
    assert st.observe(SC, rows, Source.POLL, NOW) == 1
    assert build.asked == [0, 1]
    assert [d.reason for d in st.batch.dead] == ["field_too_long"]


async def test_a_row_near_the_future_skew_is_built_and_judged():
    st = staging()
    observed = T0
    rows, build = rows_of([obs("far$b@x.test", at=observed + timedelta(seconds=301)),
                           obs("near$b@x.test", at=observed + timedelta(seconds=299)),
                           obs("past$b@x.test", at=observed - timedelta(seconds=60))])
    assert st.observe(SC, rows, Source.POLL, observed) == 2
    assert build.asked == [0, 1, 2]                    # 0 and 1 judged first; 1 and 2 became events
    assert [d.reason for d in st.batch.dead] == ["future_time"]


async def test_an_ignored_type_is_counted_not_built():
    st = staging()
    rows, build = rows_of([obs("open$b@x.test", None)])
    assert st.observe(SC, rows, Source.POLL, NOW) == 0
    assert build.asked == [] and st.batch.tally.ignored == {("sendcloud", "sc"): 1}


# -- SendCloud's page --------------------------------------------------------------------------


def sendcloud_page(rows: list[dict]) -> Rows:
    body = orjson.dumps({"result": True, "statusCode": 200, "message": "ok",
                         "info": {"total": str(len(rows)), "voListSize": len(rows), "voList": rows}})
    page = sendcloud.parse_poll_response(SC.context, PollQuery(send_date=None, limit=100), 200,
                                         {"content-type": "application/json"}, body, NOW)
    assert isinstance(page.observations, Rows)
    return page.observations


def sc_row(i: int, status: str = "软退信", log: str | None = None, modified: str = "2026-11-02 14:00:05") -> dict:
    return {"emailId": f"1793606399000_15_1_{i}.sc-1-inbound0$u{i}@126.com", "status": status, "subStatus": "",
            "recipients": f"u{i}@126.com", "requestTime": "2026-11-02 14:00:00", "modifiedTime": modified,
            "sendLog": log}


def test_rows_of_one_status_with_other_messages_are_classified_apart():
    rows = sendcloud_page([sc_row(0, log="550 5.1.1 user unknown"), sc_row(1), sc_row(2, log="550 5.1.1 user unknown")])
    assert [o.reason for o in rows] == [Reason.UNKNOWN_USER, Reason.OTHER, Reason.UNKNOWN_USER]
    assert [o.smtp.enhanced if o.smtp else None for o in rows] == ["5.1.1", None, "5.1.1"]


def test_rows_of_one_status_with_other_sub_statuses_are_classified_apart():
    rows = sendcloud_page([{**sc_row(0, "无效邮件"), "subStatus": "406"}, {**sc_row(1, "无效邮件"), "subStatus": "401"}])
    assert [o.reason for o in rows] == [Reason.UNKNOWN_USER, Reason.SUPPRESSED]


def test_a_sendcloud_row_is_plain_when_every_capped_text_is_short():
    long_id = {**sc_row(0, "送达"), "emailId": "1793606399000_15_1_0.sc-1-inbound0$" + "u" * 120 + "@126.com"}
    long_to = {**sc_row(1, "送达"), "recipients": "u" * 130 + "@126.com"}
    long_status = sc_row(2, "送达" + "-" * 130)
    long_sub = {**sc_row(3, "送达"), "subStatus": "1" * 130}
    rows = sendcloud_page([long_id, long_to, long_status, long_sub, {**sc_row(4, "送达"), "subStatus": "401"}, sc_row(5)])
    assert rows.plain == [False, False, False, False, True, True]


def test_a_sendcloud_rows_times_in_columns_and_built():
    # 14:00:05 in Shanghai is 06:00:05 UTC; the request time 14:00:00 is the send time
    rows = sendcloud_page([sc_row(0, "送达"), sc_row(1, "送达", modified="2026-11-02 14:59:59")])
    assert rows.times == [T0_TS + 5, T0_TS + 3599]
    assert [o.occurred_at for o in rows] == [T0 + timedelta(seconds=5), T0 + timedelta(seconds=3599)]
    assert [o.sent_at for o in rows] == [T0, T0]
    assert rows.finals == [True, True] and rows.types == [EventType.DELIVERED, EventType.DELIVERED]
