"""The OCI engine and the Dockerfiles describe the same image: ENV, ENTRYPOINT, CMD, WORKDIR, uid and paths.

The constants of cli/oci/common.py are compared with what common/Dockerfile and
flavors/Dockerfile say, so that a change to one without the other fails here.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from cli.oci import common
from cli.oci.service import image_env
from tests.oci.conftest import REPO


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


def env_of(path: Path, args: dict[str, str]) -> list[tuple[str, str]]:
    """ENV key=value pairs in order, with ${ARG} substituted (ENV values may use earlier ENV keys too)."""
    known = dict(args)
    pairs: list[tuple[str, str]] = []
    for instruction, arguments in instructions(path):
        if instruction != "ENV":
            continue
        for item in shlex.split(arguments):
            key, _, value = item.partition("=")
            value = re.sub(r"\$\{(\w+)\}", lambda m: known.get(m.group(1), m.group(0)), value)
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
    assert "/usr/local/bin/" in copies


def test_flavor_dockerfile_env_matches_the_oci_config() -> None:
    dockerfile = REPO / "flavors" / "Dockerfile"
    base_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    pairs = env_of(dockerfile, {"FLAVOR": "pytorch", "PATH": base_path})
    env = dict(item.split("=", 1) for item in image_env([f"PATH={base_path}"], "pytorch", base_path))
    for key, value in pairs:
        assert env[key] == value, key
    copies = [arguments for instruction, arguments in instructions(dockerfile) if instruction == "COPY"]
    assert any("--chown=8004:8004" in c and "/home/scu/service.cli/" in c for c in copies)
    assert any("/opt/conda/locks/${FLAVOR}/conda-lock.yml" in c for c in copies)
