"""The overlay cache: `<root>/overlays/<key>/` folders, their locks, and `runner cache list|prune`.

An overlay folder is complete only once its marker (`overlay.json`) exists; the marker is
written last, atomically, so a build killed half-way leaves a folder without it, which
the next run deletes and rebuilds. Two locks per key, both `flock`s the kernel releases
when a process dies:
- the build lock (exclusive) lets one run build while the others with the same key wait;
- the use lock is held shared by every run using the overlay and taken exclusively by
  `prune`, so an overlay is never deleted under a running job.

Every overlay is built in `building/<key>.<random>` and published into `overlays/` by one
rename (runner/publish.py): an overlay there is complete once it exists. In the image root's
supervisor keeps this cache (`owner` 0; runner/staging.py), and an overlay root does not own
is never used. A killed build (oSPARC cancels a job with SIGKILL) leaves its staging folders
behind: each request first sweeps those nobody works in any more (`sweep`), told by the
locks their owners held, which the kernel released when they died.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import stat
import time
from collections.abc import Mapping
from pathlib import Path

from runner import seal
from runner.nofollow import open_folder, read_text

MARKER = "overlay.json"
DEFAULT_MAX_AGE_DAYS = 30.0
REQUEST = "request"  # building/request.<random>: the image's supervisor's copy of a job's files (runner/channel.py)
DISCARDED = ".discarded-"  # what the image's supervisor empties is renamed so first (runner/staging.py)


def default_cache_root(environ: Mapping[str, str]) -> Path:
    configured = environ.get("RUNNER_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    xdg = environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path(environ.get("HOME") or Path.home()) / ".cache"
    return base / "osparc-runner"


class FileLock:
    """An flock on a lock file that survives the file being replaced by `prune`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self, *, shared: bool = False, blocking: bool = True) -> bool:
        flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                if shared and error.errno in (errno.EROFS, errno.EACCES):
                    # A read-only cache (pre-built into an image) cannot be pruned or built: no lock needed to read it.
                    return True
                raise
            try:
                fcntl.flock(fd, flags)
            except BlockingIOError:
                os.close(fd)
                return False
            # `prune` may have unlinked the file between our open and flock: then lock the new one.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                return True
            os.close(fd)

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    @property
    def held(self) -> bool:
        return self.fd is not None


class CacheEntry:
    __slots__ = ("created", "key", "last_used", "path", "requirements", "size", "state")

    def __init__(
        self,
        key: str,
        path: Path,
        state: str,
        size: int,
        created: float | None,
        last_used: float | None,
        requirements: list[str],
    ) -> None:
        self.key = key
        self.path = path
        self.state = state  # ready | half-built | building
        self.size = size
        self.created = created
        self.last_used = last_used
        self.requirements = requirements


class Cache:
    def __init__(self, root: Path, owner: int | None = None) -> None:
        self.root = root
        self.overlays = root / "overlays"
        self.locks = root / "locks"
        self.building = root / "building"  # the image's staging folders (runner/staging.py)
        self.owner = owner  # who must own an overlay for it to be used (the image: root); None: anyone

    def ensure(self) -> None:
        self.overlays.mkdir(parents=True, exist_ok=True)
        self.locks.mkdir(parents=True, exist_ok=True)

    def folder(self, key: str) -> Path:
        return self.overlays / key

    def marker(self, key: str) -> Path:
        return self.folder(key) / MARKER

    def use_lock(self, key: str) -> FileLock:
        return FileLock(self.locks / f"{key}.use")

    def build_lock(self, key: str) -> FileLock:
        return FileLock(self.locks / f"{key}.build")

    def read_marker(self, key: str) -> dict[str, object] | None:
        try:
            data = json.loads(read_text(self.marker(key)))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def new_staging(self, key: str) -> Path:
        """A new, empty staging folder for a build of `key` (the caller holds the key's build lock)."""
        self.building.mkdir(parents=True, exist_ok=True)
        folder = self.building / f"{key}.{secrets.token_hex(16)}"
        os.mkdir(folder, 0o700)
        return folder

    def new_request(self, mode: int = 0o700) -> HeldFolder:
        """`building/request.<random>`, locked for as long as the caller holds it (a sweep leaves it alone)."""
        while True:
            folder = self.building / f"{REQUEST}.{secrets.token_hex(16)}"
            os.mkdir(folder, mode)
            held = HeldFolder.lock(folder)
            if held is not None:
                return held

    def entries(self) -> list[CacheEntry]:
        try:
            keys = sorted(p.name for p in self.overlays.iterdir() if p.is_dir())
        except OSError:
            return []
        return [self._entry(key) for key in keys]

    def _entry(self, key: str) -> CacheEntry:
        data = self.read_marker(key)
        if data is not None:
            state = "ready"
        else:
            lock = self.build_lock(key)
            if lock.acquire(blocking=False):
                lock.release()
                state = "half-built"
            else:
                state = "building"
        marker = self.marker(key)
        last_used = marker.stat().st_mtime if marker.exists() else None
        created = data.get("created") if data else None
        requirements = data.get("requirements") if data else None
        return CacheEntry(
            key=key,
            path=self.folder(key),
            state=state,
            size=folder_size(self.folder(key)),
            created=float(created) if isinstance(created, (int, float)) else None,
            last_used=last_used,
            requirements=[str(r) for r in requirements] if isinstance(requirements, list) else [],
        )

    def prune(
        self, *, everything: bool = False, older_than_days: float = DEFAULT_MAX_AGE_DAYS, dry_run: bool = False
    ) -> list[tuple[CacheEntry, str]]:
        """Remove half-built overlays and those unused for `older_than_days` (or all with `everything`).

        Overlays in use by a running job or being built are skipped.
        """
        removed = []
        cutoff = time.time() - older_than_days * 86400
        for entry in self.entries():
            if entry.state == "building":
                continue
            if entry.state == "half-built":
                reason = "half-built"
            elif everything:
                reason = "all"
            elif entry.last_used is not None and entry.last_used < cutoff:
                reason = f"unused for {(time.time() - entry.last_used) / 86400:.0f} days"
            else:
                continue
            if dry_run:
                removed.append((entry, reason))
                continue
            use, build = self.use_lock(entry.key), self.build_lock(entry.key)
            if not use.acquire(blocking=False):
                continue
            try:
                if not build.acquire(blocking=False):
                    continue
                try:
                    seal.remove(entry.path)
                    for lock in (use, build):
                        lock.path.unlink(missing_ok=True)
                finally:
                    build.release()
            finally:
                use.release()
            removed.append((entry, reason))
        if not dry_run:
            self.sweep()
        return removed

    def sweep(self) -> None:
        """Remove what killed builds and requests left in `building/` (and half-emptied folders), none in use.

        `<key>.<random>[.work|.seal]` goes when nobody holds the key's build lock (taken here
        while removing, so no build of that key starts meanwhile), `request.<random>` when nobody
        holds its own lock (`new_request`).
        """
        with contextlib.suppress(OSError):
            for name in os.listdir(self.root):
                if name.startswith(DISCARDED):
                    seal.remove(self.root / name)
        try:
            names = os.listdir(self.building)
        except OSError:
            return
        for name in sorted(names):
            head = name.split(".", 1)[0]
            path = self.building / name
            if head == REQUEST:
                held = HeldFolder.lock(path, blocking=False)
                if held is not None:
                    seal.remove(path)
                    held.release()
                continue
            lock = self.build_lock(head)
            try:
                free = lock.acquire(blocking=False)
            except OSError:
                continue
            if free:
                try:
                    seal.remove(path)
                finally:
                    lock.release()


class HeldFolder:
    """A folder and an exclusive flock on it, released by `release` or when the holder dies."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def lock(cls, path: Path, blocking: bool = True) -> HeldFolder | None:
        """The folder locked; None if it is gone (or, without `blocking`, locked by someone else)."""
        try:
            fd = open_folder(path)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            if os.fstat(fd).st_nlink == 0 or not stat.S_ISDIR(os.lstat(path).st_mode):
                raise FileNotFoundError(path)  # a sweep removed it before we had it locked
        except OSError:
            os.close(fd)
            return None
        return cls(path, fd)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def folder_size(path: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
