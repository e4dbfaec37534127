"""The lock engine: every environment and platform of pixi.toml solved into one pixi.lock, as pixi does it.

- A solve group is solved once per platform (the union of its environments' specs); each
  environment then gets the part of that solution its own specs reach, so environments in
  one group share one version of every package they have in common.
- Conda first, then PyPI with uv (`cli.lockengine.pypi`), with the conda Python packages held fixed.
- Locked records are the solver's preferences, as in pixi: the same manifest, channels and
  lock give byte-identical output. A PyPI part that still satisfies the manifest is kept as
  it is; `--update` ignores what is locked.
- Platforms are written as pixi writes them (rich platforms as `p1`, `p2`, …, with their
  declared virtual packages), environments with their channels, PyPI indexes and solve options.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from rattler import LockFile, LockPlatform, RepoDataRecord

from cli.cuda import is_cpu_variant
from cli.errors import UserError
from cli.flavors import check_flavor_folders
from cli.lockengine.channels import channel_sources
from cli.lockengine.freshness import CannotCheck, conda_record, lock_mismatches
from cli.lockengine.lockfile import (
    CONDA,
    PYPI,
    LockData,
    LockEnvironmentEntry,
    LockPlatformEntry,
    aligned,
    environment_records,
    normalized_entry,
    parse_lock_text,
    rattler_lock_of,
    read_lock_data,
    selector_of,
    write_lock,
)
from cli.lockengine.manifest import CondaSpec, ResolvedEnvironment, Workspace, canonical_channel_url
from cli.lockengine.platforms import PlatformSpec, lock_names
from cli.lockengine.pypi import PypiSolveRequest, resolve_pypi
from cli.lockengine.pypi_specs import DEFAULT_PRERELEASE_MODE, PypiDependency
from cli.lockengine.pypi_target import conda_pypi_packages, marker_environment
from cli.lockengine.solve import solve_platform

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockRequest:
    environments: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    mirrors: dict[str, str] = field(default_factory=dict)
    update: bool = False
    cache_dir: Path | None = None
    # called before each solve with (environment, platform), e.g. to drive a progress display
    on_solve: Callable[[str, str], None] | None = None


@dataclass(frozen=True)
class LockResult:
    path: Path
    content: bytes
    changed: bool
    solved: dict[str, dict[str, int]]


@dataclass
class _Solved:
    """What one environment holds on one platform after locking."""

    conda: list[RepoDataRecord]
    pypi: list[dict[str, Any]]


@dataclass
class _Previous:
    data: LockData | None
    lock: LockFile | None
    fresh: set[str]

    def conda(self, environment: str, platform: str) -> list[RepoDataRecord] | None:
        if (
            self.lock is None
            or self.data is None
            or platform not in self.data.environments.get(environment, LockEnvironmentEntry()).packages
        ):
            return None
        return environment_records(self.lock, environment, platform)

    def pypi(self, environment: str, platform: str) -> list[dict[str, Any]]:
        if self.data is None:
            return []
        entries = self.data.environment_packages(environment, platform) or []
        return [e for e in entries if PYPI in e]


def _previous(workspace: Workspace) -> _Previous:
    """The lock to keep versions from; an unreadable one is replaced, since locking is how it gets repaired."""
    if not workspace.lock_path.exists():
        return _Previous(None, None, set())
    try:
        data = aligned(read_lock_data(workspace.lock_path), workspace)
        lock = rattler_lock_of(data)
    except UserError as error:
        log.warning("%s; solving from scratch", error.one_line())
        return _Previous(None, None, set())
    fresh = set()
    for name in workspace.environment_names():
        if name not in data.environments:
            continue
        try:
            if not lock_mismatches(workspace, data, [name]):
                fresh.add(name)
        except CannotCheck:
            continue
    return _Previous(data, lock, fresh)


def check_gpu_variants(workspace: Workspace, environment: str, platform: str, records: list[RepoDataRecord]) -> None:
    """A CUDA environment that locked a CPU build is an error: the silent fallback this project exists to stop."""
    for record in records:
        if is_cpu_variant(str(record.build), [str(f) for f in record.track_features or []]):
            raise UserError(
                f"environment '{environment}' declares CUDA but the lock for {platform} holds the CPU build "
                f"{record.name.normalized} {record.version} {record.build}",
                path=workspace.manifest_path,
                fix=f'require the GPU build, e.g. {record.name.normalized} = {{ version = "*", build = "cuda*" }}',
            )


def _validate_request(workspace: Workspace, request: LockRequest) -> None:
    check_flavor_folders(workspace)
    if "pixi-build" in workspace.preview:
        raise UserError(
            "the workspace enables pixi-build, whose source packages only pixi can build",
            path=workspace.manifest_path,
            fix="lock with `--engine pixi`",
        )
    channels = {url for name in workspace.environment_names() for url in workspace.resolve(name).channels}
    for canonical in request.mirrors:
        if canonical not in channels:
            raise UserError(
                f"--mirror names {canonical}, which no environment uses",
                path=workspace.manifest_path,
                fix=f"mirror one of: {', '.join(sorted(channels))}",
            )
    for name in request.environments:
        resolved = workspace.resolve(name)  # raises on an unknown environment
        if resolved.source_dependencies or resolved.dev_dependencies:
            raise UserError(
                f"environment '{name}' has source dependencies, which only pixi can build",
                path=workspace.manifest_path,
                fix="lock with `--engine pixi`",
            )
    known_platforms = {p.name for p in workspace.platforms} | {p.subdir for p in workspace.platforms}
    for platform in request.platforms:
        if platform not in known_platforms:
            raise UserError(
                f"unknown platform '{platform}'",
                path=workspace.manifest_path,
                fix=f"known platforms: {', '.join(sorted(p.name for p in workspace.platforms))}",
            )


def _wanted(request: LockRequest, environment: str, platform: PlatformSpec) -> bool:
    env_ok = not request.environments or environment in request.environments
    platform_ok = not request.platforms or any(platform.matches_reference(p) for p in request.platforms)
    return env_ok and platform_ok


# --- what one environment of a solve group takes of the group's solution ------------------------


def _reachable_conda(
    records: list[RepoDataRecord], specs: dict[str, CondaSpec], platform: PlatformSpec
) -> list[RepoDataRecord]:
    from rattler import MatchSpec

    from cli.lockengine.freshness import _condition_met, _spec_name, _virtual_records

    by_name = {r.name.normalized: r for r in records}
    wrapped = {
        name: conda_record({"conda": r.url, "name": name, "version": str(r.version), "build": str(r.build)})
        for name, r in by_name.items()
    }
    virtual = _virtual_records(platform.virtual_packages)
    pending: list[tuple[str, tuple[str, ...]]] = []
    for name, spec in specs.items():
        if spec.condition and not _condition_met(spec.condition, wrapped, virtual):
            continue
        pending.append((name, spec.extras))
    reached: dict[str, set[str]] = {}
    while pending:
        name, extras = pending.pop()
        record = by_name.get(name)
        if record is None:
            continue
        followed = reached.get(name)
        depends: list[str] = []
        if followed is None:
            reached[name] = followed = set()
            depends += list(record.depends)
        for extra in extras:
            if extra not in followed:
                followed.add(extra)
                depends += list((record.extra_depends or {}).get(extra, []))
        for text in depends:
            dependency = MatchSpec(text, strict=False)
            if dependency.condition and not _condition_met(dependency.condition, wrapped, virtual):
                continue
            pending.append((_spec_name(text), tuple(dependency.extras or ())))
    return [r for r in records if r.name.normalized in reached]


def _reachable_pypi(
    entries: list[dict[str, Any]], dependencies: list[PypiDependency], markers: dict[str, str], root: Path
) -> list[dict[str, Any]]:
    by_name: dict[str, dict[str, Any]] = {canonicalize_name(str(e["name"])): e for e in entries}
    pending: list[tuple[str, tuple[str, ...]]] = [(d.normalized_name, tuple(d.extras)) for d in dependencies]
    reached: dict[str, set[str]] = {}
    while pending:
        name, extras = pending.pop()
        entry = by_name.get(name)
        if entry is None:
            continue
        first = name not in reached
        followed = reached.setdefault(name, set())
        new = [e for e in extras if e not in followed]
        followed.update(new)
        if not first and not new:
            continue
        for text in entry.get("requires_dist") or []:
            try:
                requirement = Requirement(str(text))
            except InvalidRequirement:
                continue
            if requirement.marker is not None and not any(
                requirement.marker.evaluate({**markers, "extra": extra}) for extra in (list(followed) or [""])
            ):
                continue
            pending.append((canonicalize_name(requirement.name), tuple(requirement.extras)))
    return [e for e in entries if canonicalize_name(str(e["name"])) in reached]


# --- PyPI names of conda packages (purls) --------------------------------------------------------


def _project_mapping(workspace: Workspace) -> dict[str, dict[str, str | None]]:
    """pixi's `conda-pypi-map`: channel URL → {conda name: PyPI name or null} from local JSON files."""
    mapping: dict[str, dict[str, str | None]] = {}
    for channel, location in workspace.conda_pypi_map.items():
        path = workspace.root / str(location)
        try:
            mapping[canonical_channel_url(channel).rstrip("/")] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise UserError(
                f"cannot read the conda-pypi-map of {channel}: {error}",
                path=path,
                fix="give a JSON file {conda name: PyPI name}",
            ) from error
    return mapping


class _LazyMapping(dict[str, dict[str, str | None]]):
    """The project's conda-pypi-map, read the first time a solve with PyPI dependencies needs it."""

    def __init__(self, workspace: Workspace) -> None:
        super().__init__()
        self.workspace = workspace
        self.loaded = False

    def get(self, key: str, default: Any = None) -> Any:
        if not self.loaded:
            self.update(_project_mapping(self.workspace))
            self.loaded = True
        return super().get(key, default)


def purls_for(record: RepoDataRecord, mapping: dict[str, dict[str, str | None]]) -> list[str]:
    """The PyPI packages a conda package installs, offline: the project's mapping, else a Python package's own name."""
    name = record.name.normalized
    channel = (record.channel or "").rstrip("/")
    table = mapping.get(channel)
    if table is not None and name in table:
        pypi_name = table[name]
        return [f"pkg:pypi/{pypi_name}?source=project-defined-mapping"] if pypi_name else []
    depends = {d.split(" ")[0] for d in record.depends}
    is_python_package = name != "python" and (
        str(record.noarch) == "python" or bool(depends & {"python", "python_abi"})
    )
    return [f"pkg:pypi/{name}"] if is_python_package else []


def _conda_provided(records: list[RepoDataRecord], purls: dict[str, list[str]]) -> dict[str, Version]:
    provided: dict[str, Version] = {}
    for record in records:
        for package in conda_pypi_packages(
            record.name.normalized, str(record.version), purls.get(record.url), record.channel
        ):
            if package.version is not None:
                provided.setdefault(package.name, package.version)
    return provided


# --- the lock ------------------------------------------------------------------------------------


def _group_specs(resolved: list[ResolvedEnvironment], platform: str) -> list[tuple[str, CondaSpec]]:
    """The union of the members' specs; a name two members constrain differently keeps both (the solver ANDs them)."""
    union: list[tuple[str, CondaSpec]] = []
    for env in resolved:
        for name, spec in env.specs_by_platform.get(platform, {}).items():
            if (name, spec) not in union:
                union.append((name, spec))
    return union


def _same_rules(previous: _Previous, env: ResolvedEnvironment) -> bool:
    """Locked versions are preferences only if they were solved under the same strategy and channel priority."""
    locked = previous.data.environments.get(env.name) if previous.data else None
    return locked is not None and (
        locked.option("strategy") == env.solve_strategy and locked.option("channel-priority") == env.channel_priority
    )


def _solve_group(
    workspace: Workspace,
    members: list[ResolvedEnvironment],
    request: LockRequest,
    previous: _Previous,
    mapping: dict[str, dict[str, str | None]],
    purls: dict[str, list[str]],
) -> dict[tuple[str, str], _Solved]:
    solved: dict[tuple[str, str], _Solved] = {}
    platforms: dict[str, PlatformSpec] = {}
    for env in members:
        for platform in env.platforms:
            platforms.setdefault(platform.name, platform)
    for platform in platforms.values():
        here = [env for env in members if any(p.name == platform.name for p in env.platforms)]
        kept = [
            env
            for env in here
            if not _wanted(request, env.name, platform) and previous.conda(env.name, platform.name) is not None
        ]
        if len(kept) == len(here):
            for env in here:
                solved[(env.name, platform.name)] = _Solved(
                    previous.conda(env.name, platform.name) or [], previous.pypi(env.name, platform.name)
                )
            continue
        preferences: dict[str, RepoDataRecord] = {}
        if not request.update and all(_same_rules(previous, env) for env in here):
            for env in here:
                for record in previous.conda(env.name, platform.name) or []:
                    preferences.setdefault(record.url, record)
        if request.on_solve is not None:
            request.on_solve(", ".join(e.name for e in here), platform.name)
        representative = here[0]
        records = solve_platform(
            workspace,
            representative,
            platform,
            channel_sources(representative.channels, request.mirrors),
            locked=list(preferences.values()) or None,
            cache_dir=request.cache_dir,
            specs_text=_group_specs(here, platform.name),
        )
        has_pypi = any(env.pypi_by_platform.get(platform.name) for env in here)
        if has_pypi:
            for record in records:
                purls.setdefault(record.url, purls_for(record, mapping))
        subsets = {
            env.name: records
            if len(here) == 1
            else _reachable_conda(records, env.specs_by_platform.get(platform.name, {}), platform)
            for env in here
        }
        for env in here:
            if env.declares_cuda(platform):
                check_gpu_variants(workspace, env.name, platform.name, subsets[env.name])
        pypi = _lock_pypi(workspace, here, platform, records, subsets, request, previous, purls) if has_pypi else {}
        for env in here:
            solved[(env.name, platform.name)] = _Solved(subsets[env.name], pypi.get(env.name, []))
    return solved


def _lock_pypi(
    workspace: Workspace,
    members: list[ResolvedEnvironment],
    platform: PlatformSpec,
    records: list[RepoDataRecord],
    subsets: dict[str, list[RepoDataRecord]],
    request: LockRequest,
    previous: _Previous,
    purls: dict[str, list[str]],
) -> dict[str, list[dict[str, Any]]]:
    """Keep the locked PyPI part where nothing it rests on changed; otherwise resolve the group's with uv."""
    with_pypi = [env for env in members if env.pypi_by_platform.get(platform.name)]
    unchanged = not request.update and all(
        env.name in previous.fresh
        and {r.url for r in previous.conda(env.name, platform.name) or []} == {r.url for r in subsets[env.name]}
        for env in with_pypi
    )
    if unchanged:
        return {env.name: previous.pypi(env.name, platform.name) for env in with_pypi}
    python = next((r for r in records if r.name.normalized == "python"), None)
    if python is None:
        raise UserError(
            f"environment '{with_pypi[0].name}' has PyPI dependencies but no python for {platform.name}",
            path=workspace.manifest_path,
            fix='add python to its conda dependencies, e.g. python = "3.12.*"',
        )
    dependencies: dict[str, PypiDependency] = {}
    for env in with_pypi:
        for name, dependency in env.pypi_by_platform[platform.name].items():
            dependencies.setdefault(canonicalize_name(name), dependency)
    preferences: dict[str, str] = {}
    if not request.update:
        for env in with_pypi:
            for entry in previous.pypi(env.name, platform.name):
                if entry.get("version"):
                    preferences.setdefault(canonicalize_name(str(entry["name"])), str(entry["version"]))
    representative = with_pypi[0]
    if request.on_solve is not None:
        request.on_solve(f"{', '.join(e.name for e in with_pypi)} (PyPI)", platform.name)
    entries = resolve_pypi(
        PypiSolveRequest(
            dependencies=list(dependencies.values()),
            conda_provided=_conda_provided(records, purls),
            python_version=str(python.version),
            python_build=str(python.build),
            platform=platform,
            options=representative.pypi_options,
            root=workspace.root,
            exclude_newer=representative.exclude_newer,
            preferences=preferences,
            cache_dir=request.cache_dir,
        )
    )
    markers = marker_environment(platform, str(python.version)) or {}
    return {
        env.name: entries
        if len(with_pypi) == 1
        else _reachable_pypi(entries, list(env.pypi_by_platform[platform.name].values()), markers, workspace.root)
        for env in with_pypi
    }


def conda_entries(
    records: dict[str, RepoDataRecord], purls: dict[str, list[str]], previous: LockData | None
) -> dict[str, dict[str, Any]]:
    """Package entries for conda records, exactly as rattler_lock writes them (plus the purls pixi adds)."""
    if not records:
        return {}
    lock = LockFile([LockPlatform("linux-64")])
    platform = lock.platforms()[0]
    for record in records.values():
        lock.add_conda_package("records", platform, record)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pixi.lock"
        lock.to_path(path)
        data = parse_lock_text(path.read_text(encoding="utf-8"), path)
    kept = {selector_of(e): e for e in previous.packages} if previous else {}
    written = {_written_location(url): url for url in records}
    entries = {}
    for entry in data.packages:
        url = written.get(str(entry[CONDA]), str(entry[CONDA]))
        if url in purls:
            entry = normalized_entry({**entry, "purls": purls[url]})
        elif (CONDA, url) in kept and "purls" in kept[(CONDA, url)]:
            entry = normalized_entry({**entry, "purls": kept[(CONDA, url)]["purls"]})
        entries[url] = entry
    return entries


def _written_location(url: str) -> str:
    """rattler_lock writes a local `file://` URL as its path."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(url)
    return unquote(parsed.path) if parsed.scheme == "file" else url


def _environment_entry(env: ResolvedEnvironment) -> LockEnvironmentEntry:
    options = {
        "strategy": env.solve_strategy,
        "channel-priority": env.channel_priority,
        "pypi-prerelease-mode": env.pypi_options.prerelease_mode or DEFAULT_PRERELEASE_MODE,
    }
    entry = LockEnvironmentEntry(channels=[{"url": url} for url in env.channels], options=options)
    if env.pypi_dependencies:
        entry.indexes = env.pypi_options.indexes()
        entry.find_links = [{kind: value} for kind, value in env.pypi_options.find_links]
    return entry


def lock_workspace(workspace: Workspace, request: LockRequest) -> LockResult:
    """Solve what the request asks for, keep the rest of the existing lock, and render the result."""
    _validate_request(workspace, request)
    previous = _previous(workspace)
    mapping = _LazyMapping(workspace)
    names = [
        n
        for n in workspace.environment_names()
        if not request.environments or n in request.environments or (previous.data and n in previous.data.environments)
    ]
    purls: dict[str, list[str]] = {}
    solved: dict[tuple[str, str], _Solved] = {}
    for members in workspace.solve_groups().values():
        group = [workspace.resolve(n) for n in members if n in names]
        if group:
            solved.update(_solve_group(workspace, group, request, previous, mapping, purls))
    return _render(workspace, names, solved, purls, previous)


def _render(
    workspace: Workspace,
    names: list[str],
    solved: dict[tuple[str, str], _Solved],
    purls: dict[str, list[str]],
    previous: _Previous,
) -> LockResult:
    specs = workspace.all_platforms()
    lock_name = lock_names(specs)
    used = {platform for (_, platform) in solved}
    records: dict[str, RepoDataRecord] = {}
    environments: dict[str, LockEnvironmentEntry] = {}
    pypi_entries: dict[tuple[str, str], dict[str, Any]] = {}
    for name in names:
        env = workspace.resolve(name)
        entry = _environment_entry(env)
        for platform in env.platforms:
            result = solved.get((name, platform.name))
            if result is None:
                continue
            selectors = [(CONDA, r.url) for r in result.conda]
            for record in result.conda:
                records.setdefault(record.url, record)
            for pypi in result.pypi:
                selector = selector_of(pypi)
                pypi_entries.setdefault(selector, pypi)
                selectors.append(selector)
            if selectors:  # pixi's builder records a platform only once a package is added to it
                entry.packages[lock_name[platform.name]] = selectors
        environments[name] = entry
    conda = conda_entries(records, purls, previous.data)
    for entry in environments.values():  # rattler writes a local file URL as a path: select by what it writes
        entry.packages = {
            platform: [
                (kind, str(conda[id_][CONDA])) if kind == CONDA and id_ in conda else (kind, id_) for kind, id_ in sels
            ]
            for platform, sels in entry.packages.items()
        }
    data = LockData(
        version=7,
        platforms=[
            LockPlatformEntry(lock_name[p.name], p.subdir, p.virtual_package_texts()) for p in specs if p.name in used
        ],
        environments=environments,
        packages=[*conda.values(), *(normalized_entry(e) for e in pypi_entries.values())],
    )
    content = data.render()
    current = workspace.lock_path.read_bytes() if workspace.lock_path.exists() else None
    counts = {
        name: {platform: len(s.conda) + len(s.pypi) for (env, platform), s in solved.items() if env == name}
        for name in names
    }
    return LockResult(workspace.lock_path, content, content != current, counts)


def write_result(result: LockResult) -> None:
    if result.changed:
        write_lock(result.path, result.content)


def lock_with_pixi(workspace: Workspace, check: bool) -> int:
    """Delegate to the real `pixi lock`, for users who have pixi."""
    pixi = shutil.which("pixi")
    if pixi is None:
        raise UserError("`--engine pixi` needs the pixi executable on PATH", fix="install pixi or use --engine rattler")
    command = [pixi, "lock", "--manifest-path", str(workspace.manifest_path)]
    if check:
        command.append("--check")
    return subprocess.call(command)


__all__ = ["InvalidVersion", "LockRequest", "LockResult", "lock_workspace", "write_result"]
