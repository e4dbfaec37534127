"""An installed environment against the lock: packages first, then every file against its package's hashes.

A prefix made by `cli install` (py-rattler) or by micromamba in an image records each package in
`conda-meta/<name>-<version>-<build>.json`: the archive's name, version, build, sha256 and url, and
`paths_data`, the package's own `paths.json` entries (path, type, sha256, size; `sha256_in_prefix`
when the installer rewrote a prefix placeholder or wrote a link). From those:

- packages: missing (locked, not installed), extra (installed, not locked), different (version,
  build or archive sha256 differ from the lock);
- files: modified (hash or type differs), missing, and unexpected (in the prefix, owned by no
  package; `conda-meta/`, the installer's `CACHEDIR.TAG` and Python byte-code caches excepted);
  a modified file that is a hard link into the package cache it was installed from
  (`modified-in-cache`) means the cache entry is damaged too: the finding says how to repair both;
- PyPI packages (installed by uv after the conda ones, `cli.lockengine.pypi`): the lock's `pypi:`
  entries for the environment and platform against the `*.dist-info` folders in site-packages
  that no conda package owns (`cli.audit.distributions`), by PEP 503 name: missing, extra,
  different version, each labelled `name (pypi)`. Each distribution's RECORD rows become path
  entries checked like paths.json's (a row without a hash: presence only; byte code: never
  hashed), so its files are owned, not unexpected; a row leaving the prefix is refused as a
  finding (`outside-prefix`);
- an overlay folder (a runner's venv over the prefix): its distributions, CUDA runtime wheels
  (`nvidia-*-cu1x`) that duplicate a conda CUDA library or add a second CUDA stack next to the
  prefix's conda one (what the runner's guard refuses), and distributions that shadow the prefix's.

Hashing is `cli.file_hashing`'s: batches of files on a thread pool, one worker inline.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from rattler import Subdir

from cli.audit.distributions import RECORD, InstalledDistribution, installed_distributions
from cli.audit.findings import Finding
from cli.audit.readers import CONDA, DYNAMIC, LockedPackage, from_pypi_entry, from_record
from cli.cuda import CONDA_CUDA_MARKERS, conda_packages_for_cuda_wheel, cuda_wheel_library
from cli.errors import UserError
from cli.file_hashing import hash_all, sha256_of
from cli.lockengine.lockfile import locked_records, read_lock
from cli.lockengine.manifest import Workspace
from cli.lockengine.pypi import locked_pypi

CONDA_META = "conda-meta"
# Written into every prefix by the installer itself, not by a package.
INSTALLER_FILES = frozenset({"CACHEDIR.TAG", ".nonadmin"})
CACHE_DIRS = frozenset({"__pycache__"})
CACHE_SUFFIXES = (".pyc",)
LINK_TYPES = frozenset({"softlink"})
DIRECTORY_TYPES = frozenset({"directory"})
# Entries an installer may record but which a Python run rewrites at will.
VOLATILE_TYPES = frozenset({"pyc_file"})


@dataclass(frozen=True)
class PathEntry:
    path: str
    path_type: str
    sha256: str | None
    sha256_in_prefix: str | None
    size: int | None
    listed_in: str = "paths.json"  # where the hash comes from: conda's paths.json or a distribution's RECORD

    @property
    def expected(self) -> str | None:
        return self.sha256_in_prefix or self.sha256


@dataclass(frozen=True)
class InstalledPackage:
    package: LockedPackage
    meta_file: str
    paths: tuple[PathEntry, ...]
    cache_entry: str | None = None  # the package cache folder it was linked from (py-rattler records it)


@dataclass(frozen=True)
class PackageDifference:
    name: str
    locked: LockedPackage
    installed: LockedPackage
    fields: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fields": list(self.fields),
            "locked": self.locked.as_dict(),
            "installed": self.installed.as_dict(),
        }


@dataclass(frozen=True, order=True)
class FileProblem:
    path: str
    problem: str
    package: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "problem": self.problem, "package": self.package, "detail": self.detail}


@dataclass(frozen=True, order=True)
class Distribution:
    name: str
    version: str
    location: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "location": self.location}


@dataclass
class OverlayReport:
    folder: Path
    distributions: list[Distribution] = field(default_factory=list)
    # (wheel, the conda packages it competes with, how)
    duplicate_cuda: list[tuple[Distribution, tuple[str, ...], str]] = field(default_factory=list)
    cuda_wheels: list[Distribution] = field(default_factory=list)
    shadowed: list[tuple[Distribution, Distribution]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "distributions": [d.as_dict() for d in self.distributions],
            "cuda_wheels": [d.as_dict() for d in self.cuda_wheels],
            "duplicate_cuda": [
                {"wheel": d.as_dict(), "conda_packages": list(p), "relation": how} for d, p, how in self.duplicate_cuda
            ],
            "shadowed": [{"overlay": o.as_dict(), "prefix": b.as_dict()} for o, b in self.shadowed],
        }


@dataclass
class HashStats:
    files_checked: int = 0
    files_hashed: int = 0
    bytes_hashed: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "files_checked": self.files_checked,
            "files_hashed": self.files_hashed,
            "bytes_hashed": self.bytes_hashed,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class PrefixAudit:
    prefix: Path
    flavor: str
    platform: str
    installed: int = 0
    locked: int = 0
    pypi_installed: int = 0  # distributions in site-packages that no conda package installed
    pypi_locked: int = 0
    missing_packages: list[LockedPackage] = field(default_factory=list)
    extra_packages: list[LockedPackage] = field(default_factory=list)
    different_packages: list[PackageDifference] = field(default_factory=list)
    files: list[FileProblem] = field(default_factory=list)
    unreadable: list[Finding] = field(default_factory=list)
    overlay: OverlayReport | None = None
    stats: HashStats = field(default_factory=HashStats)

    def findings(self) -> list[Finding]:
        found = list(self.unreadable)
        found += [
            Finding("package-missing", p.label, f"{p.spec} is locked, not installed") for p in self.missing_packages
        ]
        found += [Finding("package-extra", p.label, f"{p.spec} is installed, not locked") for p in self.extra_packages]
        for diff in self.different_packages:
            parts = [
                f"{name}: locked {getattr(diff.locked, name)}, installed {getattr(diff.installed, name)}"
                for name in diff.fields
            ]
            found.append(Finding("package-different", diff.locked.label, "; ".join(parts)))
        for problem in self.files:
            owner = f" (of {problem.package})" if problem.package else ""
            detail = f"{problem.detail}{owner}".strip()
            found.append(Finding(f"file-{problem.problem}", problem.path, detail))
        if self.overlay is not None:
            for wheel, packages, how in self.overlay.duplicate_cuda:
                found.append(
                    Finding(
                        "overlay-duplicate-cuda",
                        wheel.name,
                        f"{wheel.version} in {wheel.location}: {how} {', '.join(packages)}",
                    )
                )
            for over, base in self.overlay.shadowed:
                found.append(
                    Finding(
                        "overlay-shadows-base",
                        over.name,
                        f"{over.version} in {over.location} shadows {base.version} in the prefix",
                    )
                )
        return sorted(found)

    def as_dict(self) -> dict[str, Any]:
        return {
            "prefix": str(self.prefix),
            "flavor": self.flavor,
            "platform": self.platform,
            "packages": {"installed": self.installed, "locked": self.locked},
            "pypi_packages": {"installed": self.pypi_installed, "locked": self.pypi_locked},
            "missing_packages": [p.as_dict() for p in self.missing_packages],
            "extra_packages": [p.as_dict() for p in self.extra_packages],
            "different_packages": [d.as_dict() for d in self.different_packages],
            "files": [f.as_dict() for f in self.files],
            "overlay": self.overlay.as_dict() if self.overlay else None,
            "stats": self.stats.as_dict(),
            "findings": [f.as_dict() for f in self.findings()],
        }


# --- reading conda-meta -------------------------------------------------------------------------


def _path_entries(data: dict[str, Any]) -> tuple[PathEntry, ...]:
    paths_data = data.get("paths_data")
    if isinstance(paths_data, dict) and isinstance(paths_data.get("paths"), list):
        entries = []
        for item in paths_data["paths"]:
            entries.append(
                PathEntry(
                    path=str(item["_path"]),
                    path_type=str(item.get("path_type", "hardlink")),
                    sha256=item.get("sha256"),
                    sha256_in_prefix=item.get("sha256_in_prefix"),
                    size=item.get("size_in_bytes"),
                )
            )
        return tuple(entries)
    # Old metadata without paths_data: only the file list, so presence is all that can be checked.
    return tuple(PathEntry(str(p), "hardlink", None, None, None) for p in data.get("files") or [])


def read_installed(prefix: Path) -> tuple[list[InstalledPackage], list[Finding]]:
    meta_dir = prefix / CONDA_META
    if not meta_dir.is_dir():
        raise UserError(
            "not a conda environment (no conda-meta/ folder)",
            path=prefix,
            fix="pass the environment's folder, e.g. one made by `python -m cli install` or /opt/conda/envs/<flavor>",
        )
    packages, problems = [], []
    for meta in sorted(meta_dir.glob("*.json")):
        relative = f"{CONDA_META}/{meta.name}"
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
            package = LockedPackage(
                kind=CONDA,
                name=str(data["name"]),
                version=str(data["version"]),
                build=str(data["build"]),
                url=str(data.get("url") or ""),
                sha256=data.get("sha256"),
                md5=data.get("md5"),
                subdir=data.get("subdir"),
                license=data.get("license"),
            )
            cache_entry = data.get("extracted_package_dir")
            packages.append(
                InstalledPackage(package, relative, _path_entries(data), str(cache_entry) if cache_entry else None)
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            problems.append(Finding("metadata-unreadable", relative, f"cannot read package record: {error}"))
    return packages, problems


# --- packages against the lock -----------------------------------------------------------------


def compare_packages(
    locked: list[LockedPackage], installed: list[LockedPackage]
) -> tuple[list[LockedPackage], list[LockedPackage], list[PackageDifference]]:
    locked_by_name = {p.name: p for p in locked}
    installed_by_name = {p.name: p for p in installed}
    missing = [locked_by_name[n] for n in sorted(set(locked_by_name) - set(installed_by_name))]
    extra = [installed_by_name[n] for n in sorted(set(installed_by_name) - set(locked_by_name))]
    different = []
    for name in sorted(set(locked_by_name) & set(installed_by_name)):
        lock, have = locked_by_name[name], installed_by_name[name]
        fields = [f for f in ("version", "build") if getattr(lock, f) != getattr(have, f)]
        if lock.sha256 and have.sha256:
            if lock.sha256.lower() != have.sha256.lower():
                fields.append("sha256")
        elif lock.md5 and have.md5 and lock.md5.lower() != have.md5.lower():
            fields.append("md5")
        if fields:
            different.append(PackageDifference(name, lock, have, tuple(fields)))
    return missing, extra, different


def _same_version(locked: str, installed: str) -> bool:
    if locked == DYNAMIC:  # a local source tree: the lock leaves its version to the tree
        return True
    try:
        return Version(locked) == Version(installed)
    except InvalidVersion:
        return locked == installed


def compare_pypi_packages(
    locked: list[LockedPackage], installed: list[LockedPackage]
) -> tuple[list[LockedPackage], list[LockedPackage], list[PackageDifference]]:
    """By PEP 503 name; a distribution records no wheel hash, so only the version can differ."""
    locked_by_name = {canonicalize_name(p.name): p for p in locked}
    installed_by_name = {canonicalize_name(p.name): p for p in installed}
    missing = [locked_by_name[n] for n in sorted(set(locked_by_name) - set(installed_by_name))]
    extra = [installed_by_name[n] for n in sorted(set(installed_by_name) - set(locked_by_name))]
    different = [
        PackageDifference(name, locked_by_name[name], installed_by_name[name], ("version",))
        for name in sorted(set(locked_by_name) & set(installed_by_name))
        if not _same_version(locked_by_name[name].version, installed_by_name[name].version)
    ]
    return missing, extra, different


def as_installed_package(distribution: InstalledDistribution) -> InstalledPackage:
    """A distribution's RECORD as path entries, checked by the same code as conda's paths.json."""
    paths = tuple(
        PathEntry(f.path, "pyc_file" if f.byte_code else "hardlink", f.sha256, None, f.size, RECORD)
        for f in distribution.files
    )
    return InstalledPackage(distribution.package, f"{distribution.dist_info}/{RECORD}", paths)


def record_problems(distributions: list[InstalledDistribution]) -> list[FileProblem]:
    return [FileProblem(p.path, p.problem, d.package.label, p.detail) for d in distributions for p in d.problems]


# --- files against paths.json ------------------------------------------------------------------


@dataclass(frozen=True)
class _HashJob:
    entry: PathEntry
    owner: str
    absolute: str
    size: int


def _check_without_hash(prefix: Path, entry: PathEntry, owner: str) -> tuple[FileProblem | None, _HashJob | None]:
    """Presence and type checks; a file whose content must be hashed comes back as a job."""
    absolute = os.path.join(prefix, entry.path)
    try:
        info = os.lstat(absolute)
    except FileNotFoundError:
        if entry.path_type in VOLATILE_TYPES:
            return None, None
        return FileProblem(entry.path, "missing", owner, "owned by a package, not in the prefix"), None
    except OSError as error:
        return FileProblem(entry.path, "missing", owner, f"cannot be read: {error.strerror}"), None
    if entry.path_type in DIRECTORY_TYPES:
        ok = stat.S_ISDIR(info.st_mode)
        return (None if ok else FileProblem(entry.path, "modified", owner, "should be a directory")), None
    if entry.path_type in LINK_TYPES:
        return _check_link(absolute, info, entry, owner), None
    if stat.S_ISLNK(info.st_mode):  # a package linked as a whole by symbolic links: check what it points to
        try:
            info = os.stat(absolute)
        except OSError:
            return FileProblem(entry.path, "missing", owner, "a dangling symbolic link"), None
    if not stat.S_ISREG(info.st_mode):
        return FileProblem(entry.path, "modified", owner, "should be a regular file"), None
    if entry.expected is None:
        return None, None
    if entry.sha256_in_prefix is None and entry.size is not None and entry.size != info.st_size:
        detail = f"size {info.st_size} bytes, {entry.listed_in} says {entry.size}"
        return FileProblem(entry.path, "modified", owner, detail), None
    return None, _HashJob(entry, owner, absolute, info.st_size)


def _check_link(absolute: str, info: os.stat_result, entry: PathEntry, owner: str) -> FileProblem | None:
    if not stat.S_ISLNK(info.st_mode):
        return FileProblem(entry.path, "modified", owner, "should be a symbolic link")
    if entry.sha256_in_prefix is None:
        return None
    target = os.readlink(absolute)
    # rattler records the hash of the link's target text; other installers that of the file it points to.
    if hashlib.sha256(target.encode()).hexdigest() == entry.sha256_in_prefix:
        return None
    try:
        if os.path.isfile(absolute) and sha256_of(absolute) == entry.sha256_in_prefix:
            return None
    except OSError:
        pass
    return FileProblem(entry.path, "modified", owner, f"symbolic link points to {target!r}")


def _hash_job(job: _HashJob) -> tuple[FileProblem | None, int]:
    try:
        actual = sha256_of(job.absolute, job.size)
    except OSError as error:
        return FileProblem(job.entry.path, "missing", job.owner, f"cannot be read: {error.strerror}"), 0
    if actual != job.entry.expected:
        detail = f"sha256 {actual[:16]}…, {job.entry.listed_in} says {str(job.entry.expected)[:16]}…"
        return FileProblem(job.entry.path, "modified", job.owner, detail), job.size
    return None, job.size


def check_files(
    prefix: Path, installed: list[InstalledPackage], workers: int | None = None
) -> tuple[list[FileProblem], HashStats]:
    stats = HashStats()
    started = time.perf_counter()
    problems: list[FileProblem] = []
    jobs: list[_HashJob] = []
    for package in installed:
        for entry in package.paths:
            stats.files_checked += 1
            problem, job = _check_without_hash(prefix, entry, package.package.label)
            if problem is not None:
                problems.append(problem)
            if job is not None:
                jobs.append(job)
    for problem, size in hash_all(jobs, _hash_job, lambda job: job.size, workers):
        stats.files_hashed += 1
        stats.bytes_hashed += size
        if problem is not None:
            problems.append(problem)
    stats.seconds = time.perf_counter() - started
    return sorted(problems), stats


def _same_inode_in(folder: str, relative: str, info: os.stat_result) -> str | None:
    """The file of a package cache entry that is the prefix file's inode (same path first, else any)."""
    candidate = os.path.join(folder, relative)
    try:
        found = os.stat(candidate)
        if (found.st_dev, found.st_ino) == (info.st_dev, info.st_ino):
            return candidate
    except OSError:
        pass
    for current, _dirs, files in os.walk(folder):  # noarch: python files sit elsewhere in the entry
        for name in files:
            path = os.path.join(current, name)
            try:
                found = os.lstat(path)
            except OSError:
                continue
            if (found.st_dev, found.st_ino) == (info.st_dev, info.st_ino):
                return path
    return None


def _cache_root(entry: str) -> str:
    parent = os.path.dirname(entry.rstrip("/"))
    return os.path.dirname(parent) if os.path.basename(parent) == "pkgs" else parent


def mark_shared_with_cache(
    prefix: Path, flavor: str, installed: list[InstalledPackage], problems: list[FileProblem]
) -> list[FileProblem]:
    """A modified file that is a hard link into the package cache: the edit damaged the cache entry too."""
    entries = {p.package.label: p.cache_entry for p in installed}
    result = []
    for problem in problems:
        if problem.problem != "modified":
            result.append(problem)
            continue
        try:
            info = os.lstat(os.path.join(prefix, problem.path))
        except OSError:
            result.append(problem)
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_nlink < 2:
            result.append(problem)
            continue
        entry = entries.get(problem.package or "")
        shared = _same_inode_in(entry, problem.path, info) if entry and os.path.isdir(entry) else None
        if shared is None:
            detail = f"{problem.detail}; it has {info.st_nlink} hard links, perhaps into a package cache"
            result.append(FileProblem(problem.path, problem.problem, problem.package, detail))
            continue
        detail = (
            f"{problem.detail}; the same inode as the package cache's {shared}, so the cache entry is damaged too "
            f"(repair the cache: python -m cli cache verify --repair --cache-dir {_cache_root(entry or '')}; "
            f"then the prefix: python -m cli install {flavor} --prefix {prefix} --reinstall)"
        )
        result.append(FileProblem(problem.path, "modified-in-cache", problem.package, detail))
    return sorted(result)


def _ignored(relative: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(relative, pattern) for pattern in patterns)


def unexpected_files(
    prefix: Path, owned: set[str], ignore: Iterable[str] = (), skip: Iterable[Path] = ()
) -> list[FileProblem]:
    """Files and links in the prefix that no package owns (caches, conda-meta and `skip` folders aside)."""
    patterns = list(ignore)
    skipped = {os.path.abspath(p) for p in skip}
    found = []
    for folder, dirs, files in os.walk(prefix):
        relative_folder = os.path.relpath(folder, prefix)
        relative_folder = "" if relative_folder == "." else relative_folder
        kept_dirs = []
        for name in sorted(dirs):
            absolute = os.path.join(folder, name)
            relative = os.path.join(relative_folder, name)
            if (not relative_folder and name == CONDA_META) or name in CACHE_DIRS or absolute in skipped:
                continue
            if os.path.islink(absolute):  # a link to a folder is an entry of its own, never walked into
                files.append(name)
                continue
            if _ignored(relative, patterns):
                continue
            kept_dirs.append(name)
        dirs[:] = kept_dirs
        for name in sorted(files):
            relative = os.path.join(relative_folder, name)
            if relative in owned or name.endswith(CACHE_SUFFIXES) or _ignored(relative, patterns):
                continue
            if not relative_folder and name in INSTALLER_FILES:
                continue
            found.append(FileProblem(relative, "unexpected", None, "in the prefix, owned by no package"))
    return sorted(found)


# --- overlay -----------------------------------------------------------------------------------


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_distributions(folder: Path, pattern: str = "**/*.dist-info") -> list[Distribution]:
    """Python distributions (`*.dist-info/METADATA`) under `folder`, by normalized name."""
    result = []
    parser = HeaderParser()
    for dist_info in sorted(folder.glob(pattern)):
        metadata = dist_info / "METADATA"
        if not metadata.is_file():
            continue
        headers = parser.parsestr(metadata.read_text(encoding="utf-8", errors="replace"))
        stem_name, _, stem_version = dist_info.name[: -len(".dist-info")].partition("-")
        name = headers.get("Name") or stem_name
        version = headers.get("Version") or stem_version
        result.append(Distribution(_normalize(name), str(version), str(dist_info.relative_to(folder))))
    return sorted(result)


def audit_overlay(folder: Path, prefix: Path, installed: list[LockedPackage]) -> OverlayReport:
    if not folder.is_dir():
        raise UserError("overlay folder does not exist", path=folder, fix="pass the runner's overlay venv folder")
    report = OverlayReport(folder, read_distributions(folder))
    conda_names = {p.name for p in installed}
    conda_stack = tuple(name for name in CONDA_CUDA_MARKERS if name in conda_names)
    base = {d.name: d for d in read_distributions(prefix, "lib/python*/site-packages/*.dist-info")}
    for dist in report.distributions:
        wheel = cuda_wheel_library(dist.name)
        if wheel is not None:
            report.cuda_wheels.append(dist)
            present = tuple(sorted(p for p in conda_packages_for_cuda_wheel(wheel[0]) if p in conda_names))
            if present:
                report.duplicate_cuda.append((dist, present, "duplicates conda"))
            elif conda_stack:
                report.duplicate_cuda.append((dist, conda_stack, "a second CUDA stack next to conda"))
        if dist.name in base:
            report.shadowed.append((dist, base[dist.name]))
    return report


# --- the audit ---------------------------------------------------------------------------------


def _prefix_platform(workspace: Workspace, flavor: str, installed: list[InstalledPackage], asked: str | None) -> str:
    if asked is not None:
        return workspace.platform_names(flavor, [asked])[0]
    platforms = workspace.resolve(flavor).platforms
    subdirs = {p.package.subdir for p in installed if p.package.subdir and p.package.subdir != "noarch"}
    for platform in platforms:
        if platform.subdir in subdirs:
            return platform.name
    if len(platforms) == 1:
        return platforms[0].name
    current = str(Subdir.current())
    for platform in platforms:
        if platform.subdir == current:
            return platform.name
    raise UserError(
        f"cannot tell which platform of '{flavor}' the prefix holds",
        fix=f"pass --platform (one of {', '.join(p.name for p in platforms)})",
    )


def audit_prefix(
    workspace: Workspace,
    flavor: str,
    prefix: Path,
    *,
    platform: str | None = None,
    overlay: Path | None = None,
    ignore: Iterable[str] = (),
    check_files_: bool = True,
    workers: int | None = None,
) -> PrefixAudit:
    workspace.resolve(flavor)  # an unknown flavor is a usage error before anything is read
    if not prefix.is_dir():
        raise UserError("prefix folder does not exist", path=prefix, fix="pass an installed environment's folder")
    installed, unreadable = read_installed(prefix)
    chosen = _prefix_platform(workspace, flavor, installed, platform)
    lock = read_lock(workspace)
    locked = [from_record(r) for r in locked_records(workspace, flavor, chosen, lock=lock)]
    entries = locked_pypi(workspace.root, workspace.lock_path, flavor, chosen)  # what `cli install` installs
    locked_pypi_packages = [from_pypi_entry(e) for e in entries]
    conda_folders = {os.path.dirname(entry.path) for package in installed for entry in package.paths}
    distributions = installed_distributions(prefix, conda_folders)
    result = PrefixAudit(
        prefix,
        flavor,
        chosen,
        installed=len(installed),
        locked=len(locked),
        pypi_installed=len(distributions),
        pypi_locked=len(locked_pypi_packages),
        unreadable=unreadable,
    )
    result.missing_packages, result.extra_packages, result.different_packages = compare_packages(
        locked, [p.package for p in installed]
    )
    missing, extra, different = compare_pypi_packages(locked_pypi_packages, [d.package for d in distributions])
    result.missing_packages += missing
    result.extra_packages += extra
    result.different_packages += different
    if check_files_:
        installed_pypi = [as_installed_package(d) for d in distributions]
        problems, result.stats = check_files(prefix, installed + installed_pypi, workers)
        problems = mark_shared_with_cache(prefix, flavor, installed + installed_pypi, problems)
        problems += record_problems(distributions)
        owned = {entry.path for package in installed + installed_pypi for entry in package.paths}
        skip = [overlay] if overlay is not None else []
        result.files = sorted(problems + unexpected_files(prefix, owned, ignore, skip))
    if overlay is not None:
        result.overlay = audit_overlay(overlay, prefix, [p.package for p in installed])
    return result
