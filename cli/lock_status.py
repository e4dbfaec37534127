"""Is pixi.lock in step with pixi.toml? Decided without solving, the way pixi decides it.

For every environment and platform of the manifest: the lock has it, with the same
channels and the same virtual packages, and every declared spec is satisfied by a
locked record. A lock that passes would be left unchanged by `pixi lock`, except for
newer versions the solver might prefer.
"""

from __future__ import annotations

from dataclasses import dataclass

from rattler import LockFile, MatchSpec, RepoDataRecord

from cli.lockfile import find_platform
from cli.solver import match_specs
from cli.virtual_packages import virtual_package_strings
from cli.workspace import Workspace


@dataclass(frozen=True)
class LockMismatch:
    environment: str
    platform: str | None
    problem: str

    def __str__(self) -> str:
        where = self.environment if self.platform is None else f"{self.environment} [{self.platform}]"
        return f"{where}: {self.problem}"


def _spec_satisfied(spec: MatchSpec, records: list[RepoDataRecord]) -> bool:
    return any(spec.matches(record) for record in records)


def _missing_dependencies(records: list[RepoDataRecord]) -> list[str]:
    """Dependencies of locked records that no locked record provides (a hand-edited or truncated lock)."""
    names = {r.name.normalized for r in records}
    missing = set()
    for record in records:
        for dependency in record.depends:
            name = dependency.split(" ")[0].split("[")[0]
            if not name.startswith("__") and name not in names:
                missing.add(f"{record.name.normalized} needs {name}")
    return sorted(missing)


def lock_mismatches(workspace: Workspace, lock: LockFile, environments: list[str] | None = None) -> list[LockMismatch]:
    problems: list[LockMismatch] = []
    for name in environments or workspace.environment_names():
        resolved = workspace.resolve(name)
        env = lock.environment(name)
        if env is None:
            problems.append(LockMismatch(name, None, "environment is missing from pixi.lock"))
            continue
        locked_channels = [str(c).rstrip("/") + "/" for c in env.channels()]
        if locked_channels != list(resolved.channels):
            problems.append(
                LockMismatch(
                    name, None, f"channels {locked_channels} in the lock, {list(resolved.channels)} in pixi.toml"
                )
            )
        for platform in resolved.platforms:
            lock_platform = find_platform(lock, platform.name)
            specs = match_specs(resolved.specs_by_platform.get(platform.name, {}), workspace.manifest_path)
            records = env.conda_repodata_records_for_platform(lock_platform) if lock_platform else None
            if lock_platform is None or (records is None and specs):
                problems.append(LockMismatch(name, platform.name, "platform is missing from pixi.lock"))
                continue
            records = records or []
            expected_virtual = virtual_package_strings(platform)
            if lock_platform.virtual_packages and list(lock_platform.virtual_packages) != expected_virtual:
                problems.append(
                    LockMismatch(
                        name,
                        platform.name,
                        f"virtual packages {list(lock_platform.virtual_packages)} in the lock, "
                        f"{expected_virtual} declared",
                    )
                )
            for spec in specs:
                if not _spec_satisfied(spec, records):
                    problems.append(LockMismatch(name, platform.name, f"no locked package satisfies '{spec}'"))
            for missing in _missing_dependencies(records):
                problems.append(LockMismatch(name, platform.name, f"incomplete lock: {missing}"))
        for locked_platform in env.platforms():
            if locked_platform.name not in {p.name for p in resolved.platforms}:
                problems.append(
                    LockMismatch(name, locked_platform.name, "platform is locked but not declared in pixi.toml")
                )
    declared = set(workspace.environment_names())
    for locked_name, _ in lock.environments():
        if locked_name not in declared:
            problems.append(LockMismatch(locked_name, None, "environment is locked but not declared in pixi.toml"))
    return problems
