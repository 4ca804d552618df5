"""`backfill`'s dates against the provider's (config audit of 2026-12-06): it let through the
oldest date plus one (today - 30, which Tencent refuses with FailedOperation.NotSupportDate: exit 1,
"rerunning is safe", never succeeding) and dates after today (polled for nothing); `--share 0`
ended in a traceback. All usage errors now, exit 2, before any call. The dates are the provider's:
at 18:00 UTC it is already the next day in UTC+8. Expected values by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tests.integration.harness import worker_config
from worker.__main__ import build_parser
from worker.backfill import run_backfill
from worker.config import parse_config

CONFIG = parse_config(worker_config("127.0.0.1:9", "p", [
    {"name": "tx", "provider": "tencent_ses", "credentials": {"secret_id": "AKID", "secret_key_env": "K"},
     "webhook": {"enabled": False}}]), {"K": "k"})
# 2026-12-06 18:00 UTC: 2026-12-07 02:00 in UTC+8 (Tencent's day)
EVENING = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize(("date_from", "date_to", "said"), [
    (date(2026, 11, 7), date(2026, 11, 7), "backfill: tencent_ses keeps statuses for 30 days (today, 2026-12-07 in "
     "its time zone, and the 29 before); dates before 2026-11-08 cannot be polled"),
    (date(2026, 12, 1), date(2026, 12, 8), "backfill: --to 2026-12-08 is after today in tencent_ses's time zone "
     "(2026-12-07)"),
])
def test_dates_the_provider_does_not_answer_for_are_usage_errors(capsys, date_from, date_to, said):
    assert run_backfill(CONFIG, "tx", date_from, date_to, progress=False, clock=lambda: EVENING) == 2
    assert capsys.readouterr().err.strip() == said


@pytest.mark.parametrize("share", ["0", "-1", "1.5", "nan", "x"])
def test_a_share_that_is_not_a_fraction_is_a_usage_error(capsys, share):
    args = ["backfill", "--config", "c.yaml", "--account", "tx", "--from", "2026-12-01", "--to", "2026-12-01",
            "--share", share]
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(args)
    assert exit_.value.code == 2
    assert "--share" in capsys.readouterr().err


@pytest.mark.parametrize("share", ["1", "0.25", "1e-3"])
def test_a_fraction_is_a_share(share):
    args = build_parser().parse_args(["backfill", "--config", "c.yaml", "--account", "tx", "--from", "2026-12-01",
                                      "--to", "2026-12-01", "--share", share])
    assert args.share == float(share)


def test_an_account_without_poll_credentials_is_a_usage_error_before_any_call(capsys):
    """Config audit H: an account whose polling is off may leave its credentials out; backfill then
    made every call, each refused, and ended with 1 ("rerunning is safe")."""
    config = parse_config(worker_config("127.0.0.1:9", "p", [
        {"name": "sc", "provider": "sendcloud", "poll": {"enabled": False},
         "webhook": {"enabled": True, "app_key_env": "K"}},
        {"name": "tx", "provider": "tencent_ses", "poll": {"enabled": False}, "credentials": {"secret_id": "AKID"},
         "webhook": {"enabled": False}}]), {"K": "k" * 20})
    assert run_backfill(config, "sc", date(2026, 12, 1), date(2026, 12, 1), progress=False, clock=lambda: EVENING) == 2
    assert capsys.readouterr().err.strip() == (
        "backfill: sc has no credentials to poll with (its polling is off, so the config may leave them out); "
        "give credentials.api_user, credentials.api_key_env or api_key_file")
    assert run_backfill(config, "tx", date(2026, 12, 1), date(2026, 12, 1), progress=False, clock=lambda: EVENING) == 2
    assert capsys.readouterr().err.strip() == (
        "backfill: tx has no credentials to poll with (its polling is off, so the config may leave them out); "
        "give credentials.secret_key_env or secret_key_file")
