"""Tencent Cloud SES `refine`: a failure is not treated as dropped unless the caller says so."""

from __future__ import annotations

import pytest

from worker.model import EventType, Reason, Smtp
from worker.providers.tencent_ses_tables import refine


@pytest.mark.parametrize(("entry", "smtp", "expected"), [
    # RFC 3463 x.4.x (network/routing): not about the address, but not dropped either: kept as is
    ((EventType.SOFT_BOUNCE, Reason.DEFERRED, False), Smtp(421, "4.4.1"),
     (EventType.SOFT_BOUNCE, Reason.DEFERRED, False)),
    ((EventType.INVALID, Reason.BAD_ADDRESS, True), Smtp(554, "5.3.0"),
     (EventType.INVALID, Reason.BAD_ADDRESS, True)),
])
def test_refine_without_dropped_keeps_a_non_address_failure(entry, smtp, expected) -> None:
    assert refine(entry, smtp, False) == expected
    assert refine(entry, smtp, True) == expected


def test_refine_with_dropped_turns_a_non_address_code_into_other() -> None:
    assert refine((EventType.INVALID, Reason.BAD_ADDRESS, True), Smtp(554, "5.3.0"), True, True) == \
        (None, Reason.OTHER, True)
