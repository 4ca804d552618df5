"""Mutation-testing gaps in worker/providers/base.py and _answers.py.

local_time with a `layout` must answer in UTC whatever zone the process runs in (a pod with TZ
set): the local zone is set to UTC+8 here so that an answer in the local zone is told apart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.unit.providers.test_mutants_shared import local_zone_utc_plus_8  # noqa: F401 (the fixture)
from worker.errors import Retriable
from worker.providers._answers import read_answer
from worker.providers.base import CHINA_TZ, local_time, parse_retry_after


@pytest.mark.usefixtures("local_zone_utc_plus_8")
def test_local_time_with_layout_answers_in_utc_whatever_the_local_zone():
    # 07:59:01 in UTC+8 is 23:59:01 UTC the day before
    dt = local_time("2024-01-02 07:59:01", CHINA_TZ, layout="%Y-%m-%d %H:%M:%S")
    assert dt == datetime(2024, 1, 1, 23, 59, 1, tzinfo=UTC)
    assert dt.utcoffset() == timedelta(0)
    assert dt.isoformat() == "2024-01-01T23:59:01+00:00"


@pytest.mark.usefixtures("local_zone_utc_plus_8")
def test_local_time_with_layout_from_utc_zone_is_utc():
    dt = local_time("02.01.2024 10:00", UTC, layout="%d.%m.%Y %H:%M")
    assert dt.isoformat() == "2024-01-02T10:00:00+00:00"


# -- parse_retry_after: HTTP dates ----------------------------------------------------------------

NOW = datetime(2015, 10, 21, 7, 27, 0, tzinfo=UTC)


def test_retry_after_http_date_with_minus_zero_zone_is_read_as_utc():
    # RFC 2822 "-0000" means UTC without a known source zone: parsedate gives a naive datetime
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 -0000", NOW) == 60.0


def test_retry_after_http_date_with_an_offset_keeps_its_offset():
    # 08:28 at +01:00 is 07:28 UTC: one minute after NOW (read as UTC it would be 61 minutes)
    assert parse_retry_after("Wed, 21 Oct 2015 08:28:00 +0100", NOW) == 60.0


def test_retry_after_http_date_in_gmt():
    assert parse_retry_after("Wed, 21 Oct 2015 07:27:30 GMT", NOW) == 30.0


def test_retry_after_http_date_in_the_past_waits_nothing():
    assert parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", NOW) == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", NOW) == 0.0


# -- read_answer: the HTTP status --------------------------------------------------------------------


def _no_provider_error(doc):
    return None


def test_read_answer_http_300_with_json_is_not_a_success():
    # 3xx is outside 2xx: not BadRequest/FatalConfig, so Retriable, even with a JSON body
    with pytest.raises(Retriable):
        read_answer(300, {}, b'{"statusCode": 200, "result": true}', NOW, _no_provider_error)


def test_read_answer_http_299_with_json_is_the_json():
    assert read_answer(299, {}, b'{"a": 1}', NOW, _no_provider_error) == {"a": 1}
