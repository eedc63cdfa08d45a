"""The dashboard and alerting rules of deploy/ (issue 14): the Grafana JSON
loads and names only metrics a real /metrics scrape exports; promtool accepts
the alerting rules and they too name only exported metrics."""

import json
import re
import shutil
from pathlib import Path

from harness import run_command, skip
from test_observability import scrape

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy/grafana/neonfcgi.json"
RULES = REPO / "deploy/prometheus/neonfcgi-alerts.yml"
NAME = re.compile(r"\bneonfcgi_[a-z0-9_]+")


def exported_names(neonfcgi):
    """Every series name of a real scrape (the listen queue needs a socket,
    and /health/db a check, so both are exercised first)."""
    with neonfcgi.start(WORKERS=1) as srv:
        srv.get("/health/db")
        sc = scrape(srv)
    names = {name for name, _ in sc.samples} | {f.name for f in sc.families}
    assert "neonfcgi_listen_queue" in names, "no listen queue in the scrape"
    return names


def test_deploy_dashboard_references_only_exported_metrics(neonfcgi):
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(dash["panels"]) >= 8 and exprs, "dashboard without panels"
    used = {n for e in exprs for n in NAME.findall(e)}
    used |= set(NAME.findall(json.dumps(dash["templating"])))
    missing = used - exported_names(neonfcgi)
    assert not missing, f"dashboard names metrics /metrics does not export: {sorted(missing)}"
    for needed in ("neonfcgi_request_threads", "neonfcgi_listen_queue",
                   "neonfcgi_pool_wait_seconds_bucket", "neonfcgi_db_pool_connections",
                   "neonfcgi_health_db_failures_total", "neonfcgi_worker_restarts_total",
                   "neonfcgi_request_duration_seconds_bucket", "neonfcgi_requests_total"):
        assert needed in used, f"dashboard shows no {needed}"


def test_deploy_alert_rules_pass_promtool_and_name_exported_metrics(neonfcgi):
    promtool = shutil.which("promtool")
    if not promtool:
        skip("promtool missing: scripts/deps.sh test installs Debian's prometheus")
    res = run_command([promtool, "check", "rules", str(RULES)], env=None, cwd=REPO, check=True)
    assert "SUCCESS: 5 rules found" in res.stdout + res.stderr, res.describe()
    used = set(NAME.findall(RULES.read_text()))
    missing = used - exported_names(neonfcgi)
    assert not missing, f"alert rules name metrics /metrics does not export: {sorted(missing)}"
