"""The benchmark runner fails when a benchmark's own check fails or is missing (issue 8): a
benchmark that stops checking its read-back must not pass CI silently."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import bench.__main__ as runner
from bench.common import check, failed_checks, row


def fake(*rows: dict) -> SimpleNamespace:
    return SimpleNamespace(run=lambda ctx: list(rows))


@pytest.mark.parametrize(
    ("rows", "exit_code"),
    [
        ((row("fake", "speed", 1.0), check("fake", "read-back", True, "all there")), 0),
        ((row("fake", "speed", 1.0), check("fake", "read-back", False, "3 missing")), 1),
        ((row("fake", "speed", 1.0),), 1),  # no check at all
    ],
    ids=["checked-ok", "check-failed", "no-check"],
)
def test_exit_status_follows_the_checks(monkeypatch, capsys, rows, exit_code) -> None:
    monkeypatch.setattr(runner, "BENCHES", {"fake": fake(*rows)})
    monkeypatch.setattr(runner, "background_load", lambda secs=1.0: 0.0)
    assert runner.main(["--only", "fake", "--quick"]) == exit_code
    out = capsys.readouterr().out
    assert "| fake" in out  # the table is printed whatever the outcome


def test_a_benchmark_that_raises_fails_the_run(monkeypatch) -> None:
    def boom(ctx):
        raise RuntimeError("worker exited")

    monkeypatch.setattr(runner, "BENCHES", {"fake": SimpleNamespace(run=boom)})
    monkeypatch.setattr(runner, "background_load", lambda secs=1.0: 0.0)
    assert runner.main(["--only", "fake"]) == 1


def test_failed_checks_picks_only_failed_check_rows() -> None:
    rows = [row("a", "check: x", "ok"), row("a", "check: y", "FAILED"), row("a", "FAILED speed", 3.0)]
    assert [r["metric"] for r in failed_checks(rows)] == ["check: y"]
