"""Prometheus and Grafana as docker-compose.yml runs them (no Docker engine here): the configs
parse, every alert is complete, every metric and label an alert or a dashboard panel uses is
one the workers or the hospital simulator export, the dashboard is a well-formed Grafana
dashboard, compose mounts what exists, and — where `promtool` is installed (Debian:
`apt-get install prometheus`) — Prometheus itself accepts the files and the alerts fire on
the trouble they describe, and only then."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from faust.sensors.prometheus import FaustMetrics
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from simulators.hospital_metrics import HOSPITAL_METRICS
from streams.metrics import DOMAIN_METRICS
from tests.compose_file import SERVICES, parses_as_huimin, simulator_steps
from tests.conftest import REPO, TOOLS_REQUIRED

OPS = REPO / "ops"
PROMETHEUS_YML = OPS / "prometheus" / "prometheus.yml"
ALERTS_YML = OPS / "prometheus" / "alerts.yml"
ALERTMANAGER_YML = OPS / "alertmanager" / "alertmanager.yml"
DATASOURCE_YML = OPS / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDER_YML = OPS / "grafana" / "provisioning" / "dashboards" / "huimin.yml"
DASHBOARD_JSON = OPS / "grafana" / "dashboards" / "huimin.json"

PROMETHEUS = yaml.safe_load(PROMETHEUS_YML.read_text())
ALERTS = yaml.safe_load(ALERTS_YML.read_text())
RULES = [rule for group in ALERTS["groups"] for rule in group["rules"]]
DASHBOARD = json.loads(DASHBOARD_JSON.read_text())
PANELS = [p for p in DASHBOARD["panels"] if p["type"] != "row"]

#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})
#: Grafana's variables, replaced by plausible values where Prometheus must read an expression.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range_s": "900", "$__range": "15m",
                     "$__interval": "15s"}  # in order: `$__range_s` before `$__range`
#: On PATH or beside this interpreter (`make test` puts it into .venv/bin: ops/fetch-promtool).
PROMTOOL = shutil.which("promtool") or shutil.which("promtool", path=Path(sys.executable).parent)
#: CI sets this so that a missing promtool fails the run instead of skipping its checks.
PROMTOOL_REQUIRED = bool(os.environ.get("HUIMIN_REQUIRE_PROMTOOL")) or TOOLS_REQUIRED
AMTOOL = shutil.which("amtool") or shutil.which("amtool", path=Path(sys.executable).parent)
needs_amtool = pytest.mark.skipif(
    AMTOOL is None and not PROMTOOL_REQUIRED,
    reason="amtool is neither on PATH nor in the venv (`ops/fetch-promtool .venv/bin` unpacks "
           "it from Debian's prometheus-alertmanager package)")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not PROMTOOL_REQUIRED,
    reason="promtool is neither on PATH nor in the venv (`ops/fetch-promtool .venv/bin` "
           "unpacks it from Debian's prometheus package); the static checks above still ran")


def exported_metrics() -> dict[str, frozenset[str]]:
    """Series name as Prometheus stores it (histograms without _bucket/_sum/_count) -> the
    labels it may carry. Names come from the exposition text /metrics serves, labels from the
    metric objects."""
    registry = CollectorRegistry(auto_describe=True)
    for metric in (*DOMAIN_METRICS, *HOSPITAL_METRICS):
        registry.register(metric)
    faust_registry = CollectorRegistry()
    faust = FaustMetrics.create(faust_registry, "faust")  # as streams/app.py names them
    labels = {}
    for metric in (*DOMAIN_METRICS, *HOSPITAL_METRICS, *faust):
        extra = {"le"} if metric._type == "histogram" else set()
        labels[metric._name] = frozenset({*metric._labelnames, *extra, *TARGET_LABELS})
    names: dict[str, frozenset[str]] = {"up": TARGET_LABELS}
    for reg in (registry, faust_registry):
        for family in text_string_to_metric_families(generate_latest(reg).decode()):
            if family.name.endswith("_created"):
                continue
            series = family.name + ("_total" if family.type == "counter" else "")
            names[series] = labels[family.name]
    return names


EXPORTED = exported_metrics()

STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
METRIC = re.compile(r"\b(huimin_[a-z_]+|faust_[a-z_]+|up)\b")
SELECTOR = re.compile(r"\b(huimin_[a-z_]+|faust_[a-z_]+|up)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
JOIN = re.compile(r"\band\s+on\s*\([^)]*\)\s*\(")
TEMPLATE_LABEL = re.compile(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)")
LEGEND_LABEL = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


def series_name(name: str) -> str:
    return re.sub(r"_(bucket|sum|count)$", "", name)


def metrics_in(expr: str) -> set[str]:
    return {series_name(m) for m in METRIC.findall(STRING.sub('""', expr))}


def join_filters(expr: str) -> set[str]:
    """Metrics only in the right-hand operands of `and on (…)`: they filter the series of
    the left by the labels in `on`, and the aggregation around them keeps none of theirs."""
    joined, rest, at = set(), [], 0
    while (found := JOIN.search(expr, at)) is not None:
        depth, end = 1, found.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(expr[end], 0)
            end += 1
        joined |= metrics_in(expr[found.end():end - 1])
        rest.append(expr[at:found.end()])
        at = end
    return joined - metrics_in("".join(rest) + expr[at:])


def grouping_labels(expr: str) -> set[str]:
    return {label.strip() for clause in GROUPING.findall(expr)
            for label in clause.split(",") if label.strip()}


def result_labels(expr: str) -> set[str]:
    """Labels the expression's result keeps: the outer `by (…)` when it aggregates (less the
    `le` histogram_quantile consumes), otherwise those of the metrics it selects."""
    if GROUPING.search(expr):
        return grouping_labels(expr) - {"le"}
    return set().union(*(EXPORTED.get(m, frozenset()) for m in metrics_in(expr)))


def expressions() -> list[tuple[str, str]]:
    """(where, PromQL) for every alert and every dashboard target."""
    found = [(f"alert {rule['alert']}", rule["expr"]) for rule in RULES]
    found += [(f"panel {p['title']!r} target {t['refId']}", t["expr"])
              for p in PANELS for t in p["targets"]]
    return found


def compose_mounts(service: str) -> dict[str, Path]:
    """Container path -> repository path of the service's bind mounts."""
    mounts = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target, *_ = volume.split(":")
        mounts[target] = (REPO / source).resolve()
    return mounts


def in_container(service: str, path: str) -> Path | None:
    """The repository file a container path of a service is, through its bind mounts."""
    for target, source in compose_mounts(service).items():
        if path == target or path.startswith(target.rstrip("/") + "/"):
            return source / Path(path).relative_to(target)
    return None


# -- Prometheus ------------------------------------------------------------------------------


def test_prometheus_scrapes_every_worker_replica_and_the_simulator():
    jobs = {job["job_name"]: job for job in PROMETHEUS["scrape_configs"]}
    assert set(jobs) == {"huimin-workers", "huimin-simulator"}
    assert PROMETHEUS["global"]["scrape_interval"] == "5s"
    workers = jobs["huimin-workers"]
    assert workers.get("metrics_path", "/metrics") == "/metrics"
    # Docker DNS answers one A record per replica: `--scale worker=N` needs no edit
    assert workers["dns_sd_configs"] == [
        {**workers["dns_sd_configs"][0], "names": ["worker"], "type": "A", "port": 6066}]
    assert jobs["huimin-simulator"]["static_configs"] == [{"targets": ["simulator:9464"]}]


def test_the_scraped_ports_are_where_the_services_serve_their_metrics():
    worker = parses_as_huimin(SERVICES["worker"]["command"])
    assert (worker["web_host"], worker["web_port"]) == ("0.0.0.0", 6066)
    assert "6066" in SERVICES["worker"]["expose"]
    # the CLI checks that the visit log exists: any file does
    replay = parses_as_huimin([str(ALERTS_YML) if arg == "/tmp/visits.jsonl" else arg
                               for arg in simulator_steps()[1]])
    assert (replay["metrics_host"], replay["metrics_port"]) == ("0.0.0.0", 9464)
    assert "9464" in SERVICES["simulator"]["expose"]


def test_prometheus_loads_the_alert_rules_compose_mounts():
    config = in_container("prometheus", "/etc/prometheus/prometheus.yml")
    assert config == PROMETHEUS_YML.resolve()
    assert "--config.file=/etc/prometheus/prometheus.yml" in SERVICES["prometheus"]["command"]
    for rule_file in PROMETHEUS["rule_files"]:
        # Prometheus reads a relative path from the config file's folder
        in_image = rule_file if rule_file.startswith("/") else f"/etc/prometheus/{rule_file}"
        assert in_container("prometheus", in_image) == ALERTS_YML.resolve()
    assert all(volume.endswith(":ro") for volume in SERVICES["prometheus"]["volumes"])


def test_prometheus_sends_the_alerts_to_the_alertmanager_compose_runs():
    targets = [t for am in PROMETHEUS["alerting"]["alertmanagers"]
               for sc in am["static_configs"] for t in sc["targets"]]
    assert targets == ["alertmanager:9093"]  # Alertmanager's own port, on the service's name
    assert "127.0.0.1:9093:9093" in SERVICES["alertmanager"]["ports"]
    assert "alertmanager" in SERVICES["prometheus"]["depends_on"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in \
        SERVICES["alertmanager"]["command"]
    assert in_container("alertmanager", "/etc/alertmanager/alertmanager.yml") == \
        ALERTMANAGER_YML.resolve()


def test_the_alertmanager_routes_to_receivers_it_has_and_inhibits_alerts_that_exist():
    config = yaml.safe_load(ALERTMANAGER_YML.read_text())
    receivers = {r["name"] for r in config["receivers"]}
    routes = [config["route"], *config["route"].get("routes", [])]
    assert {r["receiver"] for r in routes if "receiver" in r} <= receivers
    alerts = {rule["alert"] for rule in RULES}
    for inhibit in config["inhibit_rules"]:
        for matcher in (*inhibit["source_matchers"], *inhibit["target_matchers"]):
            name, op, value = re.fullmatch(r'(\w+)(=~|=)"([^"]*)"', matcher).groups()
            assert name == "alertname"
            matched = {a for a in alerts if re.fullmatch(value, a)} if op == "=~" else \
                {value} & alerts
            assert matched, matcher
    # the rules' labels the grouping names: each is on some rule's result, or it is noise
    grouping = set(config["route"]["group_by"]) - {"alertname"}
    assert grouping <= set().union(*(result_labels(rule["expr"]) for rule in RULES))


@needs_amtool
def test_amtool_accepts_the_alertmanager_config():
    assert AMTOOL is not None, "amtool is required (HUIMIN_REQUIRE_PROMTOOL) and not found"
    done = subprocess.run([AMTOOL, "check-config", str(ALERTMANAGER_YML)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_every_alert_says_how_long_how_bad_and_what_is_wrong():
    assert [group["name"] for group in ALERTS["groups"]] == ["huimin"]
    assert {rule["alert"] for rule in RULES} >= {
        "HuiminSettlementLatencyOverSLO", "HuiminErrorRatioHigh", "HuiminDeadLettersGrowing",
        "HuiminConsumerLagGrowing", "HuiminWorkerDown"}
    for rule in RULES:
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]


def test_the_settlement_slo_alert_is_p99_over_one_second_of_infno_2207_and_2304():
    rule = next(r for r in RULES if r["alert"] == "HuiminSettlementLatencyOverSLO")
    expr = " ".join(rule["expr"].split())
    assert "histogram_quantile(0.99," in expr
    assert 'huimin_request_latency_seconds_bucket{infno=~"2207|2304"}' in expr
    assert expr.endswith("> 1")


def test_alert_annotations_only_name_labels_the_alert_keeps():
    for rule in RULES:
        used = set(TEMPLATE_LABEL.findall(json.dumps(rule["annotations"])))
        assert used <= result_labels(rule["expr"]), (rule["alert"], used)


# -- what the alerts and panels read is what the services export ----------------------------


def test_the_exposition_has_the_metrics_the_workers_and_hospitals_are_documented_to_export():
    assert {"huimin_requests_total", "huimin_answers_total", "huimin_request_latency_seconds",
            "huimin_hop_latency_seconds", "huimin_consumer_lag_messages",
            "huimin_clearing_net_position_fen", "huimin_hospital_round_trip_seconds",
            "huimin_hospital_timeouts_total", "faust_messages_received_per_topic_total"
            } <= set(EXPORTED)
    assert EXPORTED["huimin_answers_total"] == {"infno", "outcome", *TARGET_LABELS}
    assert "le" in EXPORTED["huimin_request_latency_seconds"]


def test_every_metric_an_alert_or_a_panel_uses_is_exported():
    for where, expr in expressions():
        used = metrics_in(expr)
        assert used, f"{where}: no huimin_/faust_ metric in {expr!r}"
        assert used <= set(EXPORTED), f"{where}: not exported: {sorted(used - set(EXPORTED))}"


def test_every_label_an_alert_or_a_panel_uses_is_on_its_metric():
    for where, expr in expressions():
        flat = STRING.sub('""', expr)
        for name, matchers in SELECTOR.findall(expr):
            allowed = EXPORTED[series_name(name)]
            for label in MATCHER.findall(STRING.sub('""', matchers)):
                assert label in allowed, f"{where}: {name} has no label {label!r}"
        for label in grouping_labels(flat):
            for metric in metrics_in(flat) - join_filters(flat):
                assert label in EXPORTED[metric], f"{where}: {metric} has no label {label!r}"


def test_every_legend_names_a_label_the_panel_query_keeps():
    for panel in PANELS:
        for target in panel["targets"]:
            used = set(LEGEND_LABEL.findall(target.get("legendFormat", "")))
            assert used <= result_labels(target["expr"]), (panel["title"], used)


def test_settlement_latency_is_read_only_for_settlements():
    reading = [(where, expr) for where, expr in expressions()
               if "huimin_request_latency_seconds" in expr]
    assert reading  # else this checks nothing
    for where, expr in reading:
        assert 'infno=~"2207|2304"' in expr, where


# -- Grafana ---------------------------------------------------------------------------------


def test_grafana_provisions_the_prometheus_datasource_the_dashboard_uses():
    datasources = yaml.safe_load(DATASOURCE_YML.read_text())["datasources"]
    assert len(datasources) == 1
    ds = datasources[0]
    assert (ds["name"], ds["type"], ds["uid"], ds["url"], ds["isDefault"]) == (
        "Prometheus", "prometheus", "prometheus", "http://prometheus:9090", True)
    assert "prometheus" in SERVICES and "127.0.0.1:9090:9090" in SERVICES["prometheus"]["ports"]


def test_grafana_loads_the_dashboard_folder_compose_mounts():
    providers = yaml.safe_load(PROVIDER_YML.read_text())["providers"]
    assert [p["type"] for p in providers] == ["file"]
    path = providers[0]["options"]["path"]
    assert path == "/var/lib/grafana/dashboards"
    assert in_container("grafana", path) == DASHBOARD_JSON.parent.resolve()
    assert in_container("grafana", "/etc/grafana/provisioning/datasources/prometheus.yml"
                        ) == DATASOURCE_YML.resolve()
    assert in_container("grafana", "/etc/grafana/provisioning/dashboards/huimin.yml"
                        ) == PROVIDER_YML.resolve()
    env = SERVICES["grafana"]["environment"]
    assert in_container("grafana", env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
                        ) == DASHBOARD_JSON.resolve()
    assert (env["GF_AUTH_ANONYMOUS_ENABLED"], env["GF_AUTH_ANONYMOUS_ORG_ROLE"]) == (
        "true", "Viewer")
    assert "127.0.0.1:3000:3000" in SERVICES["grafana"]["ports"]


def test_every_mounted_file_or_folder_exists():
    for service in ("prometheus", "grafana"):
        for target, source in compose_mounts(service).items():
            assert source.exists(), f"{service} mounts missing {source} at {target}"


def test_the_observability_services_start_after_what_they_watch():
    assert SERVICES["prometheus"]["image"] == "prom/prometheus:v2.53.0"
    assert SERVICES["grafana"]["image"] == "grafana/grafana:11.1.0"
    assert "worker" in SERVICES["prometheus"]["depends_on"]
    assert "prometheus" in SERVICES["grafana"]["depends_on"]


def test_the_dashboard_is_a_grafana_dashboard():
    assert DASHBOARD["uid"] == "huimin"
    assert DASHBOARD["title"] == "huimin — settlement and health records"
    assert 36 <= DASHBOARD["schemaVersion"] <= 41
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in DASHBOARD["panels"]:
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"}, panel["title"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        if panel["type"] == "row":
            assert "targets" not in panel, panel["title"]
    for panel in PANELS:
        assert panel["type"] in {"timeseries", "stat"}, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target.get("datasource", panel["datasource"]) == panel["datasource"]


def test_no_two_panels_overlap():
    taken: dict[tuple[int, int], str] = {}
    for panel in DASHBOARD["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']!r} overlaps {taken[(x, y)]!r}"
                taken[(x, y)] = panel["title"]


def test_the_dashboard_shows_what_operators_ask_about():
    exprs = " ".join(t["expr"] for p in PANELS for t in p["targets"])
    for needed in ("huimin_answers_total", "huimin_request_latency_seconds_bucket",
                   "huimin_hospital_round_trip_seconds_bucket", "huimin_hop_latency_seconds",
                   "huimin_dead_letters_total", "huimin_consumer_lag_messages",
                   "huimin_in_flight_requests", 'huimin_paid_fen_total{payer="fund"}',
                   "huimin_clearing_net_position_fen", "huimin_ehr_documents_published_total",
                   "huimin_ehr_queries_total", "huimin_ehr_refusals_total",
                   "huimin_ehr_audit_events_total", "huimin_lab_tests_avoided_total",
                   "huimin_lab_saving_fen_total", "huimin_cluster_reachable",
                   "huimin_hospital_send_failures_total"):
        assert needed in exprs, needed
    for by in ("insured_province", "treatment_province"):
        assert f"sum by ({by}) (rate(huimin_paid_fen_total" in exprs
    for quantile in ("0.5", "0.95", "0.99"):
        assert (f"histogram_quantile({quantile}, sum by (le, route) "
                "(rate(huimin_request_latency_seconds_bucket") in exprs


# -- promtool --------------------------------------------------------------------------------


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None, "promtool is required (HUIMIN_REQUIRE_PROMTOOL) and not found"
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True,
                          timeout=60)


@needs_promtool
def test_promtool_accepts_the_config_and_the_rules():
    for args in (("check", "rules", ALERTS_YML), ("check", "config", PROMETHEUS_YML)):
        done = promtool(*args)
        assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(RULES)} rules found" in promtool("check", "rules", ALERTS_YML).stdout


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path: Path):
    rules = []
    for panel in PANELS:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{panel['title']}: unknown Grafana variable in {expr!r}"
            rules.append({"record": f"dashboard:panel_{panel['id']}_{target['refId']}",
                          "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = promtool("check", "rules", path)
    assert done.returncode == 0, done.stdout + done.stderr


def rules_without_annotations(tmp_path: Path) -> Path:
    """The alert rules as they are, less the annotations (`promtool test rules` compares
    annotations verbatim; `check rules` has already checked their templates)."""
    stripped = {"groups": [{**group, "rules": [
        {k: v for k, v in rule.items() if k != "annotations"} for rule in group["rules"]]}
        for group in ALERTS["groups"]]}
    path = tmp_path / "alerts.yml"
    path.write_text(yaml.safe_dump(stripped))
    return path


def histogram(name: str, labels: str, per_minute: dict[str, int]) -> list[dict[str, str]]:
    """Cumulative bucket series growing by `per_minute[le]` observations a minute."""
    return [{"series": f'{name}_bucket{{{labels},le="{le}"}}', "values": f"0+{n}x40"}
            for le, n in per_minute.items()]


WORKER = 'job="huimin-workers",instance="10.0.0.2:6066"'
HOSPITALS = 'job="huimin-simulator",instance="simulator:9464"'
FAST = {"0.25": 600, "0.5": 600, "1": 600, "+Inf": 600}
SLOW = {"0.25": 0, "0.5": 0, "1": 5, "2.5": 600, "+Inf": 600}

HEALTHY = [
    {"series": f"up{{{WORKER}}}", "values": "1x40"},
    {"series": f'huimin_answers_total{{{WORKER},infno="2207",outcome="ok"}}',
     "values": "0+600x40"},
    {"series": f'huimin_answers_total{{{WORKER},infno="2207",outcome="1302"}}',
     "values": "0+6x40"},
    *histogram("huimin_request_latency_seconds", f'{WORKER},route="local",infno="2207"', FAST),
    *histogram("huimin_request_latency_seconds", f'{WORKER},route="cross",infno="2304"', FAST),
    # slow, but not a settlement: the SLO does not cover it
    *histogram("huimin_request_latency_seconds", f'{WORKER},route="ehr",infno="7003"', SLOW),
    {"series": f'huimin_dead_letters_total{{{WORKER},reason="E4001",source_topic="hosp.requests"}}',
     "values": "3x40"},
    {"series": f'huimin_consumer_lag_messages{{{WORKER},topic="hosp.requests"}}',
     "values": "5000x40"},  # large but not growing
    # growing past thousands while a current worker reads 1,000 a second (it commits every
    # few seconds): 4 s behind, no backlog
    {"series": f'huimin_consumer_lag_messages{{{WORKER},topic="money.events"}}',
     "values": "0+100x40"},
    {"series": f'faust_messages_received_per_topic_total{{{WORKER},topic="money.events"}}',
     "values": "0+60000x40"},
    # refusals of the rules in a tenth of the sign-ins' and reconciliations' answers only
    {"series": f'huimin_answers_total{{{WORKER},infno="3201",outcome="ok"}}',
     "values": "0+60x40"},
    {"series": f'huimin_answers_total{{{WORKER},infno="3201",outcome="E4010"}}',
     "values": "0+600x40"},
    {"series": f"huimin_hospital_timeouts_total{{{HOSPITALS}}}", "values": "2x40"},
    # batches shown late and read (normal on Tansu with two workers), one hole long ago
    {"series": f'huimin_hospital_read_gaps_total{{{HOSPITALS},outcome="fetched_again"}}',
     "values": "0+1x40"},
    {"series": f'huimin_hospital_read_gaps_total{{{HOSPITALS},outcome="stepped_over"}}',
     "values": "1x40"},
    {"series": f'huimin_changelog_records_fenced_total{{{WORKER},table="trt_persons"}}',
     "values": "4x40"},  # fenced once, long ago
    {"series": f'huimin_dead_letters_total{{{WORKER},reason="E9001",source_topic="nat.requests"}}',
     "values": "1x40"},  # one internal error, long ago
    # one long ago too, on a worker that then missed scrapes for 7 minutes: not a new error
    {"series": f'huimin_dead_letters_total{{{WORKER},reason="E9002",source_topic="nat.requests"}}',
     "values": "1x10 _x6 1x23"},
    # started once, and once again long ago
    {"series": f"huimin_worker_start_time_seconds{{{WORKER}}}", "values": "100x3 160x37"},
    # first scraped at 15 m (a new scrape job) holding fencing from long before: not new
    {"series": f'huimin_changelog_records_fenced_total{{{WORKER},table="ins_persons"}}',
     "values": "_x15 3x25"},
    # the cluster silent for one asking, at 10 m: shorter than the alert waits
    {"series": f"huimin_cluster_reachable{{{WORKER}}}", "values": "1x9 0 1x30"},
    # a rebalance of a minute at 12 m, as a worker joining brings
    {"series": f"huimin_worker_rebalancing{{{WORKER}}}", "values": "0x11 1 1 0x27"},
    # one request the hospitals' producer gave up on, long ago, and one of another error
    {"series": f'huimin_hospital_send_failures_total{{{HOSPITALS},error="timed_out"}}',
     "values": "0x5 1x35"},
    {"series": f'huimin_hospital_send_failures_total{{{HOSPITALS},'
               'error="too_large"}', "values": "0x8 1x32"},
    # first scraped long after its failures (a Prometheus restarted without its data)
    {"series": f'huimin_hospital_send_failures_total{{{HOSPITALS},'
               'error="unsent_at_close"}', "values": "_x15 7x25"},
]

TROUBLE = [
    {"series": f"up{{{WORKER}}}", "values": "0x40"},
    {"series": 'up{job="huimin-workers",instance="10.0.0.3:6066"}', "values": "1x40"},
    {"series": f'huimin_answers_total{{{WORKER},infno="2207",outcome="ok"}}',
     "values": "0+600x40"},
    {"series": f'huimin_answers_total{{{WORKER},infno="2207",outcome="1302"}}',
     "values": "0+100x40"},
    *histogram("huimin_request_latency_seconds", f'{WORKER},route="local",infno="2207"', FAST),
    *histogram("huimin_request_latency_seconds", f'{WORKER},route="cross",infno="2304"', SLOW),
    {"series": f'huimin_dead_letters_total{{{WORKER},reason="E4001",source_topic="hosp.requests"}}',
     "values": "0+2x40"},
    {"series": f'huimin_consumer_lag_messages{{{WORKER},topic="hosp.requests"}}',
     "values": "0+300x40"},  # 45 s behind at 15 m, 75 s at 25 m: the workers read 100/s
    {"series": f'faust_messages_received_per_topic_total{{{WORKER},topic="hosp.requests"}}',
     "values": "0+6000x40"},
    {"series": f"huimin_hospital_timeouts_total{{{HOSPITALS}}}", "values": "0+1x40"},
    {"series": f'huimin_hospital_read_gaps_total{{{HOSPITALS},outcome="stepped_over"}}',
     "values": "0x20 1x20"},
    {"series": f'huimin_changelog_records_fenced_total{{{WORKER},table="trt_persons"}}',
     "values": "0+3x40"},
    # a burst as a restarted worker recovers: the series is first scraped already at 4
    {"series": f'huimin_changelog_records_fenced_total{{{WORKER},table="ins_persons"}}',
     "values": "_x12 4x28"},
    {"series": f"huimin_worker_start_time_seconds{{{WORKER}}}", "values": "100x12 720x28"},
    # a first internal error: the series, exported at 0 from the worker's start, goes to 2
    {"series": f'huimin_dead_letters_total{{{WORKER},reason="E9001",source_topic="nat.requests"}}',
     "values": "0x21 2x18"},
    # a third worker, gone from Docker's DNS at 16 m: its target vanishes, it is not down
    {"series": 'up{job="huimin-workers",instance="10.0.0.4:6066"}', "values": "1x15"},
    # a worker its supervisor restarts every few minutes (exit 75 on a refused write)
    {"series": 'huimin_worker_start_time_seconds{job="huimin-workers",instance="10.0.0.3:6066"}',
     "values": "100x12 900x4 1200x4 1500x4 1800x16"},
    # a worker its cluster stopped answering at 20 m (it still answers scrapes)
    {"series": f"huimin_cluster_reachable{{{WORKER}}}", "values": "1x19 0x21"},
    {"series": 'huimin_cluster_reachable{job="huimin-workers",instance="10.0.0.3:6066"}',
     "values": "1x40"},
    # a worker held in a rebalance from 18 m (it answers scrapes, reaches its cluster);
    # WORKER's from 20 m, as its cluster stopped answering it: not held by the worker
    {"series": 'huimin_worker_rebalancing{job="huimin-workers",instance="10.0.0.3:6066"}',
     "values": "0x17 1x23"},
    {"series": f"huimin_worker_rebalancing{{{WORKER}}}", "values": "0x19 1x21"},
    # the hospitals' producer gives requests up from 22 m, and one too large at 23 m (each
    # error exported at zero from the start)
    {"series": f'huimin_hospital_send_failures_total{{{HOSPITALS},error="timed_out"}}',
     "values": "0x22 3x18"},
    {"series": f'huimin_hospital_send_failures_total{{{HOSPITALS},'
               'error="too_large"}', "values": "0x23 1x17"},
]

FIRING_IN_TROUBLE = {
    "HuiminSettlementLatencyOverSLO": [{"route": "cross", "severity": "warning"}],
    "HuiminErrorRatioHigh": [{"severity": "warning"}],
    "HuiminDeadLettersGrowing": [{"reason": "E4001", "severity": "warning"}],
    "HuiminConsumerLagGrowing": [{"topic": "hosp.requests", "severity": "warning"}],
    "HuiminWorkerDown": [{**dict(re.findall(r'(\w+)="([^"]*)"', WORKER)),
                          "severity": "critical"}],
    "HuiminNoWorkers": [],
    "HuiminLateWritesFenced": [{"table": "ins_persons", "severity": "warning"},
                               {"table": "trt_persons", "severity": "warning"}],
    "HuiminInternalErrors": [{"reason": "E9001", "severity": "critical"}],
    "HuiminWorkerLost": [{"severity": "warning"}],
    # once (WORKER at 12 m) is enough, a crash that only comes back is otherwise not seen
    "HuiminWorkerRestarting": [{**dict(re.findall(r'(\w+)="([^"]*)"', WORKER)),
                                "severity": "warning"},
                               {"job": "huimin-workers", "instance": "10.0.0.3:6066",
                                "severity": "warning"}],
    "HuiminClusterUnreachable": [{**dict(re.findall(r'(\w+)="([^"]*)"', WORKER)),
                                  "severity": "critical"}],
    "HuiminRebalanceStuck": [{"job": "huimin-workers", "instance": "10.0.0.3:6066",
                              "severity": "warning"}],
    "HuiminHospitalTimeouts": [{**dict(re.findall(r'(\w+)="([^"]*)"', HOSPITALS)),
                                "severity": "critical"}],
    "HuiminHospitalSendFailures": [{"error": "timed_out", "severity": "critical"},
                                   {"error": "too_large",
                                    "severity": "critical"}],
    "HuiminHospitalAnswersNotRead": [{**dict(re.findall(r'(\w+)="([^"]*)"', HOSPITALS)),
                                      "outcome": "stepped_over", "severity": "warning"}],
}


@needs_promtool
def test_the_alerts_fire_on_trouble_and_stay_quiet_otherwise(tmp_path: Path):
    assert set(FIRING_IN_TROUBLE) == {rule["alert"] for rule in RULES}
    at = "25m"  # past every rule's `for:`
    tests = [
        {"name": "healthy", "interval": "1m", "input_series": HEALTHY,
         "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": []}
                             for name in FIRING_IN_TROUBLE]},
        {"name": "trouble", "interval": "1m", "input_series": TROUBLE,
         "alert_rule_test": [{"eval_time": at, "alertname": name,
                              "exp_alerts": [{"exp_labels": labels} for labels in firing]}
                             for name, firing in FIRING_IN_TROUBLE.items()]},
        {"name": "no worker discovered", "interval": "1m",
         "input_series": [s for s in HEALTHY if not s["series"].startswith("up{")],
         "alert_rule_test": [{"eval_time": at, "alertname": "HuiminNoWorkers",
                              "exp_alerts": [{"exp_labels": {"severity": "critical"}}]}]},
    ]
    spec = tmp_path / "alerts_test.yml"
    spec.write_text(yaml.safe_dump({"rule_files": [str(rules_without_annotations(tmp_path))],
                                    "evaluation_interval": "1m", "tests": tests}))
    done = promtool("test", "rules", spec)
    assert done.returncode == 0, done.stdout + done.stderr


def test_faust_sensor_children_are_cached_and_a_rebalance_clears_them_without_losing_counts():
    from types import SimpleNamespace

    from streams.metrics import CachedChildren, cache_faust_children

    registry = CollectorRegistry()
    monitor = SimpleNamespace(_metrics=FaustMetrics.create(registry, "t"),
                              _stream_label=lambda stream: stream.name)
    cache_faust_children(monitor)
    per_topic = monitor._metrics.messages_received_per_topics
    assert isinstance(per_topic, CachedChildren)
    asked: list[object] = []
    looked_up = per_topic._metric.labels
    per_topic._metric.labels = lambda *a, **k: asked.append(k) or looked_up(*a, **k)
    assert per_topic.labels(topic="a") is per_topic.labels(topic="a")
    assert asked == [{"topic": "a"}]  # looked up once, then from the cache
    per_topic.labels(topic="a").inc()
    monitor._metrics.clear_topic_related_metrics()  # what Faust does on a rebalance
    per_topic.labels(topic="a").inc(2)
    assert registry.get_sample_value("t_messages_received_per_topic_total", {"topic": "a"}) == 2
    assert not isinstance(monitor._metrics.messages_received, CachedChildren)  # no labels


def test_faust_sensor_works_out_each_streams_label_once():
    from types import SimpleNamespace

    from streams.metrics import cache_faust_children

    made: list[str] = []
    monitor = SimpleNamespace(_metrics=FaustMetrics.create(CollectorRegistry(), "t"),
                              _stream_label=lambda stream: made.append(stream.name) or
                              stream.name.lower())
    cache_faust_children(monitor)

    class Stream:  # Faust's streams are kept by weak reference, as this is
        def __init__(self, name: str) -> None:
            self.name = name

    a, b = Stream("A"), Stream("B")
    assert [monitor._stream_label(s) for s in (a, b, a, a, b)] == ["a", "b", "a", "a", "b"]
    assert made == ["A", "B"]


def test_the_hospitals_metrics_are_not_exported_by_a_worker_of_the_same_cli():
    """`huimin worker` imports the hospitals' code with the CLI; its /metrics (Faust's, the
    default registry) must not carry their series at 0. `--metrics-port` serves them."""
    from prometheus_client import REGISTRY

    import huimin.cli  # noqa: F401  (what `huimin worker` imports)
    from simulators.hospital_metrics import HOSPITAL_REGISTRY

    assert b"huimin_hospital_" not in generate_latest(REGISTRY)
    served = generate_latest(HOSPITAL_REGISTRY)
    for metric in HOSPITAL_METRICS:
        assert metric._name.encode() in served
    assert b"process_cpu_seconds_total" in served


def test_consumer_lag_leaves_out_changelogs_and_topics_no_longer_served():
    from types import SimpleNamespace
    from typing import NamedTuple

    from prometheus_client import REGISTRY

    from streams.metrics import update_consumer_lag

    class TP(NamedTuple):  # as Faust's
        topic: str
        partition: int = 0

    def consumer(*tps: TP) -> SimpleNamespace:
        ends = {(t.topic, t.partition): 10 for t in tps}
        return SimpleNamespace(
            assignment=lambda: set(tps), highwater=lambda t: ends[(t.topic, t.partition)],
            _committed_offset={t: 4 for t in tps}, _read_offset={})

    def lag(topic: str) -> float | None:
        return REGISTRY.get_sample_value("huimin_consumer_lag_messages", {"topic": topic})

    a, b, log = TP("hosp.requests"), TP("hosp.requests", 1), TP("huimin-trt_persons-changelog")
    money = TP("money.events")
    update_consumer_lag(consumer(a, b, log, money))
    assert (lag("hosp.requests"), lag("money.events")) == (12.0, 6.0)
    assert lag("huimin-trt_persons-changelog") is None
    update_consumer_lag(consumer(a))  # a rebalance took money.events and a partition away
    assert (lag("hosp.requests"), lag("money.events")) == (6.0, None)
    # a partition just taken has nothing committed here yet: not its whole history as lag
    # (1,415 after a rebalance, a false HuiminConsumerLagGrowing), but from what was read
    taken = consumer(a, b)
    del taken._committed_offset[b]
    update_consumer_lag(taken)
    assert lag("hosp.requests") == 6.0
    taken._read_offset[b] = 7
    update_consumer_lag(taken)
    assert lag("hosp.requests") == 8.0


def test_net_positions_are_set_from_all_events_and_cleared_on_a_worker_not_serving_them():
    from prometheus_client import REGISTRY

    from settlement.ledger import SettlementEvent
    from streams.metrics import observe_clearing, set_clearing_positions

    def net(province: str) -> float | None:
        return REGISTRY.get_sample_value("huimin_clearing_net_position_fen",
                                         {"province": province})

    settle = SettlementEvent("S1", "settle", "2026-12-01 09:00:00", "H31010100001", "110105",
                             "310101", hifp_pay=900)
    cancel = SettlementEvent("S1", "cancel", "2026-12-02 09:00:00", "H31010100001", "110105",
                             "310101", hifp_pay=900)
    local = SettlementEvent("S2", "settle", "2026-12-01 09:00:00", "H11010500001", "110105",
                            "110105", hifp_pay=500)
    set_clearing_positions([settle, settle, cancel, local])
    assert (net("310000"), net("110000")) == (900.0, -900.0)
    observe_clearing(settle)  # events taken after it go on counting
    assert (net("310000"), net("110000")) == (1800.0, -1800.0)
    set_clearing_positions([])
    assert (net("310000"), net("110000")) == (None, None)
    observe_clearing(cancel)  # a child looked up afresh, not an orphan of the cleared gauge
    assert net("310000") == -900.0


def test_labels_taken_from_a_message_are_only_ones_the_platform_names():
    """A trace's hop names and an AuditEvent's observer come from messages: a made-up one
    must not become a series (each would be one more, without bound)."""
    from streams import metrics

    trace = [["hosp.send", 1_000_000], ["trt.queued", 2_000_000], ["made.up", 3_000_000]]
    metrics.observe_answer({"infcode": 0}, {"infno": "1101", "route": "local"}, trace)
    audit = {"outcome": "4", "source": {"observer": {"identifier": {"value": "Zhang Wei"}}}}
    metrics.observe_audit([audit])
    hops = {s.labels["hop"] for s in metrics.HOP_LATENCY.collect()[0].samples}
    assert hops and not any("made.up" in h for h in hops)
    sources = {s.labels.get("source_province") for s in metrics.EHR_REFUSALS.collect()[0].samples}
    assert "Zhang Wei" not in sources and "other" in sources
    # a publish's province, from its request's area: the schema's 6 digits, a province's
    # or not (the platform checks it against the hospital's; this does not lean on that)
    assert (metrics.province_label("110000"), metrics.province_label("990000")) == (
        "110000", "other")


def test_a_worker_exports_the_series_panels_and_alerts_read_at_zero_from_its_start():
    """rate() and increase() see a counter's first increment only from a 0 before it: a code
    seen once on a worker never showed in "Errors by code", and every restart hid the first
    of each again. The label sets are bounded, so every series is exported at once."""
    from prometheus_client import REGISTRY

    from streams.metrics import export_at_zero

    export_at_zero(["hosp.requests", "ins.requests"], ("trt_persons",))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(generate_latest(REGISTRY).decode())
               for s in family.samples if s.name.startswith("huimin_")}
    for name, labels in (
            ("huimin_answers_total", {"infno": "2207", "outcome": "E4001"}),
            ("huimin_answers_total", {"infno": "other", "outcome": "error"}),
            ("huimin_dead_letters_total", {"reason": "E1001", "source_topic": "ins.requests"}),
            ("huimin_refused_requests_total", {"reason": "E6002"}),
            ("huimin_ehr_queries_total", {"operation": "retrieve", "outcome": "E5003"}),
            ("huimin_ehr_documents_published_total", {"province": "650000"}),
            ("huimin_ehr_refusals_total", {"source_province": "other"}),
            ("huimin_ehr_audit_events_total", {"outcome": "refused"}),
            ("huimin_changelog_records_fenced_total", {"table": "trt_persons"})):
        assert (name, tuple(sorted(labels.items()))) in samples, (name, labels)
    assert len(samples) < 2_000  # bounded: no money series by province pair among them
