"""Static checks of deploy/: the image, the compose file and the Kubernetes manifests.

No container engine or cluster is needed: every file is parsed and checked for the properties the
operations guide relies on (probes, resources, non-root users, one beat, Triton on a GPU, every
environment variable documented in deploy/.env.example, no torch in the service image).
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
DOCKERFILE = DEPLOY / "Dockerfile"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
APP_IMAGE = "ecg-cds"  # the image name in the manifests; kustomization.yaml maps it to the registry
TRITON_MODELS = ("ecg_detector", "ecg_foundation")  # ecg_foundation also writes the report (issue 14)
# Variables that only configure a third-party image inside one manifest, with the reason.
IMAGE_INTERNAL_VARS = {"PGDATA": "postgres image's data directory (deploy/k8s/postgres.yaml)"}
# Files in deploy/k8s/ that kustomization.yaml must not list.
NOT_IN_KUSTOMIZATION = {"kustomization.yaml", "secret.example.yaml"}

ENV_REF = re.compile(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)")  # ${NAME...}, but not compose's escaped $${NAME}
K8S_ENV_REF = re.compile(r"\$\(([A-Z_][A-Z0-9_]*)\)")  # $(NAME) in a container's command/args


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    """Return ``(file name, document)`` for every non-empty document under deploy/k8s/."""
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append((path.name, document))
    return documents


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    """Return every document of ``kind`` in the kustomization's files."""
    return [doc for name, doc in k8s_documents() if doc.get("kind") == kind and name not in NOT_IN_KUSTOMIZATION]


def by_name(kind: str, name: str) -> dict[str, Any]:
    """Return the one document of ``kind`` called ``name``."""
    matches = [doc for doc in k8s_kind(kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def pod_containers(workload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield the init containers and containers of a workload's pod template."""
    spec = workload["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def compose() -> dict[str, Any]:
    """Return the parsed compose file."""
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def with_defaults(value: str) -> str:
    """Substitute ``${NAME:-default}`` by its default, as Compose does with an empty .env."""
    return re.sub(r"\$\{[A-Z_][A-Z0-9_]*:-([^}]*)\}", r"\1", value)


def env_example_names() -> list[str]:
    """Return the variable names in deploy/.env.example, in order."""
    return re.findall(r"^([A-Z_][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)


def documented(name: str, names: set[str]) -> bool:
    """Return whether ``name`` (or, for ``X_FILE``, ``X``) is in deploy/.env.example."""
    return name in names or (name.endswith("_FILE") and name[: -len("_FILE")] in names)


# --- parsing -------------------------------------------------------------------------------------


def test_it_parses_every_manifest_and_the_compose_file() -> None:
    documents = k8s_documents()
    assert len(documents) >= 15
    for name, doc in documents:
        assert {"apiVersion", "kind"} <= doc.keys(), name
        if doc["kind"] != "Kustomization":
            assert doc["metadata"].get("name"), name
    assert set(compose()["services"]) == {
        "migrate", "web", "worker", "worker-writeback", "worker-maintenance", "worker-shadow", "beat", "triton", "db",
        "rabbitmq",
    }  # fmt: skip


def test_it_runs_a_worker_per_queue_in_compose() -> None:
    services = compose()["services"]
    assert services["worker-writeback"]["environment"]["WORKER_QUEUES"] == "writeback"
    assert services["worker-maintenance"]["environment"]["WORKER_QUEUES"] == "maintenance"
    assert services["worker-shadow"]["environment"]["WORKER_QUEUES"] == "shadow"
    assert "WORKER_QUEUES" not in services["worker"].get("environment", {})  # the default: analysis


def test_it_lists_every_manifest_in_the_kustomization() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {path.name for path in K8S.glob("*.yaml")} - NOT_IN_KUSTOMIZATION
    assert set(kustomization["resources"]) == files
    assert kustomization["namespace"] == "ecg-cds"
    assert [image["name"] for image in kustomization["images"]] == [APP_IMAGE]


def test_it_builds_the_kustomization_with_kubectl() -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed; the YAML files are still parsed by the other tests")
    built = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False)
    assert built.returncode == 0, built.stderr
    documents = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    assert all(doc["metadata"].get("namespace", "ecg-cds") == "ecg-cds" for doc in documents)
    images = {c["image"] for doc in documents if "template" in doc.get("spec", {}) for c in pod_containers(doc)}
    assert APP_IMAGE not in images, "kustomization.yaml must map the bare image name to the registry"


# --- Kubernetes workloads ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, name",
    [
        ("Deployment", "web"),
        ("Deployment", "worker"),
        ("Deployment", "beat"),
        ("Deployment", "triton"),
        ("StatefulSet", "postgres"),
        ("StatefulSet", "rabbitmq"),
        ("Job", "migrate"),
    ],
)
def test_it_gives_every_workload_resources_probes_and_a_non_root_user(kind: str, name: str) -> None:
    workload = by_name(kind, name)
    pod = workload["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod.get("automountServiceAccountToken") is False
    for container in pod_containers(workload):
        for section in ("requests", "limits"):
            assert {"cpu", "memory"} <= container["resources"][section].keys(), (name, container["name"])
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        if container["image"] == APP_IMAGE:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, container["name"]
        else:
            assert re.search(r":[\w.-]+$", container["image"]) and not container["image"].endswith(":latest")
    if kind != "Job":
        main = pod["containers"][0]
        assert "livenessProbe" in main, name
        if main.get("ports"):  # whatever serves traffic must say when it is ready
            assert "readinessProbe" in main, name


def test_it_probes_web_on_healthz_with_an_allowed_host() -> None:
    web = by_name("Deployment", "web")
    assert web["spec"]["replicas"] == 2
    container = web["spec"]["template"]["spec"]["containers"][0]
    allowed = by_name("ConfigMap", "ecg-cds-config")["data"]["ALLOWED_HOSTS"].split(",")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        http = container[probe]["httpGet"]
        assert http["path"] == "/healthz"
        hosts = [h["value"] for h in http.get("httpHeaders", []) if h["name"] == "Host"]
        assert hosts and hosts[0] in allowed, "Django answers 400 to a Host outside ALLOWED_HOSTS"
    init = web["spec"]["template"]["spec"]["initContainers"]
    assert [c["args"] for c in init] == [["wait-for-migrations"]]
    service = by_name("Service", "web")
    assert service["spec"]["selector"] == web["spec"]["selector"]["matchLabels"]


def test_it_runs_exactly_one_beat_with_recreate() -> None:
    beat = by_name("Deployment", "beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert not [hpa for hpa in k8s_kind("HorizontalPodAutoscaler") if hpa["spec"]["scaleTargetRef"]["name"] == "beat"]


def test_it_scales_workers_on_queue_depth_and_lets_running_jobs_finish() -> None:
    # KEDA owns the workers' HPAs (issue 16): no CPU HPA may target them as well.
    assert not k8s_kind("HorizontalPodAutoscaler")
    scaled = {doc["metadata"]["name"]: doc for doc in k8s_kind("ScaledObject")}
    assert set(scaled) == {"worker", "worker-writeback"}
    config = by_name("ConfigMap", "ecg-cds-config")["data"]
    queues = {"worker": config["CELERY_TASK_DEFAULT_QUEUE"], "worker-writeback": config["CELERY_WRITEBACK_QUEUE"]}
    for name, doc in scaled.items():
        assert doc["spec"]["scaleTargetRef"]["name"] == name
        (trigger,) = doc["spec"]["triggers"]
        assert trigger["type"] == "rabbitmq" and trigger["metadata"]["queueName"] == queues[name]
        assert trigger["metadata"]["mode"] == "QueueLength"
        assert trigger["authenticationRef"]["name"] == by_name("TriggerAuthentication", "rabbitmq")["metadata"]["name"]
    assert scaled["worker"]["spec"]["minReplicaCount"] >= 2
    worker = by_name("Deployment", "worker")
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > int(config["CELERY_TASK_TIME_LIMIT"])


def test_it_runs_one_worker_deployment_per_queue_with_the_key_on_the_writeback_one_only() -> None:
    config = by_name("ConfigMap", "ecg-cds-config")["data"]
    for name, queue in (
        ("worker-writeback", config["CELERY_WRITEBACK_QUEUE"]),
        ("worker-maintenance", config["CELERY_MAINTENANCE_QUEUE"]),
        ("worker-shadow", config["CELERY_SHADOW_QUEUE"]),
    ):
        env = {
            e["name"]: e.get("value")
            for e in by_name("Deployment", name)["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["WORKER_QUEUES"] == queue
    mounts = {
        doc["metadata"]["name"]
        for doc in k8s_kind("Deployment")
        for volume in doc["spec"]["template"]["spec"].get("volumes", [])
        if volume.get("secret", {}).get("secretName") == "ecg-cds-writeback"
    }
    assert mounts == {"worker-writeback"}


def test_it_shares_one_bulk_export_volume_between_web_and_the_maintenance_worker() -> None:
    """The maintenance worker writes the $export files and web serves them: one RWX volume, both mounts."""
    export_dir = "/var/lib/ecg-cds/bulk-export"  # BULK_EXPORT_DIR's default under the image's CDS_VAR_DIR
    claim = by_name("PersistentVolumeClaim", "bulk-export")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    mounted = set()
    for doc in k8s_kind("Deployment"):
        spec = doc["spec"]["template"]["spec"]
        volumes = {
            v["name"]
            for v in spec.get("volumes", [])
            if v.get("persistentVolumeClaim", {}).get("claimName") == "bulk-export"
        }
        if any(
            m["name"] in volumes and m["mountPath"] == export_dir for m in spec["containers"][0].get("volumeMounts", [])
        ):
            mounted.add(doc["metadata"]["name"])
    assert mounted == {"web", "worker-maintenance"}
    services = compose()["services"]
    using = {name for name, service in services.items() if f"bulk-export:{export_dir}" in service.get("volumes", [])}
    assert using == {"web", "worker-maintenance"} and "bulk-export" in compose()["volumes"]
    assert f"install -d -o 10001 -g 10001 -m 0750 {export_dir}" in DOCKERFILE.read_text()


def test_it_closes_triton_to_everything_but_the_analysis_and_shadow_workers() -> None:
    policies = {doc["metadata"]["name"]: doc for doc in k8s_kind("NetworkPolicy")}
    assert policies["default-deny-ingress"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    triton = policies["triton-from-workers"]["spec"]
    assert triton["podSelector"]["matchLabels"] == by_name("Deployment", "triton")["spec"]["selector"]["matchLabels"]
    inference = [rule for rule in triton["ingress"] if {p["port"] for p in rule["ports"]} & {8000, 8001}]
    assert len(inference) == 1
    sources = [source["podSelector"]["matchLabels"] for source in inference[0]["from"]]
    workers = [by_name("Deployment", name)["spec"]["selector"]["matchLabels"] for name in ("worker", "worker-shadow")]
    assert sources == workers  # the analysis workers and the shadow candidates' worker, nobody else


def test_it_has_disruption_budgets_for_workers_and_triton() -> None:
    budgets = {
        doc["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for doc in k8s_kind("PodDisruptionBudget")
    }
    assert {"web", "worker", "worker-writeback", "worker-maintenance", "worker-shadow", "triton"} <= budgets


def test_it_runs_migrations_as_a_hook() -> None:
    annotations = by_name("Job", "migrate")["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "PreSync"
    assert "pre-upgrade" in annotations["helm.sh/hook"]


def test_it_serves_the_models_from_triton_on_one_gpu() -> None:
    triton = by_name("Deployment", "triton")
    container = triton["spec"]["template"]["spec"]["containers"][0]
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3", container["image"])
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    args = container["args"]
    assert "--model-control-mode=explicit" in args
    assert [a.split("=", 1)[1] for a in args if a.startswith("--load-model=")] == list(TRITON_MODELS)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["models"]["mountPath"] == "/models" and mounts["models"]["readOnly"] is True
    volumes = {v["name"]: v for v in triton["spec"]["template"]["spec"]["volumes"]}
    # Models come from an image through an init container (issue 16), not a PVC filled by kubectl cp.
    assert "emptyDir" in volumes["models"]
    (init,) = triton["spec"]["template"]["spec"]["initContainers"]
    assert (
        re.fullmatch(r"[\w./-]+/ecg-cds-models:[\w.-]+", init["image"]) and init["volumeMounts"][0]["name"] == "models"
    )
    # The model-control API needs the admin key.
    assert any(a.startswith("--http-restricted-api=model-repository:admin-key=") for a in args)
    ports = {p["name"]: p["port"] for p in by_name("Service", "triton")["spec"]["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert by_name("ConfigMap", "ecg-cds-config")["data"]["TRITON_URL"] == "triton:8001"


def test_it_ships_a_secret_template_without_secrets() -> None:
    secrets = {doc["metadata"]["name"]: doc for name, doc in k8s_documents() if name == "secret.example.yaml"}
    assert set(secrets) == {"ecg-cds-secrets", "ecg-cds-writeback"}
    assert all(doc["kind"] == "Secret" for doc in secrets.values())
    assert all("CHANGE-ME" in value for doc in secrets.values() for value in doc["stringData"].values())
    referenced = set()
    for _, doc in k8s_documents():
        if "template" in doc.get("spec", {}):
            for container in pod_containers(doc):
                for env in container.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        referenced.add((ref["name"], ref["key"]))
            for volume in doc["spec"]["template"]["spec"].get("volumes", []):
                if "secret" in volume:
                    referenced |= {(volume["secret"]["secretName"], item["key"]) for item in volume["secret"]["items"]}
        if doc["kind"] == "TriggerAuthentication":  # KEDA reads the broker URL itself
            referenced |= {(ref["name"], ref["key"]) for ref in doc["spec"]["secretTargetRef"]}
    assert referenced == {(name, key) for name, doc in secrets.items() for key in doc["stringData"]}


# --- compose -------------------------------------------------------------------------------------


def test_it_orders_the_compose_startup_on_health() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for target, rule in service.get("depends_on", {}).items():
            condition = rule["condition"]
            assert condition in {"service_healthy", "service_completed_successfully"}, (name, target)
            if condition == "service_healthy":
                assert "test" in services[target].get("healthcheck", {}), f"{target} has no healthcheck"
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["worker"]["depends_on"]["triton"]["condition"] == "service_healthy"
    assert [name for name, service in services.items() if service.get("ports")] == ["web"]


def test_it_runs_the_app_services_from_one_image_and_the_env_file() -> None:
    services = compose()["services"]
    roles = {name: services[name]["command"] for name in ("migrate", "web", "worker", "beat")}
    assert roles == {"migrate": ["migrate"], "web": ["web"], "worker": ["worker"], "beat": ["beat"]}
    for name in roles:
        assert services[name]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert services[name]["env_file"] == [".env"]
        assert services[name]["read_only"] is True
    assert "/healthz" not in str(services["worker"]["healthcheck"])  # worker has no HTTP server


def test_it_runs_triton_on_a_gpu_inside_the_network_only() -> None:
    triton = compose()["services"]["triton"]
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3", with_defaults(triton["image"]))
    assert "ports" not in triton
    assert set(triton["expose"]) == {"8000", "8001", "8002"}
    command = triton["command"]
    assert "--model-control-mode=explicit" in command
    assert [a.split("=", 1)[1] for a in command if a.startswith("--load-model=")] == list(TRITON_MODELS)
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["count"] == 1
    assert "./triton/model_repository:/models:ro" in triton["volumes"]
    assert "/v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    services = compose()["services"]
    assert with_defaults(services["db"]["image"]).startswith("postgres:16")
    assert services["rabbitmq"]["hostname"] == "rabbitmq"  # keeps the broker's data across re-creation


def test_it_knows_every_model_it_loads_when_the_repository_exists() -> None:
    repository = DEPLOY / "triton" / "model_repository"
    if not repository.is_dir():
        pytest.skip("deploy/triton/model_repository is not built yet (python -m inference.export)")
    missing = [model for model in TRITON_MODELS if not (repository / model / "config.pbtxt").is_file()]
    assert not missing, f"models loaded by compose/k8s but absent from the repository: {missing}"


# --- environment variables -----------------------------------------------------------------------


def manifest_env_names() -> set[str]:
    """Return every environment variable name that compose, the manifests or the entrypoint use."""
    text = COMPOSE.read_text()
    names = set(ENV_REF.findall(text))
    for service in compose()["services"].values():
        names |= set(service.get("environment", {}))
    for _, doc in k8s_documents():
        if doc["kind"] == "ConfigMap":
            names |= set(doc["data"])
        if "template" in doc.get("spec", {}):
            for container in pod_containers(doc):
                names |= {env["name"] for env in container.get("env", [])}
                names |= set(K8S_ENV_REF.findall(" ".join(container.get("command", []) + container.get("args", []))))
    names |= set(ENV_REF.findall(ENTRYPOINT.read_text()))
    return names


def test_it_documents_every_variable_of_the_manifests_in_env_example() -> None:
    names = set(env_example_names())
    missing = sorted(n for n in manifest_env_names() if not documented(n, names) and n not in IMAGE_INTERNAL_VARS)
    assert not missing, f"add to deploy/.env.example: {missing}"


def test_it_documents_every_setting_read_by_settings_py() -> None:
    tree = ast.parse((REPO_ROOT / "cds" / "settings.py").read_text())
    read: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.startswith("env_")):
            continue
        if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            read.add(node.args[0].value)
    assert {"SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL"} <= read  # the parse found the helpers
    missing = sorted(read - set(env_example_names()))
    assert not missing, f"add to deploy/.env.example: {missing}"


def test_it_lists_each_variable_once_in_env_example() -> None:
    names = env_example_names()
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})


# --- image ---------------------------------------------------------------------------------------


def test_it_builds_a_non_root_image_with_a_web_healthcheck() -> None:
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS runtime$", dockerfile, flags=re.MULTILINE)
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", dockerfile, flags=re.MULTILINE)
    users = re.findall(r"^USER (\S+)$", dockerfile, flags=re.MULTILINE)
    assert users and all(int(part) > 0 for part in users[-1].split(":")), "USER must be numeric and non-root"
    assert re.search(r"^HEALTHCHECK .*\n?.*healthcheck", dockerfile, flags=re.MULTILINE)
    assert "collectstatic" in dockerfile
    roles = set(re.findall(r"^([a-z-]+)\)$", ENTRYPOINT.read_text(), flags=re.MULTILINE))
    assert {"web", "worker", "beat", "migrate", "wait-for-migrations", "healthcheck", "worker-ping"} <= roles
    entrypoint = ENTRYPOINT.read_text()
    assert "cds.wsgi:application" in entrypoint and "--max-tasks-per-child" in entrypoint
    assert re.search(r"celery -A cds worker \\\n\s+--queues", entrypoint)


def test_it_installs_the_serve_group_from_the_lock_and_never_torch() -> None:
    dockerfile = DOCKERFILE.read_text()
    installs = re.findall(r"pip install ([^\n\\&]+)", dockerfile)
    assert installs == ["-c requirements.lock '.[serve]' "], installs
    assert "torch" not in " ".join(installs)
    assert not re.search(r"\[[^\]]*\b(ml|dev)\b[^\]]*\]", dockerfile), "the image installs no ml/dev group"


def requirement_closure(name: str, extras: tuple[str, ...]) -> set[str]:
    """Return the normalised names of ``name[extras]`` and everything it requires (installed metadata)."""
    from packaging.requirements import Requirement

    seen: dict[str, set[str]] = {}
    todo = [(name, extras)]
    while todo:
        current, wanted = todo.pop()
        key = re.sub(r"[-_.]+", "-", current).lower()
        if key in seen and set(wanted) <= seen[key]:
            continue
        seen.setdefault(key, set()).update(wanted)
        try:
            requires = metadata.distribution(current).requires or []
        except metadata.PackageNotFoundError:
            continue  # an optional dependency absent here; the lock test below still covers pins
        for line in requires:
            requirement = Requirement(line)
            markers = [""] + list(wanted)
            if requirement.marker is None or any(requirement.marker.evaluate({"extra": e}) for e in markers):
                todo.append((requirement.name, tuple(requirement.extras)))
    return set(seen)


def test_it_keeps_torch_out_of_the_serve_dependencies() -> None:
    try:
        metadata.distribution("ecg-cds")
    except metadata.PackageNotFoundError:
        pytest.skip("the project is not installed in this environment (pip install -e .)")
    closure = requirement_closure("ecg-cds", ("serve",))
    assert {"django", "celery", "tritonclient", "neurokit2"} <= closure
    assert not {"torch", "onnxruntime", "pytest"} & closure
    locked = {
        re.sub(r"[-_.]+", "-", line.split("==")[0]).lower()
        for line in (REPO_ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    unpinned = sorted(closure - locked - {"ecg-cds"})
    assert not unpinned, f"requirements.lock does not pin: {unpinned}"


def test_it_keeps_secrets_and_heavy_folders_out_of_the_build_context() -> None:
    ignored = {line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv*", "var", "training/runs", ".env", "**/.env", ".git"} <= ignored
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    sources = {source for line in copied for source in line.split()}
    assert not {s for s in sources if s.rstrip("/") in ignored}, "the Dockerfile copies an ignored path"
