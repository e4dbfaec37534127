"""Is pixi.lock in step with pixi.toml? Decided without solving, the way pixi decides it.

For every environment and platform of the manifest: the lock has it, with the same
channels and the same virtual packages, every declared spec is satisfied by a locked
record, every locked record's dependencies and constraints are met by the lock, and
every locked record is required (pixi's "too many packages" rule: a dependency removed
from pixi.toml leaves the lock stale). A lock that passes would be left unchanged by `pixi lock`, except for
newer versions the solver might prefer.
"""

from __future__ import annotations

from dataclasses import dataclass

from rattler import LockFile, MatchSpec, RepoDataRecord

from cli.lockengine.lockfile import find_platform
from cli.lockengine.manifest import Workspace
from cli.lockengine.solve import match_specs
from cli.lockengine.virtual_packages import merge_virtual_packages, virtual_package_strings


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


def _dependency_name(spec: str) -> str:
    return spec.strip().split(" ")[0].split("[")[0]


def _parsed(spec: str) -> MatchSpec | None:
    try:
        return MatchSpec(spec, strict=False)
    except Exception:  # a spec rattler cannot read is the solver's business, not this check's
        return None


def _missing_dependencies(records: list[RepoDataRecord]) -> list[str]:
    """Dependencies of locked records that no locked record provides (a hand-edited or truncated lock)."""
    names = {r.name.normalized for r in records}
    missing = set()
    for record in records:
        for dependency in record.depends:
            name = _dependency_name(dependency)
            if not name.startswith("__") and name not in names:
                missing.add(f"{record.name.normalized} needs {name}")
    return sorted(missing)


def _unsatisfied_dependencies(records: list[RepoDataRecord]) -> list[str]:
    """Locked records whose `depends` or `constrains` the locked record of that name does not satisfy."""
    by_name = {r.name.normalized: r for r in records}
    problems = set()
    for record in records:
        for kind, specs in (("needs", record.depends), ("constrains", record.constrains)):
            for text in specs:
                name = _dependency_name(text)
                locked = by_name.get(name)
                if name.startswith("__") or locked is None:
                    continue
                spec = _parsed(text)
                if spec is not None and not spec.matches(locked):
                    problems.add(
                        f"{record.name.normalized} {kind} '{text}', the lock has {name} {locked.version} {locked.build}"
                    )
    return sorted(problems)


def _unrequired_records(specs: list[MatchSpec], records: list[RepoDataRecord]) -> list[str]:
    """Locked records that no declared spec reaches through `depends` (left over after a dependency was removed)."""
    by_name = {r.name.normalized: r for r in records}
    pending = [r.name.normalized for r in records if any(spec.matches(r) for spec in specs)]
    reached: set[str] = set()
    while pending:
        name = pending.pop()
        if name in reached:
            continue
        reached.add(name)
        for dependency in by_name[name].depends:
            child = _dependency_name(dependency)
            if child in by_name and child not in reached:
                pending.append(child)
    return sorted(set(by_name) - reached)


def _expected_platform_entry(workspace: Workspace, lock: LockFile, platform: str) -> list[str]:
    """What the lock's shared entry for `platform` should say: merged over the locked environments using it."""
    locked = {name for name, _ in lock.environments()}
    assumed = []
    for name in workspace.environment_names():
        if name not in locked:
            continue
        for spec in workspace.resolve(name).platforms:
            if spec.name == platform:
                assumed.append(virtual_package_strings(spec))
    return merge_virtual_packages(assumed)


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
            expected_virtual = _expected_platform_entry(workspace, lock, platform.name)
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
            for unsatisfied in _unsatisfied_dependencies(records):
                problems.append(LockMismatch(name, platform.name, f"inconsistent lock: {unsatisfied}"))
            if specs:
                for extra in _unrequired_records(specs, records):
                    problems.append(
                        LockMismatch(name, platform.name, f"{extra} is locked but nothing in pixi.toml requires it")
                    )
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
