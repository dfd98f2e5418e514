"""The Prometheus alert rules and the Grafana dashboard in deploy/monitoring/ (issue 16).

Every ``cds_*`` series they query must be one the code exports (a counter's ``_total``, a histogram's
``_bucket``/``_count``/``_sum``), so a renamed metric cannot leave an alert silently watching nothing.
"""

from __future__ import annotations

import json
import re

import yaml

from tests.conftest import REPO_ROOT

MONITORING = REPO_ROOT / "deploy" / "monitoring"
SERIES = re.compile(r"\bcds_[a-z_]+")
_DEFINED = re.compile(r"""["'](cds_[a-z_]+)["']""")


def exported_series() -> set[str]:
    """Return every series name the metric definitions in cds/ and inference/ can produce."""
    names: set[str] = set()
    for path in [*REPO_ROOT.joinpath("cds").rglob("*.py"), *REPO_ROOT.joinpath("inference").rglob("*.py")]:
        for name in _DEFINED.findall(path.read_text()):
            names |= {name, f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    return names


def rules() -> list[dict[str, object]]:
    document = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_every_alert_has_a_severity_a_summary_and_known_series() -> None:
    exported = exported_series()
    assert {"cds_analysis_jobs", "cds_triton_request_seconds_bucket", "cds_outbox_oldest_seconds"} <= exported
    all_rules = rules()
    assert len(all_rules) >= 10
    names = [rule["alert"] for rule in all_rules]
    assert len(names) == len(set(names))
    for rule in all_rules:
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule  # type: ignore[index]
        assert rule["annotations"]["summary"], rule  # type: ignore[index]
        assert re.fullmatch(r"\d+[smh]", str(rule["for"])), rule
        used = set(SERIES.findall(str(rule["expr"])))
        assert used and used <= exported, (rule["alert"], used - exported)


def test_the_dashboard_queries_only_exported_series() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exported = exported_series()
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(expressions) >= 12
    for expr in expressions:
        used = set(SERIES.findall(expr))
        assert used and used <= exported, (expr, used - exported)
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    # Every panel reads the data source chosen on the dashboard, not one named on the author's Grafana.
    assert {panel["datasource"]["uid"] for panel in dashboard["panels"]} == {"${datasource}"}
