"""deploy/terraform is formatted, every module and env root initialises and validates offline
(and the env roots pass their `terraform test` files against a mocked AWS provider), every
variable is typed and described, and the modules agree with the Kubernetes side.

`terraform init` installs hashicorp/aws from the provider mirror that ships on the CI image
(a filesystem mirror, /opt/tf-plugins, or TF_PLUGIN_MIRROR) through a CLI config written
here; nothing is downloaded. The roots are initialised in a copy of the tree, in parallel.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from soundstage.pools import Queue, pool_for

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "deploy" / "terraform"
KUSTOMIZE = REPO / "deploy" / "kubernetes"
MODULES = sorted(p.name for p in (TERRAFORM / "modules").iterdir() if p.is_dir())
ENVS = sorted(p.name for p in (TERRAFORM / "envs").iterdir() if p.is_dir())
ROOTS = [f"modules/{name}" for name in MODULES] + [f"envs/{name}" for name in ENVS]
MODULE_FILES = ("main.tf", "variables.tf", "outputs.tf", "versions.tf")
AWS_PROVIDER = ("registry.terraform.io", "hashicorp", "aws", "5.100.0")
DEFAULT_MIRROR = Path("/opt/tf-plugins")


# --- running terraform ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def terraform() -> str:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.fail(
            "terraform is not on PATH: these tests run `terraform fmt`, `init` and `validate` on "
            "deploy/terraform (install Terraform >= 1.5; .ci/run does it on CI)"
        )
    return binary


@pytest.fixture(scope="module")
def tf_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for terraform: a CLI config that installs hashicorp/aws from the local mirror only."""
    mirror = Path(os.environ.get("TF_PLUGIN_MIRROR", DEFAULT_MIRROR))
    if not mirror.joinpath(*AWS_PROVIDER).is_dir():
        pytest.fail(
            f"no hashicorp/aws {AWS_PROVIDER[-1]} in the provider mirror {mirror} (filesystem mirror layout "
            f"{'/'.join(AWS_PROVIDER)}/<os>_<arch>); set TF_PLUGIN_MIRROR to its folder"
        )
    config = tmp_path_factory.mktemp("terraform") / "cli.tfrc"
    config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{mirror}"\n'
        '    include = ["registry.terraform.io/hashicorp/aws"]\n  }\n'
        '  direct {\n    exclude = ["registry.terraform.io/*/*"]\n  }\n'
        "}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_") or k == "TF_PLUGIN_MIRROR"}
    env.update(TF_CLI_CONFIG_FILE=str(config), TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1")
    return env


def run(terraform: str, args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [terraform, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@dataclass
class Validation:
    ok: bool
    log: str


@pytest.fixture(scope="module")
def validations(
    terraform: str, tf_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Validation]:
    """`terraform init -backend=false` then `terraform validate` in every root of a copy of the tree."""
    tree = tmp_path_factory.mktemp("tree") / "terraform"
    shutil.copytree(TERRAFORM, tree, ignore=shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate*"))

    def check(root: str) -> Validation:
        steps = [["init", "-backend=false", "-input=false", "-no-color"], ["validate", "-no-color"]]
        if (tree / root / "tests").is_dir():  # `terraform test` files, run against a mocked provider
            steps.append(["test", "-no-color"])
        log = []
        for args in steps:
            result = run(terraform, args, tree / root, tf_env)
            log.append(f"$ terraform {' '.join(args)}  (exit {result.returncode})\n{result.stdout}{result.stderr}")
            if result.returncode != 0 or (args[0] == "validate" and "Warning:" in result.stdout + result.stderr):
                return Validation(False, "\n".join(log))
        return Validation(True, "\n".join(log))

    # `validate` is CPU-bound (it loads the provider's schema): one root per core.
    with ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
        return dict(zip(ROOTS, pool.map(check, ROOTS), strict=True))


def test_terraform_is_formatted(terraform: str, tf_env: dict[str, str]) -> None:
    result = run(terraform, ["fmt", "-check", "-recursive", "-diff", "-no-color", str(TERRAFORM)], REPO, tf_env)
    assert result.returncode == 0, f"run `terraform fmt -recursive deploy/terraform`:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("root", ROOTS)
def test_root_initialises_validates_and_passes_its_tests(validations: dict[str, Validation], root: str) -> None:
    """init + validate (no warnings either); env roots also run their `terraform test` files."""
    assert validations[root].ok, validations[root].log


@pytest.mark.parametrize("env", ENVS)
def test_env_roots_have_terraform_tests(env: str) -> None:
    assert list((TERRAFORM / "envs" / env / "tests").glob("*.tftest.hcl")), f"envs/{env} has no terraform test"


# --- a small HCL reader: blocks and their top-level attributes -------------------------------


@dataclass
class Block:
    kind: str
    labels: list[str]
    attributes: set[str] = field(default_factory=set)
    blocks: list[str] = field(default_factory=list)


def _skip_string(text: str, i: int) -> tuple[int, str]:
    """From just after an opening quote: the index after the closing quote, and the literal
    content ("" when the string interpolates)."""
    start, literal = i, True
    while text[i] != '"':
        if text[i] == "\\":
            i += 2
        elif text.startswith(("${", "%{"), i):
            literal, i = False, _skip_expression(text, i + 2)
        else:
            i += 1
    return i + 1, text[start:i] if literal else ""


def _skip_expression(text: str, i: int) -> int:
    """From inside `${`: the index after the matching `}` (nested strings included)."""
    depth = 1
    while depth:
        if text[i] == '"':
            i, _ = _skip_string(text, i + 1)
            continue
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return i


def skeleton(text: str) -> str:
    """The text without comments, heredoc bodies and string contents (literal strings without
    braces are kept), so braces and `=` are structure only."""
    out, i = [], 0
    while i < len(text):
        if text.startswith(("#", "//"), i):
            i = text.find("\n", i) if "\n" in text[i:] else len(text)
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
        elif heredoc := re.match(r"<<-?([A-Za-z_]+)\n", text[i:]):
            end = re.compile(rf"^\s*{heredoc.group(1)}\s*$", re.MULTILINE).search(text, i + heredoc.end())
            assert end is not None, "unterminated heredoc"
            out.append('""')
            i = end.end()
        elif text[i] == '"':
            i, literal = _skip_string(text, i + 1)
            out.append(f'"{literal}"' if not re.search(r'[{}"]', literal) else '""')
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def blocks(path: Path) -> Iterator[Block]:
    """Top-level blocks of a .tf file, with the names of their own attributes and nested blocks."""
    text = skeleton(path.read_text())
    header = re.compile(r'^([a-z_]+)((?:\s+"[^"]*")*)\s*\{', re.MULTILINE)
    i = 0
    while match := header.search(text, i):
        depth, j = 1, match.end()
        body_start = j
        while depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        yield _block(match.group(1), re.findall(r'"([^"]*)"', match.group(2)), text[body_start : j - 1])
        i = j


def _block(kind: str, labels: list[str], body: str) -> Block:
    block = Block(kind, labels)
    depth = 0
    for line in body.splitlines():
        stripped = line.strip()
        if depth == 0:
            if attribute := re.match(r"([A-Za-z_][\w-]*)\s*=", stripped):
                block.attributes.add(attribute.group(1))
            elif nested := re.match(r"([A-Za-z_][\w-]*)[^={]*\{", stripped):
                block.blocks.append(nested.group(1))
        depth += stripped.count("{") - stripped.count("}")
    return block


def tf_files() -> list[Path]:
    return sorted(p for p in TERRAFORM.rglob("*.tf") if ".terraform" not in p.parts)


def test_the_hcl_reader_sees_through_strings_and_heredocs() -> None:
    text = skeleton('a = "x{y}" # {\nb = "${join(", ", ["}"])}"\nc = <<-EOT\n  {\n  EOT\nd { e = 1 }\n')
    assert text.count("{") == text.count("}") == 1


# --- static checks -----------------------------------------------------------------------------


@pytest.mark.parametrize("module", MODULES)
def test_every_module_has_the_four_files(module: str) -> None:
    missing = [name for name in MODULE_FILES if not (TERRAFORM / "modules" / module / name).is_file()]
    assert not missing, f"modules/{module} lacks {missing}"


def test_every_variable_is_typed_and_described() -> None:
    problems, count = [], 0
    for path in tf_files():
        for block in blocks(path):
            if block.kind != "variable":
                continue
            count += 1
            where = f"{path.relative_to(TERRAFORM)}: variable {block.labels[0]}"
            if path.name != "variables.tf":
                problems.append(f"{where} belongs in variables.tf")
            problems += [f"{where} has no {attr}" for attr in ("type", "description") if attr not in block.attributes]
    assert count > 50, f"only {count} variables found: the reader is broken"
    assert not problems, "\n".join(problems)


def test_every_output_is_described() -> None:
    problems, count = [], 0
    for path in tf_files():
        for block in blocks(path):
            if block.kind != "output":
                continue
            count += 1
            where = f"{path.relative_to(TERRAFORM)}: output {block.labels[0]}"
            if path.name != "outputs.tf":
                problems.append(f"{where} belongs in outputs.tf")
            if "description" not in block.attributes:
                problems.append(f"{where} has no description")
    assert count > 20, f"only {count} outputs found: the reader is broken"
    assert not problems, "\n".join(problems)


def test_modules_take_no_provider_configuration_and_only_aws() -> None:
    for path in tf_files():
        text = path.read_text()
        for provider in re.findall(r'source\s*=\s*"([^"./][^"]*/[^"]+)"', text):
            assert provider == "hashicorp/aws", f"{path}: only hashicorp/aws is available ({provider})"
        if "modules" in path.parts:
            assert not any(b.kind == "provider" for b in blocks(path)), f"{path}: modules inherit the provider"


def test_prod_env_pins_terraform_and_the_aws_provider() -> None:
    text = (TERRAFORM / "envs/prod/versions.tf").read_text()
    assert re.search(r'required_version\s*=\s*">= 1\.5"', text)
    assert re.search(r'version\s*=\s*"= 5\.100\.0"', text)
    assert (TERRAFORM / "envs/prod/terraform.tfvars.example").is_file()
    assert "terraform.tfvars" in (TERRAFORM / ".gitignore").read_text().split()


# --- agreement with deploy/kubernetes ------------------------------------------------------------


def env_keys(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line.split("=", 1)[0] for line in lines if line and not line.startswith("#")]


def test_kustomize_env_output_is_what_the_prod_overlay_reads() -> None:
    text = (TERRAFORM / "envs/prod/outputs.tf").read_text()
    heredoc = re.search(r'output "kustomize_env".*?<<-EOT\n(.*?)\n\s*EOT', text, re.DOTALL)
    assert heredoc, "envs/prod/outputs.tf has no kustomize_env heredoc"
    printed = [line.strip().split("=", 1)[0] for line in heredoc.group(1).splitlines()]
    example = env_keys(KUSTOMIZE / "overlays/prod/terraform-outputs.env.example")
    assert printed == example
    overlay = yaml.safe_load((KUSTOMIZE / "overlays/prod/kustomization.yaml").read_text())
    sources = {r["source"]["fieldPath"].removeprefix("data.") for r in overlay["replacements"]}
    assert sources == set(example), "every terraform output is used by a replacement, and only those"


def test_gpu_nodes_carry_the_label_and_taint_the_gpu_component_expects() -> None:
    main = (TERRAFORM / "modules/gpu_nodes/main.tf").read_text()
    patch = yaml.safe_load((KUSTOMIZE / "components/gpu/worker-gpu.yaml").read_text())["spec"]["template"]["spec"]
    [(label, value)] = patch["nodeSelector"].items()
    assert f'"{label}" = "{value}"' in main
    [toleration] = patch["tolerations"]
    assert toleration == {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert re.search(r'key\s*=\s*"nvidia\.com/gpu"', main) and re.search(r'effect\s*=\s*"NO_SCHEDULE"', main)


def test_irsa_role_trusts_the_service_accounts_kubernetes_uses() -> None:
    variables = (TERRAFORM / "modules/iam/variables.tf").read_text()
    accounts = re.search(r'variable "service_accounts".*?default\s*=\s*\[([^\]]*)\]', variables, re.DOTALL)
    namespace = re.search(r'variable "namespace".*?default\s*=\s*"([^"]+)"', variables, re.DOTALL)
    assert accounts and namespace
    trusted = set(re.findall(r'"([^"]+)"', accounts.group(1)))
    base = yaml.safe_load((KUSTOMIZE / "base/kustomization.yaml").read_text())
    assert namespace.group(1) == base["namespace"]
    used = set()
    for path in [KUSTOMIZE / "base/api-deployment.yaml", *sorted((KUSTOMIZE / "base").glob("worker-*.yaml"))]:
        used.add(yaml.safe_load(path.read_text())["spec"]["template"]["spec"]["serviceAccountName"])
    assert trusted == used


def _variable_default(path: Path, name: str) -> str:
    match = re.search(rf'variable "{name}"\s*\{{.*?default\s*=\s*(\S+)', path.read_text(), re.DOTALL)
    assert match, f"{path}: variable {name} has no default"
    return match.group(1)


def test_gpu_node_group_holds_every_gpu_worker_pool_at_its_maximum() -> None:
    """One GPU per replica of a GPU pool: the node group's max_size covers the sum of the prod
    ScaledObjects' maxReplicaCount over the pools with Pool.gpu, or KEDA asks for replicas that
    never get a node. CPU pools (the pipeline pool) run on the cluster's other nodes."""
    overlay = KUSTOMIZE / "overlays/prod"
    resources = yaml.safe_load((overlay / "kustomization.yaml").read_text())["resources"]
    scaled = [yaml.safe_load((overlay / r).read_text()) for r in resources if r.startswith("scaledobject-")]
    assert all(s["kind"] == "ScaledObject" for s in scaled)
    gpu = [s for s in scaled if pool_for(Queue(s["metadata"]["labels"]["soundstage.io/queue"])).gpu]
    assert len(gpu) >= 2, "one ScaledObject per GPU worker pool (musicgen, demucs)"
    needed = sum(int(s["spec"]["maxReplicaCount"]) for s in gpu)
    env_default = int(_variable_default(TERRAFORM / "envs/prod/variables.tf", "gpu_max_size"))
    module_default = int(_variable_default(TERRAFORM / "modules/gpu_nodes/variables.tf", "max_size"))
    assert env_default >= needed, f"envs/prod gpu_max_size {env_default} < {needed} GPU worker replicas"
    assert module_default >= needed, f"modules/gpu_nodes max_size {module_default} < {needed}"
    example = (TERRAFORM / "envs/prod/terraform.tfvars.example").read_text()
    assert re.search(rf"^# gpu_max_size\s*=\s*{env_default}$", example, re.MULTILINE), "the example shows it"
