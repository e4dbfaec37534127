"""envs/<flavor>/: what the images consume, derived from pixi.lock alone.

- `conda-lock.yml`: conda-lock's v1 format (micromamba installs it), written by conda-lock's own writer;
- `<platform>.explicit`: an `@EXPLICIT` file in dependency order, rendered by conda-lock.

Both are byte-stable and record the sha256 of the flavor's content in pixi.lock, so a
stale export is found by rendering again and comparing bytes.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from conda_lock.conda_lock import render_lockfile_for_platform
from conda_lock.lockfile import write_conda_lock_file
from conda_lock.lockfile.v1.models import HashModel, LockMeta
from conda_lock.lockfile.v2prelim.models import LockedDependency, Lockfile
from conda_lock.models.channel import Channel as CondaLockChannel
from rattler import LockFile, RepoDataRecord

from cli.errors import UserError
from cli.fileio import atomic_write_text
from cli.flavors import Flavor, discover_flavors
from cli.lockengine.lockfile import locked_records, read_lock
from cli.lockengine.manifest import Workspace

ENVS_DIR = "envs"
CONDA_LOCK_NAME = "conda-lock.yml"
GENERATOR = "osparc-ml-runners `python -m cli export`"


@dataclass(frozen=True)
class ExportPaths:
    folder: Path
    conda_lock: Path
    explicit: dict[str, Path]

    def all(self) -> list[Path]:
        return [self.conda_lock, *self.explicit.values()]


@dataclass(frozen=True)
class FlavorLock:
    """One flavor's slice of pixi.lock: its channels and records per platform."""

    flavor: str
    channels: list[str]
    records: dict[str, list[RepoDataRecord]]

    def digest(self) -> str:
        """sha256 of exactly what the export is made of, stable across unrelated lock changes."""
        content = {
            "environment": self.flavor,
            "channels": self.channels,
            "packages": {
                platform: sorted(f"{r.url}#{r.sha256.hex() if r.sha256 else ''}" for r in records)
                for platform, records in sorted(self.records.items())
            },
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def export_paths(workspace: Workspace, flavor: str, platforms: list[str] | None = None) -> ExportPaths:
    folder = workspace.root / ENVS_DIR / flavor
    if platforms is None:
        resolved = workspace.resolve(flavor)
        platforms = sorted(p.name for p in resolved.platforms)
    return ExportPaths(folder, folder / CONDA_LOCK_NAME, {p: folder / f"{p}.explicit" for p in platforms})


def flavor_lock(lock: LockFile, workspace: Workspace, flavor: str) -> FlavorLock:
    records = {
        platform.name: locked_records(workspace, flavor, platform.name, lock=lock)
        for platform in workspace.resolve(flavor).platforms
    }
    env = lock.environment(flavor)
    assert env is not None  # locked_records raised otherwise
    return FlavorLock(flavor, [str(c) for c in env.channels()], records)


def _split_dependency(spec: str) -> tuple[str, str]:
    name, _, rest = spec.strip().partition(" ")
    return name, rest.strip() or "*"


def _locked_dependency(record: RepoDataRecord, platform: str) -> LockedDependency:
    return LockedDependency(
        name=record.name.normalized,
        version=str(record.version),
        manager="conda",
        platform=platform,
        dependencies=dict(_split_dependency(d) for d in record.depends),
        url=record.url,
        hash=HashModel(
            md5=record.md5.hex() if record.md5 else None,
            sha256=record.sha256.hex() if record.sha256 else None,
        ),
        build=str(record.build),
        categories={"main"},
    )


def conda_lock_model(flavor_lock: FlavorLock) -> Lockfile:
    packages = [
        _locked_dependency(record, platform)
        for platform, records in sorted(flavor_lock.records.items())
        for record in sorted(records, key=lambda r: r.name.normalized)
    ]
    digest = flavor_lock.digest()
    return Lockfile(
        package=packages,
        metadata=LockMeta(
            content_hash={platform: digest for platform in sorted(flavor_lock.records)},
            channels=[CondaLockChannel.from_string(url) for url in flavor_lock.channels],
            platforms=sorted(flavor_lock.records),
            sources=["../../pixi.lock"],
            custom_metadata={
                "pixi-lock-environment": flavor_lock.flavor,
                "pixi-lock-environment-sha256": digest,
                "generator": GENERATOR,
            },
        ),
    )


def _header(flavor_lock: FlavorLock) -> list[str]:
    return [
        f"# Derived from pixi.lock environment '{flavor_lock.flavor}' by {GENERATOR}; do not edit.",
        f"# pixi-lock-environment-sha256: {flavor_lock.digest()}",
    ]


def render_conda_lock(flavor_lock: FlavorLock) -> str:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / CONDA_LOCK_NAME
        write_conda_lock_file(conda_lock_model(flavor_lock), path, metadata_choices=None, include_help_text=False)
        body = path.read_text(encoding="utf-8")
    header = [
        *_header(flavor_lock),
        f"# Install: micromamba create -y -p /opt/conda/envs/{flavor_lock.flavor} -f {CONDA_LOCK_NAME}",
    ]
    return "\n".join(header) + "\n" + body


def render_explicit(flavor_lock: FlavorLock, platform: str) -> str:
    lines = render_lockfile_for_platform(
        lockfile=conda_lock_model(flavor_lock),
        include_dev_dependencies=False,
        extras=None,
        kind="explicit",
        platform=platform,
    )
    return "\n".join([*_header(flavor_lock), *lines]) + "\n"


def render_exports(workspace: Workspace, flavor: str, lock: LockFile) -> dict[Path, str]:
    locked = flavor_lock(lock, workspace, flavor)
    paths = export_paths(workspace, flavor, sorted(locked.records))
    rendered = {paths.conda_lock: render_conda_lock(locked)}
    for platform, path in paths.explicit.items():
        rendered[path] = render_explicit(locked, platform)
    return rendered


def write_exports(workspace: Workspace, flavors: list[Flavor] | None = None) -> list[Path]:
    """Render every flavor's exports first, then write: a flavor missing from the lock leaves no file touched."""
    lock = read_lock(workspace)
    rendered: dict[Path, str] = {}
    for flavor in flavors if flavors is not None else discover_flavors(workspace):
        rendered.update(render_exports(workspace, flavor.name, lock))
    written = []
    for path, text in rendered.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
            written.append(path)
    return written


def stale_exports(workspace: Workspace) -> list[str]:
    """One message per export that is missing or differs from what pixi.lock gives; empty when all are fresh."""
    lock = read_lock(workspace)
    problems = []
    for flavor in discover_flavors(workspace):
        try:
            rendered = render_exports(workspace, flavor.name, lock)
        except UserError as error:  # a flavor not locked yet: its exports cannot exist, a finding
            problems.append(f"{export_paths(workspace, flavor.name).folder}: {error.message} ({error.fix})")
            continue
        for path, text in rendered.items():
            if not path.exists():
                problems.append(f"{path}: missing (run `python -m cli export`)")
            elif path.read_text(encoding="utf-8") != text:
                problems.append(f"{path}: differs from pixi.lock (run `python -m cli export`)")
    return problems
