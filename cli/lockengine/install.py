"""Install exactly what pixi.lock holds for one environment into a prefix (never a re-solve), verified.

py-rattler does the work: its client downloads (concurrently, retried), its package cache checks
each archive's sha256 against the lock while it streams, its installer links. Around it:

1. every cache entry the install will link from is checked against its own paths.json (size
   and sha256; files whose stat facts are as recorded at their last check are not hashed
   again, see `package_cache`); a damaged entry is re-extracted once from its archive, whose
   sha256 must be the lock's, with one log line; still wrong is an error naming the file;
2. archives on local disk (file:// channels and mirrors) are extracted here, sha256-checked,
   because py-rattler's installer extracts a local archive without checking it;
3. entries py-rattler downloads are checked once they are in, and remembered;
4. conda-meta names the lock's URL, not the mirror it was fetched from;
5. then the locked PyPI packages, with uv (pixi's order).

A new prefix is built in a staging folder beside it and renamed into place only when all of it,
PyPI packages included, is there: a failure leaves no prefix (`_publish`).

Link mode (`LinkMode`): the default clones or copies, so that editing a file in one prefix can
never change the cache the next prefix is made from.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import rattler
from rattler import Config, MatchSpec, PackageRecord, RepoDataRecord, Subdir, VirtualPackage, VirtualPackageOverrides

from cli.errors import UserError
from cli.fileio import atomic_write_text
from cli.lockengine.downloads import (
    check_mirrors_used,
    download_client,
    extraction_error,
    fetch_error,
    mirrored_url,
)
from cli.lockengine.freshness import lock_mismatches
from cli.lockengine.install_progress import InstallProgress
from cli.lockengine.lockfile import locked_records, read_lock
from cli.lockengine.manifest import Workspace
from cli.lockengine.package_cache import (
    CacheEntry,
    Damage,
    EntryCheck,
    PackageCache,
    check_entries,
    default_cache_root,
    extract_verified,
    local_path,
    refresh_after_linking,
    remember,
)

log = logging.getLogger(__name__)


class LinkMode(StrEnum):
    """How files get from the package cache into a prefix."""

    hardlink = "hardlink"  # shares the cache's inodes: fastest, no extra disk; an edit in the prefix edits the cache
    copy = "copy"  # a full copy: the cache is never touched by what happens in the prefix
    reflink = "reflink"  # a copy-on-write clone where the file system can (btrfs, XFS), a full copy elsewhere


DEFAULT_LINK = LinkMode.reflink


def link_config(mode: LinkMode) -> str:
    """py-rattler's link settings (its `allow-*-links` config keys) for a mode."""
    hard = mode is LinkMode.hardlink
    ref = mode is LinkMode.reflink
    return f"allow-hard-links = {str(hard).lower()}\nallow-ref-links = {str(ref).lower()}\n"


@dataclass(frozen=True)
class InstallOptions:
    cache_dir: Path | None = None
    link: LinkMode = DEFAULT_LINK
    mirrors: dict[str, str] = field(default_factory=dict)
    platform: str | None = None  # the records' subdir (default: this machine's)
    alternative_target_prefix: str | None = None  # the path the prefix will have (the OCI engine's staging)
    verify: bool = True  # check cache entries against paths.json (off only to measure what it costs)
    show_progress: bool = True
    retries: int = 3
    reinstall: bool = False  # link every package again, even those the prefix already has


@dataclass
class InstallReport:
    prefix: Path
    link: LinkMode
    cache: Path
    packages: int = 0
    verified_entries: int = 0
    hashed_files: int = 0
    hashed_bytes: int = 0
    extracted: list[str] = field(default_factory=list)  # from local archives, sha256-checked here
    downloaded: list[str] = field(default_factory=list)  # by py-rattler
    downloaded_bytes: int = 0
    repaired: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "link": self.link.value,
            "seconds": round(self.seconds, 3),
            "cache": {
                "root": str(self.cache),
                "verified_entries": self.verified_entries,
                "hashed_files": self.hashed_files,
                "hashed_bytes": self.hashed_bytes,
                "extracted": sorted(self.extracted),
                "downloaded": sorted(self.downloaded),
                "downloaded_bytes": self.downloaded_bytes,
                "repaired": sorted(self.repaired),
            },
        }


@dataclass(frozen=True)
class InstallRequest:
    environment: str
    prefix: Path
    platform: str | None = None
    frozen: bool = False
    cache_dir: Path | None = None
    show_progress: bool = True
    link: LinkMode = DEFAULT_LINK
    mirrors: dict[str, str] = field(default_factory=dict)
    verify: bool = True
    reinstall: bool = False


@dataclass(frozen=True)
class InstallResult:
    prefix: Path
    platform: str
    packages: list[RepoDataRecord]
    report: InstallReport


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
    check_mirrors_used(records, request.mirrors, request.environment)
    check_host(records, request.environment)
    options = InstallOptions(
        cache_dir=request.cache_dir,
        link=request.link,
        mirrors=request.mirrors,
        platform=_subdir_of(workspace, request.environment, request.platform),
        verify=request.verify,
        show_progress=request.show_progress,
        reinstall=request.reinstall,
    )
    from cli.lockengine.pypi import install_pypi_packages, locked_pypi

    pypi = locked_pypi(workspace.root, workspace.lock_path, request.environment, platform)

    def complete(prefix: Path) -> None:
        restore_lock_urls(prefix, records)
        hard_links = options.link is LinkMode.hardlink
        install_pypi_packages(prefix, pypi, workspace.root, options.retries, hard_links=hard_links)  # after conda

    report = install_records(records, request.prefix, options, complete)
    return InstallResult(request.prefix, platform, records, report)


def _subdir_of(workspace: Workspace, environment: str, platform: str | None) -> str | None:
    if platform is None:
        return None
    for spec in workspace.resolve(environment).platforms:
        if spec.name == platform:
            return spec.subdir
    return platform


# --- the verified install ------------------------------------------------------------------------


def install_records(
    records: list[RepoDataRecord],
    prefix: Path,
    options: InstallOptions,
    complete: Callable[[Path], None] | None = None,
) -> InstallReport:
    """Link `records` into `prefix` from a package cache whose entries are checked (and repaired) first.

    `complete` finishes the environment (conda-meta's URLs, the PyPI packages) before a new prefix
    is moved into place, so that a failure there leaves nothing either (see `_publish`).
    """
    started = time.perf_counter()
    for record in records:
        if record.sha256 is None:
            raise UserError(f"{record.file_name} has no sha256 in the lock", fix="lock again with `python -m cli lock`")
    cache = PackageCache(options.cache_dir or default_cache_root())
    try:
        cache.pkgs.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"cannot create the package cache: {error.strerror}", path=cache.pkgs, fix="choose another --cache-dir"
        ) from error
    report = InstallReport(prefix, options.link, cache.root, packages=len(records))
    urls = {r.file_name: mirrored_url(r.url, options.mirrors) for r in records}
    client = download_client(options.retries)
    entries = {r.file_name: _entry_of(cache, r) for r in records}
    held = {r.file_name for r in records if _holds(entries[r.file_name], r)}
    present = [r for r in records if r.file_name in held]
    local = [r for r in records if r.file_name not in held and local_path(urls[r.file_name]) is not None]
    remote = [r for r in records if r.file_name not in held and local_path(urls[r.file_name]) is None]
    staging = _staging_for(prefix)
    try:
        with InstallProgress(options.show_progress) as progress:
            checks: list[EntryCheck] = []
            if options.verify and present:
                checks += _verify(present, entries, urls, report, progress, repair_with=client)
            if local:
                _extract_local(local, entries, urls, client, report, progress)
                if options.verify:
                    checks += _verify(local, entries, urls, report, progress, repair_with=None)
            progress.start_transaction(sum(r.size or 0 for r in remote), len(records))
            _link(records, staging or prefix, prefix, options, urls, client, progress)
            report.downloaded = list(progress.downloaded)
            report.downloaded_bytes = progress.downloaded_bytes
            if options.verify and remote:
                checks += _verify(remote, entries, urls, report, progress, repair_with=None)
        if options.link is LinkMode.hardlink:
            for check in checks:
                refresh_after_linking(check)
                remember(check)
        if staging is not None:
            _publish(staging, prefix, complete)
        elif complete is not None:
            complete(prefix)
    finally:
        cache.save_memos()
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


STAGING_INFIX = ".installing-"


def _staging_for(prefix: Path) -> Path | None:
    """A new prefix is installed next to where it goes and renamed into place: a failure leaves nothing.

    An existing environment is updated in place by py-rattler's transaction.
    """
    try:
        _remove_interrupted(prefix)
        if prefix.is_symlink() or (prefix.is_dir() and any(prefix.iterdir())):
            return None  # an environment, or the user's own link to where it goes: installed in place
        prefix.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{prefix.name}{STAGING_INFIX}", dir=prefix.parent))
    except OSError as error:
        raise UserError(
            f"cannot install into the prefix: {error.strerror or error}", path=prefix, fix="check the folder"
        ) from error


def _publish(staging: Path, prefix: Path, complete: Callable[[Path], None] | None) -> None:
    """Move a finished staging folder to the prefix; `complete` runs first, on the prefix's own path.

    What `complete` installs must name the prefix, not the staging folder: uv writes the
    interpreter's path into every script it makes (`#!<prefix>/bin/python`), as py-rattler's
    `alternative_target_prefix` does for the conda files. So while `complete` runs, the prefix is
    a symbolic link to the staging folder; then the link goes and the folder is renamed in its place.
    """
    emptied = prefix.is_dir() and not prefix.is_symlink()
    if emptied:
        prefix.rmdir()  # an empty folder stood there
    if complete is not None:
        prefix.symlink_to(staging, target_is_directory=True)
        try:
            complete(prefix)
        except BaseException:
            prefix.unlink()
            if emptied:
                prefix.mkdir()
            raise
        prefix.unlink()
    os.replace(staging, prefix)


def _remove_interrupted(prefix: Path) -> None:
    """A symbolic link to a staging folder is what an install that was killed in `_publish` leaves: both go."""
    if not prefix.is_symlink():
        return
    target = Path(os.readlink(prefix))
    target = target if target.is_absolute() else prefix.parent / target
    if target.parent == prefix.parent and target.name.startswith(f".{prefix.name}{STAGING_INFIX}"):
        log.warning("removing %s, left by an install that was interrupted", target)
        prefix.unlink()
        shutil.rmtree(target, ignore_errors=True)


def _entry_of(cache: PackageCache, record: RepoDataRecord) -> CacheEntry:
    return cache.entry(record.name.normalized, str(record.version), str(record.build))


def _holds(entry: CacheEntry, record: RepoDataRecord) -> bool:
    """Whether the entry exists and holds this record's archive (py-rattler refetches one that holds another)."""
    if not entry.exists():
        return False
    recorded = entry.archive_sha256()
    return recorded is None or record.sha256 is None or recorded == record.sha256.hex()


def _sha(record: RepoDataRecord) -> str:
    assert record.sha256 is not None
    return record.sha256.hex()


def _verify(
    records: list[RepoDataRecord],
    entries: dict[str, CacheEntry],
    urls: dict[str, str],
    report: InstallReport,
    progress: InstallProgress,
    *,
    repair_with: rattler.Client | None,
) -> list[EntryCheck]:
    """Check the records' cache entries against their paths.json and remember the ones that pass.

    Entries the cache already held (`repair_with` a client) trust their memo, and a damaged one is
    re-extracted once from its archive; entries just extracted from sha256-checked archives are
    hashed in full, and damage there is an error at once (extracting again would give the same).
    """
    by_entry = {entries[r.file_name].name: r for r in records}
    progress.start_verify("checking cache" if repair_with else "checking", None)
    checks = check_entries(
        [entries[r.file_name] for r in records],
        trust_memo=repair_with is not None,
        on_hashed=progress.hashed,
        on_planned=progress.planned,
    )
    progress.finish_verify()
    damaged = [c for c in checks if not c.ok]
    if damaged and repair_with is not None:
        checks = [c for c in checks if c.ok] + _repair(damaged, by_entry, urls, repair_with, report)
    for check in checks:
        _refuse_damage(check, by_entry[check.entry.name], urls)
    _account(checks, report)
    for check in checks:
        record = by_entry[check.entry.name]
        if check.changed:
            remember(check, _sha(record), urls[record.file_name])
    return checks


def _repair(
    damaged: list[EntryCheck],
    by_entry: dict[str, RepoDataRecord],
    urls: dict[str, str],
    client: rattler.Client,
    report: InstallReport,
) -> list[EntryCheck]:
    """Re-extract damaged entries from their archives (sha256-checked), one log line each; checked again in full."""
    for check in damaged:
        record = by_entry[check.entry.name]
        first = check.damage[0]
        more = f" and {len(check.damage) - 1} more" if len(check.damage) > 1 else ""
        log.warning(
            "package cache entry %s is damaged (%s%s): re-extracting it from %s",
            check.entry.path,
            first,
            more,
            urls[record.file_name],
        )
    repairs = [(c.entry, urls[by_entry[c.entry.name].file_name], _sha(by_entry[c.entry.name])) for c in damaged]
    _raise_failed(extract_verified(repairs, client), by_entry, urls)
    report.repaired = [by_entry[c.entry.name].file_name for c in damaged]
    return check_entries([c.entry for c in damaged], trust_memo=False)


def _extract_local(
    records: list[RepoDataRecord],
    entries: dict[str, CacheEntry],
    urls: dict[str, str],
    client: rattler.Client,
    report: InstallReport,
    progress: InstallProgress,
) -> None:
    progress.start_verify("extracting", sum(r.size or 0 for r in records))
    jobs = [(entries[r.file_name], urls[r.file_name], _sha(r)) for r in records]
    by_entry = {entries[r.file_name].name: r for r in records}
    done = extract_verified(jobs, client, on_done=lambda entry: progress.hashed(by_entry[entry.name].size or 0))
    _raise_failed(done, by_entry, urls)
    progress.finish_verify()
    report.extracted = [r.file_name for r in records]


def _account(checks: list[EntryCheck], report: InstallReport) -> None:
    report.verified_entries += len(checks)
    report.hashed_files += sum(c.hashed_files for c in checks)
    report.hashed_bytes += sum(c.hashed_bytes for c in checks)


def _raise_failed(
    results: list[tuple[CacheEntry, BaseException | None]], by_entry: dict[str, RepoDataRecord], urls: dict[str, str]
) -> None:
    for entry, error in results:
        if error is not None:
            record = by_entry[entry.name]
            raise extraction_error(record, urls[record.file_name], error) from error


def _refuse_damage(check: EntryCheck, record: RepoDataRecord, urls: dict[str, str]) -> None:
    if check.ok:
        return
    damage: Damage = check.damage[0]
    raise UserError(
        f"{damage.path} of {record.file_name} does not match the package's paths.json ({damage.reason}), "
        f"even freshly extracted from {urls[record.file_name]}",
        path=check.entry.path / damage.path,
        fix="the archive contradicts its own paths.json: report it to the channel, or lock another build",
    )


def _link(
    records: list[RepoDataRecord],
    target: Path,
    prefix: Path,
    options: InstallOptions,
    urls: dict[str, str],
    client: rattler.Client,
    progress: InstallProgress,
) -> None:
    fetched = [RepoDataRecord(r, r.file_name, urls[r.file_name], r.channel) for r in records]
    try:
        asyncio.run(
            rattler.install(
                fetched,
                target_prefix=target,
                cache_dir=(options.cache_dir or default_cache_root()) / "pkgs",
                platform=Subdir(options.platform) if options.platform else None,
                execute_link_scripts=False,
                reinstall_packages={r.name.normalized for r in records} if options.reinstall else None,
                client=client,
                reporter=progress,
                # the path the files will have: the prefix, when `target` is its staging folder
                alternative_target_prefix=options.alternative_target_prefix or str(prefix),
                config=Config.from_toml(link_config(options.link)),
            )
        )
    except Exception as error:  # py-rattler raises its own InstallerError (and IO errors) with a cause chain
        text = str(error).strip()
        explained = fetch_error(text, records, urls)
        if explained is not None:
            raise explained from error
        reason = text.splitlines()[0] if text else type(error).__name__
        raise UserError(f"cannot install into the prefix: {reason}", path=prefix, fix="check the folder") from error


def restore_lock_urls(prefix: Path, records: list[RepoDataRecord]) -> None:
    """conda-meta should name where the lock says a package comes from, not the mirror it was fetched from."""
    for record in records:
        meta = prefix / "conda-meta" / f"{record.name.normalized}-{record.version}-{record.build}.json"
        if not meta.is_file():
            continue
        data = json.loads(meta.read_text())
        if data.get("url") == record.url and data.get("channel") == record.channel:
            continue
        data["url"] = record.url
        data["channel"] = record.channel
        # compact: json's indenting encoder is pure Python, 1 s for the 301 records of bench/install.py
        atomic_write_text(meta, json.dumps(data, sort_keys=True, separators=(",", ":")))
