"""The Kubernetes manifests against the official schemas of the target version (issue 16).

``kubernetes-validate`` (PyPI, pinned in the dev extra) carries the OpenAPI schemas of each
Kubernetes release; ``strict`` also refuses fields the schema does not know (a typo such as
``readinesProbe`` would otherwise be dropped silently by the API server). Custom resources (KEDA)
have no schema there: they are checked for the fields their operators require.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.conftest import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.32.0"  # the oldest release we support: its schemas are the strictest for us
CUSTOM_KINDS = {"ScaledObject": "keda.sh/v1alpha1", "TriggerAuthentication": "keda.sh/v1alpha1"}


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc and doc.get("kind") != "Kustomization"]


def file_documents() -> list[tuple[str, dict[str, Any]]]:
    return [(path.name, doc) for path in sorted(K8S.glob("*.yaml")) for doc in documents(path.read_text())]


def validate(doc: dict[str, Any]) -> None:
    if doc["kind"] in CUSTOM_KINDS:
        assert doc["apiVersion"] == CUSTOM_KINDS[doc["kind"]], doc["metadata"]["name"]
        spec = doc["spec"]
        if doc["kind"] == "ScaledObject":
            assert spec["scaleTargetRef"]["name"] and spec["triggers"]
            assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
        else:
            assert all({"parameter", "name", "key"} <= ref.keys() for ref in spec["secretTargetRef"])
        return
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(("name", "doc"), file_documents(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_each_manifest_matches_the_kubernetes_schema(name: str, doc: dict[str, Any]) -> None:
    validate(doc)


def test_the_validator_refuses_an_unknown_field() -> None:
    (web,) = [doc for name, doc in file_documents() if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "web"]
    broken = yaml.safe_load(yaml.safe_dump(web))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"tcpSocket": {"port": 8080}}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)


def test_the_built_kustomization_matches_the_schema() -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed; the files themselves are validated above")
    built = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True)
    docs = documents(built.stdout)
    assert len(docs) == len(file_documents()) - 2  # secret.example.yaml's two Secrets are not applied
    for doc in docs:
        validate(doc)
