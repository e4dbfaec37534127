"""pixi.lock: read it, build it, write it byte for byte as pixi (rattler_lock, format 7) does.

`LockData` is the file as plain data: platforms, environments (channels, PyPI indexes,
solve options, package selectors per platform) and package entries (kept as the ordered
mappings rattler_lock writes, so entries round-trip untouched). Writing follows rattler_lock's
serializer: platforms and environments sorted by name, selectors and packages sorted by
(kind, id) with conda before conda_source before pypi, defaults left out.

Older formats are normalised the way pixi does it: rattler_lock reads them and writes format
7 (py-rattler here). Conda records as py-rattler's `RepoDataRecord` come from the same file.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.errors import UserError
from cli.fileio import atomic_write_bytes
from cli.lockengine import lock_yaml
from cli.lockengine.platforms import KNOWN_SUBDIRS, PlatformSpec
from cli.lockengine.virtual_packages import VirtualPackage

if TYPE_CHECKING:
    from rattler import LockFile, LockPlatform, RepoDataRecord

    from cli.lockengine.manifest import Workspace

LATEST_VERSION = 7
DEFAULT_PLATFORM = "linux-64"
CONDA = "conda"
CONDA_SOURCE = "conda_source"
PYPI = "pypi"
KIND_ORDER = {CONDA: 0, CONDA_SOURCE: 1, PYPI: 2}
OPTION_DEFAULTS = {
    "strategy": "highest",
    "channel-priority": "strict",
    "pypi-prerelease-mode": "if-necessary-or-explicit",
}


def selector_of(entry: dict[str, Any]) -> tuple[str, str]:
    """(kind, id) of a package entry or an environment's selector."""
    for kind in (CONDA, CONDA_SOURCE, PYPI):
        if kind in entry:
            return kind, str(entry[kind])
    raise ValueError(f"package entry {entry!r} is neither conda, conda_source nor pypi")


def sort_key(selector: tuple[str, str]) -> tuple[int, str]:
    return KIND_ORDER[selector[0]], selector[1]


@dataclass
class LockPlatformEntry:
    name: str
    subdir: str
    virtual_packages: list[str] = field(default_factory=list)

    def as_spec(self) -> PlatformSpec:
        packages = tuple(p for p in (VirtualPackage.parse(t) for t in self.virtual_packages) if p is not None)
        return PlatformSpec(self.name, self.subdir, packages)

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.subdir != self.name:
            out["subdir"] = self.subdir
        if self.virtual_packages:
            out["virtual-packages"] = list(self.virtual_packages)
        return out


@dataclass
class LockEnvironmentEntry:
    channels: list[dict[str, Any]] = field(default_factory=list)
    indexes: list[str] | None = None
    find_links: list[dict[str, str]] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)
    packages: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def channel_urls(self) -> list[str]:
        return [str(c.get("url", "")) for c in self.channels]

    def option(self, key: str) -> str:
        return self.options.get(key, OPTION_DEFAULTS[key])

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {"channels": copy.deepcopy(self.channels)}
        if self.indexes is not None:
            out["indexes"] = list(self.indexes)
            if self.find_links:
                out["find-links"] = copy.deepcopy(self.find_links)
        options = {
            k: self.options[k] for k in OPTION_DEFAULTS if k in self.options and self.options[k] != OPTION_DEFAULTS[k]
        }
        if options:
            out["options"] = options
        out["packages"] = {
            platform: [{kind: id_} for kind, id_ in sorted(selectors, key=sort_key)]
            for platform, selectors in sorted(self.packages.items())
        }
        return out


@dataclass
class LockData:
    """pixi.lock as plain data (format 7 once read)."""

    version: int
    platforms: list[LockPlatformEntry]
    environments: dict[str, LockEnvironmentEntry]
    packages: list[dict[str, Any]]
    source_version: int = LATEST_VERSION

    def platform(self, name: str) -> LockPlatformEntry | None:
        return next((p for p in self.platforms if p.name == name), None)

    def package(self, selector: tuple[str, str]) -> dict[str, Any] | None:
        return self._index().get(selector)

    def _index(self) -> dict[tuple[str, str], dict[str, Any]]:
        cached = self.__dict__.get("_cached_index")
        if cached is not None and cached[0] == len(self.packages):
            index_cached: dict[tuple[str, str], dict[str, Any]] = cached[1]
            return index_cached
        index: dict[tuple[str, str], dict[str, Any]] = {}
        for entry in self.packages:
            index.setdefault(selector_of(entry), entry)
        self.__dict__["_cached_index"] = (len(self.packages), index)
        return index

    def environment_packages(self, environment: str, platform: str) -> list[dict[str, Any]] | None:
        env = self.environments.get(environment)
        if env is None or platform not in env.packages:
            return None
        index = self._index()
        return [index[s] for s in env.packages[platform] if s in index]

    def render(self) -> bytes:
        """The bytes rattler_lock writes for this content (format 7)."""
        used = {s for env in self.environments.values() for sels in env.packages.values() for s in sels}
        index = self._index()
        pending = list(used)
        while pending:  # a source package's build and host packages are kept too
            entry = index.get(pending.pop())
            for selector in [
                selector_of(s) for key in ("build_packages", "host_packages") for s in (entry or {}).get(key) or []
            ]:
                if selector not in used:
                    used.add(selector)
                    pending.append(selector)
        seen: set[tuple[str, str]] = set()
        packages = []
        for entry in self.packages:
            selector = selector_of(entry)
            if selector not in used or (selector[0] == CONDA and selector in seen):
                continue
            seen.add(selector)
            packages.append(entry)
        packages.sort(key=lambda e: sort_key(selector_of(e)))
        document = {
            "version": LATEST_VERSION,
            "platforms": [p.render() for p in sorted(self.platforms, key=lambda p: p.name)],
            "environments": {name: env.render() for name, env in sorted(self.environments.items())},
            "packages": packages,
        }
        return lock_yaml.dump(document).encode("utf-8")


def parse_lock_text(text: str, path: Path) -> LockData:
    """Format 7 text → LockData, refusing what rattler_lock refuses (one UserError line)."""
    try:
        data = lock_yaml.load(text)
    except (lock_yaml.DuplicateKeyError, ValueError) as error:
        raise _unreadable(path, str(error)) from error
    except Exception as error:  # yaml.YAMLError
        first = str(error).splitlines()[0] if str(error) else "invalid YAML"
        raise _unreadable(path, f"not valid YAML: {first}") from error
    if not isinstance(data, dict):
        raise _unreadable(path, "not a pixi.lock (no version field)")
    version = data.get("version")
    if not isinstance(version, str) or not version.isdigit():
        raise _unreadable(path, "no version field")
    version = int(version)
    if version > LATEST_VERSION:
        raise UserError(
            f"lock file format version {version} is newer than this CLI reads (up to {LATEST_VERSION})",
            path=path,
            fix="update the CLI, or relock with the pixi that wrote it",
        )
    if version < LATEST_VERSION:
        raise _unreadable(path, f"format version {version} must be normalised first")
    try:
        return _lock_data(data)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise _unreadable(path, str(error)) from error


def _unreadable(path: Path, problem: str) -> UserError:
    return UserError(
        f"cannot read lock file: {problem}",
        path=path,
        fix="restore it from version control or run `python -m cli lock` again",
    )


def _valid_platform_name(name: str) -> bool:
    return bool(name) and all(c.isalnum() or c in "_-" for c in name)


def _lock_data(data: dict[str, Any]) -> LockData:
    platforms: list[LockPlatformEntry] = []
    for item in data.get("platforms") or []:
        name = str(item["name"])
        if not _valid_platform_name(name):
            raise ValueError(f"failed to parse '{name}' as a PlatformName")
        subdir = str(item.get("subdir") or name)
        if subdir not in KNOWN_SUBDIRS:
            raise ValueError(f"'{subdir}' is not a known platform (subdir)")
        if any(p.name == name for p in platforms):
            raise ValueError(f"duplicate platform name `{name}` found")
        platforms.append(LockPlatformEntry(name, subdir, [str(v) for v in item.get("virtual-packages") or []]))
    known = {p.name for p in platforms}
    environments: dict[str, LockEnvironmentEntry] = {}
    for env_name, body in (data.get("environments") or {}).items():
        body = body or {}
        packages: dict[str, list[tuple[str, str]]] = {}
        for platform, selectors in (body.get("packages") or {}).items():
            if str(platform) not in known:
                raise ValueError(f"environment `{env_name}` is using an unknown platform `{platform}`")
            packages[str(platform)] = [selector_of(s) for s in selectors or []]
        options = {str(k): str(v) for k, v in (body.get("options") or {}).items() if k in OPTION_DEFAULTS}
        environments[str(env_name)] = LockEnvironmentEntry(
            channels=[c if isinstance(c, dict) else {"url": str(c)} for c in body.get("channels") or []],
            indexes=[str(i) for i in body["indexes"]] if body.get("indexes") is not None else None,
            find_links=list(body.get("find-links") or []),
            options=options,
            packages=packages,
        )
    packages_list = [normalized_entry(entry) for entry in data.get("packages") or []]
    return LockData(LATEST_VERSION, platforms, environments, packages_list)


# field order of rattler_lock's v7 models; fields it does not know are dropped, as it does
CONDA_FIELDS = (
    "conda",
    "name",
    "version",
    "build",
    "build_number",
    "subdir",
    "noarch",
    "variants",
    "sha256",
    "md5",
    "legacy_bz2_md5",
    "depends",
    "constrains",
    "extra_depends",
    "channel",
    "features",
    "flags",
    "track_features",
    "file_name",
    "license",
    "license_family",
    "purls",
    "run_exports",
    "size",
    "legacy_bz2_size",
    "timestamp",
    "python_site_packages_path",
)
SOURCE_FIELDS = (
    "conda_source",
    "version",
    "build",
    "build_number",
    "subdir",
    "noarch",
    "variants",
    "depends",
    "constrains",
    "extra_depends",
    "features",
    "flags",
    "track_features",
    "license",
    "license_family",
    "purls",
    "run_exports",
    "size",
    "source",
    "source_depends",
    "python_site_packages_path",
    "build_packages",
    "host_packages",
)
PYPI_FIELDS = (
    "pypi",
    "name",
    "version",
    "md5",
    "sha256",
    "index",
    "requires_dist",
    "requires_python",
    "build_packages",
    "host_packages",
)
RUN_EXPORTS_FIELDS = ("weak", "strong", "noarch", "weak_constrains", "strong_constrains")
INT_FIELDS = frozenset({"build_number", "size", "legacy_bz2_size", "timestamp"})
LIST_FIELDS = frozenset(
    {"depends", "constrains", "flags", "track_features", "requires_dist", "build_packages", "host_packages"}
)
MAP_FIELDS = frozenset({"extra_depends", "source_depends"})
DISTRIBUTION_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz", ".tar")


def is_pypi_source(location: str) -> bool:
    """A local directory (not a wheel or sdist file): rattler_lock records no version or hash for it."""
    return "://" not in location and not location.lower().endswith(DISTRIBUTION_SUFFIXES)


def normalized_entry(entry: Any) -> dict[str, Any]:
    """A package entry as rattler_lock writes it: its fields in model order, empty lists left out."""
    if not isinstance(entry, dict):
        raise ValueError(f"package entry {entry!r} is not a mapping")
    kind, location = selector_of(entry)
    fields = {CONDA: CONDA_FIELDS, CONDA_SOURCE: SOURCE_FIELDS, PYPI: PYPI_FIELDS}[kind]
    out: dict[str, Any] = {}
    for key in fields:
        if key not in entry or entry[key] is None:
            continue
        value = entry[key]
        if (key in LIST_FIELDS and not value) or (key in MAP_FIELDS and not value):
            continue
        if key in INT_FIELDS:
            value = int(value)
        if key == "run_exports" and isinstance(value, dict):
            value = {k: value[k] for k in RUN_EXPORTS_FIELDS if value.get(k)}
        out[key] = value
    if kind == PYPI:
        if is_pypi_source(location):
            for key in ("version", "md5", "sha256", "index"):
                out.pop(key, None)
        elif "version" not in out:
            out = {"pypi": out.pop("pypi"), "name": out.pop("name", None), "version": MIN_VERSION, **out}
        if out.get("index") == DEFAULT_PYPI_INDEX:
            out.pop("index")
    return out


DEFAULT_PYPI_INDEX = "https://pypi.org/simple"
MIN_VERSION = "0a0.dev0"  # what rattler_lock records for a distribution that names no version


def read_lock_data(path: Path) -> LockData:
    """pixi.lock of any format rattler_lock reads, as format 7 data (older formats normalised as pixi does)."""
    if not path.is_file():
        raise UserError("no lock file", path=path, fix="run `python -m cli lock` first")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise _unreadable(path, str(error)) from error
    version = _declared_version(text)
    if version is not None and version < LATEST_VERSION:
        data = parse_lock_text(_normalised_by_rattler(path), path)
        data.source_version = version
        return data
    return parse_lock_text(text, path)


def _declared_version(text: str) -> int | None:
    for line in text.splitlines():
        if line.startswith("version:"):
            value = line.partition(":")[2].strip().strip("'\"")
            return int(value) if value.isdigit() else None
    return None


def _normalised_by_rattler(path: Path) -> str:
    """rattler_lock's reading of an older format, written back as format 7 (what pixi writes on update)."""
    lock = read_lock_file(path)
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "pixi.lock"
        lock.to_path(target)
        return target.read_text(encoding="utf-8")


def write_lock(path: Path, content: bytes) -> None:
    atomic_write_bytes(path, content)


def read_lock_file(path: Path) -> LockFile:
    """The lock as py-rattler reads it (platform names as written)."""
    from rattler import LockFile

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


def rattler_lock_of(data: LockData) -> LockFile:
    """py-rattler's view of `data` (e.g. after platform names were aligned with the manifest)."""
    from rattler import LockFile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pixi.lock"
        path.write_bytes(data.render())
        return LockFile.from_path(path)


def aligned(data: LockData, workspace: Workspace) -> LockData:
    """pixi's `align_platform_names`: lock platforms renamed to the manifest's names, matched by identity."""
    renames = platform_renames(data, workspace.all_platforms())
    if not renames:
        return data
    result = copy.deepcopy(data)
    for platform in result.platforms:
        platform.name = renames.get(platform.name, platform.name)
    for env in result.environments.values():
        env.packages = {renames.get(name, name): sels for name, sels in env.packages.items()}
    return result


def platform_renames(data: LockData, workspace_platforms: list[PlatformSpec]) -> dict[str, str]:
    """Lock platform name → manifest name, for unambiguous identity matches that collide with nothing."""
    locked_names = {p.name for p in data.platforms}
    renames: dict[str, str] = {}
    for locked in data.platforms:
        spec = locked.as_spec()
        if any(w.name == locked.name for w in workspace_platforms):
            continue
        matching = [w for w in workspace_platforms if w.identity == spec.identity]
        if len(matching) != 1 or matching[0].name in locked_names:
            continue
        renames[locked.name] = matching[0].name
    return renames


def read_lock(workspace: Workspace) -> LockFile:
    """The workspace's lock as py-rattler reads it, platform names aligned with pixi.toml (as pixi loads it)."""
    data = read_lock_data(workspace.lock_path)
    if not platform_renames(data, workspace.all_platforms()):
        return read_lock_file(workspace.lock_path)
    return rattler_lock_of(aligned(data, workspace))


def lock_format_version(path: Path) -> int:
    try:
        version = _declared_version(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UserError(f"cannot read lock file: {error}", path=path, fix="restore it or lock again") from error
    if version is None:
        raise UserError("lock file has no version field", path=path, fix="restore it or lock again")
    return version


def find_platform(lock: LockFile, name: str) -> LockPlatform | None:
    """A lock platform by name, or by subdir when exactly one platform has that subdir."""
    platforms = list(lock.platforms())
    for platform in platforms:
        if platform.name == name:
            return platform
    by_subdir = [p for p in platforms if str(p.subdir) == name]
    return by_subdir[0] if len(by_subdir) == 1 else None


def environment_records(lock: LockFile, environment: str, platform: str) -> list[RepoDataRecord] | None:
    """The conda records of one environment and platform, or None when the lock has no such pair."""
    env = lock.environment(environment)
    if env is None:
        return None
    mine = list(env.platforms())
    named = [p for p in mine if p.name == platform]
    by_subdir = [p for p in mine if str(p.subdir) == platform]
    lock_platform = named[0] if named else by_subdir[0] if len(by_subdir) == 1 else None
    if lock_platform is None:
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
