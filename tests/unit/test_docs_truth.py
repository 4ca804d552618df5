"""Issue 18 (4, 5): what the operator docs say, checked against the code.

Names: every `esw_*` metric the docs mention is registered in worker.metrics.REGISTRY, every
`Esw*` alert exists in the chart's rules file, and every `#anchor` link into the runbook (and the
other docs) lands on a heading. Claims: the numbers and exit statuses the docs give are the code's
own constants, read from the code, so a doc that drifts back to an old wrong sentence fails here.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import make_mocked_request

from worker import __main__ as cli
from worker import app, metrics, reach, shards
from worker.config import parse_config
from worker.deadletter import DeadLetter
from worker.errors import ERROR_TYPES
from worker.poll import calls
from worker.poll.limiter import AdaptiveLimiter
from worker.webhooks import RETRY_AFTER_SECS, WebhookReceiver

ROOT = Path(__file__).resolve().parents[2]
DOCS = {name: ROOT / name for name in (
    "docs/runbook.md", "docs/metrics.md", "docs/configuration.md", "docs/topics.md", "README.md")}
RUNBOOK = ROOT / "docs" / "runbook.md"
ALERT_RULES = ROOT / "helm" / "email-status-worker" / "files" / "alerts.yaml"
NOTES = ROOT / "helm" / "email-status-worker" / "templates" / "NOTES.txt"
NOW = datetime(2026, 12, 2, tzinfo=UTC)
MINIMAL = {"kafka": {"bootstrap_servers": "127.0.0.1:9"}, "accounts": []}   # the rest: defaults


def text(name: str) -> str:
    return DOCS[name].read_text(encoding="utf-8")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower-case, punctuation other than `-` and `_` dropped, spaces to
    `-`, a repeated slug gets `-1`, `-2`...; lines inside code fences are not headings."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        match = None if fenced else re.match(r"#{1,6}\s+(.+?)\s*#*\s*$", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def section(markdown: str, heading: str) -> str:
    """The text under `heading` (a whole heading line), up to the next heading of its level or above."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = markdown.splitlines()
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines))
                if re.match(rf"#{{1,{level}}}\s", lines[i])), len(lines))
    return "\n".join(lines[start + 1:end])


def flat(markdown: str) -> str:
    """Prose with its line breaks undone, so that a sentence can be matched across lines."""
    return re.sub(r"\s+", " ", markdown)


@functools.cache
def series_names() -> frozenset[str]:
    """What the registry exports: a counter as `_total`, a histogram as `_bucket`, `_sum` and
    `_count` (and its base name, as the docs name a histogram), a gauge under its own name."""
    names: set[str] = set()
    for collector in set(metrics.REGISTRY._collector_to_names):
        name, kind = collector._name, collector._type
        if kind == "counter":
            names.add(f"{name}_total")
        elif kind == "histogram":
            names |= {name, f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    return frozenset(names)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backfill_parser() -> argparse.ArgumentParser:
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["backfill"]


def alert_names() -> set[str]:
    groups = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


# -- the helpers, on cases written out by hand -----------------------------------------------------


def test_anchors_follow_githubs_rules():
    markdown = ("# Runbook\n## One broker down, NotEnoughReplicas\n### EswRawLagGrowing\n```sh\n# a comment\n```\n"
                "## Polls failing with fatal_config\n## Permissions (ACLs) the worker's principal needs\n"
                "## Runbook\n## Lag on `_raw` growing\n")
    assert anchors(markdown) == {"runbook", "one-broker-down-notenoughreplicas", "eswrawlaggrowing",
                                 "polls-failing-with-fatal_config", "permissions-acls-the-workers-principal-needs",
                                 "runbook-1", "lag-on-_raw-growing"}


def test_series_names_count_a_counter_and_a_histogram_as_their_metric():
    names = series_names()
    assert {"esw_poll_requests_total", "esw_produce_latency_seconds_bucket", "esw_produce_latency_seconds_sum",
            "esw_produce_latency_seconds_count", "esw_raw_lag"} <= names
    assert "esw_poll_requests" not in names and "esw_raw_lag_total" not in names


# -- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_every_metric_the_docs_name_is_registered(doc):
    named = set(re.findall(r"\besw_[a-z0-9_]*[a-z0-9]", text(doc)))
    unknown = named - series_names()
    assert not unknown, f"{doc} names metrics worker.metrics.REGISTRY does not have: {sorted(unknown)}"


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_every_alert_the_docs_name_is_in_the_rules_file(doc):
    named = set(re.findall(r"\bEsw[A-Z]\w+", text(doc)))
    unknown = named - alert_names()
    assert not unknown, f"{doc} names alerts {ALERT_RULES.name} does not have: {sorted(unknown)}"


def test_every_alert_has_its_runbook_section():
    assert {a.lower() for a in alert_names()} <= anchors(RUNBOOK.read_text(encoding="utf-8"))


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_every_anchor_link_lands_on_a_heading(doc):
    """`(#a)` inside a page, and `(runbook.md#a)`, `(metrics.md#a)`, `(topics.md#a)`... across them."""
    source = DOCS[doc]
    broken = []
    for target, anchor in re.findall(r"\]\(([\w./-]*\.md)?#([^)\s]+)\)", text(doc)):
        page = (source.parent / target).resolve() if target else source
        if not page.exists():
            broken.append(f"{target}#{anchor} (no such page)")
        elif anchor not in anchors(page.read_text(encoding="utf-8")):
            broken.append(f"{target}#{anchor}")
    assert not broken, f"{doc}: links to no heading: {broken}"


def test_links_into_the_runbook_are_checked_at_all():
    """The link pattern above finds what it must: a broken link in a page is not silently skipped."""
    links = re.findall(r"\]\(([\w./-]*\.md)?#([^)\s]+)\)", text("docs/metrics.md"))
    assert ("runbook.md", "throttling") in links
    assert ("", "error-types") in links


# -- claims (issue 18, point 4) -------------------------------------------------------------------


def kafka_unavailable() -> str:
    return flat(section(RUNBOOK.read_text(encoding="utf-8"), "## Kafka unavailable"))


def test_kafka_unreachable_at_start_the_exit_status_the_code_uses():
    """(a) Not "waits out the startup probe": worker.app exits with EXIT_KAFKA and one line."""
    said = re.search(r"A pod that starts while Kafka cannot be reached.*? exits with status (\d+) after one error line, "
                     r'`"event":"cannot start: Kafka unavailable"`', kafka_unavailable())
    assert said, "the runbook no longer says how a start without Kafka ends"
    assert int(said.group(1)) == app.EXIT_KAFKA
    topics = re.search(r"end it with status (\d+) and `\"event\":\"cannot start: topics\"`", kafka_unavailable())
    assert topics and int(topics.group(1)) == app.EXIT_CONFIG


def test_no_doc_says_a_pod_waits_for_kafka_at_start():
    for doc in DOCS:
        prose = flat(text(doc))
        for sentence in re.split(r"(?<=[.;])\s", prose):
            if re.search(r"startup probe", sentence, re.I) and re.search(r"\bKafka\b", sentence):
                assert not re.search(r"\bwait", sentence, re.I), f"{doc}: {sentence}"


def test_the_code_ends_with_that_status_when_kafka_is_not_there(tmp_path):
    """The constant is what the process returns: `run` against a closed port ends at once, with the
    one line the runbook quotes (in a subprocess: run_app owns its loop, logs.setup the root logger)."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": "127.0.0.1:9"}, "accounts": [],
                                      "http": {"host": "127.0.0.1", "port": free_port()}}))
    done = subprocess.run([sys.executable, "-m", "worker", "run", "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": ""})
    assert done.returncode == app.EXIT_KAFKA == 1, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    ours = [line for line in lines if line["level"] == "error" and line["logger"].startswith("worker")]
    assert [line["event"] for line in ours] == ["cannot start: Kafka unavailable"]   # one line, no traceback
    assert ours[0]["error_type"] == "kafka" and "exception" not in ours[0]


def test_exit_status_2_is_the_configs_in_both_places():
    runbook = RUNBOOK.read_text(encoding="utf-8")
    heading = re.search(r"^## Exit status (\d+)$", runbook, re.M)
    assert heading and int(heading.group(1)) == cli.EXIT_CONFIG == app.EXIT_CONFIG == 2
    body = flat(section(runbook, heading.group(0)))
    said = re.search(r"Status (\d+) is Kafka unreachable at start", body)
    assert said and int(said.group(1)) == app.EXIT_KAFKA


def test_the_poll_rate_climbs_to_a_learned_cap_with_the_limiters_numbers():
    """(b) Not only "halves then climbs 10 %/min": the rate stops at a learned cap."""
    throttling = flat(section(RUNBOOK.read_text(encoding="utf-8"), "## Throttling"))
    said = re.search(r"every clean window adds back (\d+) % of the ceiling, up to a \*learned cap\*: (\d+) % of the "
                     r"rate achieved when the throttle came, which rises by (\d+) % of the ceiling after each clean "
                     r"hour", throttling)
    assert said, "the runbook's Throttling section no longer describes the learned cap"
    increase, margin, probe = (int(g) for g in said.groups())
    assert (increase, margin, probe) == (10, 90, 5)        # by hand, and:
    assert increase == round(AdaptiveLimiter.INCREASE * 100)
    assert margin == round(AdaptiveLimiter.CAP_MARGIN * 100)
    assert probe == round(AdaptiveLimiter.PROBE * 100)
    assert AdaptiveLimiter.PROBE_AFTER_SECS == 3600        # "each clean hour"
    cut = re.search(r"One throttle lowers the cap at most to (\d+) % of what it was", throttling)
    assert cut and int(cut.group(1)) == 25 == round(AdaptiveLimiter.CAP_CUT * 100)


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_no_doc_gives_the_climb_without_the_cap(doc):
    for paragraph in text(doc).split("\n\n"):
        prose = flat(paragraph)
        if re.search(r"(adds back|climbs back by) 10 %", prose):
            assert "cap" in prose, f"{doc}: {prose[:200]}"
        assert not re.search(r"half (of )?its ceiling", prose), f"{doc}: the rate halves from where it is"


def test_a_dead_letters_reason_is_its_error_type():
    """(c) metrics.md: `reason` is the failure's error type (webhooks record malformed,
    too_many_records, record_too_large, field_too_long...), and the code refuses anything else."""
    row = next(line for line in text("docs/metrics.md").splitlines() if line.startswith("| `esw_dead_letters_total`"))
    assert re.search(r"`reason` is the failure's \[error type\]\(#error-types\)", row)
    with pytest.raises(ValueError, match="not an error_type"):
        DeadLetter("sendcloud", "a", "KeyError", "webhook", "body", b"{}", "application/json", NOW)
    runbook = flat(section(RUNBOOK.read_text(encoding="utf-8"), "## Dead letters"))
    listed = re.search(r"The `reason` says why \(([^)]*)\)", runbook)
    assert listed
    reasons = set(re.findall(r"`(\w+)`", listed.group(1)))
    assert reasons and reasons <= ERROR_TYPES
    for doc in DOCS:
        assert not re.search(r"webhooks? always record", flat(text(doc))), doc


def test_a_wrong_tencent_token_is_the_accounts_in_the_docs_and_the_code():
    """(d) A 401 for a bad path token is counted under the account the URL named, not `unknown`."""
    row = next(line for line in text("docs/metrics.md").splitlines()
               if line.startswith("| `esw_webhook_requests_total`"))
    assert "a 401 (bad signature or Tencent path token) is counted under the account the URL addressed" in row
    for doc in DOCS:
        for clause in re.split(r"[.;]\s", flat(text(doc))):
            if "token" in clause:
                assert not re.search(r'`unknown`|"unknown"', clause), f"{doc}: {clause}"
    from tests.unit.test_receiver import CONFIG

    receiver = WebhookReceiver(CONFIG, writer=None)
    request = make_mocked_request("POST", "/webhooks/tencent_ses/tx/wrong-token-0123456789",
                                  match_info={"provider": "tencent_ses", "account": "tx",
                                              "token": "wrong-token-0123456789"})
    account, status = receiver._account(request)
    assert status == 401 and account is not None and account.name == "tx"


def test_shutdown_is_bounded_by_the_grace_period_as_the_runbook_says():
    """(e) `shutdown.grace_secs` bounds the whole unwind: its parts add up to it."""
    stopping = flat(section(RUNBOOK.read_text(encoding="utf-8"), "## Stopping"))
    said = re.search(r"within `shutdown.grace_secs` \((\d+) s\) in all: a fifth \(at most (\d+) s\) for webhook "
                     r"requests in progress, a fifth \(at most `kafka.produce_timeout_secs`\) for the `_raw` "
                     r"producer's flush, the rest for", stopping)
    assert said, "the runbook no longer says how the grace period is shared"
    grace, requests_cap = (int(g) for g in said.groups())
    assert (grace, requests_cap) == (25, 5)
    default = parse_config(MINIMAL, {})     # every default
    assert default.shutdown_grace_secs == grace
    budget = app.shutdown_budget(default)
    assert sum(budget) == grace
    assert budget.requests == min(requests_cap, grace / 5)
    assert budget.flush == min(default.kafka.produce_timeout_secs, grace / 5)
    long = parse_config({**MINIMAL, "shutdown": {"grace_secs": 100}}, {})
    assert app.shutdown_budget(long).requests == requests_cap
    assert sum(app.shutdown_budget(long)) == 100


def test_notes_say_what_status_shows_per_shard():
    """(f) /status shows a shard's open batch (`backlog`), not its lag (that is esw_raw_lag)."""
    line = next(line for line in NOTES.read_text(encoding="utf-8").splitlines() if "localhost:8080/status" in line)
    assert "lag" not in line, line


# -- the new runbook sections' numbers (issue 18, point 5) ----------------------------------------


def test_backfill_arguments_and_defaults_are_the_parsers():
    repolling = section(RUNBOOK.read_text(encoding="utf-8"), "## Re-polling a date range")
    documented = set(re.findall(r"^\| `(--[a-z-]+)", repolling, re.M))
    documented |= set(re.findall(r"^\| `--[a-z-]+ [A-Z-]+`, `(--[a-z-]+)", repolling, re.M))
    backfill = backfill_parser()
    options = {o for action in backfill._actions for o in action.option_strings} - {"-h", "--help"}
    assert documented == options == {"--config", "--account", "--from", "--to", "--share", "--no-progress"}
    share = re.search(r"^\| `--share F` \|.*default ([\d.]+) \|$", repolling, re.M)
    assert share and float(share.group(1)) == backfill.get_default("share") == 0.25


def test_backfill_quota_arithmetic_uses_the_defaults():
    repolling = flat(section(RUNBOOK.read_text(encoding="utf-8"), "## Re-polling a date range"))
    said = re.search(r"With the defaults \(([\d.]+) and ([\d.]+)\) that is ([\d.]+) \+ ([\d.]+) = (\d+) %", repolling)
    assert said
    quota_share, share, worker_part, backfill_part, total = (float(g) for g in said.groups())
    config = parse_config({**MINIMAL, "accounts": [
        {"name": "a", "provider": "sendcloud", "webhook": {"enabled": False}, "poll": {"enabled": False}}]}, {})
    backfill = backfill_parser()
    assert quota_share == config.accounts[0].poll.quota_share == 0.8
    assert share == backfill.get_default("share")
    assert worker_part == quota_share and backfill_part == pytest.approx(quota_share * share)
    assert total == pytest.approx((worker_part + backfill_part) * 100) == 100


@pytest.mark.parametrize(("heading", "pattern", "expected"), [
    ("## Polls failing with fatal_config", r"pauses the whole account's polling for (\d+) minutes",
     calls.FATAL_BACKOFF_SECS / 60),
    ("## A pod stuck not ready", r"the last Kafka probe \(every (\d+) s, every second while failing\)",
     reach.PROBE_EVERY_SECS),
    ("### One broker down, NotEnoughReplicas", r"answered 503 with `Retry-After: (\d+)`", RETRY_AFTER_SECS),
    ("### One broker down, NotEnoughReplicas", r"tries again (half a second) later", shards.COMMIT_BACKOFF_SECS),
])
def test_runbook_numbers_are_the_codes(heading, pattern, expected):
    said = re.search(pattern, flat(section(RUNBOOK.read_text(encoding="utf-8"), heading)))
    assert said, f"{heading}: {pattern}"
    value = 0.5 if said.group(1) == "half a second" else float(said.group(1))
    assert value == expected
    if heading == "## A pod stuck not ready":
        assert reach.PROBE_UNREACHABLE_SECS == 1.0     # "every second while failing"
