"""Issue 18 (4): `shutdown.grace_secs` bounds the whole unwind, not only the pipeline's part: the
requests in progress and the `_raw` flush used to come on top (worst case 5 + 25 + 10 = 40 s with
the defaults, and 45 s with the chart's 5 s pause, against a computed grace of 40 s)."""

from __future__ import annotations

import pytest

from tests.integration.harness import worker_config
from worker.app import shutdown_budget
from worker.config import parse_config


@pytest.mark.parametrize(("grace", "produce", "expected"), [
    (25, 5, (5.0, 15.0, 5.0)),          # the defaults: a fifth each for requests and flush
    (25, 2, (5.0, 18.0, 2.0)),          # a short produce timeout bounds the flush
    (60, 10, (5.0, 45.0, 10.0)),        # requests at most 5 s
    (10, 5, (2.0, 6.0, 2.0)),
    (0, 5, (0.0, 0.0, 0.0)),
])
def test_the_grace_period_is_shared_and_never_exceeded(grace, produce, expected):
    config = parse_config(worker_config("127.0.0.1:9", "p", [], kafka={"produce_timeout_secs": produce},
                                        shutdown={"grace_secs": grace}), {})
    budget = shutdown_budget(config)
    assert tuple(budget) == expected
    assert sum(budget) == grace
