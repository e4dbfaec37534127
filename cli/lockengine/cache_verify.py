"""The whole package cache against paths.json, every file hashed (`cli cache verify`), and its repair.

Unlike an install, nothing is taken on trust here: the memo's stat facts are ignored and
every file is hashed. A repair re-extracts a damaged entry from the archive it came from
(the origin an install recorded; its sha256 must match), or, when that is unknown or
unreachable, removes the entry so that the next install fetches it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rattler import Client

from cli.errors import UserError
from cli.lockengine.package_cache import (
    CacheEntry,
    Damage,
    EntryCheck,
    PackageCache,
    check_entries,
    extract_verified,
    remember,
    remove_entry,
)

log = logging.getLogger(__name__)


@dataclass
class DamagedEntry:
    entry: CacheEntry
    damage: list[Damage]
    repair: str | None = None  # what --repair did
    repaired: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "entry": self.entry.name,
            "path": str(self.entry.path),
            "damage": [d.as_dict() for d in self.damage],
            "repair": self.repair,
            "repaired": self.repaired,
        }


@dataclass
class CacheVerification:
    cache: PackageCache
    entries: int = 0
    hashed_files: int = 0
    hashed_bytes: int = 0
    damaged: list[DamagedEntry] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def findings(self) -> list[DamagedEntry]:
        """Damage that is still there (repaired entries are not findings any more)."""
        return [d for d in self.damaged if not d.repaired]

    def as_dict(self) -> dict[str, Any]:
        return {
            "cache": str(self.cache.root),
            "entries": self.entries,
            "hashed_files": self.hashed_files,
            "hashed_bytes": self.hashed_bytes,
            "seconds": round(self.seconds, 3),
            "damaged": [d.as_dict() for d in self.damaged],
            "clean": not self.findings,
        }


def open_cache(cache: PackageCache) -> list[CacheEntry]:
    if not cache.root.exists():
        raise UserError("package cache folder does not exist", path=cache.root, fix="pass --cache-dir of a cache")
    if not cache.root.is_dir():
        raise UserError("not a folder", path=cache.root, fix="pass --cache-dir of a package cache folder")
    if not cache.pkgs.is_dir():
        raise UserError(
            "not a package cache (no pkgs/ folder)",
            path=cache.root,
            fix="pass the folder given to `install --cache-dir` (or RATTLER_CACHE_DIR)",
        )
    return cache.entries()


def verify_cache(
    cache: PackageCache,
    entries: list[CacheEntry],
    *,
    repair: bool = False,
    client: Client | None = None,
    on_hashed: Callable[[int], None] | None = None,
    on_planned: Callable[[int], None] | None = None,
) -> CacheVerification:
    """`entries` (from `open_cache`) against their paths.json, every file hashed; damaged ones repaired if asked."""
    started = time.perf_counter()
    result = CacheVerification(cache, entries=len(entries))
    checks = check_entries(entries, trust_memo=False, on_hashed=on_hashed, on_planned=on_planned)
    for check in checks:
        result.hashed_files += check.hashed_files
        result.hashed_bytes += check.hashed_bytes
        if check.ok:
            if check.changed:
                remember(check, check.entry.archive_sha256(), None)
        else:
            result.damaged.append(DamagedEntry(check.entry, check.damage))
    if repair and result.damaged:
        _repair(result.damaged, client or _default_client())
    cache.save_memos()
    result.seconds = time.perf_counter() - started
    return result


def _default_client() -> Client:
    from cli.lockengine.downloads import download_client

    return download_client()


def _origin(entry: CacheEntry) -> tuple[str, str] | None:
    memo = entry.read_memo()
    sha256 = (memo.sha256 if memo else None) or entry.archive_sha256()
    origin = memo.origin if memo else None
    return (origin, sha256) if origin and sha256 else None


def _repair(damaged: list[DamagedEntry], client: Client) -> None:
    known = [(d, _origin(d.entry)) for d in damaged]
    jobs = [(d.entry, origin[0], origin[1]) for d, origin in known if origin is not None]
    outcome = dict((entry.name, error) for entry, error in extract_verified(jobs, client))
    extracted = [d.entry for d, origin in known if origin is not None and outcome.get(d.entry.name) is None]
    rechecked: dict[str, EntryCheck] = {c.entry.name: c for c in check_entries(extracted, trust_memo=False)}
    for item, origin in known:
        name = item.entry.name
        check = rechecked.get(name)
        if origin is not None and check is not None and check.ok:
            remember(check, origin[1], origin[0])
            item.repair, item.repaired = f"re-extracted from {origin[0]} (sha256 checked)", True
            continue
        if origin is None:
            why = "its origin is unknown"
        elif check is None:
            why = f"re-extracting it from {origin[0]} failed: {_first_line(outcome.get(name))}"
        else:
            why = f"freshly extracted from {origin[0]}, {check.damage[0]}"
        remove_entry(item.entry)
        item.repair, item.repaired = f"removed ({why}); the next install fetches it again", True
        log.warning("removed package cache entry %s: %s", item.entry.path, why)


def _first_line(error: BaseException | None) -> str:
    text = str(error).strip() if error is not None else ""
    return text.splitlines()[0] if text else type(error).__name__
