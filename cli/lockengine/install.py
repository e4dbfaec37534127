"""Install exactly what pixi.lock holds for one environment into a prefix (never a re-solve).

Every archive is fetched into a content-addressed folder and its sha256 checked against
the lock before py-rattler links it: a package that does not match its lock never lands.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import rattler
from rattler import MatchSpec, PackageRecord, RepoDataRecord, Subdir, VirtualPackage, VirtualPackageOverrides
from rattler.exceptions import InstallerError
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from cli.errors import UserError
from cli.fileio import atomic_write_text
from cli.lockengine.freshness import lock_mismatches
from cli.lockengine.lockfile import locked_records, read_lock
from cli.lockengine.manifest import Workspace

log = logging.getLogger(__name__)
CHUNK = 1 << 20


@dataclass(frozen=True)
class InstallRequest:
    environment: str
    prefix: Path
    platform: str | None = None
    frozen: bool = False
    cache_dir: Path | None = None
    show_progress: bool = True


@dataclass(frozen=True)
class InstallResult:
    prefix: Path
    platform: str
    packages: list[RepoDataRecord]


def default_cache_dir() -> Path:
    configured = os.environ.get("RATTLER_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rattler" / "cache"


def host_virtual_packages() -> list[PackageRecord]:
    """The machine's virtual packages, with CONDA_OVERRIDE_* honoured (as for a solve)."""
    result = []
    for package in VirtualPackage.detect(VirtualPackageOverrides.from_env()):
        generic = package.into_generic()
        result.append(PackageRecord(generic.name, str(generic.version), generic.build_string, 0, "linux-64"))
    return result


def check_host(records: list[RepoDataRecord], environment: str) -> None:
    """Refuse to install what this machine cannot run, e.g. a CUDA build on a host without a driver."""
    host = host_virtual_packages()
    for record in records:
        for dependency in record.depends:
            if not dependency.startswith("__"):
                continue
            spec = MatchSpec(dependency, strict=False)
            if any(spec.matches(v) for v in host):
                continue
            name = dependency.split(" ")[0]
            override = f"CONDA_OVERRIDE_{name.strip('_').upper()}"
            raise UserError(
                f"{record.name.normalized} {record.version} {record.build} in environment '{environment}' needs "
                f"'{dependency}', which this machine does not provide",
                fix=f"run on a machine that has it, or set {override}=<version> to install anyway",
            )


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _source_path(url: str) -> Path | None:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and url.startswith("/"):
        return Path(url)
    return None


def fetch_verified(record: RepoDataRecord, store: Path, progress: Progress | None) -> Path:
    """The archive of `record` on local disk, with its sha256 checked against the lock."""
    if record.sha256 is None:
        raise UserError(f"{record.file_name} has no sha256 in the lock", fix="lock again with `python -m cli lock`")
    expected = record.sha256.hex()
    target = store / expected / record.file_name
    if target.is_file() and _sha256_of(target) == expected:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".part")
    source = _source_path(record.url)
    if source is not None:
        if not source.is_file():
            raise UserError(
                f"package archive is missing: {source}", fix="check the channel or mirror the lock points to"
            )
        shutil.copyfile(source, partial)
    else:
        _download(record.url, partial, progress, record.size)
    actual = _sha256_of(partial)
    if actual != expected:
        partial.unlink(missing_ok=True)
        raise UserError(
            f"sha256 mismatch for {record.file_name}: lock says {expected}, archive has {actual}",
            path=record.url,
            fix="the archive was changed after locking; restore the channel or lock again",
        )
    partial.replace(target)
    return target


def _download(url: str, target: Path, progress: Progress | None, size: int | None) -> None:
    task = progress.add_task(Path(urlparse(url).path).name, total=size) if progress else None
    with urllib.request.urlopen(url) as response, target.open("wb") as handle:
        while chunk := response.read(CHUNK):
            handle.write(chunk)
            if progress is not None and task is not None:
                progress.advance(task, len(chunk))


def _pick_platform(request: InstallRequest) -> str:
    return request.platform or str(Subdir.current())


def install_environment(workspace: Workspace, request: InstallRequest) -> InstallResult:
    lock = read_lock(workspace)
    workspace.resolve(request.environment)  # an unknown environment is an error here, not a KeyError later
    if not request.frozen:
        problems = lock_mismatches(workspace, lock, [request.environment])
        if problems:
            raise UserError(
                f"pixi.lock is out of step with pixi.toml: {problems[0]}",
                path=workspace.lock_path,
                fix="run `python -m cli lock`, or pass --frozen to install the lock as it is",
            )
    if request.prefix.exists() and not request.prefix.is_dir():
        raise UserError("the prefix is a file, not a folder", path=request.prefix, fix="choose another --prefix")
    platform = _pick_platform(request)
    records = locked_records(workspace, request.environment, platform, lock=lock)
    check_host(records, request.environment)
    cache = request.cache_dir or default_cache_dir()
    store = cache / "verified-archives"
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, disable=not request.show_progress, transient=True) as progress:
        local = [
            RepoDataRecord(record, record.file_name, fetch_verified(record, store, progress).as_uri(), record.channel)
            for record in records
        ]
    try:
        asyncio.run(
            rattler.install(
                local,
                target_prefix=request.prefix,
                cache_dir=cache / "pkgs",
                show_progress=request.show_progress,
            )
        )
    except InstallerError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"cannot install into the prefix: {reason}", path=request.prefix, fix="check the folder"
        ) from error
    _restore_lock_urls(request.prefix, records)
    from cli.lockengine.pypi import install_locked_pypi

    install_locked_pypi(workspace.root, workspace.lock_path, request.environment, platform, request.prefix)
    return InstallResult(request.prefix, platform, records)


def _restore_lock_urls(prefix: Path, records: list[RepoDataRecord]) -> None:
    """conda-meta should name where the lock says a package comes from, not our verified copy."""
    for record in records:
        meta = prefix / "conda-meta" / f"{record.name.normalized}-{record.version}-{record.build}.json"
        if not meta.is_file():
            continue
        data = json.loads(meta.read_text())
        data["url"] = record.url
        data["channel"] = record.channel
        atomic_write_text(meta, json.dumps(data, indent=2, sort_keys=True))
