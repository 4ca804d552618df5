"""The exposition holds only the documented series: no `<name>_created` beside counters and
histograms (prometheus_client adds one per child by default; docs/metrics.md says they are off)."""

from __future__ import annotations

from prometheus_client import generate_latest

from worker import metrics


def test_counters_and_histograms_export_no_created_series() -> None:
    metrics.poll_request("sendcloud", "created-check", "ok")
    metrics.throttled("sendcloud", "created-check")
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'esw_poll_requests_total{account="created-check",outcome="ok",provider="sendcloud"} 1.0' in text
    assert 'esw_throttles_total{account="created-check",provider="sendcloud"} 1.0' in text
    created = [line for line in text.splitlines() if "_created" in line]
    assert created == []
