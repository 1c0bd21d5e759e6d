"""docs/grafana-dashboard.json and the alerting rules in docs/OPERATIONS.md name only metrics
that exist (bot/metrics.py), and every query in them is PromQL that a real Prometheus parses."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bot.metrics import REGISTRY
from tests.prometheus_server import PrometheusServer

DOCS = Path(__file__).resolve().parents[1] / "docs"
DASHBOARD = DOCS / "grafana-dashboard.json"
OPERATIONS = DOCS / "OPERATIONS.md"
# Series Prometheus itself writes for every target.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
BLACKBOX_EXPORTER = {"probe_success"}  # readiness: it probes each process's /readyz
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}
# What Grafana puts in place of its variables before Prometheus sees a query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$job": ".*", "$instance": ".*"}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan",
}  # fmt: skip


def exposed_names() -> set[str]:
    """Every series name the registry can expose. A labelled metric has no samples until it
    is first counted: its names come from its type (`_total`, `_bucket`...)."""
    names = set()
    for family in REGISTRY.collect():
        if family.samples:
            names |= {sample.name for sample in family.samples}
        else:
            names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values, strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges, subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\w+", "", text)  # Grafana variables
    words = re.findall(r"(?<![\w.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", text)
    return {w for w in words if w.lower() not in PROMQL_WORDS}


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from panels(item.get("panels", []))  # a collapsed row holds its panels


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def exprs() -> list[tuple[str, str]]:
    """(panel title, expr) of every query in the dashboard."""
    return [
        (panel["title"], target["expr"])
        for panel in panels(dashboard()["panels"])
        for target in panel.get("targets", [])
    ]


def variable_queries() -> list[str]:
    return [
        variable["query"]["query"]
        for variable in dashboard()["templating"]["list"]
        if variable["type"] == "query"
    ]


def alert_exprs() -> list[tuple[str, str]]:
    """(alert, expr) of every rule in OPERATIONS.md's "What to alert on" (an `expr: |` block
    is the lines indented under it)."""
    section = OPERATIONS.read_text(encoding="utf-8").split("## What to alert on\n", 1)[1]
    found: list[tuple[str, str]] = []
    lines = section.split("\n## ", 1)[0].splitlines()
    for n, line in enumerate(lines):
        if not (rule := re.match(r"\s*- alert: (\w+)$", line)):
            continue
        at = next(i for i in range(n + 1, len(lines)) if lines[i].strip().startswith("expr:"))
        value = lines[at].split("expr:", 1)[1].strip()
        if value == "|":
            indent = len(lines[at]) - len(lines[at].lstrip())
            block = []
            for following in lines[at + 1 :]:
                if len(following) - len(following.lstrip()) <= indent:
                    break
                block.append(following.strip())
            value = " ".join(block)
        found.append((rule[1], value))
    return found


def unknown_names(expr: str) -> set[str]:
    return metric_names(expr) - exposed_names() - PROMETHEUS_OWN


def test_the_name_check_catches_a_misspelt_metric() -> None:
    assert (
        unknown_names('sum by (outcome) (rate(voicechat_commands_total{job=~"$job"}[5m]))') == set()
    )
    assert unknown_names("rate(voicechat_comands_total[5m])") == {"voicechat_comands_total"}
    assert unknown_names("voicechat_commands") == {"voicechat_commands"}  # without _total
    assert unknown_names("histogram_quantile(0.95, sum by (le) (rate(x_bucket[1m])))") == {
        "x_bucket"
    }
    assert metric_names('process_resident_memory_bytes{instance=~"$instance"} / 2') == {
        "process_resident_memory_bytes"
    }


def test_every_panel_names_only_metrics_that_exist() -> None:
    found = exprs()
    assert len(found) > 20
    unknown = {(title, expr): unknown_names(expr) for title, expr in found}
    assert {k: v for k, v in unknown.items() if v} == {}
    for query in variable_queries():
        [metric] = re.findall(r"label_values\((\w+)", query)
        assert metric in exposed_names(), query


def test_every_documented_alert_names_only_metrics_that_exist() -> None:
    alerts = dict(alert_exprs())
    assert {"ShardDisconnected", "TranscriptionsFailing", "TasksQueueGrowing", "NotReady"} <= set(
        alerts
    )
    assert alerts["ShardDisconnected"] == "discord_connected == 0"
    unknown = {name: unknown_names(expr) - BLACKBOX_EXPORTER for name, expr in alerts.items()}
    assert {k: v for k, v in unknown.items() if v} == {}


def test_every_panel_reads_the_chosen_data_source() -> None:
    board = dashboard()
    [variable] = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    source = {"type": "prometheus", "uid": f"${{{variable['name']}}}"}
    ids = []
    for panel in panels(board["panels"]):
        ids.append(panel["id"])
        if panel["type"] != "row":
            assert panel["datasource"] == source, panel["title"]
            assert all(t["datasource"] == source for t in panel["targets"]), panel["title"]
    assert len(ids) == len(set(ids))


def grafana_expanded(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"an unknown Grafana variable in {expr}"
    return expr


def test_every_query_is_promql_that_prometheus_parses(
    start_prometheus: Callable[[Mapping[str, str]], PrometheusServer],
) -> None:
    prometheus = start_prometheus({})
    for title, expr in exprs() + alert_exprs():
        try:
            prometheus.query(grafana_expanded(expr))
        except AssertionError as error:
            pytest.fail(f"{title}: {error}")
