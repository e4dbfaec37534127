"""pixi.lock: read it, build it from solved records, write it byte-stable and atomically."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from rattler import LockChannel, LockFile, LockPlatform, RepoDataRecord, Subdir

from cli.errors import UserError
from cli.fileio import atomic_write_bytes
from cli.lockengine.manifest import PlatformSpec, Workspace
from cli.lockengine.virtual_packages import merge_virtual_packages

DEFAULT_PLATFORM = "linux-64"


@dataclass(frozen=True)
class SolvedEnvironment:
    name: str
    channels: tuple[str, ...]
    # platform → (its spec, the virtual packages assumed, the records)
    platforms: dict[str, tuple[PlatformSpec, list[str], list[RepoDataRecord]]]


def lock_platform(spec: PlatformSpec, virtual_packages: list[str]) -> LockPlatform:
    subdir = None if spec.name == spec.subdir else Subdir(spec.subdir)
    return LockPlatform(spec.name, subdir=subdir, virtual_packages=virtual_packages)


def render_lock(environments: list[SolvedEnvironment]) -> bytes:
    """The pixi.lock bytes for these environments (format 7, the one pixi writes today)."""
    specs: dict[str, PlatformSpec] = {}
    virtual: dict[str, list[list[str]]] = {}
    for environment in environments:
        for name, (spec, assumed, _) in environment.platforms.items():
            specs.setdefault(name, spec)
            virtual.setdefault(name, []).append(assumed)
    platforms = {name: lock_platform(spec, merge_virtual_packages(virtual[name])) for name, spec in specs.items()}
    lock = LockFile(list(platforms.values()))
    for environment in sorted(environments, key=lambda e: e.name):
        lock.set_channels(environment.name, [LockChannel(url) for url in environment.channels])
        for name, (_, _, records) in sorted(environment.platforms.items()):
            for record in sorted(records, key=lambda r: (str(r.name.normalized), r.url)):
                lock.add_conda_package(environment.name, platforms[name], record)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pixi.lock"
        lock.to_path(path)
        return path.read_bytes()


def write_lock(path: Path, content: bytes) -> None:
    atomic_write_bytes(path, content)


def read_lock_file(path: Path) -> LockFile:
    if not path.is_file():
        raise UserError("no lock file", path=path, fix="run `python -m cli lock` first")
    try:
        return LockFile.from_path(path)
    except Exception as error:  # rattler raises its own parse errors
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"cannot read lock file: {first_line}",
            path=path,
            fix="restore it from version control or run `python -m cli lock` again",
        ) from error


def read_lock(workspace: Workspace) -> LockFile:
    return read_lock_file(workspace.lock_path)


def lock_format_version(path: Path) -> int:
    try:
        head = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise UserError(f"cannot read lock file: {error}", path=path, fix="restore it or lock again") from error
    version = head.get("version") if isinstance(head, dict) else None
    if not isinstance(version, int):
        raise UserError("lock file has no version field", path=path, fix="restore it or lock again")
    return version


def find_platform(lock: LockFile, name: str) -> LockPlatform | None:
    for platform in lock.platforms():
        if platform.name == name:
            return platform
    return None


def environment_records(lock: LockFile, environment: str, platform: str) -> list[RepoDataRecord] | None:
    """The records of one environment and platform, or None when the lock has no such pair."""
    env = lock.environment(environment)
    lock_platform = find_platform(lock, platform)
    if env is None or lock_platform is None:
        return None
    records = env.conda_repodata_records_for_platform(lock_platform)
    return list(records) if records is not None else None


def locked_records(
    workspace: Workspace, environment: str, platform: str = DEFAULT_PLATFORM, lock: LockFile | None = None
) -> list[RepoDataRecord]:
    """The conda records pixi.lock holds for one environment and platform (an error if there are none)."""
    lock = lock or read_lock(workspace)
    if lock.environment(environment) is None:
        raise UserError(
            f"environment '{environment}' is not in the lock",
            path=workspace.lock_path,
            fix="run `python -m cli lock`",
        )
    records = environment_records(lock, environment, platform)
    if not records:
        raise UserError(
            f"environment '{environment}' has no packages for platform {platform} in the lock",
            path=workspace.lock_path,
            fix="run `python -m cli lock`",
        )
    return records
