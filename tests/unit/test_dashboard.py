"""The Grafana dashboard the chart ships (helm/email-status-worker/files/dashboard.json).

Its queries are parsed by the real Prometheus (`promtool check rules`, Debian's `prometheus`
package; $PROMTOOL overrides the path). A missing promtool fails the test: it never skips it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.monitoring import DASHBOARD, dashboard_queries, load_dashboard, panels
from worker import metrics

ROWS = ["Intake", "Events", "Polling", "Kafka and shards", "Dead letters", "Deliverability"]
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
METRICS_DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
METRIC = re.compile(r"\besw_[a-z0-9_]+")
AGGREGATION = re.compile(r"\b(sum|max|min|avg|count|group|topk|bottomk|quantile)\s*(?:by\s*\(([^)]*)\)\s*)?$")


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return load_dashboard()


def exprs(dashboard: dict) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels(dashboard) for t in p.get("targets", [])]


def registered_series() -> set[str]:
    """The series names the worker's registry exports (or will, once a labelled child exists)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",),
                "summary": ("", "_sum", "_count")}
    return {family.name + s for family in metrics.REGISTRY.collect() for s in suffixes[family.type]}


def documented_labels() -> dict[str, set[str]]:
    """Labels of each metric, from the tables of docs/metrics.md (test_metrics_docs keeps them true)."""
    out = {}
    for name, labels in re.findall(r"^\| `(esw_[a-z0-9_]+)` \| \w+ \| ([^|]*) \|", METRICS_DOC.read_text(), re.M):
        out[name] = {label.strip() for label in labels.split(",")} - {"—", ""}
    return out


def test_file_is_valid_json():
    try:
        json.loads(DASHBOARD.read_text())
    except json.JSONDecodeError as exc:
        pytest.fail(f"{DASHBOARD}: {exc}", pytrace=False)


def test_dashboard_settings(dashboard):
    assert dashboard["uid"] == "esw-overview"
    assert dashboard["title"] == "email-status-worker"
    assert dashboard["schemaVersion"] == 39
    assert dashboard["editable"] is True
    assert dashboard["time"] == {"from": "now-6h", "to": "now"}
    assert dashboard["refresh"] == "30s"


def test_variables(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("provider", "account"):
        v = variables[name]
        assert v["type"] == "query", name
        assert v["datasource"] == DATASOURCE, name
        assert (v["multi"], v["includeAll"], v["allValue"]) == (True, True, ".*"), name
        query = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        assert query == v["definition"], name
        assert re.fullmatch(rf"label_values\(.*esw_poll_requests_total\|esw_webhook_requests_total.*, {name}\)", query)


def test_rows(dashboard):
    assert [p["title"] for p in dashboard["panels"] if p["type"] == "row"] == ROWS


def test_panel_ids_are_unique(dashboard):
    ids = [p["id"] for p in dashboard["panels"]] + [p["id"] for p in panels(dashboard) if p not in dashboard["panels"]]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_every_panel_is_complete(dashboard):
    for panel in panels(dashboard):
        title = panel.get("title")
        assert title and panel.get("description"), panel["id"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), title
        assert panel["datasource"] == DATASOURCE, title
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{title}: no unit"
        targets = panel.get("targets")
        assert targets, f"{title}: no targets"
        assert len({t["refId"] for t in targets}) == len(targets), f"{title}: refIds repeat"
        for t in targets:
            assert t["refId"] and t["expr"].strip(), title
            assert t["datasource"] == DATASOURCE, title
            assert "legendFormat" in t, title


def test_panels_fit_the_grid_without_overlapping(dashboard):
    boxes = []
    for panel in dashboard["panels"] + [p for p in panels(dashboard) if p not in dashboard["panels"]]:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, panel["title"]
        for title, o in boxes:
            apart = (g["x"] + g["w"] <= o["x"] or o["x"] + o["w"] <= g["x"]
                     or g["y"] + g["h"] <= o["y"] or o["y"] + o["h"] <= g["y"])
            assert apart, f"{panel['title']!r} overlaps {title!r}"
        boxes.append((panel["title"], g))


def test_every_metric_is_registered(dashboard):
    known = registered_series()
    unknown = {(title, name) for title, expr in exprs(dashboard) for name in METRIC.findall(expr) if name not in known}
    assert not unknown, f"not in worker.metrics.REGISTRY: {sorted(unknown)}"


def test_provider_and_account_filter_every_metric_that_has_them(dashboard):
    labels = documented_labels()
    for title, expr in exprs(dashboard):
        for match in re.finditer(r"\b(esw_[a-z0-9_]+)(\{[^}]*\})?", expr):
            name, selector = match.group(1), match.group(2) or ""
            for label in ("provider", "account") if labels.get(name, set()) >= {"provider", "account"} else ():
                assert f'{label}=~"${label}"' in selector, f"{title}: {name} without {label}=~\"${label}\""


def test_every_metric_is_aggregated_across_pods(dashboard):
    """Each metric sits inside an aggregation, and none groups by a pod or instance label."""
    for title, expr in exprs(dashboard):
        assert "without" not in expr, title
        for match in METRIC.finditer(expr):
            groupings = [m.group(2) for m in map(AGGREGATION.search, _enclosing_prefixes(expr, match.start())) if m]
            assert groupings, f"{title}: {match.group(0)} is not aggregated across pods"
            for grouping in filter(None, groupings):
                assert not {"pod", "instance"} & {g.strip() for g in grouping.split(",")}, title


def _enclosing_prefixes(expr: str, at: int) -> list[str]:
    """The text before each parenthesis that encloses position `at`, innermost first."""
    stack = []
    for i, char in enumerate(expr[:at]):
        if char == "(":
            stack.append(i)
        elif char == ")":
            stack.pop()
    return [expr[:i] for i in reversed(stack)]


def test_ranges_use_grafana_intervals(dashboard):
    for title, expr in exprs(dashboard):
        for window in re.findall(r"\[([^\]]*)\]", expr):
            assert window in ("$__rate_interval", "$__range"), f"{title}: [{window}]"


def test_substitution_leaves_no_variable(dashboard):
    queries = dashboard_queries(dashboard)
    assert len(queries) == len(exprs(dashboard))
    for title, query in queries:
        assert "$" not in query and "[[" not in query, f"{title}: {query}"
    one = dashboard_queries(dashboard, interval="5m", provider="sendcloud", account='a"b')
    assert any('provider=~"sendcloud", account=~"a\\"b"' in q and "[5m]" in q for _, q in one)


def test_unknown_variable_is_refused():
    board = {"panels": [{"title": "t", "targets": [{"refId": "A", "expr": "rate(x[$__interval_ms])"}]}]}
    with pytest.raises(ValueError, match="__interval_ms"):
        dashboard_queries(board)


def promtool() -> str:
    path = os.environ.get("PROMTOOL") or shutil.which("promtool") or "/usr/bin/promtool"
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"promtool not found at {path}: install Prometheus' promtool (Debian: apt-get install "
                    "prometheus) or set $PROMTOOL", pytrace=False)
    return path


def test_every_query_parses_in_prometheus(dashboard, tmp_path):
    queries = dashboard_queries(dashboard)
    # The variables' series selectors too: Grafana sends them to Prometheus as match[].
    for v in dashboard["templating"]["list"]:
        if v["type"] == "query":
            selector = re.fullmatch(r"label_values\((.*), \w+\)", v["definition"]).group(1)
            queries += dashboard_queries({"panels": [{"title": f"variable {v['name']}",
                                                      "targets": [{"expr": selector}]}]})
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(queries)]}]}
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    run = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    index = "\n".join(f"dashboard:query_{i}  {title}: {expr}" for i, (title, expr) in enumerate(queries))
    assert run.returncode == 0, f"{run.stdout}{run.stderr}\n{index}"
