"""docs/metrics.md lists exactly the metrics the worker registers, with their labels."""

from __future__ import annotations

import re
from pathlib import Path

from worker import metrics

DOC = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()


def registered() -> dict[str, set[str]]:
    out = {}
    for collector in set(metrics.REGISTRY._collector_to_names):  # noqa: SLF001
        name = collector._name  # noqa: SLF001
        if collector._type == "counter":  # noqa: SLF001
            name += "_total"
        out[name] = set(collector._labelnames)  # noqa: SLF001
    return out


def test_every_registered_metric_is_documented_and_nothing_else():
    documented = set(re.findall(r"`(esw_[a-z_]+)", DOC))
    assert documented == set(registered())


def test_labels_are_bounded_and_documented():
    allowed = {"provider", "account", "type", "source", "outcome", "status", "reason", "shard", "stage", "error_type",
               "domain"}
    for name, labels in registered().items():
        assert labels <= allowed, (name, labels)
        for label in labels:
            assert re.search(rf"`{name}`.*\b{label}\b", DOC), f"{name}: label {label} not documented"
