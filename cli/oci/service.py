"""The service layer and the image's labels and environment: what flavors/Dockerfile adds after the environment.

`flavors/<flavor>/service.cli/` (written by `cli generate`) lands in /home/scu/service.cli
owned by scu; the labels are the docker path's: `io.simcore.*` and `simcore.service.*`
from metadata.yml and runtime.yml, the flavor label, and the provenance labels, whose
`created` is SOURCE_DATE_EPOCH so that labels and config agree.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from cli.errors import UserError
from cli.images import naming
from cli.images.plan import FlavorSpec
from cli.lockengine.manifest import Workspace
from cli.oci.common import ENV, GID, HOME, UID
from cli.oci.environment import final_prefix
from cli.oci.tarball import Entry, tree_entries

SERVICE_DIR = f"{HOME}/service.cli"


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


def image_env(base_env: list[str], flavor: str, default_path: str) -> list[str]:
    """The base's environment, then common/Dockerfile's ENV, then flavors/Dockerfile's."""
    env = list(base_env)
    for key, value in ENV:
        env = set_env(env, key, value)
    prefix = final_prefix(flavor)
    path = next((item.partition("=")[2] for item in env if item.startswith("PATH=")), default_path)
    for key, value in (
        ("RUNNER_FLAVOR", flavor),
        ("CONDA_PREFIX", prefix),
        ("RUNNER_PYTHON", f"{prefix}/bin/python"),
        ("PATH", f"{prefix}/bin:{SERVICE_DIR}:{path}"),
    ):
        env = set_env(env, key, value)
    return env


def service_folder(spec: FlavorSpec) -> Path:
    return spec.folder / naming.RUN_SCRIPT.parent
