"""The pixi workspace: pixi.toml read into plain data (features, environments, platforms).

Only the parts the lock engine needs are modelled; everything else in the manifest
(tasks, activation, …) is left for pixi itself.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rattler import Channel, Subdir

from cli.errors import UserError

log = logging.getLogger(__name__)

MANIFEST_NAME = "pixi.toml"
LOCK_NAME = "pixi.lock"
DEFAULT_FEATURE = "default"
DEFAULT_ENVIRONMENT = "default"


@dataclass(frozen=True)
class SystemRequirements:
    """What the target machine offers, as pixi's `[system-requirements]` or a platform table says."""

    cuda: str | None = None
    glibc: str | None = None
    linux: str | None = None
    macos: str | None = None
    archspec: str | None = None

    def merged(self, other: SystemRequirements) -> SystemRequirements:
        """`other` fills what this one leaves open; a later feature never loosens an earlier one."""
        return SystemRequirements(
            cuda=self.cuda or other.cuda,
            glibc=self.glibc or other.glibc,
            linux=self.linux or other.linux,
            macos=self.macos or other.macos,
            archspec=self.archspec or other.archspec,
        )


@dataclass(frozen=True)
class PlatformSpec:
    """One entry of `[workspace] platforms`: a subdir, optionally named and with its own requirements."""

    name: str
    subdir: str
    requirements: SystemRequirements = SystemRequirements()


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
    dependencies: dict[str, str] = field(default_factory=dict)
    target_dependencies: dict[str, dict[str, str]] = field(default_factory=dict)
    pypi_dependencies: dict[str, Any] = field(default_factory=dict)
    channels: tuple[ChannelSpec, ...] | None = None
    platforms: tuple[str, ...] | None = None
    system_requirements: SystemRequirements = SystemRequirements()

    def dependencies_for(self, platform: PlatformSpec) -> dict[str, str]:
        deps = dict(self.dependencies)
        for key in (platform.subdir, platform.name):
            deps.update(self.target_dependencies.get(key, {}))
        return deps


@dataclass(frozen=True)
class EnvironmentSpec:
    name: str
    features: tuple[str, ...]
    solve_group: str | None = None
    no_default_feature: bool = False


@dataclass(frozen=True)
class ResolvedEnvironment:
    """An environment with its features merged: what the solver is asked for."""

    name: str
    channels: tuple[str, ...]
    platforms: tuple[PlatformSpec, ...]
    specs_by_platform: dict[str, dict[str, str]]
    pypi_dependencies: dict[str, Any]

    def platform(self, name: str) -> PlatformSpec:
        for platform in self.platforms:
            if platform.name == name:
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

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_NAME

    def environment_names(self) -> list[str]:
        return list(self.environments)

    def platform_names(self, environment: str, requested: list[str] | None = None) -> list[str]:
        """The environment's platforms, or the requested subset (an error naming the known ones otherwise)."""
        names = [p.name for p in self.resolve(environment).platforms]
        for name in requested or []:
            if name not in names:
                raise UserError(
                    f"flavor '{environment}' has no platform '{name}'",
                    path=self.manifest_path,
                    fix=f"known platforms: {', '.join(names)}",
                )
        return list(requested) if requested else names

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
        platforms = _merge_platforms(features, self.platforms, self.manifest_path, environment)
        return ResolvedEnvironment(
            name=environment,
            channels=_merge_channels(features, self.channels),
            platforms=platforms,
            specs_by_platform=_merge_specs(features, platforms),
            pypi_dependencies={k: v for f in features for k, v in f.pypi_dependencies.items()},
        )


def canonical_channel_url(name_or_url: str) -> str:
    """`conda-forge` → `https://conda.anaconda.org/conda-forge/`, URLs kept, always with a trailing slash."""
    url = Channel(name_or_url).base_url
    return url if url.endswith("/") else url + "/"


def find_manifest(start: Path | None) -> Path:
    """The pixi.toml named by `start` (a file or a folder), or the nearest one above the current folder."""
    if start is not None:
        candidate = start / MANIFEST_NAME if start.is_dir() else start
        if not candidate.is_file():
            raise UserError("no pixi.toml here", path=candidate, fix="pass --manifest-path to a workspace folder")
        return candidate.resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / MANIFEST_NAME).is_file():
            return folder / MANIFEST_NAME
    raise UserError(
        "no pixi.toml in this folder or above", path=here, fix="run from the workspace root or pass --manifest-path"
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
    if not channels:
        raise UserError("workspace.channels is empty", path=manifest, fix='add channels = ["conda-forge"]')
    platforms = reader.platforms(table.get("platforms"), "workspace.platforms")
    default_requirements = reader.system_requirements(data.get("system-requirements", {}), "system-requirements")
    platforms = tuple(PlatformSpec(p.name, p.subdir, p.requirements.merged(default_requirements)) for p in platforms)
    features = {DEFAULT_FEATURE: reader.feature(DEFAULT_FEATURE, data, "")}
    for feature_name, feature_table in reader.table(data, "feature").items():
        features[feature_name] = reader.feature(
            feature_name, reader.table_of(feature_table, f"feature.{feature_name}"), f"feature.{feature_name}."
        )
    environments = reader.environments(reader.table(data, "environments"), features)
    return Workspace(
        root=manifest.parent,
        name=name,
        version=table.get("version"),
        channels=channels,
        platforms=platforms,
        features=features,
        environments=environments,
    )


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
            if isinstance(item, str):
                result.append(PlatformSpec(item, item))
            elif isinstance(item, dict) and isinstance(item.get("platform"), str):
                subdir = item["platform"]
                requirements = self.system_requirements(
                    {k: v for k, v in item.items() if k not in ("platform", "name")}, key
                )
                result.append(PlatformSpec(str(item.get("name", subdir)), subdir, requirements))
            else:
                raise self.fail(
                    key, f"cannot read platform {item!r}", 'use "linux-64" or { platform = "linux-64", cuda = "12" }'
                )
        for platform in result:
            try:
                Subdir(platform.subdir)
            except Exception as error:  # rattler's ParseSubdirError
                raise self.fail(
                    key, f"unknown platform '{platform.subdir}'", "use a conda subdir such as linux-64 or osx-arm64"
                ) from error
        names = [p.name for p in result]
        if len(set(names)) != len(names):
            raise self.fail(key, "a platform name is listed twice", "give each platform table its own name")
        return tuple(result)

    def system_requirements(self, value: Any, key: str) -> SystemRequirements:
        table = self.table_of(value, key)
        known = {"cuda", "glibc", "libc", "linux", "macos", "archspec"}
        unknown = sorted(set(table) - known)
        if unknown:
            raise self.fail(key, f"unknown system requirement {', '.join(unknown)}", f"use {', '.join(sorted(known))}")
        libc = table.get("glibc", table.get("libc"))
        if isinstance(libc, dict):
            libc = libc.get("version")
        return SystemRequirements(
            cuda=_version_text(table.get("cuda")),
            glibc=_version_text(libc),
            linux=_version_text(table.get("linux")),
            macos=_version_text(table.get("macos")),
            archspec=_version_text(table.get("archspec")),
        )

    def dependencies(self, value: Any, key: str) -> dict[str, str]:
        table = self.table_of(value, key)
        deps: dict[str, str] = {}
        for name, spec in table.items():
            if isinstance(spec, str):
                deps[name] = spec
            elif isinstance(spec, dict):
                deps[name] = _table_spec_text(spec)
            else:
                raise self.fail(f"{key}.{name}", "expected a version string or a table", f'write {name} = "*"')
        return deps

    def feature(self, name: str, table: dict[str, Any], prefix: str) -> Feature:
        targets = {
            target: self.dependencies(
                self.table_of(body, f"{prefix}target.{target}").get("dependencies", {}),
                f"{prefix}target.{target}.dependencies",
            )
            for target, body in self.table(table, "target").items()
        }
        platforms = table.get("platforms")
        if platforms is not None and not (isinstance(platforms, list) and all(isinstance(p, str) for p in platforms)):
            raise self.fail(f"{prefix}platforms", "expected a list of platform names", 'write platforms = ["linux-64"]')
        channels = self.channels(table.get("channels"), f"{prefix}channels") if "channels" in table else None
        return Feature(
            name=name,
            dependencies=self.dependencies(table.get("dependencies", {}), f"{prefix}dependencies"),
            target_dependencies=targets,
            pypi_dependencies=self.table(table, "pypi-dependencies"),
            channels=channels,
            platforms=tuple(platforms) if platforms is not None else None,
            system_requirements=self.system_requirements(
                table.get("system-requirements", {}), f"{prefix}system-requirements"
            ),
        )

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


def _version_text(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)


def _table_spec_text(spec: dict[str, Any]) -> str:
    """`{ version = ">=2", build = "cuda*" }` → `>=2 cuda*` (the `name version build` form)."""
    version = str(spec.get("version", "*"))
    build = spec.get("build")
    text = version
    if build:
        text += f" {build}"
    channel = spec.get("channel")
    if channel:
        text = f"{channel}::{text}"
    return text


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


def _merge_platforms(
    features: list[Feature], platforms: tuple[PlatformSpec, ...], manifest: Path, environment: str
) -> tuple[PlatformSpec, ...]:
    allowed = [p for p in platforms]
    requirements = SystemRequirements()
    for feature in features:
        requirements = requirements.merged(feature.system_requirements)
        if feature.platforms is not None:
            allowed = [p for p in allowed if p.name in feature.platforms or p.subdir in feature.platforms]
    if not allowed:
        raise UserError(
            f"environment '{environment}' has no platform left after its features' platform lists",
            path=manifest,
            fix="make the features' platforms overlap with [workspace] platforms",
        )
    return tuple(PlatformSpec(p.name, p.subdir, p.requirements.merged(requirements)) for p in allowed)


def _merge_specs(features: list[Feature], platforms: tuple[PlatformSpec, ...]) -> dict[str, dict[str, str]]:
    """Per platform name, package → spec; an earlier feature's spec wins over the default feature's."""
    result: dict[str, dict[str, str]] = {}
    for platform in platforms:
        merged: dict[str, str] = {}
        for feature in reversed(features):
            merged.update(feature.dependencies_for(platform))
        result[platform.name] = merged
    return result
