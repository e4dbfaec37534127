"""Provenance labels: any image traced back to the commit, the lock and the export it was built from.

`org.opencontainers.image.*` (revision, created, source, version, title) follow the OCI
image-spec annotations; `io.osparc.runner.*` name the flavor, the sha256 of its export,
the CUDA version of its lock with the minimum driver, and the lock format version; the shared
stage carries the sha256 of its export (`io.osparc.runner.shared.sha256`), which the flavor
images built FROM it inherit.
`created` is the commit time of pixi.lock, so rebuilding the same commit gives the same labels.

The NVIDIA variables every flavor image sets come from the same facts. oSPARC's backend sends
no GPU device request: the host's NVIDIA container runtime gives a container the GPUs only
when the image's environment sets NVIDIA_VISIBLE_DEVICES (as the nvidia/cuda images do), with
the driver libraries NVIDIA_DRIVER_CAPABILITIES names (`compute,utility`: CUDA and
nvidia-smi, no graphics). NVIDIA_REQUIRE_CUDA=`cuda>=X.Y` makes that runtime refuse to start
the job on a driver too old for the lock, instead of a CUDA error deep in the user's script;
X.Y is the CUDA release of the driver floor that `audit cuda` and the cuda.driver.minimum
label state (conda-forge's CUDA 12 builds run on any CUDA 12 driver: minor version compatibility).
"""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cli.cuda import DriverRequirement
from cli.lockengine.manifest import Workspace

log = logging.getLogger(__name__)

OCI = "org.opencontainers.image."
PREFIX = "io.osparc.runner."
FLAVOR_LABEL = f"{PREFIX}flavor"
EXPORT_SHA256_LABEL = f"{PREFIX}export.sha256"
EXPLICIT_SHA256_LABEL = f"{PREFIX}explicit.sha256"
LOCK_SHA256_LABEL = f"{PREFIX}lock.sha256"
# On the shared stage, hence on every flavor image built FROM it: the export of what the stage installed.
SHARED_SHA256_LABEL = f"{PREFIX}shared.sha256"
LOCK_FORMAT_LABEL = f"{PREFIX}lock.format-version"
CUDA_VERSION_LABEL = f"{PREFIX}cuda.version"
DRIVER_LABEL = f"{PREFIX}cuda.driver.toolkit"
COMPATIBLE_DRIVER_LABEL = f"{PREFIX}cuda.driver.minimum"
UNKNOWN = "unknown"
# What an image is built from: a change here that is not committed makes the revision "-dirty".
BUILD_INPUTS = ("pixi.toml", "pixi.lock", "envs", "flavors", "common", "runner")
EXPLICIT_PLATFORM = "linux-64"
NVIDIA_VISIBLE_DEVICES = "all"
NVIDIA_DRIVER_CAPABILITIES = "compute,utility"


@dataclass(frozen=True)
class SourceFacts:
    revision: str
    created: str
    epoch: int
    source: str


@dataclass(frozen=True)
class FlavorFacts:
    flavor: str
    export_sha256: str
    explicit_sha256: str | None
    lock_sha256: str
    lock_format_version: int
    cuda_version: str | None
    # The audit's driver floor (`audit cuda`): the cuda-version package and every __cuda constraint.
    driver: DriverRequirement | None = None


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _without_credentials(url: str) -> str:
    """`https://user:token@host/repo.git` -> `https://host/repo.git`: a label must never carry a secret."""
    return re.sub(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", r"\1", url)


def source_facts(workspace: Workspace) -> SourceFacts:
    root = workspace.root
    revision = _git(root, "rev-parse", "HEAD")
    if revision and _git(root, "status", "--porcelain", "--", *BUILD_INPUTS):
        revision += "-dirty"
    committed = _git(root, "log", "-1", "--format=%ct", "--", workspace.lock_path.name)
    if committed:
        epoch = int(committed)
    elif workspace.lock_path.exists():
        log.warning("%s is not committed: 'created' is its modification time", workspace.lock_path)
        epoch = int(workspace.lock_path.stat().st_mtime)
    else:
        epoch = 0
    remote = _git(root, "config", "--get", "remote.origin.url")
    return SourceFacts(
        revision=revision or UNKNOWN,
        created=datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        epoch=epoch,
        source=_without_credentials(remote) if remote else UNKNOWN,
    )


def oci_labels(facts: SourceFacts, title: str | None = None, version: str | None = None) -> dict[str, str]:
    labels = {f"{OCI}revision": facts.revision, f"{OCI}created": facts.created, f"{OCI}source": facts.source}
    if title:
        labels[f"{OCI}title"] = title
    if version:
        labels[f"{OCI}version"] = version
    return labels


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def flavor_facts(workspace: Workspace, flavor: str) -> FlavorFacts:
    """Read the lock and the flavor's export (both must exist: the build checks freshness first)."""
    from cli.audit.cuda import audit_cuda
    from cli.lockengine.export import export_paths
    from cli.lockengine.lockfile import lock_format_version, locked_records

    paths = export_paths(workspace, flavor)
    explicit = paths.explicit.get(EXPLICIT_PLATFORM)
    cuda = [r for r in locked_records(workspace, flavor, EXPLICIT_PLATFORM) if r.name.normalized == "cuda-version"]
    (platform,) = audit_cuda(workspace, flavor, platforms=[EXPLICIT_PLATFORM]).platforms
    return FlavorFacts(
        flavor=flavor,
        export_sha256=sha256_file(paths.conda_lock),
        explicit_sha256=sha256_file(explicit) if explicit and explicit.is_file() else None,
        lock_sha256=sha256_file(workspace.lock_path),
        lock_format_version=lock_format_version(workspace.lock_path),
        cuda_version=str(cuda[0].version) if cuda else None,
        driver=platform.requirement,
    )


def flavor_labels(facts: FlavorFacts) -> dict[str, str]:
    labels = {
        FLAVOR_LABEL: facts.flavor,
        EXPORT_SHA256_LABEL: facts.export_sha256,
        LOCK_SHA256_LABEL: facts.lock_sha256,
        LOCK_FORMAT_LABEL: str(facts.lock_format_version),
    }
    if facts.explicit_sha256:
        labels[EXPLICIT_SHA256_LABEL] = facts.explicit_sha256
    if facts.cuda_version:
        labels[CUDA_VERSION_LABEL] = facts.cuda_version
    if facts.driver:
        labels[DRIVER_LABEL] = facts.driver.toolkit_driver or UNKNOWN
        labels[COMPATIBLE_DRIVER_LABEL] = facts.driver.compatible_driver or UNKNOWN
    return labels


def shared_labels(workspace: Workspace) -> dict[str, str]:
    """The sha256 of the shared stage's export (envs/_shared/linux-64.explicit), when it exists."""
    from cli.lockengine.shared_export import shared_export_path

    path = shared_export_path(workspace, EXPLICIT_PLATFORM)
    return {SHARED_SHA256_LABEL: sha256_file(path)} if path.is_file() else {}


def nvidia_require_cuda(facts: FlavorFacts) -> str:
    """`cuda>=X.Y`, X.Y the CUDA release of the lock's minimum driver; empty for a flavor without CUDA."""
    from cli.cuda import cuda_for_driver

    if facts.driver is None:
        return ""
    floor = cuda_for_driver(facts.driver.compatible_driver) if facts.driver.compatible_driver else None
    return f"cuda>={floor or facts.driver.cuda}"


def nvidia_environment(facts: FlavorFacts) -> dict[str, str]:
    """The NVIDIA container runtime's variables, in the order flavors/Dockerfile sets them."""
    return {
        "NVIDIA_VISIBLE_DEVICES": NVIDIA_VISIBLE_DEVICES,
        "NVIDIA_DRIVER_CAPABILITIES": NVIDIA_DRIVER_CAPABILITIES,
        "NVIDIA_REQUIRE_CUDA": nvidia_require_cuda(facts),
    }
