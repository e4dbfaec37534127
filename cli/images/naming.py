"""Where things are and what images are called: Dockerfiles, generated files, image references."""

from __future__ import annotations

import re
from pathlib import Path

from cli.flavors import Flavor
from cli.lockengine.manifest import Workspace

COMMON = "common"
ALL = "all"
# The shared stage: common plus the packages every flavor shares, the base of every flavor image.
SHARED = "shared"
RESERVED_NAMES = (COMMON, ALL, SHARED)
COMMON_DOCKERFILE = Path("common/Dockerfile")
SHARED_DOCKERFILE = Path("flavors/Dockerfile.shared")
FLAVOR_DOCKERFILE = Path("flavors/Dockerfile")
# A flavor that truly differs may add flavors/<name>/Dockerfile, built FROM the generic flavor image.
FRAGMENT_NAME = "Dockerfile"
RUN_SCRIPT = Path("service.cli/run")
COMPOSE_FILE = Path("docker-compose.yml")
DEFAULT_BASE_IMAGE = "docker.io/library/ubuntu:24.04"
# Inside the image (kept in step with common/Dockerfile and flavors/Dockerfile).
ENV_PREFIX_ROOT = "/opt/conda/envs"


def fragment_path(flavor: Flavor) -> Path | None:
    path = flavor.folder / FRAGMENT_NAME
    return path if path.is_file() else None


def local_image(workspace: Workspace, name: str) -> str:
    """`<workspace name>/<name>:<workspace version>`: local only, never under simcore/services/ (not a service)."""
    owner = re.sub(r"[^a-z0-9._-]+", "-", workspace.name.lower()).strip("-._") or "runners"
    return f"{owner}/{name}:{workspace.version or 'latest'}"


def common_image(workspace: Workspace) -> str:
    return local_image(workspace, COMMON)


def shared_image(workspace: Workspace) -> str:
    """The shared stage: the same tag for every flavor, so that each is built FROM the one stage image."""
    return local_image(workspace, SHARED)


def with_registry(image: str, registry: str | None) -> str:
    return f"{registry.rstrip('/')}/{image}" if registry else image
