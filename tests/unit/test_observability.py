"""The dashboard, the alert rules and the CloudWatch alarms name only what exists.

Metric names come from the source, not from a list: every prometheus_client
Counter/Gauge/Histogram/Summary defined in the shipped packages (found by reading the
code, wherever it lives) and in the installed Flower. Each PromQL expression of
deploy/grafana/bwp-worker.json and deploy/prometheus/alerts.yml may name only those
series (with the suffixes Prometheus adds) and only their labels.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit import cfn

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
METRIC_TYPES = ("Counter", "Gauge", "Histogram", "Summary")
#: labels Prometheus attaches to every scraped series
TARGET_LABELS = frozenset({"job", "instance"})
#: series Prometheus makes itself
BUILTIN_SERIES = {"up": frozenset()}
PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or"}
    | {"unless", "offset", "inf", "nan"}
)
#: documented AWS/SQS CloudWatch metrics
SQS_METRICS = frozenset(
    {
        "ApproximateAgeOfOldestMessage",
        "ApproximateNumberOfMessagesDelayed",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesVisible",
        "NumberOfEmptyReceives",
        "NumberOfMessagesDeleted",
        "NumberOfMessagesReceived",
        "NumberOfMessagesSent",
        "SentMessageSize",
    }
)


@dataclass(frozen=True)
class Metric:
    kind: str
    name: str
    labels: frozenset[str]

    def series(self) -> dict[str, frozenset[str]]:
        """The series names Prometheus scrapes for this metric, with their labels."""
        if self.kind == "Counter":
            base = self.name.removesuffix("_total")
            return {f"{base}_total": self.labels, f"{base}_created": self.labels}
        if self.kind == "Histogram":
            return {
                f"{self.name}_bucket": self.labels | {"le"},
                **{f"{self.name}_{s}": self.labels for s in ("sum", "count", "created")},
            }
        if self.kind == "Summary":
            return {
                self.name: self.labels | {"quantile"},
                **{f"{self.name}_{s}": self.labels for s in ("sum", "count", "created")},
            }
        return {self.name: self.labels}


def defined_metrics(root: Path) -> list[Metric]:
    """Every prometheus_client metric constructed with a literal name under ``root``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        aliases = {
            alias.asname or alias.name: alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prometheus")
            for alias in node.names
            if alias.name in METRIC_TYPES
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            kind = aliases.get(called or "") or (
                called if isinstance(func, ast.Attribute) else None
            )
            if kind not in METRIC_TYPES or not node.args:
                continue
            if not isinstance(node.args[0], ast.Constant) or not isinstance(
                node.args[0].value, str
            ):
                continue
            keywords = {k.arg: k.value for k in node.keywords}
            labels_node = node.args[2] if len(node.args) > 2 else keywords.get("labelnames")
            labels = ast.literal_eval(labels_node) if labels_node is not None else ()
            found.append(Metric(kind, node.args[0].value, frozenset(labels)))
    return found


@cache
def shipped_roots() -> list[Path]:
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = find["packages"]["find"]["include"]
    return [ROOT / p.rstrip("*.") for p in packages if "sandbox" not in p]


@cache
def flower_root() -> Path:
    spec = importlib.util.find_spec("flower")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent


@cache
def known_series() -> dict[str, frozenset[str]]:
    series: dict[str, frozenset[str]] = dict(BUILTIN_SERIES)
    for root in [*shipped_roots(), flower_root()]:
        for metric in defined_metrics(root):
            series.update(metric.series())
    return series


@cache
def source_strings() -> frozenset[str]:
    """Every string literal of the shipped code: where label values such as kinds live."""
    strings = set()
    for root in shipped_roots():
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    strings.add(node.value)
    return frozenset(strings)


@cache
def flower_label_values() -> dict[str, frozenset[str]]:
    """Values Flower's ``type`` and ``task`` labels take: Celery event types, our task names."""
    from celery.app.utils import find_app
    from celery.events.state import TASK_EVENT_TO_STATE

    app = find_app("tasks")  # as `celery -A tasks flower` finds it

    types = {f"task-{e}" for e in TASK_EVENT_TO_STATE}
    return {"type": frozenset(types), "task": frozenset(app.tasks)}


# --- reading PromQL ----------------------------------------------------------------------
SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def names_in(expr: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """(series name, {label: (operator, value)}) for each series ``expr`` reads."""
    expr = re.sub(r"\$\{?\w+\}?", "1m", expr)  # Grafana variables ($__rate_interval)
    found: list[tuple[str, dict[str, tuple[str, str]]]] = []

    def selector(match: re.Match[str]) -> str:
        matchers = {m[0]: (m[1], m[2]) for m in MATCHER.findall(match.group(2))}
        found.append((match.group(1) or "", matchers))
        return " "

    rest = SELECTOR.sub(selector, expr)
    rest = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", rest)
    rest = re.sub(r"\[[^\]]*\]", " ", rest)  # ranges
    rest = re.sub(r'"[^"]*"', " ", rest)
    for match in re.finditer(r"(?<![\w:.])[A-Za-z_:][\w:]*(?![\w:])(?!\s*\()", rest):
        word = match.group(0)
        followed = rest[match.end() :].lstrip()
        if word.lower() in PROMQL_WORDS or followed.startswith("(") or re.match(r"\d", word):
            continue
        found.append((word, {}))
    return found


def assert_known(expr: str, where: str) -> None:
    series = known_series()
    read = names_in(expr)
    assert read, f"{where}: reads no series: {expr}"
    for name, matchers in read:
        assert name in series, f"{where}: {name!r} is exported by neither bwp-worker nor Flower"
        for label, (operator, value) in matchers.items():
            if label in TARGET_LABELS:
                continue
            assert label in series[name], f"{where}: {name} has no label {label!r}"
            if operator != "=":
                continue
            if name.startswith("flower_"):
                allowed = flower_label_values().get(label)
                assert allowed is None or value in allowed, f"{where}: {label}={value!r}"
            else:
                assert value in source_strings(), f"{where}: no code sets {label}={value!r}"


# --- the artefacts -----------------------------------------------------------------------
def dashboard_exprs() -> list[tuple[str, str]]:
    document = json.loads((DEPLOY / "grafana" / "bwp-worker.json").read_text())

    def panels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [p for item in items for p in [item, *panels(item.get("panels", []))]]

    return [
        (f"panel {panel['title']!r}", target["expr"])
        for panel in panels(document["panels"])
        for target in panel.get("targets", [])
    ]


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_scan_finds_the_pollers_and_flowers_metrics() -> None:
    series = known_series()
    assert {"bwp_messages_received_total", "bwp_event_age_seconds_bucket"} <= set(series)
    assert {"flower_events_total", "flower_task_runtime_seconds_bucket"} <= set(series)
    assert {"flower_worker_online"} <= set(series)
    assert "kind" in series["bwp_messages_parked_total"]


@pytest.mark.parametrize(("where", "expr"), dashboard_exprs(), ids=lambda v: v[:60])
def test_every_dashboard_query_names_exported_metrics(where: str, expr: str) -> None:
    assert_known(expr, where)


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_every_alert_names_exported_metrics(rule: dict[str, Any]) -> None:
    assert_known(rule["expr"], rule["alert"])
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert rule["annotations"]["summary"]


def test_the_dashboard_covers_what_operators_watch() -> None:
    read = {name for _, expr in dashboard_exprs() for name, _ in names_in(expr)}
    for needed in (
        "bwp_messages_received_total",
        "bwp_events_dispatched_total",
        "bwp_twins_absorbed_total",
        "bwp_messages_parked_total",
        "bwp_event_age_seconds_bucket",
        "bwp_loop_heartbeat_timestamp",
        "bwp_loop_errors_total",
        "flower_task_runtime_seconds_bucket",
        "flower_events_total",
        # what only the workers know (their own /metrics)
        "bwp_sync_retries_total",
        "bwp_stale_events_redispatched_total",
        "bwp_sibling_deliveries_skipped_total",
        "bwp_milestone_unknown_trackers_total",
    ):
        assert needed in read, needed


def test_no_alert_stands_in_for_a_worker_metric_with_flower_events() -> None:
    # The workers count retries and the sweep's re-dispatches themselves (issue 21)
    rules = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    assert "bwp_sync_retries_total" in rules["BwpApiThrottlingOrOutage"]
    assert "bwp_stale_events_redispatched_total" in rules["BwpSweepRedispatching"]
    for name in ("BwpApiThrottlingOrOutage", "BwpSweepRedispatching"):
        assert "flower_" not in rules[name], name


def test_the_alerts_cover_the_failure_modes() -> None:
    alerts = {rule["alert"] for rule in alert_rules()}
    assert {
        "BwpEventAgeHigh",
        "BwpEventsParked",
        "BwpPollerLoopStalled",
        "BwpNoReceives",
        "BwpSweepRedispatching",
        "BwpApiThrottlingOrOutage",
    } <= alerts


@pytest.mark.parametrize(
    "expr",
    [
        "rate(bwp_messages_recieved_total[5m])",  # a typo
        "bwp_messages_received",  # the name without the counter's suffix
        'sum by (kind) (bwp_messages_parked_total{knd="malformed"})',  # no such label
        'bwp_messages_parked_total{kind="malfromed"}',  # no code parks that kind
        'flower_events_total{type="task-exploded"}',  # no such Celery event
    ],
)
def test_a_wrong_name_would_be_caught(expr: str) -> None:
    with pytest.raises(AssertionError):
        assert_known(expr, "probe")


def test_cloudwatch_alarms_watch_the_deployed_queues() -> None:
    # Given the queues of the template (the event queue, the parking and redrive DLQs)
    queues = {logical for logical in cfn.resources("AWS::SQS::Queue")}
    # Then every alarm reads a real SQS metric of one of them and notifies someone
    watched = set()
    for name, resource in cfn.resources("AWS::CloudWatch::Alarm").items():
        alarm = resource["Properties"]
        stats = [alarm, *[m["MetricStat"]["Metric"] for m in alarm.get("Metrics", [])[:1]]]
        for metric in [s for s in stats if "MetricName" in s]:
            assert metric["Namespace"] == "AWS/SQS", name
            assert metric["MetricName"] in SQS_METRICS, name
            [dimension] = metric["Dimensions"]
            queue = cfn.logical_id(dimension["Value"])
            assert dimension["Name"] == "QueueName" and queue in queues, name
            watched.add((metric["MetricName"], queue))
        assert [cfn.logical_id(a) for a in alarm["AlarmActions"]] == ["AlarmTopic"], name
    # And the alarms the runbook promises exist
    assert ("ApproximateAgeOfOldestMessage", "EventQueue") in watched
    assert ("ApproximateNumberOfMessagesVisible", "ParkingDeadLetterQueue") in watched
    assert ("ApproximateNumberOfMessagesVisible", "RedriveDeadLetterQueue") in watched
