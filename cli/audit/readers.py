"""Read any lock file this project meets into one plain shape: environment → platform → packages.

- pixi.lock, every format rattler_lock reads: read by `cli.lockengine.lockfile` (format 7 as is,
  older formats normalised by rattler_lock as pixi does), refusing what rattler_lock refuses (a
  future format, duplicate or invalid platforms). Conda packages (name, version and build from the
  archive name where the entry leaves them out), v7 conda source packages (`conda_source:`, each
  variant its own package) and PyPI packages (wheels, sdists, paths, relative and dynamic ones).
  A platform is keyed by its subdir where the environment has one platform of that subdir
  (pixi writes named platforms as `p1`, `p2`, …), else by its name;
- conda-lock.yml (version 1, what `cli export` writes and micromamba installs);
- `@EXPLICIT` files (one archive URL per line, `#md5` or `#sha256:` fragment).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import yaml
from rattler import RepoDataRecord

from cli.errors import UserError
from cli.lockengine.lockfile import LockData, read_lock_data

DYNAMIC = "dynamic"
ARCHIVE_SUFFIXES = (".conda", ".tar.bz2")
DEFAULT_ENVIRONMENT = "default"
CONDA = "conda"
PYPI = "pypi"
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")


@dataclass(frozen=True)
class LockedPackage:
    """One package as a lock pins it; fields a format does not record are None or empty."""

    kind: str
    name: str
    version: str
    build: str = ""
    url: str = ""
    sha256: str | None = None
    md5: str | None = None
    subdir: str | None = None
    license: str | None = None
    depends: tuple[str, ...] = ()
    constrains: tuple[str, ...] = ()
    track_features: tuple[str, ...] = ()
    variant: str = ""  # a conda source package's variant hash (`name[hash] @ path`)
    source: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, f"{self.name}[{self.variant}]" if self.variant else self.name)

    @property
    def label(self) -> str:
        """`name` for conda packages (`name[variant] (source)` for source ones), `name (pypi)` for PyPI ones."""
        if self.kind == PYPI:
            return f"{self.name} (pypi)"
        if self.source:
            return f"{self.name}[{self.variant}] (source)" if self.variant else f"{self.name} (source)"
        return self.name

    @property
    def spec(self) -> str:
        """`version build`, as a person reads a pin."""
        return f"{self.version} {self.build}".strip()

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "url": self.url,
            "sha256": self.sha256,
            "md5": self.md5,
        }


Packages = dict[tuple[str, str], LockedPackage]


@dataclass
class LockSnapshot:
    """Everything a lock file pins, per environment and platform."""

    path: Path
    format: str
    packages: dict[str, dict[str, Packages]] = field(default_factory=dict)
    channels: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def selections(self) -> list[tuple[str, str]]:
        return sorted((env, platform) for env, platforms in self.packages.items() for platform in platforms)

    def add(self, environment: str, platform: str, package: LockedPackage) -> None:
        self.packages.setdefault(environment, {}).setdefault(platform, {})[package.key] = package


def archive_name(url: str) -> str:
    """The file name at the end of a URL or path (`…/numpy-2.0.0-py312_h0_0.conda` → that name)."""
    path = urlparse(url).path if "://" in url else url
    return unquote(path.rstrip("/").rsplit("/", 1)[-1])


def is_archive(url: str) -> bool:
    return archive_name(url).endswith(ARCHIVE_SUFFIXES)


def split_archive_name(file_name: str) -> tuple[str, str, str] | None:
    """`name-version-build.conda` → (name, version, build); None if it is not a conda archive name."""
    for suffix in ARCHIVE_SUFFIXES:
        if file_name.endswith(suffix):
            stem = file_name[: -len(suffix)]
            parts = stem.rsplit("-", 2)
            if len(parts) == 3 and all(parts):
                return parts[0], parts[1], parts[2]
    return None


def subdir_of_url(url: str) -> str | None:
    """The channel subdir an archive URL lives in (the folder above the file), if it looks like one."""
    path = urlparse(url).path if "://" in url else url
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and is_archive(url):
        folder = parts[-2]
        if folder == "noarch" or "-" in folder:
            return folder
    return None


def from_record(record: RepoDataRecord) -> LockedPackage:
    """A py-rattler record (from pixi.lock via `cli.lockengine.lockfile`) in the reader's shape."""
    return LockedPackage(
        kind=CONDA,
        name=record.name.normalized,
        version=str(record.version),
        build=str(record.build),
        url=record.url,
        sha256=record.sha256.hex() if record.sha256 else None,
        md5=record.md5.hex() if record.md5 else None,
        subdir=record.subdir,
        license=record.license,
        depends=tuple(record.depends),
        constrains=tuple(record.constrains),
        track_features=tuple(str(f) for f in record.track_features or []),
    )


def read_snapshot(path: Path) -> LockSnapshot:
    """Read pixi.lock (versions 4-7), conda-lock.yml or an @EXPLICIT file; a UserError for anything else."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise UserError("no such lock file", path=path, fix="check the path") from error
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read lock file: {error}", path=path, fix="pass a pixi.lock or an export") from error
    if any(line.strip() == "@EXPLICIT" for line in text.splitlines()):
        return _read_explicit(path, text)
    try:
        data = yaml.load(text, Loader=_LOADER)  # a safe loader (the C one when present)
    except yaml.YAMLError as error:
        first = str(error).splitlines()[0] if str(error) else "invalid YAML"
        raise UserError(f"not valid YAML: {first}", path=path, fix="restore the file from version control") from error
    if not isinstance(data, dict):
        raise UserError(
            "not a lock file (neither pixi.lock, conda-lock.yml nor @EXPLICIT)",
            path=path,
            fix="pass a pixi.lock, an envs/<flavor>/conda-lock.yml or an @EXPLICIT file",
        )
    if "environments" in data:
        return _read_pixi(path)
    if "package" in data and "metadata" in data:
        if str(data.get("version")) != "1":
            raise UserError(
                f"conda-lock format version {data.get('version')!r} is not read (version 1 is)",
                path=path,
                fix="export it again with a conda-lock that writes version 1",
            )
        return _read_conda_lock(path, data)
    raise UserError(
        "not a lock file (neither pixi.lock, conda-lock.yml nor @EXPLICIT)",
        path=path,
        fix="pass a pixi.lock, an envs/<flavor>/conda-lock.yml or an @EXPLICIT file",
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    return tuple(str(v) for v in value)


def _conda_package(entry: dict[str, Any], url: str) -> LockedPackage:
    derived = split_archive_name(archive_name(url))
    name = _text(entry.get("name")) or (derived[0] if derived else None)
    version = _text(entry.get("version")) or (derived[1] if derived else None)
    build = _text(entry.get("build")) or (derived[2] if derived else "")
    if not name or not version:
        raise ValueError(f"conda package {url!r} names neither its name nor its version")
    return LockedPackage(
        kind=CONDA,
        name=name,
        version=version,
        build=build,
        url=url,
        sha256=_text(entry.get("sha256")),
        md5=_text(entry.get("md5")),
        subdir=_text(entry.get("subdir")) or subdir_of_url(url),
        license=_text(entry.get("license")),
        depends=_strings(entry.get("depends")),
        constrains=_strings(entry.get("constrains")),
        track_features=_strings(entry.get("track_features")),
    )


def _pypi_package(entry: dict[str, Any], url: str) -> LockedPackage:
    """A PyPI package; a local source tree records no version (pixi reads it from the tree), shown as `dynamic`."""
    name = _text(entry.get("name"))
    version = _text(entry.get("version")) or DYNAMIC
    if not name:
        raise ValueError(f"pypi package {url!r} names no package")
    hashes: dict[str, Any] = entry["hash"] if isinstance(entry.get("hash"), dict) else {}
    return LockedPackage(
        kind=PYPI,
        name=name,
        version=version,
        url=url,
        sha256=_text(entry.get("sha256") or hashes.get("sha256")),
        md5=_text(entry.get("md5") or hashes.get("md5")),
        license=_text(entry.get("license")),
        depends=_strings(entry.get("requires_dist")),
    )


def from_pypi_entry(entry: dict[str, Any]) -> LockedPackage:
    """A pixi.lock `pypi:` entry (as `cli.lockengine.pypi.locked_pypi` returns it) as a package."""
    return _pypi_package(entry, str(entry["pypi"]))


def _source_package(entry: dict[str, Any], identifier: str) -> LockedPackage:
    """A v7 `conda_source: "name[hash] @ location"` entry; the hash keeps variants apart."""
    name, _, rest = identifier.partition("[")
    variant = rest.split("]")[0] if rest else ""
    location = identifier.partition(" @ ")[2]
    return LockedPackage(
        kind=CONDA,
        name=name.strip(),
        version=_text(entry.get("version")) or "",
        build=_text(entry.get("build")) or "",
        url=location,
        subdir=_text(entry.get("subdir")),
        license=_text(entry.get("license")),
        depends=_strings(entry.get("depends")),
        constrains=_strings(entry.get("constrains")),
        variant=variant,
        source=True,
    )


def _platform_keys(data: LockData, environment: str) -> dict[str, str]:
    """Lock platform name → the key the audit shows: its subdir where that is unique in the environment."""
    names = list(data.environments[environment].packages)
    subdirs = {name: (data.platform(name).subdir if data.platform(name) else name) for name in names}  # type: ignore[union-attr]
    values = list(subdirs.values())
    return {name: subdir if values.count(subdir) == 1 else name for name, subdir in subdirs.items()}


def _read_pixi(path: Path) -> LockSnapshot:
    data = read_lock_data(path)
    snapshot = LockSnapshot(path, f"pixi.lock v{data.source_version}")
    try:
        for env_name, env in data.environments.items():
            snapshot.channels[env_name] = tuple(env.channel_urls())
            snapshot.packages.setdefault(env_name, {})
            keys = _platform_keys(data, env_name)
            for platform, selectors in env.packages.items():
                snapshot.packages[env_name].setdefault(keys[platform], {})
                for kind, identifier in selectors:
                    entry = data.package((kind, identifier))
                    if entry is None:
                        raise ValueError(
                            f"environment {env_name} [{platform}] names {identifier}, which is not in packages"
                        )
                    if kind == CONDA:
                        package = _conda_package(entry, identifier)
                    elif kind == "conda_source":
                        package = _source_package(entry, identifier)
                    else:
                        package = _pypi_package(entry, identifier)
                    snapshot.add(env_name, keys[platform], package)
    except (ValueError, TypeError, AttributeError) as error:
        raise UserError(
            f"cannot read {snapshot.format}: {error}", path=path, fix="restore it from version control"
        ) from error
    return snapshot


def _channel_url(channel: Any) -> str:
    if isinstance(channel, dict):
        return str(channel.get("url", ""))
    return str(channel)


def _read_conda_lock(path: Path, data: dict[str, Any]) -> LockSnapshot:
    """conda-lock.yml version 1: one environment (named by our exports' custom metadata, else `default`)."""
    metadata = data.get("metadata") or {}
    custom = metadata.get("custom_metadata") or {}
    environment = str(custom.get("pixi-lock-environment") or DEFAULT_ENVIRONMENT)
    snapshot = LockSnapshot(path, f"conda-lock.yml v{data.get('version')}")
    snapshot.channels[environment] = tuple(_channel_url(c) for c in metadata.get("channels") or [])
    for platform in metadata.get("platforms") or []:
        snapshot.packages.setdefault(environment, {}).setdefault(str(platform), {})
    try:
        for entry in data.get("package") or []:
            manager = entry.get("manager", CONDA)
            url = str(entry.get("url") or "")
            hashes = entry.get("hash") or {}
            common = {"sha256": hashes.get("sha256"), "md5": hashes.get("md5")}
            if manager == CONDA:
                package = _conda_package({**entry, **common, "depends": _conda_lock_depends(entry)}, url)
            else:
                package = _pypi_package({**entry, **common}, url)
            snapshot.add(environment, str(entry["platform"]), package)
    except (KeyError, ValueError, TypeError, AttributeError) as error:
        raise UserError(f"cannot read conda-lock file: {error}", path=path, fix="export it again") from error
    return snapshot


def _conda_lock_depends(entry: dict[str, Any]) -> list[str]:
    deps = entry.get("dependencies") or {}
    return [f"{name} {spec}".strip() if spec not in ("", "*") else name for name, spec in deps.items()]


def _read_explicit(path: Path, text: str) -> LockSnapshot:
    """An @EXPLICIT file: environment from our export header (else `default`), platform from `# platform:`."""
    environment = DEFAULT_ENVIRONMENT
    platform: str | None = None
    urls: list[tuple[str, str]] = []
    header = re.compile(r"pixi\.lock environment '([^']+)'")
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            match = header.search(stripped)
            if match:
                environment = match.group(1)
            if stripped.startswith("# platform:"):
                platform = stripped.split(":", 1)[1].strip()
            continue
        if not stripped or stripped == "@EXPLICIT":
            continue
        url, _, fragment = stripped.partition("#")
        urls.append((url, fragment))
    if platform is None:
        name = path.name
        platform = name[: -len(".explicit")] if name.endswith(".explicit") else None
    if platform is None:
        platform = next((s for s in (subdir_of_url(u) for u, _ in urls) if s and s != "noarch"), "noarch")
    snapshot = LockSnapshot(path, "@EXPLICIT")
    snapshot.packages.setdefault(environment, {}).setdefault(platform, {})
    try:
        for url, fragment in urls:
            digest = fragment.removeprefix("sha256:")
            sha256 = digest if _HEX64.match(digest) else None
            md5 = fragment if _HEX32.match(fragment) else None
            snapshot.add(environment, platform, _conda_package({"sha256": sha256, "md5": md5}, url))
    except ValueError as error:
        raise UserError(f"cannot read @EXPLICIT file: {error}", path=path, fix="export it again") from error
    return snapshot
