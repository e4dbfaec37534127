"""py-rattler's package cache, checked: every extracted entry against its own paths.json, repaired from its archive.

Layout under the cache root (RATTLER_CACHE_DIR, as py-rattler and pixi use it):

    pkgs/<name>-<version>-<build>/          an extracted package (py-rattler's)
    pkgs/<name>-<version>-<build>.lock      py-rattler's entry metadata: revision and the archive's sha256
    verified.json                           what we last verified (ours), entry by entry: the archive's sha256
                                            and origin, the sha256 of info/paths.json, and for every file the
                                            stat facts that change when the file changes (see `Facts`),
                                            and every symbolic link's target

py-rattler checks an archive's sha256 while it downloads it, and then trusts the extracted folder
for ever. A prefix hard-linked from the cache shares its inodes, so an edit in the prefix edits the
cache. Hence: before anything is linked, every file of an entry is checked against the entry's
paths.json (size and sha256), unless the stat facts recorded when it was last verified still hold,
and every symbolic link against where it led then and what paths.json says of it (`_check_link`);
a damaged entry is re-extracted from its archive, whose sha256 must match the lock.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from rattler import Client
from rattler.package_streaming import download_and_extract

from cli.file_hashing import hash_all, sha256_of
from cli.fileio import atomic_write_bytes

log = logging.getLogger(__name__)

PKGS = "pkgs"
VERIFIED = "verified.json"
PATHS_JSON = "info/paths.json"
INDEX_JSON = "info/index.json"
MEMO_VERSION = 3  # 3: symbolic links' targets
# sha256 of no bytes: what paths.json records for a link whose target is no file (a folder, or nothing).
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_LINK_HOPS = 40  # as the kernel's own limit on following links
# py-rattler's entry metadata file: a big-endian u64 revision, then the archive's 32-byte sha256.
REVISION_BYTES = 8
SHA256_BYTES = 32

# The stat facts of a file: (inode, size, mtime_ns, ctime_ns, mode, link count). Writing to a file
# moves its mtime and ctime, replacing it changes the inode; ctime cannot be set back by a user
# process, so an edit whose mtime was put back still shows. Making or removing a hard link moves
# the ctime too (and the link count), which is how installs and prefix deletions touch the cache.
Facts = tuple[int, int, int, int, int, int]


def unchanged(recorded: Facts, now: Facts) -> bool:
    """Whether a file is still as it was verified: same inode, size, mtime and mode, and either the same
    ctime or another link count (a hard link made or removed moves the ctime, never the content)."""
    if (recorded[0], recorded[1], recorded[2], recorded[4]) != (now[0], now[1], now[2], now[4]):
        return False
    return recorded[3] == now[3] or recorded[5] != now[5]


def default_cache_root() -> Path:
    configured = os.environ.get("RATTLER_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rattler" / "cache"


def facts_of(info: os.stat_result) -> Facts:
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_mode, info.st_nlink)


def local_path(url: str) -> Path | None:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and url.startswith("/"):
        return Path(url)
    return None


@dataclass(frozen=True)
class Damage:
    path: str  # relative to the entry
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class Memo:
    """What was true of an entry when it was last verified."""

    sha256: str | None  # the archive's
    origin: str | None  # the URL it was fetched or extracted from
    paths_json: tuple[str, Facts] | None
    files: dict[str, Facts] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # symbolic link → its target, as verified

    def as_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "origin": self.origin,
            "paths_json": [self.paths_json[0], list(self.paths_json[1])] if self.paths_json else None,
            "files": {path: list(facts) for path, facts in sorted(self.files.items())},
            "links": dict(sorted(self.links.items())),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Memo | None:
        try:
            paths_json = data.get("paths_json")
            return cls(
                sha256=data.get("sha256"),
                origin=data.get("origin"),
                paths_json=(str(paths_json[0]), _facts(paths_json[1])) if paths_json else None,
                files={str(path): _facts(facts) for path, facts in data["files"].items()},
                links={str(path): str(target) for path, target in data.get("links", {}).items()},
            )
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return None  # an unreadable memo only costs a re-hash


def _facts(values: Any) -> Facts:
    ino, size, mtime, ctime, mode, links = (int(v) for v in values)
    return (ino, size, mtime, ctime, mode, links)


@dataclass(frozen=True)
class CacheEntry:
    cache: PackageCache
    name: str  # <name>-<version>-<build>, py-rattler's folder name

    @property
    def path(self) -> Path:
        return self.cache.pkgs / self.name

    @property
    def metadata_path(self) -> Path:
        return self.cache.pkgs / f"{self.name}.lock"

    def exists(self) -> bool:
        return (self.path / INDEX_JSON).is_file() or (self.path / PATHS_JSON).is_file()

    def archive_sha256(self) -> str | None:
        """The sha256 py-rattler recorded for the archive this entry came from (None if it recorded none)."""
        try:
            data = self.metadata_path.read_bytes()
        except OSError:
            return None
        digest = data[REVISION_BYTES : REVISION_BYTES + SHA256_BYTES]
        return digest.hex() if len(digest) == SHA256_BYTES else None

    def read_memo(self) -> Memo | None:
        return self.cache.memos().get(self.name)

    def write_memo(self, memo: Memo) -> None:
        self.cache.set_memo(self.name, memo)

    def forget(self) -> None:
        self.cache.set_memo(self.name, None)

    def record_archive(self, sha256: str) -> None:
        """Tell py-rattler which archive the entry holds, in its own metadata format (next revision)."""
        try:
            revision = int.from_bytes(self.metadata_path.read_bytes()[:REVISION_BYTES], "big")
        except (OSError, ValueError):
            revision = 0
        atomic_write_bytes(self.metadata_path, (revision + 1).to_bytes(REVISION_BYTES, "big") + bytes.fromhex(sha256))


class PackageCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._memos: dict[str, Memo] | None = None
        self._changed: dict[str, Memo | None] = {}

    @property
    def pkgs(self) -> Path:
        return self.root / PKGS

    @property
    def verified(self) -> Path:
        return self.root / VERIFIED

    def memos(self) -> dict[str, Memo]:
        if self._memos is None:
            self._memos = self._read_memos()
        return self._memos

    def _read_memos(self) -> dict[str, Memo]:
        try:
            data = json.loads(self.verified.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # none yet, or unreadable: it only costs a re-hash
        if not isinstance(data, dict) or data.get("version") != MEMO_VERSION:
            return {}
        entries = data.get("entries")
        memos = {str(n): Memo.from_dict(m) for n, m in entries.items()} if isinstance(entries, dict) else {}
        return {name: memo for name, memo in memos.items() if memo is not None}

    def set_memo(self, name: str, memo: Memo | None) -> None:
        memos = self.memos()
        if memo is None:
            memos.pop(name, None)
        else:
            memos[name] = memo
        self._changed[name] = memo

    def save_memos(self) -> None:
        """Write what changed over what is on disk now (another install may have saved since we read).

        One file for the whole cache: one rename per install. Temp file and rename, so a reader
        sees the old file or the new one; no fsync, since a lost memo only costs a re-hash.
        """
        if not self._changed:
            return
        memos = self._read_memos()
        for name, memo in self._changed.items():
            if memo is None:
                memos.pop(name, None)
            else:
                memos[name] = memo
        memos = {name: memo for name, memo in memos.items() if (self.pkgs / name).is_dir()}
        document = {"version": MEMO_VERSION, "entries": {n: m.as_dict() for n, m in sorted(memos.items())}}
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = self.verified.with_name(f".{VERIFIED}.{os.getpid()}.{threading.get_ident()}")
        temporary.write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")
        os.replace(temporary, self.verified)
        self._memos = memos
        self._changed = {}

    def entry(self, name: str, version: str, build: str) -> CacheEntry:
        return CacheEntry(self, f"{name}-{version}-{build}")

    def entries(self) -> list[CacheEntry]:
        """Every extracted package in the cache (py-rattler's half-done `.name*` folders aside)."""
        if not self.pkgs.is_dir():
            return []
        found = [CacheEntry(self, p.name) for p in sorted(self.pkgs.iterdir()) if not p.name.startswith(".")]
        return [entry for entry in found if entry.path.is_dir() and entry.exists()]


# --- checking entries against their paths.json --------------------------------------------------


@dataclass
class EntryCheck:
    entry: CacheEntry
    memo: Memo | None
    damage: list[Damage] = field(default_factory=list)
    files: dict[str, Facts] = field(default_factory=dict)  # verified now, or still as verified before
    links: dict[str, str] = field(default_factory=dict)  # symbolic links found right, with their targets
    paths_json: tuple[str, Facts] | None = None
    hashed_files: int = 0
    hashed_bytes: int = 0

    @functools.cached_property
    def folder(self) -> str:
        return str(self.entry.path)

    @property
    def ok(self) -> bool:
        return not self.damage

    @property
    def changed(self) -> bool:
        """Whether the memo must be written again (a file was hashed, or facts moved)."""
        memo = self.memo
        return memo is None or (memo.files, memo.links, memo.paths_json) != (self.files, self.links, self.paths_json)

    def new_memo(self, sha256: str | None, origin: str | None) -> Memo:
        previous = self.memo
        return Memo(
            sha256=sha256 or (previous.sha256 if previous else None),
            origin=origin or (previous.origin if previous else None),
            paths_json=self.paths_json,
            files=dict(self.files),
            links=dict(self.links),
        )


def remember(check: EntryCheck, sha256: str | None = None, origin: str | None = None) -> None:
    """Write the entry's memo from a check without damage (sha256 and origin default to the memo's)."""
    memo = check.new_memo(sha256, origin)
    check.entry.write_memo(memo)
    check.memo = memo


@dataclass(frozen=True)
class _HashJob:
    check: EntryCheck
    relative: str
    absolute: str
    sha256: str
    facts: Facts


def _read_paths(check: EntryCheck, trust_memo: bool) -> list[dict[str, Any]] | None:
    """The entry's paths.json entries, or None (with the damage noted) when it cannot be trusted."""
    entry = check.entry
    path = entry.path / PATHS_JSON
    try:
        info = os.stat(path)
        data = path.read_bytes()
    except OSError:
        check.damage.append(Damage(PATHS_JSON, "missing"))
        return None
    facts = facts_of(info)
    memo = check.memo
    if memo is not None and memo.paths_json is not None:
        if not (trust_memo and unchanged(memo.paths_json[1], facts)):
            digest = hashlib.sha256(data).hexdigest()
            if digest != memo.paths_json[0]:
                check.damage.append(Damage(PATHS_JSON, "changed since the entry was verified"))
                return None
            check.paths_json = (digest, facts)
        else:
            check.paths_json = (memo.paths_json[0], facts)
    else:
        check.paths_json = (hashlib.sha256(data).hexdigest(), facts)
    try:
        paths = json.loads(data)["paths"]
        if not isinstance(paths, list):
            raise TypeError("paths is not a list")
        return paths
    except (ValueError, KeyError, TypeError) as error:
        check.damage.append(Damage(PATHS_JSON, f"unreadable: {error}"))
        return None


def _plan_file(
    check: EntryCheck, item: dict[str, Any], index: dict[str, dict[str, Any]], trust_memo: bool, jobs: list[_HashJob]
) -> None:
    relative = str(item["_path"])
    kind = item.get("path_type", "hardlink")
    absolute = os.path.join(check.folder, relative)
    try:
        info = os.lstat(absolute)
    except OSError:
        check.damage.append(Damage(relative, "missing"))
        return
    if kind == "softlink":
        if not stat.S_ISLNK(info.st_mode):
            check.damage.append(Damage(relative, "should be a symbolic link"))
            return
        _check_link(check, relative, item, index)
        return
    if kind == "directory":
        if not stat.S_ISDIR(info.st_mode):
            check.damage.append(Damage(relative, "should be a directory"))
        return
    if not stat.S_ISREG(info.st_mode):
        check.damage.append(Damage(relative, "should be a regular file"))
        return
    facts = facts_of(info)
    memo = check.memo
    recorded = memo.files.get(relative) if trust_memo and memo is not None else None
    if recorded is not None and unchanged(recorded, facts):
        check.files[relative] = facts
        return
    size = item.get("size_in_bytes")
    if size is not None and size != info.st_size:
        check.damage.append(Damage(relative, f"size {info.st_size} bytes, paths.json says {size}"))
        return
    sha256 = item.get("sha256")
    if sha256 is None:
        check.files[relative] = facts  # nothing to compare the bytes with: presence and size are all
        return
    jobs.append(_HashJob(check, relative, absolute, str(sha256), facts))


def _check_link(check: EntryCheck, relative: str, item: dict[str, Any], index: dict[str, dict[str, Any]]) -> None:
    """A symbolic link against what paths.json records for it and what the memo saw.

    paths.json does not record a link's target, only the sha256 of the content it leads to (conda-build
    and rattler-build alike; no bytes for a folder or nothing) and a size (rattler-build: the
    target's length; conda-build: the content's). So: a link that leads to a file of its own entry
    must lead to that content (whose file is checked on its own), one that leads to a folder must
    record no content. A link that leaves the entry (to another package's file, say) can only be
    held to the target it had when it was verified: the memo keeps each link's target.
    """
    try:
        target = os.readlink(os.path.join(check.folder, relative))
    except OSError as error:
        check.damage.append(Damage(relative, f"cannot be read: {error.strerror}"))
        return
    memo = check.memo
    verified = memo.links.get(relative) if memo is not None else None
    if verified is not None and verified != target:
        check.damage.append(Damage(relative, f"symbolic link to {target!r}, it was {verified!r} when verified"))
        return
    problem = _link_content_problem(check, relative, target, item, index)
    if problem is not None:
        check.damage.append(Damage(relative, f"symbolic link to {target!r}, {problem}"))
        return
    check.links[relative] = target


def _link_content_problem(
    check: EntryCheck, relative: str, target: str, item: dict[str, Any], index: dict[str, dict[str, Any]]
) -> str | None:
    """What is wrong with where a link leads, judged inside its entry (None: right, or not judged here)."""
    recorded = item.get("sha256")
    reached = _follow_link(check.folder, relative, target, index)
    if reached is None:
        return None  # it leaves the entry: only the memo can say
    path, reached_item = reached
    if reached_item is not None and reached_item.get("path_type", "hardlink") == "hardlink":
        content = reached_item.get("sha256")
        if recorded is not None and content is not None and recorded != content:
            return f"which leads to {path}, not to the content paths.json records for the link"
        return _link_size_problem(target, item, reached_item.get("size_in_bytes"))
    if os.path.isdir(os.path.join(check.folder, path)):
        if recorded not in (None, EMPTY_SHA256):
            return f"which leads to the folder {path}, where paths.json records a file's content"
        return _link_size_problem(target, item, 0)
    return None  # nothing there: a file of another package (conda-build recorded its content at build time)


def _link_size_problem(target: str, item: dict[str, Any], content_size: int | None) -> str | None:
    """rattler-build records a link's own length as its size, conda-build the size of what it leads to."""
    size = item.get("size_in_bytes")
    length = len(os.fsencode(target))
    if size is None or size in (length, content_size):
        return None
    return f"{length} bytes long, paths.json says {size}"


def _follow_link(
    folder: str, relative: str, target: str, index: dict[str, dict[str, Any]]
) -> tuple[str, dict[str, Any] | None] | None:
    """Where a link leads inside its entry, through further links: (path, its paths.json item or None);
    None when it leaves the entry (absolute, or above its top) or loops."""
    for _ in range(MAX_LINK_HOPS):
        if os.path.isabs(target):
            return None
        path = os.path.normpath(os.path.join(os.path.dirname(relative), target))
        if path == ".." or path.startswith("../"):
            return None
        item = index.get(path)
        if item is None or item.get("path_type") != "softlink":
            return path, item
        try:
            relative, target = path, os.readlink(os.path.join(folder, path))
        except OSError:
            return path, None
    return None


def _hash_job(job: _HashJob) -> tuple[_HashJob, str | None, Facts | None]:
    try:
        digest = sha256_of(job.absolute, job.facts[1])
        after = facts_of(os.lstat(job.absolute))
    except OSError:
        return job, None, None
    return job, digest, after


def check_entries(
    entries: Iterable[CacheEntry],
    *,
    trust_memo: bool = True,
    workers: int | None = None,
    on_hashed: Callable[[int], None] | None = None,
    on_planned: Callable[[int], None] | None = None,
) -> list[EntryCheck]:
    """Each entry against its paths.json; files whose stat facts still match the memo are not hashed again.

    `on_planned` hears how many bytes will be hashed, `on_hashed` the size of each file hashed.
    """
    checks: list[EntryCheck] = []
    jobs: list[_HashJob] = []
    for entry in entries:
        check = EntryCheck(entry, _current_memo(entry))
        checks.append(check)
        paths = _read_paths(check, trust_memo) or []
        index = {str(item["_path"]): item for item in paths}
        for item in paths:
            _plan_file(check, item, index, trust_memo, jobs)
    if on_planned is not None:
        on_planned(sum(job.facts[1] for job in jobs))
    for job, digest, after in hash_all(jobs, _hash_job, lambda job: job.facts[1], workers):
        _record_hash(job, digest, after)
        if on_hashed is not None:
            on_hashed(job.facts[1])
    for check in checks:
        check.damage.sort(key=lambda d: d.path)
    return checks


def _current_memo(entry: CacheEntry) -> Memo | None:
    """The entry's memo, unless it was written for another archive than the one the entry now holds."""
    memo = entry.read_memo()
    if memo is None or memo.sha256 is None:
        return memo
    recorded = entry.archive_sha256()
    return None if recorded is not None and recorded != memo.sha256 else memo


def _record_hash(job: _HashJob, digest: str | None, after: Facts | None) -> None:
    check = job.check
    check.hashed_files += 1
    check.hashed_bytes += job.facts[1]
    if digest is None:
        check.damage.append(Damage(job.relative, "cannot be read"))
    elif digest != job.sha256:
        check.damage.append(Damage(job.relative, f"sha256 {digest[:16]}…, paths.json says {job.sha256[:16]}…"))
    elif after == job.facts:  # a file that changed while it was hashed is hashed again next time
        check.files[job.relative] = job.facts


def refresh_after_linking(check: EntryCheck) -> None:
    """After hard-linking, record each file's facts as they are now: the links moved their ctimes.

    Only files still unchanged since they were verified are kept (the install's own links are
    all that happened to them); deleting the prefix later moves ctime and link count again,
    which `unchanged` accepts.
    """
    refreshed: dict[str, Facts] = {}
    for relative, facts in check.files.items():
        try:
            now = facts_of(os.lstat(os.path.join(check.folder, relative)))
        except OSError:
            continue
        if unchanged(facts, now):
            refreshed[relative] = now
    check.files = refreshed


# --- filling and repairing entries ---------------------------------------------------------------


class ArchiveMismatch(Exception):
    """The archive's sha256 is not the one the lock names: nothing of it was kept."""

    def __init__(self, url: str, expected: str, actual: str) -> None:
        self.url = url
        self.expected = expected
        self.actual = actual
        super().__init__(f"{url}: sha256 {actual}, expected {expected}")


async def _extract_one(client: Client, url: str, destination: Path) -> str:
    digest, _md5 = await download_and_extract(client, url, destination)
    return bytes(digest).hex()


def extract_verified(
    entries: list[tuple[CacheEntry, str, str]],
    client: Client,
    concurrency: int = 4,
    on_done: Callable[[CacheEntry], None] | None = None,
) -> list[tuple[CacheEntry, BaseException | None]]:
    """(entry, archive URL, expected sha256) → each entry replaced by its archive's content, if the sha256 matches.

    py-rattler computes the archive's sha256 while it extracts; the extracted folder only
    replaces the entry when that digest is the lock's. Local archives (file://) go this way
    too: py-rattler's installer would extract them without checking their sha256.
    """

    async def one(entry: CacheEntry, url: str, sha256: str, gate: asyncio.Semaphore) -> BaseException | None:
        async with gate:
            entry.cache.pkgs.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.extract-", dir=entry.cache.pkgs))
            try:
                actual = await _extract_one(client, url, staging)
                if actual != sha256:
                    return ArchiveMismatch(url, sha256, actual)
                _swap_in(entry, staging)
                entry.record_archive(sha256)
                entry.forget()
                return None
            except Exception as error:  # py-rattler's own download and extraction errors
                return error
            finally:
                shutil.rmtree(staging, ignore_errors=True)
                if on_done is not None:
                    on_done(entry)

    async def run() -> list[BaseException | None]:
        gate = asyncio.Semaphore(concurrency)
        return await asyncio.gather(*(one(entry, url, sha, gate) for entry, url, sha in entries))

    if not entries:
        return []
    return list(zip((e for e, _u, _s in entries), asyncio.run(run()), strict=True))


def _swap_in(entry: CacheEntry, staging: Path) -> None:
    """Replace the entry's folder by `staging` with renames; the damaged folder is removed afterwards."""
    old = None
    if entry.path.exists() or entry.path.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{entry.name}.damaged-", dir=entry.cache.pkgs))
        os.replace(entry.path, old / "entry")
    os.replace(staging, entry.path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_entry(entry: CacheEntry) -> None:
    """Drop an entry (its next install fetches it again)."""
    if entry.path.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{entry.name}.damaged-", dir=entry.cache.pkgs))
        os.replace(entry.path, old / "entry")
        shutil.rmtree(old, ignore_errors=True)
    entry.metadata_path.unlink(missing_ok=True)
    entry.forget()
