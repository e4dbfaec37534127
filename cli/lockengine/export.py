"""envs/<flavor>/: what the images consume, derived from pixi.lock alone.

- `conda-lock.yml`: conda-lock's v1 format (`micromamba create -f` installs it; the images keep it
  as the record of what they hold), written by conda-lock's own writer; PyPI packages go in as
  conda-lock's `manager: pip` entries;
- `<subdir>.explicit`: an `@EXPLICIT` file in dependency order, rendered by conda-lock. It has no
  place for PyPI packages: exporting an environment that has some is refused with one line,
  unless asked to leave them out (`--ignore-pypi-errors`, as pixi's own export calls it).

Conda tools know subdirs, not pixi's platform names: a named platform (`linux-64-cuda-12`) is
written as its subdir (`linux-64`) in the file name, `# platform:` and conda-lock's `platform`.
A package without a hash cannot be exported (conda-lock needs one): one line, exit 2.
Both files are byte-stable and record the sha256 of the flavor's content in pixi.lock, so a
stale export is found by rendering again and comparing bytes.

`export` also writes the Docker path's split of the flavors (`cli.lockengine.shared_export`):
`envs/_shared/<subdir>.explicit` (what every flavor shares) and `envs/<flavor>/<subdir>.own.explicit`.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.requirements import InvalidRequirement, Requirement

from cli.errors import UserError
from cli.fileio import atomic_write_text
from cli.flavors import Flavor, discover_flavors
from cli.lockengine.lockfile import (
    LockData,
    aligned,
    environment_records,
    locked_records,
    read_lock,
    read_lock_data,
    read_lock_file,
)
from cli.lockengine.manifest import Workspace

if TYPE_CHECKING:  # conda-lock is imported where an export is rendered: it is slow to import
    from conda_lock.lockfile.v2prelim.models import LockedDependency, Lockfile
    from rattler import LockFile, RepoDataRecord

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
    """One flavor's slice of pixi.lock: its channels, conda records and PyPI packages per subdir."""

    flavor: str
    channels: list[str]
    records: dict[str, list[RepoDataRecord]]
    pypi: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def digest(self) -> str:
        """sha256 of exactly what the export is made of, stable across unrelated lock changes."""
        content: dict[str, Any] = {
            "environment": self.flavor,
            "channels": self.channels,
            "packages": {
                platform: sorted(f"{r.url}#{r.sha256.hex() if r.sha256 else ''}" for r in records)
                for platform, records in sorted(self.records.items())
            },
        }
        if any(self.pypi.values()):
            content["pypi"] = {
                platform: sorted(f"{e['pypi']}#{e.get('sha256', '')}" for e in entries)
                for platform, entries in sorted(self.pypi.items())
            }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def only(self, platform: str) -> FlavorLock:
        """This flavor on one platform (its digest stays the whole flavor's, as the headers record it)."""
        return _OnePlatform(self.flavor, self.channels, {platform: self.records[platform]}, {}, self.digest())


@dataclass(frozen=True)
class _OnePlatform(FlavorLock):
    whole_digest: str = ""

    def digest(self) -> str:
        return self.whole_digest


def export_keys(workspace: Workspace, flavor: str) -> dict[str, str]:
    """Platform name → what conda tools call it: its subdir, or its name where two platforms share one."""
    platforms = workspace.resolve(flavor).platforms
    subdirs = [p.subdir for p in platforms]
    return {p.name: p.subdir if subdirs.count(p.subdir) == 1 else p.name for p in platforms}


def export_paths(workspace: Workspace, flavor: str, platforms: list[str] | None = None) -> ExportPaths:
    folder = workspace.root / ENVS_DIR / flavor
    if platforms is None:
        platforms = sorted(export_keys(workspace, flavor).values())
    return ExportPaths(folder, folder / CONDA_LOCK_NAME, {p: folder / f"{p}.explicit" for p in platforms})


def flavor_lock(lock: LockFile, workspace: Workspace, flavor: str) -> FlavorLock:
    keys = export_keys(workspace, flavor)
    for name in keys:
        locked_records(workspace, flavor, name, lock=lock)  # an error naming the fix if the lock lacks it
    data = aligned(read_lock_data(workspace.lock_path), workspace)
    return environment_lock(data, lock, flavor, keys, workspace.lock_path)


def environment_lock(data: LockData, lock: LockFile, environment: str, keys: dict[str, str], path: Path) -> FlavorLock:
    """One environment of a lock, keyed for conda tools; a package they cannot take is one UserError line."""
    env = lock.environment(environment)
    if env is None or environment not in data.environments:
        raise UserError(f"environment '{environment}' is not in the lock", path=path, fix="run `python -m cli lock`")
    records: dict[str, list[RepoDataRecord]] = {}
    pypi: dict[str, list[dict[str, Any]]] = {}
    for name, key in keys.items():
        selectors = data.environments[environment].packages.get(name, [])
        source = next((i for kind, i in selectors if kind == "conda_source"), None)
        if source is not None:
            raise UserError(
                f"environment '{environment}' [{key}] holds the source package {source}, "
                "which conda tools cannot install",
                path=path,
                fix="build it with pixi; only binary packages can be exported",
            )
        records[key] = environment_records(lock, environment, name) or []
        pypi[key] = [e for e in data.environment_packages(environment, name) or [] if "pypi" in e]
        for record in records[key]:
            if record.sha256 is None and record.md5 is None:
                raise UserError(
                    f"{record.file_name} in environment '{environment}' [{key}] has no sha256 or md5 in the lock",
                    path=path,
                    fix="conda-lock and micromamba need a hash for every package; "
                    "lock again from a channel that has them",
                )
    return FlavorLock(environment, [str(c) for c in env.channels()], records, pypi)


def lock_exports(path: Path, ignore_pypi: bool = False) -> dict[str, dict[str, str] | UserError]:
    """For every environment of any lock file (no workspace needed): its conda-lock.yml and `<subdir>.explicit`
    texts, or the one-line reason they cannot be made."""
    data = read_lock_data(path)
    lock = read_lock_file(path)  # platform names as written, like `data`
    result: dict[str, dict[str, str] | UserError] = {}
    for environment, entry in data.environments.items():
        subdirs = {n: (data.platform(n).subdir if data.platform(n) else n) for n in entry.packages}  # type: ignore[union-attr]
        values = list(subdirs.values())
        keys = {n: d if values.count(d) == 1 else n for n, d in subdirs.items()}
        try:
            locked = environment_lock(data, lock, environment, keys, path)
            rendered = {CONDA_LOCK_NAME: render_conda_lock(locked, ignore_pypi=ignore_pypi and _has_local_pypi(locked))}
            for key in sorted(locked.records):
                rendered[f"{key}.explicit"] = render_explicit(locked, key, ignore_pypi)
            result[environment] = rendered
        except UserError as error:
            result[environment] = error
    return result


def _split_dependency(spec: str) -> tuple[str, str]:
    name, _, rest = spec.strip().partition(" ")
    return name, rest.strip() or "*"


def _locked_dependency(record: RepoDataRecord, platform: str) -> LockedDependency:
    from conda_lock.lockfile.v1.models import HashModel
    from conda_lock.lockfile.v2prelim.models import LockedDependency

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


def _pip_dependency(entry: dict[str, Any], platform: str) -> LockedDependency:
    from conda_lock.lockfile.v1.models import HashModel
    from conda_lock.lockfile.v2prelim.models import LockedDependency

    dependencies = {}
    for text in entry.get("requires_dist") or []:
        try:
            requirement = Requirement(str(text))
        except InvalidRequirement:
            continue
        if requirement.marker is None or "extra" not in str(requirement.marker):
            dependencies[requirement.name] = str(requirement.specifier) or "*"
    location = str(entry["pypi"])
    if "://" not in location:
        raise UserError(
            f"the PyPI package {entry['name']} comes from the local path {location}, "
            "which a conda-lock file cannot carry",
            fix="export without it (--ignore-pypi-errors), or install the environment with `python -m cli install`",
        )
    return LockedDependency(
        name=str(entry["name"]),
        version=str(entry.get("version") or "0"),
        manager="pip",
        platform=platform,
        dependencies=dependencies,
        url=location,
        hash=HashModel(sha256=entry.get("sha256"), md5=entry.get("md5")),
        categories={"main"},
    )


def conda_lock_model(flavor_lock: FlavorLock, with_pypi: bool = True) -> Lockfile:
    from conda_lock.lockfile.v1.models import LockMeta
    from conda_lock.lockfile.v2prelim.models import Lockfile
    from conda_lock.models.channel import Channel as CondaLockChannel

    subdirs = {platform: _subdir_of(flavor_lock, platform) for platform in flavor_lock.records}
    if len(set(subdirs.values())) != len(subdirs):
        raise UserError(
            f"environment '{flavor_lock.flavor}' has two platforms of one subdir, "
            "which a conda-lock file cannot tell apart",
            fix="export the environment with one platform per subdir",
        )
    packages = [
        _locked_dependency(record, subdirs[platform])
        for platform, records in sorted(flavor_lock.records.items())
        for record in sorted(records, key=lambda r: r.name.normalized)
    ]
    if with_pypi:
        packages += [
            _pip_dependency(entry, subdirs[platform])
            for platform, entries in sorted(flavor_lock.pypi.items())
            for entry in sorted(entries, key=lambda e: str(e["name"]))
        ]
    digest = flavor_lock.digest()
    return Lockfile(
        package=packages,
        metadata=LockMeta(
            content_hash={subdir: digest for subdir in sorted(subdirs.values())},
            channels=[CondaLockChannel.from_string(url) for url in flavor_lock.channels],
            platforms=sorted(subdirs.values()),
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


def render_conda_lock(flavor_lock: FlavorLock, ignore_pypi: bool = False) -> str:
    from conda_lock.lockfile import write_conda_lock_file

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / CONDA_LOCK_NAME
        write_conda_lock_file(
            conda_lock_model(flavor_lock, with_pypi=not ignore_pypi),
            path,
            metadata_choices=None,
            include_help_text=False,
        )
        body = path.read_text(encoding="utf-8")
    header = [
        *_header(flavor_lock),
        f"# Install: micromamba create -y -p /opt/conda/envs/flavor -f {CONDA_LOCK_NAME}",
    ]
    return "\n".join(header) + "\n" + body


def render_explicit(flavor_lock: FlavorLock, platform: str, ignore_pypi: bool = False) -> str:
    from conda_lock.conda_lock import render_lockfile_for_platform

    pypi = flavor_lock.pypi.get(platform) or []
    if pypi and not ignore_pypi:
        raise UserError(
            f"environment '{flavor_lock.flavor}' [{platform}] has PyPI packages "
            f"({', '.join(sorted(str(e['name']) for e in pypi))}), "
            "which an @EXPLICIT file has no place for",
            fix="leave them out with --ignore-pypi-errors, or use conda-lock.yml, which carries them",
        )
    subdir = _subdir_of(flavor_lock, platform)
    lines = render_lockfile_for_platform(
        lockfile=conda_lock_model(flavor_lock.only(platform), with_pypi=False),
        include_dev_dependencies=False,
        extras=None,
        kind="explicit",
        platform=subdir,
    )
    lines = [f"# platform: {subdir}" if line.startswith("# platform:") else line for line in lines]
    left_out = [f"# PyPI packages left out: {', '.join(sorted(str(e['name']) for e in pypi))}"] if pypi else []
    return "\n".join([*_header(flavor_lock), *left_out, *lines]) + "\n"


def _subdir_of(flavor_lock: FlavorLock, platform: str) -> str:
    subdirs = {str(r.subdir) for r in flavor_lock.records.get(platform, []) if str(r.subdir) != "noarch"}
    return subdirs.pop() if len(subdirs) == 1 else platform


def render_exports(workspace: Workspace, flavor: str, lock: LockFile, ignore_pypi: bool = False) -> dict[Path, str]:
    locked = flavor_lock(lock, workspace, flavor)
    paths = export_paths(workspace, flavor, sorted(locked.records))
    rendered = {paths.conda_lock: render_conda_lock(locked, ignore_pypi=ignore_pypi and _has_local_pypi(locked))}
    for platform, path in paths.explicit.items():
        rendered[path] = render_explicit(locked, platform, ignore_pypi)
    return rendered


def _has_local_pypi(locked: FlavorLock) -> bool:
    return any("://" not in str(e["pypi"]) for entries in locked.pypi.values() for e in entries)


def write_exports(workspace: Workspace, flavors: list[Flavor] | None = None, ignore_pypi: bool = False) -> list[Path]:
    """Render every flavor's exports first, then write: a flavor missing from the lock leaves no file touched."""
    from cli.lockengine.shared_export import split_exports

    lock = read_lock(workspace)
    chosen = flavors if flavors is not None else discover_flavors(workspace)
    rendered: dict[Path, str] = {}
    for flavor in chosen:
        rendered.update(render_exports(workspace, flavor.name, lock, ignore_pypi))
    for split in split_exports(workspace, lock, [flavor.name for flavor in chosen]):
        rendered[split.path] = split.text
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
        problems += _stale(rendered)
    problems += _stale_split_exports(workspace, lock)
    return problems


def _stale(rendered: dict[Path, str]) -> list[str]:
    problems = []
    for path, text in rendered.items():
        if not path.exists():
            problems.append(f"{path}: missing (run `python -m cli export`)")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from pixi.lock (run `python -m cli export`)")
    return problems


def _stale_split_exports(workspace: Workspace, lock: LockFile) -> list[str]:
    """The Docker path's split exports; none to judge while a flavor cannot be exported (already a finding)."""
    from cli.lockengine.shared_export import split_exports

    try:
        splits = split_exports(workspace, lock)
    except UserError:
        return []
    return _stale({split.path: split.text for split in splits})
