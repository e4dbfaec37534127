"""The pixi workspace: pixi.toml read into plain data (features, environments, platforms).

Only what locking, freshness and export need is modelled, with pixi's meanings (0.71 and
later: rich platforms, `when` conditions, conda extras, solve groups, solve options).
Tasks, activation and the like are left to pixi itself. What this engine cannot judge
(pixi-build source packages, a pyproject.toml manifest) is recorded, not silently ignored.
"""

from __future__ import annotations

import logging
import re
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cli.errors import UserError
from cli.lockengine.platforms import (
    PlatformSpec,
    SystemRequirements,
    parse_platform_entry,
    subdir_platform,
    synthesize_name,
)
from cli.lockengine.pypi_specs import (
    PypiDependency,
    PypiOptions,
    parse_pypi_dependency,
    parse_pypi_options,
)
from cli.lockengine.virtual_packages import VirtualPackage, applies_to_subdir, with_defaults

__all__ = ["PlatformSpec", "SystemRequirements"]

log = logging.getLogger(__name__)

MANIFEST_NAME = "pixi.toml"
PYPROJECT_NAME = "pyproject.toml"
LOCK_NAME = "pixi.lock"
DEFAULT_FEATURE = "default"
DEFAULT_ENVIRONMENT = "default"
CHANNEL_PRIORITIES = ("strict", "disabled")
# pixi.toml's solve-strategy → the name rattler_lock records
SOLVE_STRATEGIES = {"highest": "highest", "lowest": "lowest-version", "lowest-direct": "lowest-version-direct"}
_DURATION = re.compile(r"^\s*(\d+)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?|w|weeks?)\s*$")


@dataclass(frozen=True)
class CondaSpec:
    """One conda dependency: the `version build` text plus what MatchSpec brackets carry."""

    version_build: str = "*"
    channel: str | None = None
    extras: tuple[str, ...] = ()
    condition: str | None = None
    source: str | None = None  # "path" / "git": a pixi-build source package

    def match_spec(self, name: str) -> str:
        """The MatchSpec string (`channel::name version build[extras=[..], when=".."]`)."""
        text = f"{self.channel}::{name}" if self.channel else name
        text = f"{text} {self.version_build}".strip()
        brackets = []
        if self.extras:
            brackets.append(f"extras=[{', '.join(self.extras)}]")
        if self.condition:
            brackets.append(f'when="{self.condition}"')
        return text + (f"[{', '.join(brackets)}]" if brackets else "")

    def __str__(self) -> str:
        return self.version_build


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    priority: int = 0

    @property
    def url(self) -> str:
        return canonical_channel_url(self.name)


@dataclass(frozen=True)
class Feature:
    name: str
    dependencies: dict[str, CondaSpec] = field(default_factory=dict)
    target_dependencies: dict[str, dict[str, CondaSpec]] = field(default_factory=dict)
    constraints: dict[str, CondaSpec] = field(default_factory=dict)
    pypi_dependencies: dict[str, PypiDependency] = field(default_factory=dict)
    target_pypi_dependencies: dict[str, dict[str, PypiDependency]] = field(default_factory=dict)
    channels: tuple[ChannelSpec, ...] | None = None
    platforms: tuple[str, ...] | None = None
    system_requirements: tuple[VirtualPackage, ...] = ()
    channel_priority: str | None = None
    solve_strategy: str | None = None
    pypi_options: PypiOptions | None = None
    dev_dependencies: tuple[str, ...] = ()

    def dependencies_for(self, platform: PlatformSpec) -> dict[str, CondaSpec]:
        deps = dict(self.dependencies)
        for selector, table in self.target_dependencies.items():
            if platform.matches_target(selector):
                deps.update(table)
        return deps

    def pypi_dependencies_for(self, platform: PlatformSpec) -> dict[str, PypiDependency]:
        deps = dict(self.pypi_dependencies)
        for selector, table in self.target_pypi_dependencies.items():
            if platform.matches_target(selector):
                deps.update(table)
        return deps


@dataclass(frozen=True)
class EnvironmentSpec:
    name: str
    features: tuple[str, ...]
    solve_group: str | None = None
    no_default_feature: bool = False


@dataclass(frozen=True)
class ResolvedEnvironment:
    """An environment with its features merged: what the solver is asked for, and what the lock must satisfy."""

    name: str
    channels: tuple[str, ...]
    platforms: tuple[PlatformSpec, ...]
    specs_by_platform: dict[str, dict[str, CondaSpec]]
    pypi_by_platform: dict[str, dict[str, PypiDependency]]
    constraints_by_platform: dict[str, dict[str, CondaSpec]] = field(default_factory=dict)
    solve_group: str | None = None
    channel_priority: str = "strict"
    solve_strategy: str = "highest"
    exclude_newer: datetime | None = None
    pypi_options: PypiOptions = field(default_factory=PypiOptions)
    source_dependencies: tuple[str, ...] = ()
    dev_dependencies: tuple[str, ...] = ()

    @property
    def pypi_dependencies(self) -> dict[str, PypiDependency]:
        """Every PyPI dependency on any platform (empty: the environment has none)."""
        merged: dict[str, PypiDependency] = {}
        for deps in self.pypi_by_platform.values():
            merged.update(deps)
        return merged

    def platform(self, name: str) -> PlatformSpec:
        for platform in self.platforms:
            if platform.name == name:
                return platform
        for platform in self.platforms:
            if platform.subdir == name:
                return platform
        raise KeyError(name)

    def declares_cuda(self, platform: PlatformSpec) -> bool:
        return platform.requirements.cuda is not None


@dataclass(frozen=True)
class Workspace:
    root: Path
    name: str
    version: str | None
    channels: tuple[ChannelSpec, ...]
    platforms: tuple[PlatformSpec, ...]
    features: dict[str, Feature]
    environments: dict[str, EnvironmentSpec]
    exclude_newer: datetime | None = None
    pypi_options: PypiOptions = field(default_factory=PypiOptions)
    preview: tuple[str, ...] = ()
    conda_pypi_map: dict[str, str] = field(default_factory=dict)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_NAME

    def environment_names(self) -> list[str]:
        return list(self.environments)

    def platform_names(self, environment: str, requested: list[str] | None = None) -> list[str]:
        """The environment's platforms, or the requested subset; a subdir names its platform when unique."""
        platforms = self.resolve(environment).platforms
        names = [p.name for p in platforms]
        chosen = []
        for name in requested or []:
            matching = [p.name for p in platforms if p.name == name] or [p.name for p in platforms if p.subdir == name]
            if len(matching) != 1:
                raise UserError(
                    f"flavor '{environment}' has no platform '{name}'",
                    path=self.manifest_path,
                    fix=f"known platforms: {', '.join(names)}",
                )
            chosen.append(matching[0])
        return chosen if requested else names

    def all_platforms(self) -> list[PlatformSpec]:
        """The declared platforms, then those environments compose from feature `[system-requirements]`."""
        result = list(self.platforms)
        for name in self.environment_names():
            for platform in self.resolve(name).platforms:
                if all(p.name != platform.name for p in result):
                    result.append(platform)
        return result

    def solve_groups(self) -> dict[str, list[str]]:
        """Solve group → its environments (in manifest order); an environment without a group is its own."""
        groups: dict[str, list[str]] = {}
        for name, spec in self.environments.items():
            groups.setdefault(spec.solve_group or f"\0{name}", []).append(name)
        return groups

    def resolve(self, environment: str) -> ResolvedEnvironment:
        spec = self.environments.get(environment)
        if spec is None:
            known = ", ".join(self.environments) or "none"
            raise UserError(
                f"unknown environment '{environment}'",
                path=self.manifest_path,
                fix=f"known environments: {known}",
            )
        feature_names = list(spec.features)
        if not spec.no_default_feature:
            feature_names.append(DEFAULT_FEATURE)
        features = [self.features[name] for name in feature_names]
        platforms = _environment_platforms(features, self.platforms, self.manifest_path, environment)
        pypi_options = PypiOptions()
        for feature in features:
            if feature.pypi_options is not None:
                pypi_options = pypi_options.overlay(feature.pypi_options)
        specs = _merge_specs(features, platforms)
        return ResolvedEnvironment(
            name=environment,
            channels=_merge_channels(features, self.channels),
            platforms=platforms,
            specs_by_platform=specs,
            pypi_by_platform={
                p.name: {k: v for f in reversed(features) for k, v in f.pypi_dependencies_for(p).items()}
                for p in platforms
            },
            constraints_by_platform={
                p.name: {k: v for f in reversed(features) for k, v in f.constraints.items()} for p in platforms
            },
            solve_group=spec.solve_group,
            channel_priority=_first(features, "channel_priority") or "strict",
            solve_strategy=SOLVE_STRATEGIES[_first(features, "solve_strategy") or "highest"],
            exclude_newer=self.exclude_newer,
            pypi_options=self.pypi_options.overlay(pypi_options),
            source_dependencies=tuple(
                sorted({name for deps in specs.values() for name, dep in deps.items() if dep.source})
            ),
            dev_dependencies=tuple(sorted({d for f in features for d in f.dev_dependencies})),
        )


def _first(features: list[Feature], attribute: str) -> str | None:
    for feature in features:
        value = getattr(feature, attribute)
        if value is not None:
            return str(value)
    return None


def canonical_channel_url(name_or_url: str) -> str:
    """`conda-forge` → `https://conda.anaconda.org/conda-forge/`, URLs kept, always with a trailing slash."""
    if "://" in name_or_url:
        url = name_or_url
    elif name_or_url.startswith(("/", "./", "../", "~")):
        url = Path(name_or_url).expanduser().absolute().as_uri()
    else:
        url = f"https://conda.anaconda.org/{name_or_url.strip('/')}"
    return url if url.endswith("/") else url + "/"


def find_manifest(start: Path | None) -> Path:
    """The pixi.toml named by `start` (a file or a folder), or the nearest one above the current folder."""
    if start is not None:
        candidate = start / MANIFEST_NAME if start.is_dir() else start
        if not candidate.is_file():
            pyproject = (start if start.is_dir() else start.parent) / PYPROJECT_NAME
            if _is_pixi_pyproject(pyproject):
                raise PyprojectManifest(pyproject)
            raise UserError("no pixi.toml here", path=candidate, fix="pass --manifest-path to a workspace folder")
        if candidate.name == PYPROJECT_NAME:
            raise PyprojectManifest(candidate)
        return candidate.resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / MANIFEST_NAME).is_file():
            return folder / MANIFEST_NAME
        if _is_pixi_pyproject(folder / PYPROJECT_NAME):
            raise PyprojectManifest(folder / PYPROJECT_NAME)
    raise UserError(
        "no pixi.toml in this folder or above", path=here, fix="run from the workspace root or pass --manifest-path"
    )


def _is_pixi_pyproject(path: Path) -> bool:
    """pixi's discovery: a pyproject.toml with a [tool.pixi] table is a workspace manifest."""
    return path.is_file() and "[tool.pixi" in path.read_text(encoding="utf-8", errors="replace")


class PyprojectManifest(UserError):
    """A workspace declared in pyproject.toml's [tool.pixi]: this engine reads pixi.toml only."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            "a pyproject.toml manifest ([tool.pixi]) is not read by this CLI",
            path=path,
            fix="use pixi itself for this workspace, or move the pixi tables to a pixi.toml",
        )


def load_workspace(start: Path | None = None) -> Workspace:
    manifest = find_manifest(start)
    try:
        data = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"not valid TOML: {error}", path=manifest, fix="correct the syntax") from error
    except UnicodeDecodeError as error:
        raise UserError("not UTF-8 text", path=manifest, fix="save the file as UTF-8") from error
    return parse_manifest(data, manifest)


def parse_manifest(data: dict[str, Any], manifest: Path) -> Workspace:
    table = data.get("workspace", data.get("project"))
    if not isinstance(table, dict):
        raise UserError("no [workspace] table", path=manifest, fix="add [workspace] with name, channels and platforms")
    reader = _Reader(manifest)
    name = reader.string(table, "name", "workspace.name", required=False) or manifest.parent.name
    channels = reader.channels(table.get("channels"), "workspace.channels")
    if not channels and "channels" not in table:
        raise UserError("workspace.channels is missing", path=manifest, fix='add channels = ["conda-forge"]')
    platforms = reader.platforms(table.get("platforms"), "workspace.platforms")
    default_table = {
        **{k: v for k, v in data.items() if k != "feature"},
        "channel-priority": table.get("channel-priority"),
        "solve-strategy": table.get("solve-strategy"),
    }
    features = {DEFAULT_FEATURE: reader.feature(DEFAULT_FEATURE, default_table, "")}
    for feature_name, feature_table in reader.table(data, "feature").items():
        features[feature_name] = reader.feature(
            feature_name, reader.table_of(feature_table, f"feature.{feature_name}"), f"feature.{feature_name}."
        )
    platforms = _migrate_system_requirements(platforms, features[DEFAULT_FEATURE].system_requirements)
    environments = reader.environments(reader.table(data, "environments"), features)
    preview = table.get("preview", [])
    return Workspace(
        root=manifest.parent,
        name=name,
        version=table.get("version"),
        channels=channels,
        platforms=platforms,
        features=features,
        environments=environments,
        exclude_newer=reader.exclude_newer(table.get("exclude-newer"), "workspace.exclude-newer"),
        pypi_options=reader.pypi_options(table.get("pypi-options"), "workspace.pypi-options").overlay(
            reader.pypi_options(data.get("pypi-options"), "pypi-options")
        ),
        preview=tuple(preview) if isinstance(preview, list) else (),
        conda_pypi_map=dict(table.get("conda-pypi-map", {})),
    )


def _migrate_system_requirements(
    platforms: tuple[PlatformSpec, ...], requirements: tuple[VirtualPackage, ...]
) -> tuple[PlatformSpec, ...]:
    """pixi's legacy `[system-requirements]` migration: each subdir platform carries them (renamed after them)."""
    if not requirements:
        return platforms
    migrated = []
    for platform in platforms:
        if not platform.is_subdir_platform:
            migrated.append(platform)
            continue
        migrated.append(_with_requirements(platform, requirements))
    return tuple(migrated)


def _with_requirements(platform: PlatformSpec, requirements: tuple[VirtualPackage, ...]) -> PlatformSpec:
    declared = [p for p in requirements if applies_to_subdir(p.name, platform.subdir)]
    custom = {p.name for p in platform.virtual_packages if p.text() in platform.customised}
    declared += [p for p in platform.virtual_packages if p.name in custom and p.name not in {d.name for d in declared}]
    name = synthesize_name(platform.subdir, declared)
    if name == platform.subdir:
        return subdir_platform(platform.subdir)
    return PlatformSpec(name, platform.subdir, with_defaults(declared, platform.subdir))


class _Reader:
    """Reads manifest tables, turning every shape error into a UserError that names the key."""

    def __init__(self, manifest: Path) -> None:
        self.manifest = manifest

    def fail(self, key: str, problem: str, fix: str) -> UserError:
        return UserError(f"{key}: {problem}", path=self.manifest, fix=fix)

    def table(self, data: dict[str, Any], key: str) -> dict[str, Any]:
        return self.table_of(data.get(key, {}), key)

    def table_of(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, "expected a table", f"write [{key}] as a table")
        return value

    def string(self, data: dict[str, Any], key: str, where: str, required: bool = True) -> str | None:
        value = data.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str):
            raise self.fail(where, "expected a string", f'write {key} = "..."')
        return value

    def channels(self, value: Any, key: str) -> tuple[ChannelSpec, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(key, "expected a list of channels", 'write channels = ["conda-forge"]')
        result = []
        for item in value:
            if isinstance(item, str):
                result.append(ChannelSpec(item))
            elif (
                isinstance(item, dict)
                and isinstance(item.get("channel"), str)
                and isinstance(item.get("priority", 0), int)
            ):
                result.append(ChannelSpec(item["channel"], item.get("priority", 0)))
            else:
                raise self.fail(
                    key, f"cannot read channel {item!r}", 'use "name" or { channel = "name", priority = 1 }'
                )
        return tuple(result)

    def platforms(self, value: Any, key: str) -> tuple[PlatformSpec, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(key, "expected a non-empty list of platforms", 'write platforms = ["linux-64"]')
        result = []
        for item in value:
            try:
                result.append(parse_platform_entry(item))
            except ValueError as error:
                raise self.fail(
                    key, str(error), 'use "linux-64" or { platform = "linux-64", cuda = "12" } (a conda subdir)'
                ) from error
        names = [p.name for p in result]
        if len(set(names)) != len(names):
            raise self.fail(key, "a platform name is listed twice", "give each platform table its own name")
        identities = [p.identity for p in result]
        if len(set(identities)) != len(identities):
            raise self.fail(key, "two platforms declare the same subdir and virtual packages", "remove one of them")
        return tuple(result)

    def system_requirements(self, value: Any, key: str) -> tuple[VirtualPackage, ...]:
        table = self.table_of(value, key)
        known = {"cuda", "glibc", "libc", "linux", "macos"}
        unknown = sorted(set(table) - known)
        if unknown:
            raise self.fail(key, f"unknown system requirement {', '.join(unknown)}", f"use {', '.join(sorted(known))}")
        result = []
        if "linux" in table:
            result.append(VirtualPackage("__linux", str(table["linux"])))
        if "cuda" in table:
            result.append(VirtualPackage("__cuda", str(table["cuda"])))
        if "macos" in table:
            result.append(VirtualPackage("__osx", str(table["macos"])))
        libc = table.get("glibc", table.get("libc"))
        if isinstance(libc, dict):
            family = str(libc.get("family", "glibc")).lower()
            result.append(VirtualPackage(f"__{family}", str(libc.get("version"))))
        elif libc is not None:
            result.append(VirtualPackage("__glibc", str(libc)))
        return tuple(result)

    def dependencies(self, value: Any, key: str) -> dict[str, CondaSpec]:
        table = self.table_of(value, key)
        deps: dict[str, CondaSpec] = {}
        for name, spec in table.items():
            if isinstance(spec, str):
                deps[name] = CondaSpec(spec.strip() or "*")
            elif isinstance(spec, dict):
                deps[name] = self.table_spec(spec, f"{key}.{name}")
            else:
                raise self.fail(f"{key}.{name}", "expected a version string or a table", f'write {name} = "*"')
        return deps

    def table_spec(self, spec: dict[str, Any], key: str) -> CondaSpec:
        """`{ version = ">=2", build = "cuda*", channel = "x", extras = [..], when = ".." }`; path/git are sources."""
        source = None
        if "git" in spec or ("path" in spec and not str(spec["path"]).endswith((".conda", ".tar.bz2"))):
            source = "git" if "git" in spec else "path"
        extras = spec.get("extras", [])
        if not isinstance(extras, list):
            raise self.fail(key, "extras must be a list", 'write extras = ["name"]')
        text = str(spec.get("version", "*"))
        if spec.get("build"):
            text += f" {spec['build']}"
        if spec.get("build-number") is not None:
            text += f"[build_number={spec['build-number']}]" if "[" not in text else ""
        return CondaSpec(
            version_build=text,
            channel=spec.get("channel"),
            extras=tuple(str(e) for e in extras),
            condition=spec.get("when"),
            source=source,
        )

    def feature(self, name: str, table: dict[str, Any], prefix: str) -> Feature:
        targets: dict[str, dict[str, CondaSpec]] = {}
        pypi_targets: dict[str, dict[str, PypiDependency]] = {}
        for target, body in self.table(table, "target").items():
            body = self.table_of(body, f"{prefix}target.{target}")
            merged: dict[str, CondaSpec] = {}
            for kind in ("build-dependencies", "host-dependencies", "dependencies"):
                merged.update(self.dependencies(body.get(kind, {}), f"{prefix}target.{target}.{kind}"))
            targets[target] = merged
            pypi_targets[target] = self.pypi_dependencies(
                body.get("pypi-dependencies", {}), f"{prefix}target.{target}.pypi-dependencies"
            )
        platforms = table.get("platforms")
        if platforms is not None and not (isinstance(platforms, list) and all(isinstance(p, str) for p in platforms)):
            raise self.fail(f"{prefix}platforms", "expected a list of platform names", 'write platforms = ["linux-64"]')
        channels = self.channels(table.get("channels"), f"{prefix}channels") if "channels" in table else None
        dependencies: dict[str, CondaSpec] = {}
        for kind in ("build-dependencies", "host-dependencies", "dependencies"):
            dependencies.update(self.dependencies(table.get(kind, {}), f"{prefix}{kind}"))
        priority = table.get("channel-priority")
        if priority is not None and priority not in CHANNEL_PRIORITIES:
            raise self.fail(f"{prefix}channel-priority", f"unknown value {priority!r}", "use strict or disabled")
        strategy = table.get("solve-strategy")
        if strategy is not None and strategy not in SOLVE_STRATEGIES:
            raise self.fail(
                f"{prefix}solve-strategy", f"unknown value {strategy!r}", f"use {', '.join(SOLVE_STRATEGIES)}"
            )
        return Feature(
            name=name,
            dependencies=dependencies,
            target_dependencies=targets,
            constraints=self.dependencies(table.get("constraints", {}), f"{prefix}constraints"),
            pypi_dependencies=self.pypi_dependencies(table.get("pypi-dependencies", {}), f"{prefix}pypi-dependencies"),
            target_pypi_dependencies=pypi_targets,
            channels=channels,
            platforms=tuple(platforms) if platforms is not None else None,
            system_requirements=self.system_requirements(
                table.get("system-requirements", {}), f"{prefix}system-requirements"
            ),
            channel_priority=priority,
            solve_strategy=strategy,
            pypi_options=(
                self.pypi_options(table.get("pypi-options"), f"{prefix}pypi-options")
                if name != DEFAULT_FEATURE
                else None
            ),
            dev_dependencies=tuple(self.table(table, "dev")),
        )

    def pypi_dependencies(self, value: Any, key: str) -> dict[str, PypiDependency]:
        table = self.table_of(value, key)
        result = {}
        for name, spec in table.items():
            try:
                result[name] = parse_pypi_dependency(name, spec)
            except ValueError as error:
                raise self.fail(f"{key}.{name}", str(error), 'write name = ">=1" or { version = ">=1" }') from error
        return result

    def pypi_options(self, value: Any, key: str) -> PypiOptions:
        if value is None:
            return PypiOptions()
        try:
            return parse_pypi_options(value)
        except ValueError as error:
            raise self.fail(key, str(error), "see pixi's pypi-options documentation") from error

    def exclude_newer(self, value: Any, key: str) -> datetime | None:
        """pixi's forms: a date (`2025-11-03`: up to the end of that day, UTC), a timestamp, or a duration."""
        if value is None:
            return None
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        text = str(value).strip()
        duration = _DURATION.match(text)
        if duration:
            amount, unit = int(duration.group(1)), duration.group(2)[0]
            seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit] * amount
            return datetime.now(UTC) - timedelta(seconds=seconds)
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                return datetime.fromisoformat(text).replace(tzinfo=UTC) + timedelta(days=1)
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as error:
            raise self.fail(key, f"cannot read {text!r}", 'write a date ("2025-11-03") or a timestamp') from error
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    def environments(self, table: dict[str, Any], features: dict[str, Feature]) -> dict[str, EnvironmentSpec]:
        environments: dict[str, EnvironmentSpec] = {}
        for env_name, body in table.items():
            key = f"environments.{env_name}"
            if isinstance(body, list):
                spec = EnvironmentSpec(env_name, tuple(body))
            elif isinstance(body, dict):
                spec = EnvironmentSpec(
                    env_name,
                    tuple(body.get("features", [])),
                    body.get("solve-group"),
                    bool(body.get("no-default-feature", False)),
                )
            else:
                raise self.fail(key, "expected a list of features or a table", 'write name = ["feature", ...]')
            if not all(isinstance(f, str) for f in spec.features) or not isinstance(
                body if isinstance(body, list) else body.get("features", []), list
            ):
                raise self.fail(key, "features must be a list of feature names", 'write features = ["name", ...]')
            missing = [f for f in spec.features if f not in features]
            if missing:
                raise self.fail(key, f"unknown feature {', '.join(missing)}", "define it under [feature.<name>]")
            environments[env_name] = spec
        if DEFAULT_ENVIRONMENT not in environments:
            environments = {DEFAULT_ENVIRONMENT: EnvironmentSpec(DEFAULT_ENVIRONMENT, ()), **environments}
        return environments


def _merge_channels(features: list[Feature], workspace_channels: tuple[ChannelSpec, ...]) -> tuple[str, ...]:
    """pixi's rule: higher priority first; at equal priority, features in order, the default feature's last."""
    ordered: list[tuple[int, int, ChannelSpec]] = []
    position = 0
    for feature in features:
        channels = feature.channels
        if channels is None:
            if feature.name != DEFAULT_FEATURE:
                continue
            channels = workspace_channels
        for channel in channels:
            ordered.append((-channel.priority, position, channel))
            position += 1
    urls: list[str] = []
    for _, _, channel in sorted(ordered, key=lambda item: (item[0], item[1])):
        if channel.url not in urls:
            urls.append(channel.url)
    return tuple(urls)


def _environment_platforms(
    features: list[Feature], platforms: tuple[PlatformSpec, ...], manifest: Path, environment: str
) -> tuple[PlatformSpec, ...]:
    """The workspace platforms every feature allows (by name or subdir), with feature-level system requirements.

    A subdir only widens where no feature names a platform of that subdir exactly (pixi's rule since
    prefix-dev/pixi#6493): with platforms `linux-64` and `linux-64-cuda-12`, a feature for
    `linux-64` gets the bare one only, not the CUDA one beside it.
    """
    allowed = list(platforms)
    requirements: list[VirtualPackage] = []
    for feature in features:
        if feature.name != DEFAULT_FEATURE:
            requirements += [r for r in feature.system_requirements if r.name not in {q.name for q in requirements}]
        if feature.platforms is not None:
            allowed = [p for p in allowed if any(p.matches_reference(ref) for ref in feature.platforms)]
    exact = {ref for feature in features for ref in feature.platforms or ()}
    exact_subdirs = {p.subdir for p in platforms if p.name in exact}
    allowed = [p for p in allowed if p.name in exact or p.subdir not in exact_subdirs]
    if not allowed:
        raise UserError(
            f"environment '{environment}' has no platform left after its features' platform lists",
            path=manifest,
            fix="make the features' platforms overlap with [workspace] platforms",
        )
    if requirements:
        allowed = [_with_requirements(p, tuple(requirements)) if p.is_subdir_platform else p for p in allowed]
    return tuple(allowed)


def _merge_specs(features: list[Feature], platforms: tuple[PlatformSpec, ...]) -> dict[str, dict[str, CondaSpec]]:
    """Per platform name, package → spec; an earlier feature's spec wins over the default feature's."""
    result: dict[str, dict[str, CondaSpec]] = {}
    for platform in platforms:
        merged: dict[str, CondaSpec] = {}
        for feature in reversed(features):
            merged.update(feature.dependencies_for(platform))
        result[platform.name] = merged
    return result
