"""deploy/: every Kubernetes manifest validated offline against the Kubernetes schemas that `kubernetes-validate`
ships (strict: an unknown or misspelt field fails), the compose file checked for what it promises, and every NEWSMT_*
variable either sets named by a Settings field with a value Settings accepts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from service.config import Settings
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def k8s_resources() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in documents(path)]


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_valid_kubernetes(path: Path) -> None:
    resources = documents(path)
    assert resources
    for resource in resources:
        # Raises for an invalid resource, and for a kind or apiVersion it has no schema for: nothing is skipped.
        kubernetes_validate.validate(resource, latest_version(), strict=True)


def test_the_manifests_hold_what_a_scaled_out_deployment_needs() -> None:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for resource in k8s_resources():
        by_kind.setdefault(resource["kind"], []).append(resource)
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret", "StatefulSet",
            "ConfigMap", "PersistentVolumeClaim"} <= set(by_kind)
    newsmt = next(d for d in by_kind["Deployment"] if d["metadata"]["name"] == "newsmt")
    container = newsmt["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    hpa, pdb = by_kind["HorizontalPodAutoscaler"][0], by_kind["PodDisruptionBudget"][0]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "newsmt"
    assert pdb["spec"]["selector"]["matchLabels"] == newsmt["spec"]["selector"]["matchLabels"]
    secret_names = {s["metadata"]["name"] for s in by_kind["Secret"]}
    config_names = {c["metadata"]["name"] for c in by_kind["ConfigMap"]}
    for source in container["envFrom"]:
        if "secretRef" in source:
            assert source["secretRef"]["name"] in secret_names
        else:
            assert source["configMapRef"]["name"] in config_names
    valkey = by_kind["ConfigMap"][[c["metadata"]["name"] for c in by_kind["ConfigMap"]].index("newsmt-redis")]
    assert "maxmemory-policy allkeys-lru" in valkey["data"]["valkey.conf"]


def test_compose_runs_two_replicas_on_one_valkey_behind_a_proxy() -> None:
    spec = compose()
    services = spec["services"]
    replicas = [name for name, service in services.items()
                if "NEWSMT_CACHE_URL" in service.get("environment", {})]
    assert replicas == ["newsmt-a", "newsmt-b"]
    for name in replicas:
        assert services[name]["environment"]["NEWSMT_CACHE_URL"] == "redis://valkey:6379/0"
        assert "valkey" in services[name]["depends_on"]
        assert any(volume.startswith("models:") for volume in services[name]["volumes"])
    assert "allkeys-lru" in services["valkey"]["command"]
    upstreams = re.findall(r"^\s*server (\S+):8000", (DEPLOY / "nginx.conf").read_text(), flags=re.M)
    assert upstreams == replicas and services["proxy"]["depends_on"] == replicas
    named = {v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if not v.startswith(".")}
    assert named <= set(spec["volumes"])


def newsmt_variables() -> dict[str, dict[str, str]]:
    """Per deployment (compose, Kubernetes), every NEWSMT_* name it sets with its value (`${VAR:-}` as empty)."""
    in_compose: dict[str, str] = {}
    for service in compose()["services"].values():
        in_compose.update({k: re.sub(r"\$\{[^}]*\}", "", str(v)) for k, v in service.get("environment", {}).items()})
    in_k8s: dict[str, str] = {}
    for resource in k8s_resources():
        in_k8s.update({k: str(v) for k, v in (resource.get("data") or resource.get("stringData") or {}).items()})
        spec = resource.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []):
            in_k8s.update({e["name"]: str(e.get("value", "")) for e in container.get("env", [])})
    return {source: {k: v for k, v in found.items() if k.startswith("NEWSMT_")}
            for source, found in (("compose", in_compose), ("k8s", in_k8s))}


@pytest.mark.parametrize("source", ["compose", "k8s"])
def test_every_newsmt_variable_set_by_the_deployment_files_is_a_setting(source: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    variables = newsmt_variables()[source]
    assert {"NEWSMT_CACHE_URL", "NEWSMT_API_KEYS", "NEWSMT_MODELS_DIR"} <= set(variables)
    unknown = sorted(name for name in variables if name.removeprefix("NEWSMT_").lower() not in Settings.model_fields)
    assert unknown == []
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    Settings(_env_file=None)  # type: ignore[call-arg]  # and every value is one Settings accepts
