"""Kubernetes manifests (deploy/kubernetes/base): Kubernetes' own schemas (offline, with
kubernetes-validate), probes and ports against the policy, the ConfigMap's policy loaded
with exactly the Deployment's env, Secret references, and a ConfigMap update reloaded in
place the way the kubelet performs it."""

from __future__ import annotations

import copy
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml

from router_proxy.config.load import load_config, load_config_text
from router_proxy.config.schema import Config
from router_proxy.pipeline import Pipeline
from router_proxy.server.app import create_app
from tests.support.deploy_helpers import Dockerfile, placeholder_env
from tests.support.serving import ServerThread

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes" / "base"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def kustomize_resources() -> list[Path]:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    return [K8S / name for name in kustomization["resources"]]


def documents(*paths: Path) -> list[dict[str, Any]]:
    return [d for p in paths for d in yaml.safe_load_all(p.read_text()) if d]


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict[str, Any]]:
    docs = documents(*kustomize_resources())
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_kustomization_lists_existing_manifests_and_no_secret() -> None:
    paths = kustomize_resources()
    assert all(p.is_file() for p in paths)
    kinds = {d["kind"] for d in documents(*paths)}
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    } <= kinds
    assert "Secret" not in kinds  # keys never live in the repository


@pytest.mark.parametrize("version", ["oldest", "latest"])
def test_manifests_validate_against_the_kubernetes_schemas(version: str) -> None:
    # The oldest release we claim (docs/operations.md) or the oldest the validator bundles.
    bundled = kubernetes_validate.utils.all_versions()
    oldest = "1.28.0" if "1.28.0" in bundled else bundled[0]
    version = kubernetes_validate.latest_version() if version == "latest" else oldest
    for doc in documents(*kustomize_resources(), K8S / "secret.example.yaml"):
        kubernetes_validate.validate(doc, version, strict=True)


def test_schema_validation_rejects_a_broken_manifest(k8s: dict[tuple[str, str], Any]) -> None:
    version = kubernetes_validate.latest_version()
    broken = copy.deepcopy(k8s["Deployment", "router-proxy"])
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["path"] = 8080  # a number where a string belongs
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)
    typo = copy.deepcopy(k8s["Deployment", "router-proxy"])
    typo["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, version, strict=True)


def gateway(k8s: dict[tuple[str, str], Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = k8s["Deployment", "router-proxy"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    return pod, container


def configmap_policy(k8s: dict[tuple[str, str], Any], env: dict[str, str]) -> Config:
    pod, container = gateway(k8s)
    path = container["args"][container["args"].index("--config") + 1]
    (mount,) = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
    assert "subPath" not in mount  # a subPath mount never sees ConfigMap updates
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    configmap = k8s["ConfigMap", volume["configMap"]["name"]]
    text = configmap["data"][path[len(mount["mountPath"]) + 1 :]]
    config, _ = load_config_text(text, source="configmap", env=env)
    return config


def test_configmap_policy_loads_with_exactly_the_deployments_env(
    k8s: dict[tuple[str, str], Any],
) -> None:
    _, container = gateway(k8s)
    image_env = Dockerfile.parse(ROOT / "Dockerfile").stages[-1].env()
    env = {**image_env, **placeholder_env(container["env"], optional=False)}
    config = configmap_policy(k8s, env)  # every ${VAR} without a default is provided
    Pipeline.build(config)
    assert config.server.host == "0.0.0.0"
    assert config.server.watch_config
    assert next(k.get_secret_value() for k in config.server.api_keys) == env["ROUTER_CLIENT_KEY"]
    with_optional = {**env, **placeholder_env(container["env"], optional=True)}
    keys = {k.get_secret_value() for k in configmap_policy(k8s, with_optional).server.api_keys}
    assert {with_optional["ROUTER_CLIENT_KEY"], with_optional["ROUTER_CLIENT_KEY_PREVIOUS"]} <= keys


def test_secret_references_match_the_example_secret(k8s: dict[tuple[str, str], Any]) -> None:
    _, container = gateway(k8s)
    secret = documents(K8S / "secret.example.yaml")[0]
    refs = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e]
    assert {r["name"] for r in refs} == {secret["metadata"]["name"]}
    assert {r["key"] for r in refs} == set(secret["stringData"])
    assert any(r["key"] == "OPENAI_API_KEY" and not r.get("optional") for r in refs)


def test_deployment_probes_ports_and_hardening(k8s: dict[tuple[str, str], Any]) -> None:
    deployment = k8s["Deployment", "router-proxy"]
    pod, container = gateway(k8s)
    port = configmap_policy(k8s, placeholder_env(container["env"], optional=False)).server.port
    (named,) = [p for p in container["ports"] if p["containerPort"] == port]
    probes = {
        k: container[k]["httpGet"] for k in ("readinessProbe", "livenessProbe", "startupProbe")
    }
    assert probes["readinessProbe"]["path"] == "/ready"
    assert probes["livenessProbe"]["path"] == "/health"
    assert {p["port"] for p in probes.values()} <= {port, named["name"]}
    assert deployment["spec"]["replicas"] >= 2
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert set(container["resources"]["limits"]) >= {"memory"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"]
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert {"/tmp"} <= {m["mountPath"] for m in container["volumeMounts"]}
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    assert pod["spec"]["terminationGracePeriodSeconds"] > 30 + 5  # drain + preStop
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = k8s["Service", "router-proxy"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in (port, named["name"])
    hpa = k8s["HorizontalPodAutoscaler", "router-proxy"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "router-proxy",
    }
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = k8s["PodDisruptionBudget", "router-proxy"]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_redis_service_is_where_the_gateway_looks(k8s: dict[tuple[str, str], Any]) -> None:
    _, container = gateway(k8s)
    url = {e["name"]: e.get("value") for e in container["env"]}["REDIS_URL"]
    host, port = re.fullmatch(r"redis://([\w-]+):(\d+)/\d+", url).groups()  # type: ignore[union-attr]
    service = k8s["Service", host]
    assert service["spec"]["ports"][0]["port"] == int(port)
    redis = k8s["Deployment", host]
    assert (
        service["spec"]["selector"].items()
        <= redis["spec"]["template"]["metadata"]["labels"].items()
    )


def test_a_configmap_update_is_reloaded_in_place(tmp_path: Path) -> None:
    """The kubelet's atomic update of a ConfigMap directory mount: the new files go into a
    fresh timestamped folder and the `..data` symlink is swapped by a rename; policy.yaml
    itself is a symlink through `..data` and never changes."""
    policy = "providers: {{mock: {{type: mock}}}}\nmodels: {{{name}: {{provider: mock}}}}\n"
    policy += "decisions: [{{name: default, when: true, route: {{candidates: [{name}]}}}}]\n"

    def publish(version: int, name: str) -> None:
        folder = tmp_path / f"..2025_01_01_00_00_0{version}.000000001"
        folder.mkdir()
        (folder / "policy.yaml").write_text(policy.format(name=name))
        (tmp_path / "..data_tmp").symlink_to(folder.name)
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")

    publish(1, "old")
    (tmp_path / "policy.yaml").symlink_to("..data/policy.yaml")
    config, _ = load_config(tmp_path / "policy.yaml")
    server = ServerThread(create_app(config, config_path=tmp_path / "policy.yaml"))
    server.start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}

            def model() -> str:
                response = client.post("/v1/chat/completions", json=body)
                assert response.status_code == 200, response.text
                return response.headers["x-router-model"]

            assert model() == "old"
            time.sleep(0.3)  # let the watcher settle before the swap
            publish(2, "new")
            shutil.rmtree(tmp_path / "..2025_01_01_00_00_01.000000001")
            deadline = time.monotonic() + 10
            while model() != "new":
                assert time.monotonic() < deadline, "the ConfigMap swap was not reloaded"
                time.sleep(0.05)
    finally:
        server.stop()
