"""Is pixi.lock in step with pixi.toml? Decided by satisfiability, as pixi's `--locked` does: no solve, no network.

A port of pixi's `lock_file/satisfiability` (prefix-dev/pixi, `environment.rs`, `platform.rs`,
`pypi.rs`), rule for rule:

- environment level: no environment locked that the manifest dropped, channels (an appended
  channel is stale too), no locked platform the environment lacks, each platform's subdir and
  declared virtual packages (compared without pixi's subdir defaults, as a multiset), PyPI
  indexes, `no-build`, wheel tags against the platform, solve strategy, channel priority,
  PyPI pre-release mode, `exclude-newer` against the locked timestamps;
- platform level: a walk from the manifest's specs (conda first, then PyPI) through the locked
  records' `depends` (conditional ones only when their `when` holds, conda extras followed),
  PyPI requirements answered by conda packages through their purls, every locked package
  reached (none left over), markers, extras, versions, indexes, paths and `requires-python`;
- solve groups: no conda package that only PyPI requirements ask for.

What this engine cannot judge raises `CannotCheck` with the reason (pixi-build source
packages, a pyproject.toml manifest): never a silent "fresh".
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from cli.errors import UserError
from cli.lockengine.lockfile import (
    CONDA,
    CONDA_SOURCE,
    MIN_VERSION,
    PYPI,
    LockData,
    LockEnvironmentEntry,
    LockPlatformEntry,
    is_pypi_source,
    read_lock_data,
    selector_of,
)
from cli.lockengine.manifest import (
    CondaSpec,
    PyprojectManifest,
    ResolvedEnvironment,
    Workspace,
    canonical_channel_url,
)
from cli.lockengine.platforms import PlatformSpec
from cli.lockengine.pypi_specs import (
    DEFAULT_INDEX,
    DEFAULT_PRERELEASE_MODE,
    GIT,
    PATH,
    URL,
    PypiDependency,
    render_requirement,
)
from cli.lockengine.pypi_target import (
    conda_pypi_packages,
    file_name_of,
    marker_environment,
    wheel_is_compatible,
    wheel_tags,
)
from cli.lockengine.virtual_packages import VirtualPackage, customised


class CannotCheck(UserError):
    """This lock cannot be judged here; `reason` says why (one line). Exit code 2, like bad input."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"cannot check: {reason}", fix="use pixi itself to check this lock")


@dataclass(frozen=True)
class LockMismatch:
    environment: str
    platform: str | None
    problem: str

    def __str__(self) -> str:
        where = self.environment if self.platform is None else f"{self.environment} [{self.platform}]"
        return f"{where}: {self.problem}"


class _Unsat(Exception):
    """One reason an environment or platform does not satisfy the manifest (pixi stops at the first)."""


# --- reading what the lock holds --------------------------------------------------------------


_ARCHIVE = re.compile(r"^(?P<name>.+)-(?P<version>[^-]+)-(?P<build>[^-]+)\.(?:conda|tar\.bz2)$")


@dataclass
class CondaRecord:
    name: str
    version: str
    build: str
    entry: dict[str, Any]
    record: Any  # rattler.PackageRecord, for MatchSpec.matches

    @property
    def depends(self) -> list[str]:
        return [str(d) for d in self.entry.get("depends") or []]

    @property
    def extra_depends(self) -> dict[str, list[str]]:
        return {str(k): [str(d) for d in v] for k, v in (self.entry.get("extra_depends") or {}).items()}

    @property
    def label(self) -> str:
        return file_name_of(str(self.entry["conda"]))


def conda_record(entry: dict[str, Any]) -> CondaRecord:
    from rattler import BuildString, NoArchType, PackageRecord

    url = str(entry["conda"])
    derived = _ARCHIVE.match(file_name_of(url))
    name = str(entry.get("name") or (derived.group("name") if derived else ""))
    version = str(entry.get("version") or (derived.group("version") if derived else "0"))
    build = str(entry.get("build") or (derived.group("build") if derived else ""))
    digits = [part for part in build.split("_") if part.isdigit()]
    build_number = int(entry.get("build_number", digits[-1] if digits else 0))
    subdir = str(entry.get("subdir") or (url.rsplit("/", 2)[-2] if url.count("/") >= 2 else "noarch"))
    noarch = entry.get("noarch")
    record = PackageRecord(
        name,
        version,
        BuildString(build),
        build_number,
        subdir,
        noarch=NoArchType(noarch) if noarch in ("python", "generic") else None,
        depends=[str(d) for d in entry.get("depends") or []],
        constrains=[str(c) for c in entry.get("constrains") or []],
        features=None,
    )
    return CondaRecord(name, version, build, entry, record)


@dataclass
class PypiRecord:
    name: str  # normalised
    entry: dict[str, Any]
    version: Version

    @property
    def location(self) -> str:
        return str(self.entry["pypi"])

    @property
    def requires_dist(self) -> list[str]:
        return [str(r) for r in self.entry.get("requires_dist") or []]


# --- pixi's matching rules ---------------------------------------------------------------------


@cache
def _match_spec(text: str) -> Any:
    from rattler import MatchSpec

    return MatchSpec(text, strict=False)


@cache
def _parsed_requirement(text: str) -> Requirement:
    return Requirement(text)


def _condition_met(condition: str, records: dict[str, CondaRecord], virtual: dict[str, Any]) -> bool:
    """A `when=` condition: `or` of `and`s of match specs, each met by a locked record or a virtual package."""
    text = condition.strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    for alternative in re.split(r"\s+or\s+", text):
        if all(_atom_met(atom, records, virtual) for atom in re.split(r"\s+and\s+", alternative)):
            return True
    return False


def _atom_met(atom: str, records: dict[str, CondaRecord], virtual: dict[str, Any]) -> bool:
    spec = _match_spec(atom.strip().strip("()"))
    return any(spec.matches(r.record) for r in records.values()) or any(spec.matches(v) for v in virtual.values())


def _virtual_records(packages: tuple[VirtualPackage, ...]) -> dict[str, Any]:
    from rattler import BuildString, PackageRecord

    result = {}
    for package in packages:
        version = "1" if package.name == "__archspec" else package.version
        result[package.name] = PackageRecord(package.name, version, BuildString(package.build or "0"), 0, "noarch")
    return result


def _spec_name(text: str) -> str:
    name = re.split(r"[\s\[<>=!~]", text.strip(), maxsplit=1)[0]
    return name.split("::")[-1]


def _evaluate(marker: Marker | None, environment: dict[str, str], extras: list[str]) -> bool:
    if marker is None:
        return True
    return any(marker.evaluate({**environment, "extra": extra}) for extra in extras or [""])


def _normalized_requirement(text: str) -> str:
    """One form for comparing requirement strings: normalised name, sorted extras, parsed specifier and marker."""
    try:
        req = _parsed_requirement(text)
    except InvalidRequirement:
        return text
    extras = f"[{','.join(sorted(canonicalize_name(e) for e in req.extras))}]" if req.extras else ""
    tail = f" @ {req.url}" if req.url else str(SpecifierSet(str(req.specifier)))
    marker = f" ; {req.marker}" if req.marker else ""
    return f"{canonicalize_name(req.name)}{extras}{tail}{marker}"


def _expand_self_extras(requirements: list[str], name: str) -> list[str]:
    """pixi's `expand_self_extras`: `name[x]; extra == 'y'` becomes the requirements of extra x, gated by y."""
    parsed: list[Requirement] = []
    for text in requirements:
        try:
            parsed.append(_parsed_requirement(text))
        except InvalidRequirement:
            continue
    own = canonicalize_name(name)
    result: list[str] = []

    def expand(req: Requirement, path: set[str], outer: str | None) -> None:
        if canonicalize_name(req.name) != own:
            marker = str(req.marker) if req.marker else None
            combined = f"({marker}) and ({outer})" if marker and outer else marker or outer
            base = str(req).split(";")[0].strip()
            result.append(f"{base} ; {combined}" if combined else base)
            return
        for extra in sorted(req.extras):
            extra = canonicalize_name(extra)
            if extra in path:
                continue
            for child in parsed:
                child_extra = _top_level_extra(child)
                if child_extra == extra:
                    stripped = Requirement(str(child).split(";")[0].strip())
                    rest = _marker_without_extra(child)
                    outer_marker = str(req.marker) if req.marker else None
                    combined = " and ".join(f"({m})" for m in (rest, outer_marker, outer) if m) or None
                    expand(stripped, path | {extra}, combined)

    for req in parsed:
        expand(req, set(), None)
    return result


def _top_level_extra(req: Requirement) -> str | None:
    if req.marker is None:
        return None
    found = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", str(req.marker))
    return canonicalize_name(found.group(1)) if found else None


def _marker_without_extra(req: Requirement) -> str | None:
    if req.marker is None:
        return None
    text = re.sub(
        r"\s*and\s*extra\s*==\s*['\"][^'\"]+['\"]|extra\s*==\s*['\"][^'\"]+['\"]\s*(and\s*)?", "", str(req.marker)
    )
    return text.strip() or None


# --- the static metadata of local PyPI packages -------------------------------------------------


@dataclass
class LocalMetadata:
    version: Version | None
    requires_dist: list[str]
    requires_python: str | None


def local_metadata(directory: Path) -> LocalMetadata | None:
    """pyproject.toml's [project], statically; None when it cannot be read that way (pixi then trusts the lock)."""
    try:
        data = tomllib.loads((directory / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    project = data.get("project")
    if not isinstance(project, dict):
        return None
    dynamic = set(project.get("dynamic") or [])
    if "dependencies" in dynamic or "optional-dependencies" in dynamic:
        return None
    sources = ((data.get("tool") or {}).get("uv") or {}).get("sources") or {}
    requires = [_with_uv_source(str(d), sources, directory) for d in project.get("dependencies") or []]
    for extra, deps in (project.get("optional-dependencies") or {}).items():
        for dep in deps:
            req = Requirement(_with_uv_source(str(dep), sources, directory))
            marker = f"({req.marker}) and extra == '{extra}'" if req.marker else f"extra == '{extra}'"
            requires.append(f"{str(req).split(';')[0].strip()} ; {marker}")
    version = None
    if "version" not in dynamic and project.get("version") is not None:
        try:
            version = Version(str(project["version"]))
        except InvalidVersion:
            version = None
    return LocalMetadata(version, requires, project.get("requires-python"))


def _with_uv_source(text: str, sources: dict[str, Any], directory: Path) -> str:
    """uv's static metadata applies `[tool.uv.sources]`: `sniffio` with a git source is `sniffio @ git+…@tag`."""
    req = Requirement(text)
    source = sources.get(req.name) or sources.get(canonicalize_name(req.name))
    if not isinstance(source, dict):
        return text
    if "git" in source:
        ref = next((f"@{source[k]}" for k in ("tag", "branch", "rev") if k in source), "")
        sub = f"#subdirectory={source['subdirectory']}" if source.get("subdirectory") else ""
        url = f"git+{source['git']}{ref}{sub}"
    elif "url" in source:
        url = str(source["url"])
    elif "path" in source:
        url = (directory / str(source["path"])).resolve().as_uri()
    else:
        return text
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    marker = f" ; {req.marker}" if req.marker else ""
    return f"{req.name}{extras} @ {url}{marker}"


# --- the check --------------------------------------------------------------------------------


@dataclass
class _Verified:
    expected_conda: set[str] = field(default_factory=set)
    conda_used_by_pypi: set[str] = field(default_factory=set)


def check_cannot(workspace: Workspace, data: LockData) -> None:
    """Raise CannotCheck for what this engine does not judge (before any verdict)."""
    if "pixi-build" in workspace.preview:
        raise CannotCheck("the workspace enables pixi-build (source packages are built by pixi only)")
    for name in workspace.environment_names():
        resolved = workspace.resolve(name)
        if resolved.source_dependencies:
            raise CannotCheck(
                f"environment '{name}' depends on source package(s) {', '.join(resolved.source_dependencies)} "
                "(pixi-build)"
            )
        if resolved.dev_dependencies:
            raise CannotCheck(f"environment '{name}' has [dev] source dependencies (pixi-build)")
        for dep in resolved.pypi_dependencies.values():
            if dep.kind == GIT:
                raise CannotCheck(f"environment '{name}' has the git PyPI dependency {dep.name}")
    for env in data.environments.values():
        for selectors in env.packages.values():
            source = next((s for s in selectors if s[0] == CONDA_SOURCE), None)
            if source is not None:
                raise CannotCheck(f"the lock holds the pixi-build source package {source[1]}")


def lock_mismatches(
    workspace: Workspace, lock: object = None, environments: list[str] | None = None
) -> list[LockMismatch]:
    """Every reason pixi.lock does not satisfy pixi.toml (empty: fresh). `lock` may be LockData already read."""
    data = lock if isinstance(lock, LockData) else read_lock_data(workspace.lock_path)
    check_cannot(workspace, data)
    from cli.lockengine.lockfile import aligned

    data = aligned(data, workspace)
    wanted = environments or workspace.environment_names()
    problems: list[LockMismatch] = []
    declared = set(workspace.environment_names())
    if environments is None:
        for name in data.environments:
            if name not in declared:
                problems.append(LockMismatch(name, None, "is in the lock-file but no longer exists in the project"))
    verified: dict[tuple[str, str], _Verified] = {}
    for name in wanted:
        resolved = workspace.resolve(name)
        locked = data.environments.get(name)
        if locked is None:
            problems.append(LockMismatch(name, None, "environment is missing from pixi.lock"))
            continue
        try:
            _check_environment(workspace, resolved, locked, data)
        except _Unsat as unsat:
            problems.append(LockMismatch(name, None, str(unsat)))
            continue
        for platform in resolved.platforms:
            try:
                verified[(name, platform.name)] = _check_platform(workspace, resolved, platform, locked, data)
            except _Unsat as unsat:
                problems.append(LockMismatch(name, platform.name, str(unsat)))
    for members in workspace.solve_groups().values():
        for platform_name in {p for (env, p) in verified if env in members}:
            group = [verified[(env, platform_name)] for env in members if (env, platform_name) in verified]
            expected = set().union(*(v.expected_conda for v in group))
            used = set().union(*(v.conda_used_by_pypi for v in group))
            for name in sorted(used - expected):
                where = members[0] if len(members) == 1 else f"solve group of {', '.join(members)}"
                problems.append(
                    LockMismatch(
                        where,
                        platform_name,
                        f"'{name}' is locked as a conda package but only requested by pypi dependencies",
                    )
                )
    return problems


def _check_environment(
    workspace: Workspace, env: ResolvedEnvironment, locked: LockEnvironmentEntry, data: LockData
) -> None:
    expected = [c.rstrip("/") for c in env.channels]
    found = [canonical_channel_url(c).rstrip("/") for c in locked.channel_urls()]
    if expected[: len(found)] == found and len(expected) > len(found):
        raise _Unsat(f"channels were added: {expected[len(found) :]} (the lock was solved with {found})")
    if expected != found:
        raise _Unsat(f"channels {found} in the lock, {expected} in pixi.toml")
    names = {p.name for p in env.platforms}
    subdirs = {p.subdir for p in env.platforms}
    extra = sorted(
        name
        for name in locked.packages
        if name not in names and (data.platform(name) is None or data.platform(name).subdir not in subdirs)  # type: ignore[union-attr]
    )
    if extra:
        raise _Unsat(f"platform(s) '{', '.join(extra)}' present in the lock file but not in the environment")
    for name in locked.packages:
        lock_platform = data.platform(name)
        if lock_platform is None or name not in names:
            continue
        declared = env.platform(name)
        found_vps = [t for t in lock_platform.virtual_packages if VirtualPackage.parse(t) is None]
        found_vps += customised(
            tuple(p for p in (VirtualPackage.parse(t) for t in lock_platform.virtual_packages) if p), declared.subdir
        )
        if declared.subdir != lock_platform.subdir:
            raise _Unsat(
                f"the workspace platform '{name}' uses subdir '{declared.subdir}' "
                f"but the lock-file was solved with subdir '{lock_platform.subdir}'"
            )
        if sorted(declared.customised) != sorted(found_vps):
            raise _Unsat(
                f"the workspace platform '{name}' declares virtual packages [{', '.join(declared.customised)}] "
                f"but the lock-file was solved with [{', '.join(sorted(found_vps))}]"
            )
    if env.pypi_dependencies:
        _check_pypi_indexes(env, locked, data)
        _check_pypi_packages(env, locked, data)
    strategy = locked.option("strategy")
    if strategy != env.solve_strategy:
        raise _Unsat(
            f"the lock file was solved with a different strategy ({strategy}) "
            f"than the one selected ({env.solve_strategy})"
        )
    priority = locked.option("channel-priority")
    if priority != env.channel_priority:
        raise _Unsat(
            f"the lock file was solved with a different channel priority ({priority}) "
            f"than the one selected ({env.channel_priority})"
        )
    mode = locked.option("pypi-prerelease-mode")
    expected_mode = env.pypi_options.prerelease_mode or DEFAULT_PRERELEASE_MODE
    if mode != expected_mode:
        raise _Unsat(
            f"the lock file was solved with a different PyPI prerelease mode ({mode}) "
            f"than the one selected ({expected_mode})"
        )
    if env.exclude_newer is not None:
        cutoff = env.exclude_newer
        for selectors in locked.packages.values():
            for selector in selectors:
                entry = data.package(selector)
                if entry is None or selector[0] != CONDA or entry.get("timestamp") is None:
                    continue
                stamp = datetime.fromtimestamp(int(entry["timestamp"]) / 1000, UTC)
                if stamp > cutoff:
                    name = conda_record(entry).name
                    raise _Unsat(
                        f"the locked package '{name}' has timestamp {stamp:%Y-%m-%dT%H:%M:%SZ}, which is newer than "
                        f"the environment's exclude-newer cutoff {cutoff:%Y-%m-%dT%H:%M:%SZ}"
                    )


def _check_pypi_indexes(env: ResolvedEnvironment, locked: LockEnvironmentEntry, data: LockData) -> None:
    has_pypi = any(s[0] == PYPI for sels in locked.packages.values() for s in sels)
    expected = env.pypi_options.indexes()
    expected_links = [{kind: value} for kind, value in env.pypi_options.find_links]
    if locked.indexes is None:
        if data.source_version >= 5 and has_pypi:
            raise _Unsat("the indexes used to previously solve to lock file are missing")
        return
    if locked.indexes != expected or [dict(x) for x in locked.find_links] != expected_links:
        raise _Unsat(f"the lock file was solved with the PyPI indexes {locked.indexes}, pixi.toml names {expected}")


def _check_pypi_packages(env: ResolvedEnvironment, locked: LockEnvironmentEntry, data: LockData) -> None:
    """`no-build` and wheel tags, over every locked PyPI package."""
    no_build = env.pypi_options.no_build
    for platform_name, selectors in locked.packages.items():
        entries = [data.package(s) for s in selectors]
        conda = [conda_record(e) for e in entries if e is not None and CONDA in e]
        python = next((r for r in conda if r.name == "python"), None)
        platform = _platform_or_none(env, platform_name)
        supported = wheel_tags(platform, python.version, python.build) if python and platform else None
        for entry in entries:
            if entry is None or PYPI not in entry:
                continue
            name = canonicalize_name(str(entry.get("name", "")))
            dependency = env.pypi_dependencies.get(name) or next(
                (d for d in env.pypi_dependencies.values() if d.normalized_name == name), None
            )
            location = str(entry[PYPI])
            is_wheel = location.lower().endswith(".whl")
            editable = dependency is not None and dependency.kind == PATH and dependency.editable
            refused = no_build is True or (isinstance(no_build, tuple) and name in no_build)
            if not is_wheel and not editable and refused:
                raise _Unsat(
                    f"the lock file contains non-binary package: '{name}', but the pypi-option `no-build` is set"
                )
            if supported and is_wheel and not wheel_is_compatible(file_name_of(location), supported):
                raise _Unsat(
                    f"the lock file was solved with system requirements incompatible with the tags on wheel ({name})"
                )


def _platform_or_none(env: ResolvedEnvironment, name: str) -> PlatformSpec | None:
    try:
        return env.platform(name)
    except KeyError:
        return None


def _lock_platform_for(data: LockData, platform: PlatformSpec) -> LockPlatformEntry | None:
    """pixi's `resolve_lock_platform_for`: by name, else the subdir-named row (trusted when it records no VPs)."""
    found = data.platform(platform.name)
    if found is not None:
        return found
    candidate = data.platform(platform.subdir)
    if candidate is None:
        return None
    declared = platform.virtual_package_texts()
    if not candidate.virtual_packages or all(d in candidate.virtual_packages for d in declared):
        return candidate
    return None


def _check_platform(
    workspace: Workspace,
    env: ResolvedEnvironment,
    platform: PlatformSpec,
    locked: LockEnvironmentEntry,
    data: LockData,
) -> _Verified:
    lock_platform = _lock_platform_for(data, platform)
    selectors = locked.packages.get(lock_platform.name, []) if lock_platform else []
    entries = [data.package(s) for s in selectors]
    if any(e is None for e in entries):
        raise _Unsat("the lock names a package it does not hold")
    conda = [conda_record(e) for e in entries if e is not None and CONDA in e]
    pypi_entries = [e for e in entries if e is not None and PYPI in e]
    pypi_deps = env.pypi_by_platform.get(platform.name, {})
    by_name: dict[str, CondaRecord] = {}
    for record in conda:
        if record.name in by_name:
            raise _Unsat(f"the lock holds '{record.name}' twice")
        by_name[record.name] = record
    if pypi_deps and not pypi_entries and all(e.get("purls") is None for e in entries if e and CONDA in e):
        raise _Unsat("the lock file does not record which conda packages are PyPI packages (purls)")
    python = by_name.get("python")
    markers = marker_environment(platform, python.version) if python else None
    if pypi_deps and markers is None:
        raise _Unsat("no python interpreter in the locked conda packages, which the PyPI dependencies need")

    conda_pypi: dict[str, tuple[Version | None, str]] = {}
    for record in conda:
        purls = record.entry.get("purls")
        channel = str(record.entry.get("channel") or str(record.entry["conda"]).rsplit("/", 2)[0])
        for package in conda_pypi_packages(record.name, record.version, purls, channel):
            conda_pypi.setdefault(package.name, (package.version, record.name))

    pypi_records: dict[str, PypiRecord] = {}
    for entry in pypi_entries:
        pypi_name = str(canonicalize_name(str(entry.get("name", ""))))
        if pypi_name in pypi_records:
            raise _Unsat(f"the lock holds the PyPI package '{pypi_name}' twice")
        pypi_records[pypi_name] = PypiRecord(pypi_name, entry, _locked_pypi_version(entry, workspace.root))

    requirements: list[tuple[Requirement, PypiDependency | None, str]] = []
    for declared in pypi_deps.values():
        wanted = _requirement(declared.requirement(workspace.root), declared.name)
        if markers is not None and not _evaluate(wanted.marker, markers, list(wanted.extras)):
            continue
        requirements.append((wanted, declared, "<environment>"))
    if not requirements and pypi_records:
        raise _Unsat(
            "there are more pypi packages in the lock file than are used by the environment: "
            + ", ".join(sorted(pypi_records))
        )

    virtual = _virtual_records(platform.virtual_packages)
    for constrained_name, constraint in env.constraints_by_platform.get(platform.name, {}).items():
        constrained = by_name.get(constrained_name)
        bare = constraint.match_spec(constrained_name).split("[")[0]
        if constrained is not None and not _match_spec(bare).matches(constrained.record):
            raise _Unsat(f"the locked {constrained_name} {constrained.version} violates the constraint '{constraint}'")

    specs = env.specs_by_platform.get(platform.name, {})
    if not specs and conda:
        raise _Unsat(
            "there are more conda packages in the lock file than are used by the environment: "
            + ", ".join(sorted(by_name))
        )

    verified = _Verified()
    visited_conda: set[str] = set()
    followed_extras: dict[str, set[str]] = {}
    visited_pypi: set[str] = set()
    seen_requirements = {str(r) for r, _, _ in requirements}
    delayed: str | None = None
    conda_stack: list[tuple[str, str, tuple[str, ...], str | None]] = [
        (
            spec.match_spec(name).split("[")[0] if spec.condition or spec.extras else spec.match_spec(name),
            "<environment>",
            spec.extras,
            spec.condition,
        )
        for name, spec in specs.items()
    ]
    pypi_queue = list(requirements)
    overrides: dict[str, str] = {canonicalize_name(k): v for k, v in env.pypi_options.dependency_overrides.items()}

    def walk_conda(record: CondaRecord, extras: tuple[str, ...]) -> None:
        depends: list[str] = []
        if record.name not in visited_conda:
            visited_conda.add(record.name)
            depends += record.depends
        followed = followed_extras.setdefault(record.name, set())
        for extra in extras:
            if extra not in followed:
                followed.add(extra)
                depends += record.extra_depends.get(extra, [])
        for text in depends:
            parsed = _match_spec(text)
            condition = parsed.condition
            if condition and not _condition_met(condition, by_name, virtual):
                continue
            bare = text.split("[")[0].strip() if condition or parsed.extras else text
            conda_stack.append((bare, record.label, tuple(parsed.extras or ()), None))

    while conda_stack or pypi_queue:
        if conda_stack:
            text, source, extras, condition = conda_stack.pop()
            if condition and not _condition_met(condition, by_name, virtual):
                continue
            conda_name = _spec_name(text)
            spec = _match_spec(text)
            found = by_name.get(conda_name)
            if found is None:
                vp = virtual.get(conda_name)
                if vp is not None and spec.matches(vp):
                    continue
                raise _Unsat(
                    f"the requirement '{_with_condition(text, condition)}' could not be satisfied "
                    f"(required by '{source}')"
                )
            if not spec.matches(found.record):
                raise _Unsat(f"the requirement '{text}' could not be satisfied (required by '{source}')")
            verified.expected_conda.add(conda_name)
            walk_conda(found, extras)
            continue
        req, dep, source = pypi_queue.pop()
        name = str(canonicalize_name(req.name))
        if name in conda_pypi:
            version, conda_name = conda_pypi[name]
            if (dep is not None and dep.kind in (PATH, URL, GIT)) or req.url:
                delayed = delayed or f"'{name}' is installed by conda but required from a path, URL or git"
            check = SpecifierSet(overrides[name]) if name in overrides else req.specifier
            if version is not None and not check.contains(version, prereleases=True):
                delayed = (
                    delayed
                    or f"the requirement '{render_requirement(str(req))}' could not be satisfied by the conda package "
                    f"{conda_name} {version} (required by '{source}')"
                )
            verified.conda_used_by_pypi.add(conda_name)
            walk_conda(by_name[conda_name], ())
            continue
        locked_pypi = pypi_records.get(name)
        if locked_pypi is None:
            delayed = (
                delayed
                or f"the requirement '{render_requirement(str(req))}' could not be satisfied (required by '{source}')"
            )
            continue
        if name in overrides:
            req = _requirement(f"{req.name}{overrides[name]}", req.name)
        indexes = _locked_indexes(data, env)
        problem = _pypi_satisfies(req, dep, locked_pypi, workspace.root, source == "<environment>", data, indexes)
        if problem:
            delayed = delayed or problem
        if name not in visited_pypi:
            visited_pypi.add(name)
            problem = _check_local_metadata(locked_pypi, workspace.root)
            if problem:
                delayed = delayed or problem
            requires_python = locked_pypi.entry.get("requires_python")
            if (
                requires_python
                and python is not None
                and not _python_at_least_lower_bound(str(requires_python), python.version)
            ):
                delayed = delayed or f"'{name}' requires python {requires_python}, the lock has python {python.version}"
        assert markers is not None
        for text in locked_pypi.requires_dist:
            try:
                child = _parsed_requirement(text)
            except InvalidRequirement:
                delayed = delayed or f"'{name}' has a requirement pixi cannot read: {text}"
                continue
            if not _evaluate(child.marker, markers, [canonicalize_name(e) for e in req.extras]):
                continue
            key = str(child)
            if key in seen_requirements:
                continue
            seen_requirements.add(key)
            pypi_queue.append((child, None, locked_pypi.name))

    leftover = sorted(set(by_name) - visited_conda)
    if leftover:
        raise _Unsat(
            f"there are more conda packages in the lock file than are used by the environment: {', '.join(leftover)}"
        )
    if delayed:
        raise _Unsat(delayed)
    extra_pypi = sorted(set(pypi_records) - visited_pypi)
    if extra_pypi:
        raise _Unsat(
            f"there are more pypi packages in the lock file than are used by the environment: {', '.join(extra_pypi)}"
        )
    return verified


def _python_at_least_lower_bound(requires_python: str, python: str) -> bool:
    """uv's `RequiresPython::is_contained_by`, as pixi uses it: only the lower bound of requires-python counts."""
    try:
        specifiers = SpecifierSet(requires_python)
        version = Version(python)
    except (InvalidSpecifier, InvalidVersion):
        return True
    for spec in specifiers:
        if spec.operator in (">=", "==", "~=", "===") and "*" not in spec.version:
            if version < Version(spec.version):
                return False
        elif spec.operator == ">" and version <= Version(spec.version):
            return False
    return True


def _with_condition(text: str, condition: str | None) -> str:
    return f'{text}[when="{condition}"]' if condition else text


def _requirement(text: str, name: str) -> Requirement:
    try:
        return Requirement(text)
    except InvalidRequirement as error:
        raise _Unsat(f"the PyPI dependency {name} is not a valid requirement: {error}") from error


def _locked_pypi_version(entry: dict[str, Any], root: Path) -> Version:
    """The wheel's version, else the source tree's static one, else pixi's minimum version."""
    version = entry.get("version")
    if version is None and is_pypi_source(str(entry[PYPI])):
        metadata = local_metadata(_local_path(str(entry[PYPI]), root))
        if metadata is not None and metadata.version is not None:
            return metadata.version
    try:
        return Version(str(version or MIN_VERSION))
    except InvalidVersion:
        return Version(MIN_VERSION)


def _local_path(location: str, root: Path) -> Path:
    path = Path(location[len("file://") :] if location.startswith("file://") else location)
    return path if path.is_absolute() else (root / path).resolve()


def _locked_indexes(data: LockData, env: ResolvedEnvironment) -> list[str]:
    locked = data.environments.get(env.name)
    if locked is None or locked.indexes is None:
        return []
    return [*locked.indexes, *(link["url"] for link in locked.find_links if "url" in link)]


def _pypi_satisfies(
    req: Requirement,
    dep: PypiDependency | None,
    locked: PypiRecord,
    root: Path,
    from_manifest: bool,
    data: LockData,
    locked_indexes: list[str],
) -> str | None:
    """pixi's `pypi_satisfies_requirement` / `pypi_satisfies_editable`: None when satisfied."""
    location = locked.location
    is_path = "://" not in location or location.startswith("file://")
    name = locked.name
    if (dep is not None and dep.kind == PATH) or (req.url and req.url.startswith("file:")):
        wanted = dep.absolute_path(root) if dep is not None and dep.kind == PATH else _local_path(req.url or "", root)
        if not is_path:
            return f"'{name}' is locked from {location}, pixi.toml asks for the path {wanted}"
        if _local_path(location, root).resolve() != Path(wanted).resolve():
            return f"'{name}' is locked from the path {location}, pixi.toml asks for {wanted}"
        return None
    if (dep is not None and dep.kind == URL) or (req.url and not req.url.startswith("git+")):
        wanted_url = dep.url if dep is not None and dep.kind == URL else req.url
        if not location.startswith("direct+") and location != wanted_url:
            return f"'{name}' must come from the URL {wanted_url}, the lock has {location}"
        if location.removeprefix("direct+") != wanted_url:
            return f"'{name}' must come from the URL {wanted_url}, the lock has {location}"
        return None
    if not from_manifest and is_path:
        return None  # a requires_dist entry met by a local package the user put there
    if not req.specifier.contains(locked.version, prereleases=True):
        return f"'{name}' with specifiers '{req.specifier}' does not match the locked version '{locked.version}'"
    locked_index = locked.entry.get("index") or (DEFAULT_INDEX if not is_path else None)
    wanted_index = dep.index if dep is not None else None
    if locked_index is None:
        return None
    if wanted_index is not None:
        if wanted_index.rstrip("/") != str(locked_index).rstrip("/"):
            return f"'{name}' requires index {wanted_index} but the lock file has {locked_index}"
    elif from_manifest:
        acceptable = locked_indexes or [DEFAULT_INDEX]
        if not any(a.rstrip("/") == str(locked_index).rstrip("/") for a in acceptable):
            return f"'{name}' requires index {', '.join(acceptable)} but the lock file has {locked_index}"
    return None


def _check_local_metadata(locked: PypiRecord, root: Path) -> str | None:
    """pixi's `compare_metadata` for a local source tree: requires_dist, version and requires-python."""
    if not is_pypi_source(locked.location):
        return None
    directory = _local_path(locked.location, root)
    if not directory.is_dir():
        return None
    current = local_metadata(directory)
    if current is None:
        return None
    ours = {_normalized_requirement(r) for r in _expand_self_extras(current.requires_dist, locked.name)}
    theirs = {_normalized_requirement(r) for r in _expand_self_extras(locked.requires_dist, locked.name)}
    if ours != theirs:
        added = sorted(ours - theirs)
        removed = sorted(theirs - ours)
        return f"the metadata of '{locked.name}' changed: requires_dist added {added}, removed {removed}"
    if current.version is not None and current.version != locked.version:
        return f"the version of '{locked.name}' changed: {locked.version} in the lock, {current.version} in its source"
    locked_python = locked.entry.get("requires_python")
    if (current.requires_python or None) != (str(locked_python) if locked_python else None) and SpecifierSet(
        current.requires_python or ""
    ) != SpecifierSet(str(locked_python or "")):
        return (
            f"the requires-python of '{locked.name}' changed: {locked_python} in the lock, "
            f"{current.requires_python} in its source"
        )
    return None


def freshness_problems(workspace: Workspace, environments: list[str] | None = None) -> list[LockMismatch]:
    """`lock --check`: the mismatches, or CannotCheck. A pyproject manifest is not judged."""
    return lock_mismatches(workspace, None, environments)


__all__ = [
    "CannotCheck",
    "CondaSpec",
    "LockMismatch",
    "PyprojectManifest",
    "freshness_problems",
    "lock_mismatches",
    "selector_of",
]
