"""The kustomize tree renders, and the rendered objects keep the deployment's promises.

`kubectl kustomize` renders the base and every overlay (a copy of deploy/kubernetes, with the
prod overlay's git-ignored env files filled from their committed examples), and the checks
run on the parsed objects: resources, probes, security contexts and pinned images on every
container; a worker Deployment for every worker pool that exists; environment names that are
Settings fields; references that resolve; GPU only in prod, KEDA per pool, Terraform outputs
wired in. The commands the worker pods run besides the worker (`soundstage-worker-probe`,
`soundstage-<pool>-models`) are console scripts of the image's packages, and run for real
here (the probe against Redis, each pool's warm-up offline on its random test model).
"""

from __future__ import annotations

import os
import runpy
import shutil
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from soundstage.db.models import utcnow
from soundstage.pools import POOLS, Pool, Queue, pool_for
from soundstage.schemas.system import WorkerInfo
from soundstage.settings import Settings
from soundstage.workers import publish
from tests.support.servers import RedisServer

REPO = Path(__file__).resolve().parents[2]
KUSTOMIZE = REPO / "deploy" / "kubernetes"
TARGETS = ("base", "overlays/dev", "overlays/prod")
OVERLAYS = ("overlays/dev", "overlays/prod")
PROD_ENV_FILES = ("terraform-outputs.env", "secrets.env")

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}
SOUNDSTAGE_REGISTRY = "ghcr.io/soundstage/"
UID = 10001
GPU = "nvidia.com/gpu"
GPU_NODE_LABEL = ("soundstage.io/gpu", "true")
# The label of a worker Deployment that says whether its pool wants a GPU (soundstage.pools'
# Pool.gpu): components/gpu patches the Deployments labelled "true".
GPU_POOL_LABEL = "soundstage.io/gpu"
# Environment names a Soundstage container may use besides the Settings fields.
STANDARD_ENV = {
    "HF_HOME",
    "TORCH_HOME",
    "HOME",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
}
SECRET_NAMES = {"DATABASE_URL", "API_KEY", "API_KEYS", "AWS_SECRET_ACCESS_KEY"}
PLACEHOLDER = "set-from-terraform-outputs"
# Console scripts of the worker image's packages that the manifests run besides the worker.
PROBE = "soundstage-worker-probe"
WARMUP_JOB = "soundstage-model-warmup"
# Model caches on the soundstage-models volume (TORCH_HOME where a pool sets it: demucs).
CACHE_ENV = ("HF_HOME", "TORCH_HOME", "MODEL_CACHE_DIR")

Obj = dict[str, Any]


# --- rendering -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/kubernetes whose prod overlay has its env files (from the examples)."""
    root = tmp_path_factory.mktemp("kustomize") / "kubernetes"
    shutil.copytree(KUSTOMIZE, root)
    for name in PROD_ENV_FILES:
        shutil.copyfile(root / "overlays/prod" / f"{name}.example", root / "overlays/prod" / name)
    return root


@pytest.fixture(scope="module")
def rendered(tree: Path) -> dict[str, list[Obj]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not on PATH: these tests render the manifests with `kubectl kustomize` (install it)")

    def render(target: str) -> list[Obj]:
        result = subprocess.run(
            [kubectl, "kustomize", str(tree / target)], capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, f"kubectl kustomize {target} failed:\n{result.stderr}"
        return [obj for obj in yaml.safe_load_all(result.stdout) if obj]

    with ThreadPoolExecutor(len(TARGETS)) as pool:
        return dict(zip(TARGETS, pool.map(render, TARGETS), strict=True))


def find(objs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[Obj], kind: str, name: str) -> Obj:
    matches = find(objs, kind, name)
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def generated(objs: list[Obj], kind: str, base_name: str) -> Obj:
    """A generated ConfigMap/Secret by its name before the content-hash suffix."""
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"].rsplit("-", 1)[0] == base_name]
    assert len(matches) == 1, f"expected one generated {kind} {base_name}-<hash>, found {len(matches)}"
    return matches[0]


def pod_spec(obj: Obj) -> Obj:
    if obj["kind"] == "Pod":
        return dict(obj["spec"])
    if obj["kind"] == "CronJob":
        return dict(obj["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(obj["spec"]["template"]["spec"])


def containers(obj: Obj) -> Iterator[tuple[str, Obj]]:
    """(`kind/name/container`, container) for every init and main container of a workload."""
    spec = pod_spec(obj)
    for field in ("initContainers", "containers"):
        for container in spec.get(field, []):
            yield f"{obj['kind']}/{obj['metadata']['name']}/{container['name']}", container


def workloads(objs: list[Obj]) -> list[Obj]:
    return [o for o in objs if o["kind"] in WORKLOAD_KINDS]


def worker_deployments(objs: list[Obj]) -> list[Obj]:
    return [
        o
        for o in find(objs, "Deployment")
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "worker"
    ]


def main_container(deployment: Obj, name: str) -> Obj:
    matches = [c for c in pod_spec(deployment)["containers"] if c["name"] == name]
    assert matches, f"{deployment['metadata']['name']} has no container {name!r}"
    return dict(matches[0])


def is_soundstage(container: Obj) -> bool:
    return str(container["image"]).startswith(SOUNDSTAGE_REGISTRY)


def worker_image_pool(image: str) -> Pool:
    """The pool of a worker image, `ghcr.io/soundstage/worker-<queue>:<tag>`."""
    name = image.removeprefix(f"{SOUNDSTAGE_REGISTRY}worker-").split("@", 1)[0].split(":", 1)[0]
    return pool_for(Queue(name))


def read_env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


# --- every container ----------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_has_requests_and_limits(rendered: dict[str, list[Obj]], target: str) -> None:
    problems = []
    for obj in workloads(rendered[target]):
        for where, container in containers(obj):
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                missing = {"cpu", "memory"} - set(resources.get(part, {}))
                if missing:
                    problems.append(f"{where}: {part} lacks {sorted(missing)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("target", TARGETS)
def test_long_running_containers_have_readiness_and_liveness_probes(
    rendered: dict[str, list[Obj]], target: str
) -> None:
    problems = []
    for obj in rendered[target]:
        if obj["kind"] not in {"Deployment", "StatefulSet", "DaemonSet"}:
            continue
        for container in pod_spec(obj)["containers"]:
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in container:
                    problems.append(f"{obj['kind']}/{obj['metadata']['name']}/{container['name']}: no {probe}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_runs_non_root_without_privileges(rendered: dict[str, list[Obj]], target: str) -> None:
    """What Pod Security `restricted` (the namespace's label) demands, plus our own images'
    fixed user and read-only root file system."""
    problems = []
    for obj in workloads(rendered[target]):
        pod = pod_spec(obj).get("securityContext", {})
        for where, container in containers(obj):
            ctx = {**pod, **container.get("securityContext", {})}
            if ctx.get("runAsNonRoot") is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            if not ctx.get("runAsUser"):
                problems.append(f"{where}: no non-zero runAsUser")
            if container.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if "ALL" not in container.get("securityContext", {}).get("capabilities", {}).get("drop", []):
                problems.append(f"{where}: capabilities do not drop ALL")
            if ctx.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                problems.append(f"{where}: no RuntimeDefault seccomp profile")
            if ctx.get("privileged"):
                problems.append(f"{where}: privileged")
            if is_soundstage(container) and (ctx.get("runAsUser") != UID or not ctx.get("readOnlyRootFilesystem")):
                problems.append(f"{where}: Soundstage images run as {UID} with a read-only root file system")
    assert not problems, "\n".join(problems)


def _package_version(pyproject: Path) -> str:
    return str(tomllib.loads(pyproject.read_text())["project"]["version"])


@pytest.mark.parametrize("target", TARGETS)
def test_every_image_is_pinned(rendered: dict[str, list[Obj]], target: str) -> None:
    # Image `ghcr.io/soundstage/<name>` is built from services/<name> (its Dockerfile and package).
    versions = {
        f"{SOUNDSTAGE_REGISTRY}{path.parent.name}": _package_version(path.parent / "pyproject.toml")
        for path in (REPO / "services").glob("*/Dockerfile")
    }
    assert {f"{SOUNDSTAGE_REGISTRY}api", f"{SOUNDSTAGE_REGISTRY}worker-musicgen"} <= set(versions)
    problems = []
    for obj in workloads(rendered[target]):
        for where, container in containers(obj):
            image = str(container["image"])
            if "@sha256:" in image:
                continue
            name, _, tag = image.rpartition(":")
            if not name or "/" in tag or not tag or tag == "latest":
                problems.append(f"{where}: image {image!r} is not pinned to a version tag")
            elif is_soundstage(container):
                if name not in versions:
                    problems.append(f"{where}: unknown Soundstage image {name!r}")
                elif tag.removesuffix("-cpu") != versions[name]:
                    problems.append(f"{where}: {image!r} does not match the package version {versions[name]}")
            if container.get("imagePullPolicy") == "Always":
                problems.append(f"{where}: imagePullPolicy Always with a pinned tag")
    assert not problems, "\n".join(problems)


# --- worker pools ------------------------------------------------------------------------------


def built_pools() -> list[Queue]:
    """Queues of built pools (Pool.worker_installed; the others are reserved slots)."""
    return [pool.queue for pool in POOLS if pool.worker_installed]


def model_pools() -> list[Queue]:
    """Built pools that load models (Pool.serves_models): each has a warm-up container."""
    return [queue for queue in built_pools() if pool_for(queue).serves_models]


def pool_of(deployment: Obj) -> Pool:
    """The registry entry of the pool a worker Deployment runs (its `soundstage.io/queue` label)."""
    return pool_for(Queue(deployment["metadata"]["labels"]["soundstage.io/queue"]))


def worker_script(queue: Queue) -> str:
    """The console script that runs the pool's worker module."""
    module = pool_for(queue).worker_module
    scripts = [ep.name for ep in entry_points(group="console_scripts") if ep.value.split(":")[0] == module]
    assert scripts, f"no console script runs {module}"
    return scripts[0]


def test_musicgen_and_demucs_are_built_pools() -> None:
    assert {Queue.MUSICGEN, Queue.DEMUCS} <= set(built_pools())


@pytest.mark.parametrize("target", TARGETS)
def test_every_built_pool_has_a_worker_deployment(rendered: dict[str, list[Obj]], target: str) -> None:
    workers = worker_deployments(rendered[target])
    by_queue = {d["metadata"]["labels"].get("soundstage.io/queue"): d for d in workers}
    assert len(by_queue) == len(workers), "two worker Deployments consume the same queue"
    for queue in built_pools():
        deployment = by_queue.get(queue.value)
        assert deployment is not None, f"no worker Deployment labelled soundstage.io/queue={queue.value}"
        worker = main_container(deployment, "worker")
        assert worker["command"][0] == worker_script(queue), f"the {queue} Deployment does not run its pool"
        probes = [worker[p]["exec"]["command"] for p in ("startupProbe", "readinessProbe", "livenessProbe")]
        assert [p[1:] for p in probes] == [["alive", queue.value], ["ready", queue.value], ["alive", queue.value]]
        gpu = deployment["metadata"]["labels"].get(GPU_POOL_LABEL)
        assert gpu == str(pool_for(queue).gpu).lower(), f"{queue}: label {GPU_POOL_LABEL} must be Pool.gpu"
    assert set(by_queue) <= {q.value for q in Queue}, "a worker Deployment consumes an unknown queue"


def console_script(name: str) -> str:
    """The module:function a console script of the installed packages runs."""
    found = [ep.value for ep in entry_points(group="console_scripts") if ep.name == name]
    assert found, f"{name} is not a console script of the installed packages"
    return found[0]


@pytest.mark.parametrize("target", TARGETS)
def test_worker_probes_run_the_images_probe_command(rendered: dict[str, list[Obj]], target: str) -> None:
    """The probes run `soundstage-worker-probe` from the image (the shared package): no
    script is mounted, and the probe timings stay as they were."""
    assert console_script(PROBE) == "soundstage.probe:main"
    timings = {
        "startupProbe": (10, 10, 60),
        "readinessProbe": (15, 10, 2),
        "livenessProbe": (30, 10, 3),
    }
    for deployment in worker_deployments(rendered[target]):
        worker = main_container(deployment, "worker")
        for probe, (period, timeout, failures) in timings.items():
            spec = worker[probe]
            assert spec["exec"]["command"][0] == PROBE, probe
            assert (spec["periodSeconds"], spec["timeoutSeconds"], spec["failureThreshold"]) == (
                period,
                timeout,
                failures,
            ), probe
        assert not [v for v in pod_spec(deployment)["volumes"] if "configMap" in v], "no scripts are mounted"
    assert not find(rendered[target], "ConfigMap", "soundstage-worker-scripts")


def plain_env(container: Obj) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


@pytest.mark.parametrize("target", TARGETS)
def test_model_warmup_job_has_one_container_per_built_pool_with_models(
    rendered: dict[str, list[Obj]], target: str
) -> None:
    """A pool without models (Pool.serves_models false: the pipeline pool) has nothing to warm up."""
    job = one(rendered[target], "Job", WARMUP_JOB)
    names = [c["name"] for c in pod_spec(job)["containers"]]
    assert sorted(names) == sorted(f"warmup-{q.value}" for q in model_pools())
    assert not [v for v in pod_spec(job)["volumes"] if "configMap" in v], "no scripts are mounted"


@pytest.mark.parametrize("queue", model_pools(), ids=str)
@pytest.mark.parametrize("target", TARGETS)
def test_model_warmup_runs_each_pools_models_command(rendered: dict[str, list[Obj]], target: str, queue: Queue) -> None:
    """`soundstage-<pool>-models` from the pool's own image, filling the very caches the pool's
    workers read (same paths, same volume)."""
    script = f"soundstage-{queue.value}-models"
    assert console_script(script) == f"soundstage_{queue.value}.models:main"
    job = one(rendered[target], "Job", WARMUP_JOB)
    container = main_container(job, f"warmup-{queue.value}")
    assert container["command"] == [script]
    workers = worker_deployments(rendered[target])
    [deployment] = [d for d in workers if d["metadata"]["labels"]["soundstage.io/queue"] == queue.value]
    worker = main_container(deployment, "worker")
    assert container["image"] == worker["image"], "the warm-up runs the pool's own image"
    env, worker_env = plain_env(container), plain_env(worker)
    for name in CACHE_ENV:
        assert env.get(name) == worker_env.get(name), f"the warm-up fills another {name} than the workers read"
    assert {s["configMapRef"]["name"] for s in container["envFrom"]} <= {
        s["configMapRef"]["name"] for s in worker["envFrom"] if "configMapRef" in s
    }, "the warm-up reads the workers' settings"
    volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/models"]]["persistentVolumeClaim"]["claimName"] == "soundstage-models"


def test_worker_model_cache_is_mounted_where_the_settings_point(rendered: dict[str, list[Obj]]) -> None:
    for deployment in worker_deployments(rendered["base"]):
        worker = main_container(deployment, "worker")
        env = plain_env(worker)
        mounts = {m["mountPath"]: m["name"] for m in worker["volumeMounts"]}
        volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
        assert volumes[mounts["/tmp"]]["emptyDir"] is not None, "the root file system is read-only"
        if not pool_of(deployment).serves_models:  # no model: no cache, and no claim on the volume
            claims = [v for v in volumes.values() if "persistentVolumeClaim" in v]
            assert not claims and not set(CACHE_ENV) & set(env), deployment["metadata"]["name"]
            continue
        for name in CACHE_ENV:
            assert str(env.get(name, "/models/")).startswith("/models/"), name
        assert env["HF_HOME"] and env["MODEL_CACHE_DIR"]
        assert volumes[mounts["/models"]]["persistentVolumeClaim"]["claimName"] == "soundstage-models"
        assert volumes[mounts["/tmp"]]["emptyDir"] is not None


@pytest.mark.parametrize("target", TARGETS)
def test_api_and_workers_wait_for_migrations(rendered: dict[str, list[Obj]], target: str) -> None:
    objs = rendered[target]
    job = one(objs, "Job", "soundstage-migrate")
    assert pod_spec(job)["containers"][0]["command"] == ["soundstage", "migrate"]
    for deployment in [one(objs, "Deployment", "soundstage-api"), *worker_deployments(objs)]:
        init = pod_spec(deployment).get("initContainers", [])
        assert [c["command"] for c in init] == [["soundstage", "migrate"]], deployment["metadata"]["name"]
        main = pod_spec(deployment)["containers"][0]
        assert init[0]["image"] == main["image"], "the migrate init container pulls a second image"


# --- the API ------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_api_probes_service_ingress_and_disruption_budget(rendered: dict[str, list[Obj]], target: str) -> None:
    objs = rendered[target]
    api = one(objs, "Deployment", "soundstage-api")
    container = main_container(api, "api")
    assert container["command"] == ["soundstage-api"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    port = next(p for p in container["ports"] if p["name"] == "http")["containerPort"]
    config = generated(objs, "ConfigMap", "soundstage-config")["data"]
    assert int(config["PORT"]) == port and config["HOST"] == "0.0.0.0"  # noqa: S104 - in a pod, by design
    selector = api["spec"]["selector"]["matchLabels"]

    service = one(objs, "Service", "soundstage-api")
    assert service["spec"]["selector"] == selector
    for scrape in (service["metadata"]["annotations"], api["spec"]["template"]["metadata"]["annotations"]):
        assert scrape["prometheus.io/scrape"] == "true"
        assert scrape["prometheus.io/port"] == str(port)
        assert scrape["prometheus.io/path"] == "/metrics"

    ingress = one(objs, "Ingress", "soundstage-api")
    backends = [p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    assert backends and all(b["name"] == "soundstage-api" for b in backends)

    pdb = one(objs, "PodDisruptionBudget", "soundstage-api")
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    assert "replicas" not in api["spec"] or target == "overlays/dev", "the HPA owns the API's replicas"


@pytest.mark.parametrize("target", ["base", "overlays/prod"])
def test_api_scales_on_cpu(rendered: dict[str, list[Obj]], target: str) -> None:
    hpa = one(rendered[target], "HorizontalPodAutoscaler", "soundstage-api")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "soundstage-api"}
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert 1 < hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


# --- settings and references -------------------------------------------------------------------


def settings_names() -> set[str]:
    return Settings.env_names()


@pytest.mark.parametrize("target", TARGETS)
def test_env_names_are_settings_fields(rendered: dict[str, list[Obj]], target: str) -> None:
    objs = rendered[target]
    allowed = settings_names() | STANDARD_ENV
    problems = []
    for obj in workloads(objs):
        for where, container in containers(obj):
            if not is_soundstage(container):
                continue
            names = {e["name"] for e in container.get("env", [])}
            for source in container.get("envFrom", []):
                names |= set(_env_from_keys(objs, source, target))
            problems += [f"{where}: {name} is not a Settings field" for name in sorted(names - allowed)]
    assert not problems, "\n".join(problems)


def _env_from_keys(objs: list[Obj], source: Obj, target: str) -> list[str]:
    if "configMapRef" in source:
        return list(one(objs, "ConfigMap", source["configMapRef"]["name"])["data"])
    name = source["secretRef"]["name"]
    if target == "base":  # the overlays generate the Secret; its keys are documented here
        assert name == "soundstage-secrets"
        example = yaml.safe_load((KUSTOMIZE / "base/secret.example.yaml").read_text())
        return list(example["stringData"])
    secret = one(objs, "Secret", name)
    return list(secret.get("data", {})) + list(secret.get("stringData", {}))


@pytest.mark.parametrize("target", TARGETS)
def test_secrets_stay_out_of_configmaps(rendered: dict[str, list[Obj]], target: str) -> None:
    for configmap in find(rendered[target], "ConfigMap"):
        leaked = SECRET_NAMES & set(configmap.get("data", {}))
        assert not leaked, f"ConfigMap {configmap['metadata']['name']} holds {leaked}"
    if target == "base":
        assert not find(rendered[target], "Secret"), "the base ships no Secret (secret.example.yaml is a template)"


def _references(obj: Obj) -> Iterator[tuple[str, str]]:
    """(kind, name) of every ConfigMap, Secret, PVC and ServiceAccount a workload uses."""
    spec = pod_spec(obj)
    yield "ServiceAccount", spec.get("serviceAccountName", "default")
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            yield "ConfigMap", volume["configMap"]["name"]
        if "secret" in volume:
            yield "Secret", volume["secret"]["secretName"]
        if "persistentVolumeClaim" in volume:
            yield "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]
    for _, container in containers(obj):
        for source in container.get("envFrom", []):
            ref = source.get("configMapRef") or source["secretRef"]
            yield ("ConfigMap" if "configMapRef" in source else "Secret"), ref["name"]
        for env in container.get("env", []):
            for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                if key in env.get("valueFrom", {}):
                    yield kind, env["valueFrom"][key]["name"]


@pytest.mark.parametrize("target", OVERLAYS)
def test_every_reference_resolves(rendered: dict[str, list[Obj]], target: str) -> None:
    objs = rendered[target]
    present = {(o["kind"], o["metadata"]["name"]) for o in objs}
    missing = set()
    for obj in workloads(objs):
        for kind, name in _references(obj):
            if name != "default" and (kind, name) not in present:
                missing.add(f"{obj['kind']}/{obj['metadata']['name']} -> {kind}/{name}")
        namespace = obj["metadata"].get("namespace")
        assert namespace == "soundstage", f"{obj['kind']}/{obj['metadata']['name']} is in namespace {namespace}"
    claims = {n for k, n in present if k == "PersistentVolumeClaim"}
    assert "soundstage-models" in claims
    assert not missing, "\n".join(sorted(missing))


# --- dev ---------------------------------------------------------------------------------------


def test_dev_runs_on_cpu_with_the_random_test_model(
    rendered: dict[str, list[Obj]], monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = rendered["overlays/dev"]
    for obj in workloads(objs):
        spec = pod_spec(obj)
        assert GPU_NODE_LABEL[0] not in spec.get("nodeSelector", {}), obj["metadata"]["name"]
        for where, container in containers(obj):
            resources = container.get("resources", {})
            assert GPU not in resources.get("requests", {}) and GPU not in resources.get("limits", {}), where
            image = str(container["image"])
            if image.startswith(f"{SOUNDSTAGE_REGISTRY}worker-") and worker_image_pool(image).gpu:
                assert image.endswith("-cpu"), f"{where}: a GPU pool's CPU image"
    config = generated(objs, "ConfigMap", "soundstage-config")["data"]
    for name in settings_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in config.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    for queue in built_pools():
        assert pool_for(queue).served_models(settings) in (["random:tiny"], []), f"dev {queue} pool downloads weights"
    assert config["S3_ENDPOINT_URL"] == "http://minio:9000"
    assert not find(objs, "HorizontalPodAutoscaler") and not find(objs, "ScaledObject")
    for deployment in find(objs, "Deployment"):
        assert deployment["spec"].get("replicas") == 1, deployment["metadata"]["name"]


def test_dev_services_match_the_settings(rendered: dict[str, list[Obj]]) -> None:
    """The in-cluster Postgres, Redis (with AOF) and MinIO are where the settings point."""
    objs = rendered["overlays/dev"]
    services = {s["metadata"]["name"]: {p["port"] for p in s["spec"]["ports"]} for s in find(objs, "Service")}
    config = generated(objs, "ConfigMap", "soundstage-config")["data"]
    secrets = read_env_file(KUSTOMIZE / "overlays/dev/dev-secrets.env")
    assert config["REDIS_URL"] == "redis://redis:6379/0" and 6379 in services["redis"]
    assert "@postgres:5432/" in secrets["DATABASE_URL"] and 5432 in services["postgres"]
    assert 9000 in services["minio"]
    redis_args = main_container(one(objs, "StatefulSet", "redis"), "redis")["args"]
    assert redis_args[redis_args.index("--appendonly") + 1] == "yes"
    bucket = config["STORAGE_URL"].removeprefix("s3://").split("/")[0]
    assert pod_spec(one(objs, "Job", "minio-create-bucket"))["containers"][0]["command"][-1] == f"dev/{bucket}"
    for statefulset in find(objs, "StatefulSet"):
        assert statefulset["spec"]["volumeClaimTemplates"], statefulset["metadata"]["name"]


# --- prod --------------------------------------------------------------------------------------


def test_prod_gives_each_gpu_pool_replica_one_gpu_and_cpu_pools_none(rendered: dict[str, list[Obj]]) -> None:
    workers = worker_deployments(rendered["overlays/prod"])
    assert workers and any(pool_of(d).gpu for d in workers)
    for deployment in workers:
        spec = pod_spec(deployment)
        worker = main_container(deployment, "worker")
        if not pool_of(deployment).gpu:  # Pool.gpu false: ordinary nodes, no GPU, no CUDA image
            name = deployment["metadata"]["name"]
            for _, container in containers(deployment):
                resources = container.get("resources", {})
                assert GPU not in resources.get("requests", {}) and GPU not in resources.get("limits", {}), name
            assert GPU_NODE_LABEL[0] not in spec.get("nodeSelector", {}), name
            assert not [t for t in spec.get("tolerations", []) if t.get("key") == GPU], name
            assert "DEVICE" not in plain_env(worker), name
            continue
        assert worker["resources"]["limits"][GPU] == "1"
        assert worker["resources"]["requests"][GPU] == "1"
        assert not worker["image"].endswith("-cpu")
        assert spec["nodeSelector"][GPU_NODE_LABEL[0]] == GPU_NODE_LABEL[1]
        assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
        assert {"name": "DEVICE", "value": "cuda"} in worker["env"]


def test_prod_scales_every_worker_pool_on_its_queue(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["overlays/prod"]
    outputs = read_env_file(KUSTOMIZE / "overlays/prod/terraform-outputs.env.example")
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in find(objs, "ScaledObject")}
    workers = worker_deployments(objs)
    assert set(scaled) == {d["metadata"]["name"] for d in workers}
    for deployment in workers:
        spec = scaled[deployment["metadata"]["name"]]["spec"]
        assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        assert 0 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
        [trigger] = spec["triggers"]
        assert trigger["type"] == "redis"
        assert trigger["metadata"]["listName"] == deployment["metadata"]["labels"]["soundstage.io/queue"]
        assert int(trigger["metadata"]["listLength"]) >= 1
        assert trigger["metadata"]["address"] == outputs["REDIS_ADDRESS"]
        assert trigger["metadata"]["enableTLS"] == "true"


def test_prod_takes_its_endpoints_from_terraform_outputs(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["overlays/prod"]
    outputs = read_env_file(KUSTOMIZE / "overlays/prod/terraform-outputs.env.example")
    config = generated(objs, "ConfigMap", "soundstage-config")["data"]
    for key in ("REDIS_URL", "STORAGE_URL", "S3_REGION"):
        assert config[key] == outputs[key], key
    assert "S3_ENDPOINT_URL" not in config, "prod talks to AWS S3 itself"
    assert config["REDIS_URL"].startswith("rediss://")
    for account in ("soundstage-api", "soundstage-worker"):
        annotations = one(objs, "ServiceAccount", account)["metadata"]["annotations"]
        assert annotations["eks.amazonaws.com/role-arn"] == outputs["SERVICE_ACCOUNT_ROLE_ARN"]
    assert "annotations" not in one(objs, "ServiceAccount", "soundstage-migrate")["metadata"]
    storage_class = one(objs, "StorageClass", "soundstage-efs")
    assert storage_class["parameters"]["fileSystemId"] == outputs["MODEL_CACHE_FILE_SYSTEM_ID"]
    claim = one(objs, "PersistentVolumeClaim", "soundstage-models")["spec"]
    assert claim["accessModes"] == ["ReadWriteMany"] and claim["storageClassName"] == "soundstage-efs"
    assert not find(objs, "ConfigMap", "terraform-outputs"), "the outputs ConfigMap is local to kustomize"
    assert PLACEHOLDER not in yaml.safe_dump_all(objs)
    secret_keys = set(generated(objs, "Secret", "soundstage-secrets")["data"])
    assert {"DATABASE_URL", "API_KEYS"} <= secret_keys


def test_prod_env_files_are_ignored_and_have_examples() -> None:
    ignored = (KUSTOMIZE / "overlays/prod/.gitignore").read_text().split()
    for name in PROD_ENV_FILES:
        assert name in ignored
        assert (KUSTOMIZE / "overlays/prod" / f"{name}.example").is_file()


# --- the probe and the warm-up, run for real -------------------------------------------------

POD = "soundstage-worker-musicgen-5d8c7b9f4-x2x7q"


@pytest.fixture
def probe_redis(redis_server: RedisServer) -> Iterator[tuple[str, redis.Redis[bytes]]]:
    """A database of the session Redis that no worker of another test writes to."""
    url = redis_server.url.rsplit("/", 1)[0] + "/13"
    client: redis.Redis[bytes] = redis.Redis.from_url(url)
    client.flushdb()
    yield url, client
    client.flushdb()
    client.close()


def run_probe(mode: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """Exit code of `python -m soundstage.probe` run as this test's pod (POD) for the musicgen queue."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setattr(socket, "gethostname", lambda: POD)
    monkeypatch.setattr(sys, "argv", ["soundstage-worker-probe", mode, "musicgen"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("soundstage.probe", run_name="__main__", alter_sys=True)
    return int(exit_info.value.code or 0)


COLLECTED_AT = utcnow()


def heartbeat(
    hostname: str, *, loaded: bool, queue: str = "musicgen", age_s: float = 0, device_error: str | None = None
) -> WorkerInfo:
    return WorkerInfo(
        hostname=hostname,
        queue=queue,
        model="random:tiny",
        device="cpu",
        gpu_available=False,
        random_weights=True,
        models_loaded=["random:tiny"] if loaded else [],
        model_loaded=loaded,
        device_error=device_error,
        seen_at=utcnow() - timedelta(seconds=age_s),
    )


@pytest.mark.parametrize(
    "case",
    [
        ([], 1, 1),
        ([heartbeat(f"{POD}:7", loaded=False)], 0, 1),
        ([heartbeat(f"{POD}:7", loaded=True)], 0, 0),
        ([heartbeat(f"{POD}:7", loaded=True), heartbeat(f"{POD}:8", loaded=False)], 0, 1),
        ([heartbeat(f"{POD}:7", loaded=True, age_s=45)], 1, 1),
        ([heartbeat(f"{POD}-other:7", loaded=True)], 1, 1),
        ([heartbeat(f"{POD}:7", loaded=True, queue="demucs")], 1, 1),
        ([heartbeat(f"{POD}:7", loaded=True, device_error="device cuda:0 failed a test operation")], 0, 1),
    ],
    ids=["none", "loading", "loaded", "one-child-loading", "stale", "other-pod", "other-queue", "device-broken"],
)
def test_worker_probe_reads_this_pods_heartbeat(
    probe_redis: tuple[str, redis.Redis[bytes]],
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[list[WorkerInfo], int, int],
) -> None:
    """Exit codes of `alive` and `ready` for the heartbeat entries in Redis."""
    entries, alive, ready = case
    url, client = probe_redis
    for entry in entries:
        # The cases were built at collection, maybe minutes ago: keep each one's age, not its time.
        publish(client, entry.model_copy(update={"seen_at": entry.seen_at + (utcnow() - COLLECTED_AT)}))
    assert run_probe("alive", url, monkeypatch) == alive
    assert run_probe("ready", url, monkeypatch) == ready


def test_worker_probe_keeps_workers_alive_while_redis_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    assert run_probe("alive", url, monkeypatch) == 0
    assert run_probe("ready", url, monkeypatch) == 1


def test_worker_probe_console_script_prints_why_it_fails(probe_redis: tuple[str, redis.Redis[bytes]]) -> None:
    """The installed command, as the kubelet and Docker run it; its output is the probe's log."""
    url, client = probe_redis
    command = Path(sys.executable).parent / PROBE
    env = {**os.environ, "REDIS_URL": url}
    hostname = socket.gethostname()

    def probe(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(command), *args], env=env, capture_output=True, text=True, timeout=60, check=False)

    usage = probe("sideways", "musicgen")
    assert usage.returncode == 2 and "usage: soundstage-worker-probe ready|alive <queue>" in usage.stderr
    none = probe("alive", "musicgen")
    assert none.returncode == 1 and f"no heartbeat from {hostname}:*" in none.stdout
    publish(client, heartbeat(f"{hostname}:7", loaded=False))
    assert probe("alive", "musicgen").returncode == 0
    loading = probe("ready", "musicgen")
    assert loading.returncode == 1 and f"{hostname}:7: models not loaded (loading)" in loading.stdout
    publish(client, heartbeat(f"{hostname}:7", loaded=True))
    assert probe("ready", "musicgen").returncode == 0


# What the random test model of each pool leaves in MODEL_CACHE_DIR once built.
RANDOM_TINY_BUILT = {Queue.MUSICGEN: "random-tiny/config.json", Queue.DEMUCS: "**/random-tiny/*.yaml"}


@pytest.mark.parametrize("queue", list(RANDOM_TINY_BUILT), ids=str)
def test_model_warmup_loads_every_served_model(tmp_path: Path, queue: Queue) -> None:
    """`python -m soundstage_<pool>.models` (the warm-up Job's `soundstage-<pool>-models`), offline."""
    module = console_script(f"soundstage-{queue.value}-models").split(":")[0]
    cache = tmp_path / "cache"
    env = {
        **{k: v for k, v in os.environ.items() if k not in settings_names()},
        "MODEL_CACHE_DIR": str(cache),
        "HF_HUB_OFFLINE": "1",
        "LOG_FORMAT": "text",
    }

    def warm(models: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", module],
            env={**env, f"{queue.value.upper()}_MODELS": models},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    ok = warm("random:tiny")
    assert ok.returncode == 0, ok.stderr
    assert list(cache.glob(RANDOM_TINY_BUILT[queue])), "the random model was not built into MODEL_CACHE_DIR"
    assert "random:tiny" in ok.stderr
    failed = warm(f"random:tiny,{tmp_path / 'missing'},random:no-such-model")
    assert failed.returncode == 1, failed.stderr
    assert "missing" in failed.stderr and "random:no-such-model" in failed.stderr
