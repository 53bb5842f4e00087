"""The Prometheus alert rules, their promtool unit tests and the Grafana dashboard in ops/.

Needs `promtool` (Debian: `apt-get install prometheus`, which ships promtool 2.42). Without it the
tests fail, never skip: rules nobody checked are rules that page nobody. Parsing uses no YAML
library (the rules are read line by line, as written in ops/prometheus/alerts.yml), so these tests
need nothing but pytest and promtool.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "ops" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
SAMPLE = PROMETHEUS_DIR / "metrics_sample.prom"
DASHBOARD = REPO / "ops" / "grafana" / "studiovault.json"

# The operator commands a runbook line may send someone to.
RUNBOOK_COMMANDS = (
    "studiovault status",
    "studiovault dead list",
    "studiovault dead show",
    "studiovault dead replay",
    "studiovault redrive",
    "studiovault worker --check",
)
SEVERITIES = {"critical", "warning"}
METRIC_NAME = re.compile(r"\bstudiovault_[a-z0-9_]+\b")


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail(
            "promtool not found on PATH: install Debian's `prometheus` package "
            "(apt-get install prometheus), which ships promtool 2.42"
        )
    return subprocess.run([exe, *args], cwd=REPO, input=stdin, capture_output=True, text=True, timeout=120, check=False)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"`{' '.join(result.args)}` exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )


def parse_alerts(text: str) -> dict[str, dict[str, str]]:
    """alert name -> its scalar fields (severity, summary, description, runbook, for, ...), read
    line by line from the layout alerts.yml uses: `- alert: NAME` then indented `key: value` lines."""
    alerts: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        start = re.match(r"^\s*- alert:\s*(\S+)\s*$", line)
        if start:
            current = alerts.setdefault(start.group(1), {})
            continue
        if re.match(r"^\s*- (record|name):", line):
            current = None
            continue
        field = re.match(r"^\s+([a-z_]+):\s*(.*?)\s*$", line)
        if current is not None and field and field.group(2) not in ("", "|", ">"):
            value = field.group(2)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            current.setdefault(field.group(1), value)
    return alerts


def parse_test_cases(text: str) -> list[tuple[str, bool]]:
    """(alertname, expects_firing) for every alert_rule_test case in alerts_test.yml:
    `exp_alerts: []` expects nothing firing, anything else (a list, an alias) expects alerts."""
    cases: list[tuple[str, bool]] = []
    pending: str | None = None
    for line in text.splitlines():
        name = re.match(r"^\s*(?:- )?alertname:\s*(\S+)\s*$", line)
        if name:
            pending = name.group(1)
            continue
        exp = re.match(r"^\s*exp_alerts:\s*(.*?)\s*$", line)
        if exp and pending is not None:
            cases.append((pending, exp.group(1) != "[]"))
            pending = None
    return cases


def catalogue() -> set[str]:
    """Metric names the pipeline exposes, from the sample exposition (histograms: _bucket/_sum/_count)."""
    names: set[str] = set()
    for line in SAMPLE.read_text().splitlines():
        typed = re.match(r"^# TYPE (\S+) (\S+)$", line)
        if typed:
            name, kind = typed.groups()
            names.add(name)
            if kind == "histogram":
                names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return names


def dashboard_targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every query of every panel, rows' nested panels included."""
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            found.extend((panel.get("title", "?"), t["expr"]) for t in panel.get("targets", []) if t.get("expr"))
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    return found


# ---------------------------------------------------------------------------------------------- promtool


def test_promtool_check_rules() -> None:
    assert_ok(promtool("check", "rules", str(ALERTS.relative_to(REPO))))


def test_promtool_unit_tests_pass() -> None:
    assert_ok(promtool("test", "rules", str(ALERTS_TEST.relative_to(REPO))))


def test_promtool_check_config() -> None:
    assert_ok(promtool("check", "config", str(CONFIG.relative_to(REPO))))


def test_sample_exposition_passes_the_metrics_linter() -> None:
    """The catalogue's names, types and suffixes as prometheus_client exposes them are lint-clean."""
    result = promtool("check", "metrics", stdin=SAMPLE.read_text())
    assert_ok(result)
    assert result.stdout.strip() == "", result.stdout


# ---------------------------------------------------------------------------------------------- rules


def test_every_alert_has_severity_summary_description_and_a_cli_runbook() -> None:
    alerts = parse_alerts(ALERTS.read_text())
    counted = re.search(r"SUCCESS: (\d+) rules found", promtool("check", "rules", str(ALERTS)).stdout)
    assert counted, "promtool check rules did not report a rule count"
    assert len(alerts) == int(counted.group(1)), f"parsed {sorted(alerts)} but promtool counted {counted.group(1)}"
    problems = []
    for name, fields in sorted(alerts.items()):
        if not name.startswith("StudioVault"):
            problems.append(f"{name}: alert names start with StudioVault")
        if fields.get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity {fields.get('severity')!r} not in {sorted(SEVERITIES)}")
        for key in ("summary", "description", "runbook", "component"):
            if not fields.get(key):
                problems.append(f"{name}: no {key}")
        runbook = fields.get("runbook", "")
        if "studiovault " not in runbook or not any(cmd in runbook for cmd in RUNBOOK_COMMANDS):
            problems.append(f"{name}: runbook {runbook!r} names none of {RUNBOOK_COMMANDS}")
    assert not problems, "\n".join(problems)


def test_the_line_parser_agrees_with_yaml_when_yaml_is_installed() -> None:
    try:  # optional: the line parser above is what the other tests use
        yaml = importlib.import_module("yaml")
    except ImportError:
        return
    doc = yaml.safe_load(ALERTS.read_text())
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    assert all("alert" in rule for rule in rules), "alerts.yml holds alerting rules only"
    parsed = parse_alerts(ALERTS.read_text())
    assert sorted(parsed) == sorted(rule["alert"] for rule in rules)
    for rule in rules:
        assert parsed[rule["alert"]]["runbook"] == rule["annotations"]["runbook"]
        assert parsed[rule["alert"]]["severity"] == rule["labels"]["severity"]


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    alerts = set(parse_alerts(ALERTS.read_text()))
    cases = parse_test_cases(ALERTS_TEST.read_text())
    assert cases, "no alert_rule_test cases found in alerts_test.yml"
    firing = {name for name, fires in cases if fires}
    quiet = {name for name, fires in cases if not fires}
    unknown = {name for name, _ in cases} - alerts
    assert not unknown, f"alerts_test.yml tests alerts that alerts.yml does not define: {sorted(unknown)}"
    assert not alerts - firing, f"never shown firing: {sorted(alerts - firing)}"
    assert not alerts - quiet, f"never shown NOT firing (healthy or recovered): {sorted(alerts - quiet)}"


def test_rules_use_only_catalogue_metrics() -> None:
    known = catalogue()
    rules = "\n".join(line for line in ALERTS.read_text().splitlines() if not line.lstrip().startswith("#"))
    used = set(METRIC_NAME.findall(rules))
    assert used, "no studiovault_ metric found in alerts.yml"
    assert not used - known, f"alerts.yml uses metrics outside the catalogue: {sorted(used - known)}"


# ---------------------------------------------------------------------------------------------- dashboard


def test_dashboard_is_importable_json_with_a_datasource_input() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "studiovault-pipeline"
    assert dashboard["schemaVersion"] >= 38
    assert dashboard.get("id") is None, "an exported dashboard carries no instance id"
    inputs = {i["name"]: i for i in dashboard["__inputs"]}
    assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
    ids = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            ids.append(panel["id"])
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
                assert panel["targets"], f"panel {panel['title']!r} has no query"
                for target in panel["targets"]:
                    assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_dashboard_queries_parse_and_use_only_catalogue_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    targets = dashboard_targets(dashboard)
    variables = [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    known = catalogue()
    used = {m for _, expr in targets for m in METRIC_NAME.findall(expr)}
    used |= {m for q in variables for m in METRIC_NAME.findall(q)}
    assert not used - known, f"the dashboard uses metrics outside the catalogue: {sorted(used - known)}"
    # Every query is valid PromQL: promtool parses each one as a recording rule, with Grafana's
    # variables replaced by what they expand to.
    substitutions = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h", "$source": ".*", "$type": ".*"}
    lines = ["groups:", "  - name: dashboard-queries", "    rules:"]
    for n, (title, query) in enumerate(targets):
        expr = query
        for var, value in substitutions.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"panel {title!r}: unexpanded variable in {expr!r}"
        lines += [f"      - record: dashboard:query_{n}", f"        expr: {json.dumps(expr)}"]
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "dashboard_queries.yml"
        rules.write_text("\n".join(lines) + "\n")
        assert_ok(promtool("check", "rules", str(rules)))
