"""The service layer and the image's labels and environment: what flavors/Dockerfile adds after the environment.

`flavors/<flavor>/service.cli/` (written by `cli generate`) lands in /home/scu/service.cli
owned by scu, with the runner's byte-code compiled by a Python of the flavor's version
(flavors/Dockerfile runs compileall in the flavor image: the same hash-checked .pyc files).
The labels are the docker path's: `io.simcore.*` and `simcore.service.*` from metadata.yml
and runtime.yml, the flavor label, and the provenance labels, whose `created` is
SOURCE_DATE_EPOCH so that labels and config agree. The environment adds the NVIDIA
runtime's variables (see cli/images/provenance.py for why) and the flavor's own defaults
(runtime.yml `environment:`), as flavors/Dockerfile and `cli build` do.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cli.errors import UserError
from cli.images import naming
from cli.images.plan import FlavorSpec
from cli.lockengine.manifest import Workspace
from cli.oci.common import ENV, GID, HOME, RUNNER_HOME, UID
from cli.oci.environment import final_prefix
from cli.oci.tarball import Entry, file_copy, tree_entries

if TYPE_CHECKING:
    from rattler import RepoDataRecord

log = logging.getLogger(__name__)

SERVICE_DIR = f"{HOME}/service.cli"
# What flavors/Dockerfile runs: `python -m compileall -q --invalidation-mode checked-hash /opt/runner`.
COMPILE_RUNNER = (
    "import compileall, py_compile, sys; "
    "sys.exit(0 if compileall.compile_dir(sys.argv[1], ddir=sys.argv[2], quiet=1, "
    "invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH) else 1)"
)


def iso_time(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def service_entries(spec: FlavorSpec) -> list[Entry]:
    folder = service_folder(spec)
    if not (folder / naming.RUN_SCRIPT.name).is_file():
        raise UserError("missing", path=folder / naming.RUN_SCRIPT.name, fix="run `python -m cli generate`")
    return tree_entries(folder, SERVICE_DIR.lstrip("/"), uid=UID, gid=GID)


def image_labels(workspace: Workspace, spec: FlavorSpec, epoch: int) -> dict[str, str]:
    """The labels `cli build` gives the docker image, with `created` taken from SOURCE_DATE_EPOCH."""
    from cli.images import provenance

    source = replace(provenance.source_facts(workspace), epoch=epoch, created=iso_time(epoch))
    return {
        **spec.labels,
        **provenance.oci_labels(source, spec.metadata.name, spec.metadata.version),
        **provenance.flavor_labels(provenance.flavor_facts(workspace, spec.name)),
    }


def set_env(env: list[str], key: str, value: str) -> list[str]:
    """Docker's ENV: a key already set keeps its place and takes the new value; a new key is appended."""
    updated = [item for item in env]
    for position, item in enumerate(updated):
        if item.partition("=")[0] == key:
            updated[position] = f"{key}={value}"
            return updated
    return [*updated, f"{key}={value}"]


def flavor_env(workspace: Workspace, spec: FlavorSpec) -> dict[str, str]:
    """What the flavor adds to the image's ENV besides its paths: the NVIDIA variables, then its own defaults."""
    from cli.images import provenance

    return {**provenance.nvidia_environment(provenance.flavor_facts(workspace, spec.name)), **spec.environment}


def image_env(base_env: list[str], flavor: str, default_path: str, extra: dict[str, str] | None = None) -> list[str]:
    """The base's environment, then common/Dockerfile's ENV, then flavors/Dockerfile's, then `extra`.

    `extra` (from `flavor_env`) holds the NVIDIA variables, which flavors/Dockerfile sets before
    PATH, and the flavor's defaults, which `cli build` appends after it; the order is kept.
    """
    env = list(base_env)
    for key, value in ENV:
        env = set_env(env, key, value)
    prefix = final_prefix(flavor)
    path = next((item.partition("=")[2] for item in env if item.startswith("PATH=")), default_path)
    extra = extra or {}
    nvidia = {key: value for key, value in extra.items() if key.startswith("NVIDIA_")}
    for key, value in (
        ("RUNNER_FLAVOR", flavor),
        ("CONDA_PREFIX", prefix),
        ("RUNNER_PYTHON", f"{prefix}/bin/python"),
        *nvidia.items(),
        ("PATH", f"{prefix}/bin:{SERVICE_DIR}:{path}"),
        *((key, value) for key, value in extra.items() if key not in nvidia),
    ):
        env = set_env(env, key, value)
    return env


def python_version(records: Sequence[RepoDataRecord]) -> str | None:
    """major.minor of the lock's python record."""
    for record in records:
        if record.name.normalized == "python":
            return ".".join(str(record.version).split(".")[:2])
    return None


def _reports_version(python: Path | str, version: str) -> bool:
    try:
        done = subprocess.run(
            [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == version


def compiler_for(staged_python: Path, version: str) -> str | None:
    """The flavor's own Python when it runs here, else this Python if it is the same major.minor."""
    if staged_python.exists() and _reports_version(staged_python, version):
        return str(staged_python)
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    return None


def runner_bytecode_entries(runner: Path, staged_python: Path, version: str | None, work: Path) -> list[Entry]:
    """The runner's `__pycache__/*.pyc` for the flavor's Python, as flavors/Dockerfile compiles them.

    Hash-checked .pyc files hold no time, so the same runner gives the same bytes. Without a
    Python of the flavor's version on this machine the image ships no byte-code (the runner
    still works; each job compiles it in memory) and a warning says so.
    """
    if version is None:
        log.warning("the lock has no python: the runner is not byte-compiled")
        return []
    python = compiler_for(staged_python, version)
    if python is None:
        log.warning("no Python %s runs on this machine: the image's runner is not byte-compiled", version)
        return []
    target = f"{RUNNER_HOME}/runner"
    copy = work / "runner-bytecode" / "runner"
    shutil.rmtree(copy.parent, ignore_errors=True)
    shutil.copytree(runner, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    done = subprocess.run(
        [python, "-c", COMPILE_RUNNER, str(copy), target], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise UserError(f"cannot byte-compile the runner with {python}: {done.stdout}{done.stderr}", path=runner)
    entries = []
    for pyc in sorted(copy.rglob("__pycache__/*.pyc")):
        entries.append(file_copy(f"{target.lstrip('/')}/{pyc.relative_to(copy).as_posix()}", pyc, mode=0o644))
    return entries


def service_folder(spec: FlavorSpec) -> Path:
    return spec.folder / naming.RUN_SCRIPT.parent
