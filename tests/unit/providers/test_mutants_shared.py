"""The providers' shared helpers (base.py, tc3.py): what mutation testing found unpinned.

Times must come out in UTC, and the TC3 credential date must be the UTC date, whatever zone the
process runs in: these tests run them with the local zone set to UTC+8 (a pod with TZ set)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from worker.providers import tc3
from worker.providers.base import CHINA_TZ, naive_to_utc


@pytest.fixture
def local_zone_utc_plus_8(monkeypatch):
    monkeypatch.setenv("TZ", "CST-8")          # POSIX form: UTC+8, no tz database needed
    time.tzset()
    assert time.timezone == -8 * 3600
    yield
    monkeypatch.undo()
    time.tzset()


def test_naive_to_utc_answers_in_utc_whatever_the_local_zone(local_zone_utc_plus_8):
    dt = naive_to_utc("2024-01-02 07:59:01", CHINA_TZ)
    assert dt == datetime(2024, 1, 1, 23, 59, 1, tzinfo=UTC)
    assert dt.utcoffset() == timedelta(0)
    assert dt.isoformat() == "2024-01-01T23:59:01+00:00"


def test_tc3_signs_with_the_utc_date_whatever_the_local_zone(local_zone_utc_plus_8):
    # 2024-01-01T20:00:00Z is already 2024-01-02 in UTC+8; Tencent checks the UTC date
    sig = tc3.sign(secret_id="AKID", secret_key="key", host="ses.tencentcloudapi.com", payload=b"{}",
                   timestamp=1_704_139_200, content_type="application/json")
    assert sig.date == "2024-01-01"
    assert sig.credential_scope == "2024-01-01/ses/tc3_request"
    assert sig.authorization.startswith("TC3-HMAC-SHA256 Credential=AKID/2024-01-01/ses/tc3_request, ")
