"""docker-compose.yml and docker-compose.cpu.yml, parsed and cross-checked against the code.

No Docker engine is needed: the files are read with PyYAML (compose's `!reset` tag
included) and checked against the Dockerfiles, the Settings object, the queues of the
shared package and .env.example.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from soundstage.pools import Pool, Queue, pool_for
from soundstage.settings import Settings
from tests.deploy.test_dockerfiles import Dockerfile, image_tag, parse_dockerfile, settings_env_names

ROOT = Path(__file__).resolve().parents[2]
BASE_FILE = ROOT / "docker-compose.yml"
CPU_FILE = ROOT / "docker-compose.cpu.yml"
ENV_EXAMPLE = ROOT / ".env.example"
README = ROOT / "README.md"

# Standard names a Soundstage container may get besides the Settings fields.
STANDARD_ENV = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "HF_HOME",
    "PYTORCH_CUDA_ALLOC_CONF",
}
# Other images read their own variables (and may be handed a Soundstage setting).
IMAGE_ENV_PREFIXES = {"postgres": "POSTGRES_", "minio/minio": "MINIO_", "minio/mc": "MINIO_", "grafana/grafana": "GF_"}
SECRETS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "MINIO_ROOT_PASSWORD", "API_KEYS")
ONE_SHOT = {"migrate", "minio-setup"}
STATE_SERVICES = ("postgres", "redis", "minio")
# Dummy values for the interpolation of required variables.
FILLED_ENV = dict.fromkeys(SECRETS, "secret0123456789")


@dataclass(frozen=True)
class Reset:
    """Compose's `!reset` tag: drop the value inherited from the files before."""

    value: Any


class ComposeLoader(yaml.SafeLoader):
    pass


def _untagged(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    """The value of a tagged node, as if it had no tag."""
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    assert isinstance(node, yaml.ScalarNode)
    return loader.construct_scalar(node)


ComposeLoader.add_constructor("!reset", lambda loader, node: Reset(_untagged(loader, node)))
ComposeLoader.add_constructor("!override", _untagged)


def load(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(), Loader=ComposeLoader)  # noqa: S506 - a SafeLoader subclass
    assert isinstance(data, dict)
    return data


BASE = load(BASE_FILE)
CPU = load(CPU_FILE)
SERVICES: dict[str, dict[str, Any]] = BASE["services"]


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR:?error}` (and `$$` escapes) with ``env``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.group(1), match.group(2) or "", match.group(3) or ""
        if name in env and (env[name] or ":" not in operator):
            return env[name]
        assert "?" not in operator, f"{name} is required: {argument}"
        return argument if "-" in operator else ""

    return re.sub(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}", replace, value)


def referenced_variables(text: str) -> set[str]:
    """Names of every `${VAR...}` interpolated in a compose file (not the `$${...}` escapes)."""
    return set(re.findall(r"(?<!\$)\$\{(\w+)", text))


def env_example_names() -> dict[str, str | None]:
    """Variables of .env.example: value for a set one, None for one shown commented out."""
    names: dict[str, str | None] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if match := re.fullmatch(r"(\w+)=(.*)", line):
            names[match.group(1)] = match.group(2)
        elif match := re.fullmatch(r"# (\w+)=.*", line):
            names.setdefault(match.group(1), None)
    return names


def dockerfile_of(service: dict[str, Any]) -> Dockerfile | None:
    build = service.get("build")
    if build is None:
        return None
    return parse_dockerfile(ROOT / build.get("context", ".") / build["dockerfile"])


def is_soundstage(service: dict[str, Any]) -> bool:
    """Runs one of our images (built here), not a third-party one."""
    return "build" in service


def worker_services() -> dict[str, dict[str, Any]]:
    return {name: service for name, service in SERVICES.items() if name.startswith("worker-")}


def pool_of(name: str) -> Pool:
    """The registry entry of a worker service's pool (`worker-<queue>`)."""
    return pool_for(Queue(name.removeprefix("worker-")))


def gpu_workers() -> list[str]:
    """Worker services of pools that want a GPU (Pool.gpu)."""
    return sorted(name for name in worker_services() if pool_of(name).gpu)


def cpu_workers() -> list[str]:
    return sorted(name for name in worker_services() if not pool_of(name).gpu)


def model_workers() -> list[str]:
    """Worker services of pools that load models (Pool.serves_models): they keep caches on a volume."""
    return sorted(name for name in worker_services() if pool_of(name).serves_models)


def effective_env(name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The container environment of a Soundstage service: image ENV, then compose's values
    (interpolated; a valueless entry is passed through from ``extra`` or left unset)."""
    service = SERVICES[name]
    dockerfile = dockerfile_of(service)
    overrides = {key: str(value) for key, value in ((service.get("build") or {}).get("args") or {}).items()}
    env = dict(dockerfile.env(dockerfile.final, overrides)) if dockerfile else {}
    source = FILLED_ENV | (extra or {})
    for key, value in (service.get("environment") or {}).items():
        if value is None:
            if key in source:
                env[key] = source[key]
        else:
            env[key] = interpolate(str(value), source)
    return env


def healthcheck_of(service: dict[str, Any]) -> bool:
    """Whether the container has a health check: its own, or its image's HEALTHCHECK."""
    own = service.get("healthcheck")
    if own is not None:
        return not own.get("disable", False) and bool(own.get("test"))
    dockerfile = dockerfile_of(service)
    return bool(dockerfile and dockerfile.final.all("HEALTHCHECK"))


# --- build, images ----------------------------------------------------------------------------
def test_every_build_points_at_an_existing_dockerfile_and_its_arguments() -> None:
    built = {name: service for name, service in SERVICES.items() if "build" in service}
    assert {"api", "migrate", "worker-musicgen"} <= set(built)
    for name, service in built.items():
        build = service["build"]
        context = ROOT / build.get("context", ".")
        assert context.is_dir(), name
        assert context.resolve() == ROOT, f"{name}: the images need the repository root as context"
        dockerfile = dockerfile_of(service)
        assert dockerfile is not None and dockerfile.path.is_file(), name
        for arg, value in (build.get("args") or {}).items():
            assert arg in dockerfile.global_args, f"{name}: {dockerfile.path} has no ARG {arg}"
            if arg == "VARIANT":
                assert f"os-{value}" in {stage.name for stage in dockerfile.stages}, f"{name}: VARIANT {value}"


def test_images_are_pinned() -> None:
    for name, service in SERVICES.items():
        image = service.get("image")
        assert image, f"{name}: name its image"
        tag = image_tag(image)
        assert tag and tag != "latest", f"{name}: {image}: pin a tag"
        if not is_soundstage(service):
            assert re.search(r"\d", tag), f"{name}: {image}: pin an exact version"


def test_migrate_runs_alembic_from_the_api_image() -> None:
    migrate, api = SERVICES["migrate"], SERVICES["api"]
    assert migrate["image"] == api["image"]
    assert migrate["build"] == api["build"]
    assert migrate["command"] == ["soundstage", "migrate"]
    assert migrate["restart"] == "no"
    assert set(migrate["depends_on"]) == {"postgres"}
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert effective_env("migrate")["DATABASE_URL"] == effective_env("api")["DATABASE_URL"]


# --- environment ------------------------------------------------------------------------------
def test_environment_names_are_settings_or_standard() -> None:
    settings = settings_env_names()
    for name, service in SERVICES.items():
        names = set(service.get("environment") or {})
        if is_soundstage(service):
            unknown = names - settings - STANDARD_ENV
        else:
            repository = service["image"].rsplit(":", 1)[0]
            prefix = IMAGE_ENV_PREFIXES.get(repository)
            unknown = {env for env in names - settings if not (prefix and env.startswith(prefix))}
        assert not unknown, f"{name}: not a Settings field nor a standard name: {sorted(unknown)}"


@pytest.mark.parametrize("name", ["api", "migrate", *sorted(worker_services())])
def test_soundstage_services_get_valid_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = effective_env(name)
    for key in settings_env_names():
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.log_format == "json"
    assert settings.database_url and settings.database_url.startswith("postgresql+psycopg://")
    if name != "migrate":
        assert settings.redis_url and settings.redis_url.startswith("redis://")
        assert settings.storage_url and settings.storage_url.startswith("s3://")
        assert settings.s3_endpoint_url == "http://minio:9000"
        assert env["AWS_SECRET_ACCESS_KEY"] == FILLED_ENV["MINIO_ROOT_PASSWORD"]


def test_api_is_published_on_all_interfaces() -> None:
    env = effective_env("api")
    assert env["HOST"] == "0.0.0.0"  # noqa: S104 - the container listens on its own interfaces
    assert f"{env['PORT']}:{env['PORT']}" in SERVICES["api"]["ports"]
    assert env["API_KEYS"] == FILLED_ENV["API_KEYS"], "the published API requires keys"


def test_api_and_workers_serve_the_same_models() -> None:
    """The API validates `model` against the served models: it must read the workers' settings."""
    extra = {
        "MUSICGEN_MODEL": "random:tiny",
        "MUSICGEN_MODELS": "random:tiny,random:tiny-stereo",
        "DEMUCS_MODEL": "random:tiny",
        "DEMUCS_MODELS": "random:tiny,random:tiny-6s",
    }
    api = effective_env("api", extra)
    for name in worker_services():
        worker = effective_env(name, extra)
        for key, value in extra.items():
            assert api[key] == worker[key] == value, f"{name}: {key}"


def readme_configuration_names() -> set[str]:
    """Variables named in the first column of the README's Configuration table."""
    text = README.read_text()
    section = text[text.index("\n## Configuration\n") :]
    section = section[: section.index("\n## ", 1)]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", row)}


def test_settings_given_to_containers_are_in_the_readme_configuration_table() -> None:
    """.env.example sends readers to the README's Configuration table for every setting it lists."""
    documented = readme_configuration_names()
    settings = settings_env_names()
    given = {key for service in SERVICES.values() for key in service.get("environment") or {}} & settings
    listed = set(env_example_names()) & settings
    missing = (given | listed) - documented
    assert not missing, f"README Configuration table lacks {sorted(missing)}"


def test_every_interpolated_variable_is_in_env_example() -> None:
    documented = env_example_names()
    referenced = referenced_variables(BASE_FILE.read_text()) | referenced_variables(CPU_FILE.read_text())
    assert referenced <= set(documented), f"missing from .env.example: {sorted(referenced - set(documented))}"
    passed_through = {
        key
        for service in SERVICES.values()
        for key, value in (service.get("environment") or {}).items()
        if value is None
    }
    assert passed_through <= set(documented), f"missing from .env.example: {sorted(passed_through - set(documented))}"
    stale = set(documented) - referenced - passed_through
    assert not stale, f".env.example lists variables compose never reads: {sorted(stale)}"


def test_secrets_are_required_and_never_defaulted() -> None:
    text = BASE_FILE.read_text()
    documented = env_example_names()
    for secret in SECRETS:
        assert f"${{{secret}:?" in text, f"{secret}: use ${{{secret}:?...}} so a missing secret stops compose"
        assert f"${{{secret}:-" not in text, f"{secret}: a secret has no default"
        assert documented.get(secret) == "", f".env.example ships {secret} empty, so compose asks for it"
        with pytest.raises(AssertionError, match=f"{secret} is required"):
            interpolate(text, FILLED_ENV | {secret: ""})


# --- ordering, health, restarts ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["api", *sorted(worker_services())])
def test_soundstage_services_wait_for_healthy_state_and_migrations(name: str) -> None:
    depends = SERVICES[name]["depends_on"]
    for state in STATE_SERVICES:
        assert depends[state]["condition"] == "service_healthy", f"{name} -> {state}"
    for one_shot in ONE_SHOT:
        assert depends[one_shot]["condition"] == "service_completed_successfully", f"{name} -> {one_shot}"


def test_health_conditions_point_at_services_with_health_checks() -> None:
    for name, service in SERVICES.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            if rule["condition"] == "service_healthy":
                assert healthcheck_of(SERVICES[target]), f"{name} waits for {target}'s health, which it lacks"
            elif rule["condition"] == "service_completed_successfully":
                assert target in ONE_SHOT, f"{name} waits for {target} to exit, but it runs forever"
    assert SERVICES["minio-setup"]["depends_on"]["minio"]["condition"] == "service_healthy"


def test_long_running_services_have_a_healthcheck_and_a_restart_policy() -> None:
    for name, service in SERVICES.items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", name
            continue
        assert healthcheck_of(service), f"{name}: add a healthcheck"
        assert service.get("restart") in {"unless-stopped", "always", "on-failure"}, f"{name}: add a restart policy"


def test_redis_keeps_queued_jobs_across_restarts() -> None:
    command = SERVICES["redis"]["command"]
    assert command[0] == "redis-server"
    flags = " ".join(command[1:])
    assert "--appendonly yes" in flags
    assert "--requirepass ${REDIS_PASSWORD:?" in flags
    assert any(volume.endswith(":/data") for volume in SERVICES["redis"]["volumes"])


def test_storage_is_the_minio_bucket_that_setup_creates() -> None:
    storage_url = effective_env("api")["STORAGE_URL"]
    assert storage_url.startswith("s3://")
    assert SERVICES["minio-setup"]["environment"]["STORAGE_URL"] == storage_url
    script = SERVICES["minio-setup"]["command"][0]
    assert 'mc mb --ignore-existing "soundstage/$$bucket"' in script
    assert "set -eu" in script, "a failed step fails the one-shot, and so the stack's start"


# --- volumes ----------------------------------------------------------------------------------
def named_volumes(service: dict[str, Any]) -> dict[str, str]:
    """target -> named volume of a service (bind mounts left out)."""
    mounts = {}
    for entry in service.get("volumes") or []:
        source, target = entry.split(":")[:2]
        if not source.startswith((".", "/")):
            mounts[target] = source
    return mounts


def test_state_and_model_caches_live_on_named_volumes() -> None:
    declared = set(BASE["volumes"])
    expected = {
        "postgres": "/var/lib/postgresql/data",
        "redis": "/data",
        "minio": "/data",
        **dict.fromkeys(model_workers(), "/models"),
    }
    for name, target in expected.items():
        mounts = named_volumes(SERVICES[name])
        assert target in mounts, f"{name}: {target} on a named volume"
        assert mounts[target] in declared, f"{name}: declare volume {mounts[target]}"
    used = {source for service in SERVICES.values() for source in named_volumes(service).values()}
    assert used == declared, "every declared volume is used, every used one declared"


@pytest.mark.parametrize("name", sorted(set(worker_services()) - set(model_workers())))
def test_workers_without_models_mount_no_model_volume(name: str) -> None:
    """A pool that loads no model (Pool.serves_models false) needs no model cache."""
    dockerfile = dockerfile_of(SERVICES[name])
    assert dockerfile is not None and not dockerfile.final.all("VOLUME")
    assert "/models" not in named_volumes(SERVICES[name]), f"{name} loads no model"


@pytest.mark.parametrize("name", model_workers())
def test_worker_model_volume_holds_the_caches(name: str) -> None:
    dockerfile = dockerfile_of(SERVICES[name])
    assert dockerfile is not None
    (volume,) = dockerfile.final.all("VOLUME")
    assert volume.value == '["/models"]'
    env = effective_env(name)
    assert env["HF_HOME"].startswith("/models/") and env["MODEL_CACHE_DIR"].startswith("/models/")
    assert env.get("TORCH_HOME", "/models/").startswith("/models/"), "torch hub's cache on the volume too"


@pytest.mark.parametrize("name", model_workers())
def test_readme_warm_up_command_is_the_images_own(name: str) -> None:
    """The README's warm-up command for each worker service runs a console script of its image."""
    queue = name.removeprefix("worker-")
    script = f"soundstage-{queue}-models"
    build = SERVICES[name]["build"]
    pyproject = ROOT / build.get("context", ".") / Path(build["dockerfile"]).parent / "pyproject.toml"
    assert script in tomllib.loads(pyproject.read_text())["project"]["scripts"], f"{pyproject}: no {script}"
    command = f"docker compose run --rm --no-deps {name} {script}"
    assert command in README.read_text(), f"README: document `{command}`"


# --- GPU and the CPU override -----------------------------------------------------------------
def gpu_devices(service: dict[str, Any]) -> Any:
    return ((service.get("deploy") or {}).get("resources") or {}).get("reservations", {}).get("devices")


@pytest.mark.parametrize("name", gpu_workers())
def test_workers_reserve_a_gpu_and_the_cpu_override_removes_it(name: str) -> None:
    (device,) = gpu_devices(SERVICES[name])
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert device.get("count") == 1 or len(device.get("device_ids", [])) == 1, "one GPU per worker container"
    assert SERVICES[name]["build"]["args"]["VARIANT"] == "cuda"
    override = CPU["services"][name]
    assert gpu_devices(override) == Reset([]), f"docker-compose.cpu.yml: reset {name}'s GPU reservation"
    assert override["build"]["args"]["VARIANT"] == "cpu"
    assert override["image"] != SERVICES[name]["image"], "the CPU build gets its own tag"
    assert image_tag(override["image"]) not in (None, "latest")


@pytest.mark.parametrize("name", cpu_workers())
def test_cpu_pool_workers_reserve_no_gpu_and_build_one_image(name: str) -> None:
    """A CPU pool (Pool.gpu false) runs as it is on any host: no reservation, no VARIANT to switch."""
    service = SERVICES[name]
    assert gpu_devices(service) is None, f"{name} needs no GPU"
    assert "args" not in service["build"], f"{name}: its image has one variant"
    dockerfile = dockerfile_of(service)
    assert dockerfile is not None and "VARIANT" not in dockerfile.global_args
    assert name not in CPU["services"], f"docker-compose.cpu.yml has nothing to change for {name}"


def test_cpu_override_only_touches_gpu_workers_of_the_base_file() -> None:
    assert set(CPU["services"]) == set(gpu_workers())
    assert set(CPU) == {"services"}
    for name, service in SERVICES.items():
        if name not in gpu_workers():
            assert gpu_devices(service) is None, f"{name} needs no GPU"


# --- every queue has its pool -----------------------------------------------------------------
@pytest.mark.parametrize("queue", list(Queue), ids=str)
def test_every_queue_has_a_worker_service_or_a_documented_slot(queue: Queue) -> None:
    service_name = f"worker-{queue.value}"
    package = ROOT / "services" / service_name
    if pool_for(queue).worker_installed:  # the pool is built (its worker exists): it must run
        assert service_name in SERVICES, f"queue {queue.value}: add the {service_name} service"
        dockerfile = dockerfile_of(SERVICES[service_name])
        assert dockerfile is not None and dockerfile.path == package / "Dockerfile"
        # A GPU pool gets its CPU build in docker-compose.cpu.yml; a CPU pool needs none.
        assert (service_name in CPU["services"]) == pool_for(queue).gpu
        return
    # Not built yet: no half-defined service, but a slot that says so.
    assert service_name not in SERVICES, f"{service_name} has no worker yet: keep it a commented slot"
    assert not (package / "Dockerfile").exists()
    slot = f"# slot: {service_name} (queue `{queue.value}`"
    lines = [line.strip() for line in BASE_FILE.read_text().splitlines()]
    assert any(line.startswith(slot) and line.endswith("not built yet") for line in lines), (
        f"docker-compose.yml: document the {service_name} slot"
    )


# --- optional monitoring ----------------------------------------------------------------------
def test_monitoring_is_optional_and_local() -> None:
    assert SERVICES["flower"]["profiles"] == ["flower"]
    assert SERVICES["prometheus"]["profiles"] == ["prometheus"]
    assert SERVICES["grafana"]["profiles"] == ["prometheus"]  # the dashboard comes with the Prometheus
    for name in ("flower", "prometheus", "grafana"):
        for port in SERVICES[name]["ports"]:
            assert port.startswith("127.0.0.1:"), f"{name}: bind it to the host's loopback"
    for name, service in SERVICES.items():
        if name not in {"flower", "prometheus", "grafana"}:
            assert "profiles" not in service, f"{name} is part of the default stack"


def test_prometheus_scrapes_the_api_metrics() -> None:
    mounts = [entry.split(":") for entry in SERVICES["prometheus"]["volumes"]]
    (config_path,) = [source for source, target, *_ in mounts if target == "/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load((ROOT / config_path).read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    port = effective_env("api")["PORT"]
    assert job["static_configs"] == [{"targets": [f"api:{port}"]}]
    assert "--config.file=/etc/prometheus/prometheus.yml" in SERVICES["prometheus"]["command"]


def _metric_names(expression: str) -> set[str]:
    return set(re.findall(r"\bsoundstage_[a-z_]+", expression))


# What the API's /metrics serves (soundstage_api.metrics, soundstage_api.request_id), histogram series included.
SERVED_METRICS = {
    "soundstage_jobs_submitted_total",
    "soundstage_jobs_completed_total",
    "soundstage_jobs_failed_total",
    "soundstage_jobs_cancelled_total",
    "soundstage_generated_audio_seconds_total",
    "soundstage_job_duration_seconds_bucket",
    "soundstage_job_queue_wait_seconds_bucket",
    "soundstage_queue_depth",
    "soundstage_workers",
    "soundstage_jobs",
    "soundstage_http_requests_total",
}


def test_alert_rules_are_loaded_and_read_served_metrics() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    mounts = dict(entry.split(":")[:2] for entry in SERVICES["prometheus"]["volumes"] if entry.startswith("./"))
    (rules_file,) = config["rule_files"]
    (source,) = [source for source, target in mounts.items() if target == rules_file]
    groups = yaml.safe_load((ROOT / source).read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    names = {rule["alert"] for rule in rules}
    assert {"SoundstageQueueStuck", "SoundstageNoLiveWorker", "SoundstageJobsFailing", "SoundstageApi5xx"} <= names
    for rule in rules:
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
        assert _metric_names(rule["expr"]) <= SERVED_METRICS, rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"} and rule["annotations"]["summary"]


def test_the_grafana_dashboard_is_provisioned_and_reads_served_metrics() -> None:
    mounts = dict(entry.split(":")[:2] for entry in SERVICES["grafana"]["volumes"])
    datasources = yaml.safe_load((ROOT / next(s for s, t in mounts.items() if "datasources" in t)).read_text())
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((ROOT / next(s for s, t in mounts.items() if "provisioning/dashboards" in t)).read_text())
    folder = next(s for s, t in mounts.items() if t == providers["providers"][0]["options"]["path"])
    dashboard = json.loads((ROOT / folder / "soundstage.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(expressions) >= 10
    used = set().union(*(_metric_names(expression) for expression in expressions))
    assert used <= SERVED_METRICS and "soundstage_http_requests_total" in used
