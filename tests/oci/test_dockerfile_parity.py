"""The OCI engine and the Dockerfiles describe the same image: ENV, ENTRYPOINT, CMD, WORKDIR, uid and paths.

The constants of cli/oci/common.py are compared with what common/Dockerfile and
flavors/Dockerfile say, so that a change to one without the other fails here; the ENV of a
flavor image is compared end to end: the Docker plan's build args and rendered Dockerfile
against the config of an image the OCI engine built from the same workspace.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.cuda import TOOLKIT_MINIMUM_DRIVER
from cli.images.dockerfiles import rendered, write_rendered
from cli.images.generated import flavor_specs
from cli.images.plan import build_facts, plan_builds
from cli.lockengine.manifest import load_workspace
from cli.oci import base, build_oci_image, common, service
from tests.oci.conftest import REPO, json_blob, make_rootfs, read_layout

FLAVOR_DEFAULTS = {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "ODD_VALUE": 'say "$HOME" \\ here'}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def substitute(value: str, known: dict[str, str]) -> str:
    return re.sub(r"(?<!\\)\$\{(\w+)\}", lambda m: known.get(m.group(1), m.group(0)), value)


def env_of(path: Path, args: dict[str, str]) -> list[tuple[str, str]]:
    """ENV key=value pairs in order, with ${ARG} substituted and quotes/escapes read as a Dockerfile parser does."""
    known = dict(args)
    pairs: list[tuple[str, str]] = []
    for instruction, arguments in instructions(path):
        if instruction != "ENV":
            continue
        for item in shlex.split(substitute(arguments, known).replace("\\$", "$")):
            key, _, value = item.partition("=")
            known[key] = value
            pairs.append((key, value))
    return pairs


def last(path: Path, name: str) -> str:
    return [arguments for instruction, arguments in instructions(path) if instruction == name][-1]


def test_common_dockerfile_env_entrypoint_and_workdir() -> None:
    dockerfile = REPO / "common" / "Dockerfile"
    assert env_of(dockerfile, {}) == list(common.ENV)
    assert json.loads(last(dockerfile, "ENTRYPOINT")) == common.ENTRYPOINT
    assert json.loads(last(dockerfile, "CMD")) == common.CMD
    assert last(dockerfile, "WORKDIR").replace("${SC_USER_HOME}", common.HOME) == common.WORKING_DIR
    copies = " ".join(arguments for instruction, arguments in instructions(dockerfile) if instruction == "COPY")
    assert "common/entrypoint.sh common/entrypoint_lib.sh /usr/local/lib/osparc-runner/" in copies
    assert "runner/ ${RUNNER_HOME}/runner/" in copies
    assert "uv" not in copies  # uv comes from the flavor's lock in both engines


def test_the_entrypoint_checks_the_tools_the_oci_engine_checks() -> None:
    library = (REPO / "common" / "entrypoint_lib.sh").read_text()
    (tools,) = re.findall(r'^EP_TOOLS="([^"]*)"$', library, flags=re.MULTILINE)
    assert tuple(tools.split()) == base.ENTRYPOINT_TOOLS
    dockerfile = (REPO / "common" / "Dockerfile").read_text()
    assert "ep_require_tools" in dockerfile and f"/{base.CA_BUNDLES[0]}" in dockerfile


def test_both_engines_compile_the_runner_alike() -> None:
    runs = [a for i, a in instructions(REPO / "flavors" / "Dockerfile") if i == "RUN" and "compileall" in a]
    assert runs == ["/opt/conda/envs/flavor/bin/python -m compileall -q --invalidation-mode checked-hash /opt/runner"]
    assert "CHECKED_HASH" in service.COMPILE_RUNNER


def image_references(path: Path) -> list[str]:
    """Every image a Dockerfile pulls (FROM, COPY --from of an image, the syntax directive), ARG defaults applied."""
    defaults: dict[str, str] = {}
    stages: set[str] = set()
    references = re.findall(r"^# syntax=(\S+)$", path.read_text(), flags=re.MULTILINE)
    for instruction, arguments in instructions(path):
        if instruction == "ARG" and "=" in arguments:
            key, _, value = arguments.partition("=")
            defaults.setdefault(key, value)
        if instruction == "FROM":
            words = arguments.split()
            reference = substitute(words[0], defaults)
            if "${" not in reference:  # an ARG without default is given by `cli build` (a local image)
                references.append(reference)
            if len(words) == 3 and words[1].upper() == "AS":
                stages.add(words[2])
    return [r for r in references if r not in stages]


def fully_qualified(reference: str) -> bool:
    """`registry.host[:port]/path:tag`: podman needs no search registries to pull it."""
    first = reference.split("/", 1)[0]
    return "/" in reference and ("." in first or ":" in first or first == "localhost")


def test_dockerfiles_name_images_fully_qualified() -> None:
    found = {}
    for name in ("common/Dockerfile", "flavors/Dockerfile.shared", "flavors/Dockerfile"):
        dockerfile = REPO / name
        for reference in image_references(dockerfile):
            found[reference] = fully_qualified(reference)
    assert "docker.io/library/ubuntu:24.04" in found and "docker.io/mambaorg/micromamba:2.5.0" in found
    assert all(found.values()), [r for r, ok in found.items() if not ok]
    from cli.images.naming import DEFAULT_BASE_IMAGE

    assert fully_qualified(DEFAULT_BASE_IMAGE)


@pytest.fixture()
def both_envs(oci_workspace: Path, tmp_path: Path) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
    """One workspace, both engines: the ENV of the Docker plan's rendered Dockerfile, and the OCI image's config."""
    shutil.copy(REPO / "flavors" / "Dockerfile.dockerignore", oci_workspace / "flavors")
    runtime = oci_workspace / "flavors" / "tensorflow" / "runtime.yml"
    document = yaml.safe_load(runtime.read_text())
    runtime.write_text(yaml.safe_dump({**document, "environment": FLAVOR_DEFAULTS}))
    workspace = load_workspace(oci_workspace)
    specs = [spec for spec in flavor_specs(workspace) if spec.name == "tensorflow"]
    (_, _, flavor_step) = plan_builds(workspace, specs, facts=build_facts(workspace, specs))  # common, shared, flavor
    step = rendered(flavor_step)
    write_rendered(step, workspace.root)
    assert step.dockerfile == Path("build/dockerfiles/tensorflow/Dockerfile")
    assert (oci_workspace / "build/dockerfiles/tensorflow/Dockerfile.dockerignore").read_text() == (
        REPO / "flavors" / "Dockerfile.dockerignore"
    ).read_text()
    base_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    docker_env = dict(env_of(oci_workspace / step.dockerfile, {**step.build_args, "PATH": base_path}))

    archive = tmp_path / "tensorflow.tar"
    result = build_oci_image(workspace, "tensorflow", make_rootfs(tmp_path / "base.tar"), archive)
    files = read_layout(archive)
    config = json_blob(files, json_blob(files, result.manifest_digest)["config"]["digest"])
    oci_env = dict(item.split("=", 1) for item in config["config"]["Env"])
    return docker_env, oci_env, config


def test_nvidia_variables_and_flavor_defaults_of_the_docker_plan_and_the_oci_config(
    both_envs: tuple[dict[str, str], dict[str, str], dict[str, Any]],
) -> None:
    docker_env, oci_env, config = both_envs
    for key, value in FLAVOR_DEFAULTS.items():
        assert docker_env[key] == oci_env[key] == value
    assert docker_env["NVIDIA_VISIBLE_DEVICES"] == oci_env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert docker_env["NVIDIA_DRIVER_CAPABILITIES"] == oci_env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    requirement = oci_env["NVIDIA_REQUIRE_CUDA"]
    assert docker_env["NVIDIA_REQUIRE_CUDA"] == requirement == "cuda>=12.0"
    # The runtime's floor is the driver the label and `audit cuda` name (CUDA 12 minor version compatibility).
    minimum = config["config"]["Labels"]["io.osparc.runner.cuda.driver.minimum"]
    assert TOOLKIT_MINIMUM_DRIVER[requirement.removeprefix("cuda>=")] == minimum == "525.60.13"


def test_every_env_of_the_docker_plan_is_in_the_oci_config(
    both_envs: tuple[dict[str, str], dict[str, str], dict[str, Any]],
) -> None:
    docker_env, oci_env, _ = both_envs
    assert {key: oci_env.get(key) for key in docker_env} == docker_env


def test_both_engines_make_the_same_users() -> None:
    """The overlay builders of common/Dockerfile's loop are cli/oci/common.py's, and the runner's defaults."""
    from runner.identities import DEFAULT_BUILD_USER, DEFAULT_SOURCE_USER

    text = (REPO / "common" / "Dockerfile").read_text()
    (loop,) = re.findall(r"for builder in ([^;]+); do", text)
    assert tuple((name, int(uid)) for name, uid in (item.split(":") for item in loop.split())) == common.BUILDERS
    assert f"--home-dir {common.NO_HOME} --shell {common.NO_LOGIN_SHELL}" in text
    assert tuple(name for name, _ in common.BUILDERS) == (DEFAULT_BUILD_USER, DEFAULT_SOURCE_USER)
    assert 'chmod 0755 "${RUNNER_CACHE_DIR}"' in text  # root's, as the OCI engine makes it
    assert not [line for line in text.splitlines() if "chown" in line and "RUNNER_CACHE_DIR" in line]
