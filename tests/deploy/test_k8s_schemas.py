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
CUSTOM_KINDS = {
    "ScaledObject": "keda.sh/v1alpha1",
    "TriggerAuthentication": "keda.sh/v1alpha1",
    "Cluster": "postgresql.cnpg.io/v1",
    "ScheduledBackup": "postgresql.cnpg.io/v1",
}


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
        elif doc["kind"] == "TriggerAuthentication":
            assert all({"parameter", "name", "key"} <= ref.keys() for ref in spec["secretTargetRef"])
        elif doc["kind"] == "Cluster":
            assert spec["instances"] >= 2 and spec["storage"]["size"]
            assert spec["backup"]["barmanObjectStore"]["destinationPath"] and spec["backup"]["retentionPolicy"]
        else:  # ScheduledBackup: six cron fields (seconds first), of an existing Cluster
            assert len(spec["schedule"].split()) == 6 and spec["cluster"]["name"]
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


def test_the_cloudnative_pg_overlay_replaces_the_evaluation_database() -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    overlay = REPO_ROOT / "deploy" / "overlays" / "cloudnative-pg"
    built = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, timeout=60, check=True
    )
    docs = documents(built.stdout)
    for doc in docs:
        validate(doc)
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in docs}
    assert ("StatefulSet", "postgres") not in names and ("Service", "postgres") not in names
    assert ("StatefulSet", "rabbitmq") in names  # only the database changes
    (cluster,) = [doc for doc in docs if doc["kind"] == "Cluster"]
    (backup,) = [doc for doc in docs if doc["kind"] == "ScheduledBackup"]
    assert backup["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    assert all(doc["metadata"].get("namespace") == "ecg-cds" for doc in docs if doc["kind"] != "Namespace")
    (policy,) = [doc for doc in docs if doc["metadata"]["name"] == "postgres-from-app"]
    assert policy["spec"]["podSelector"]["matchLabels"] == {"cnpg.io/cluster": cluster["metadata"]["name"]}
