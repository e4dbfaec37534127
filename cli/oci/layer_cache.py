"""Compressed layers kept by what they are made of, so a rebuild compresses only the layers that changed.

A layer's bytes follow from its members (paths, kinds, modes, owners, symlink targets, sizes),
their contents, its mtime and the compression: the key is the sha256 of all that. A package
file's content is named by what its package vouches for (paths.json's sha256): a layer made
before from bytes that matched it holds exactly those bytes, so reusing it packs only
vouched-for bytes, even if the package cache was damaged since. Any other file (conda-meta
records, the lock export) is hashed here. A blob is checked against its digest before reuse;
one that is not what it claims is dropped and made again.

What else decides the bytes (the tar writer, Python's tarfile, the compressor and its
parameters) enters the key as a fingerprint derived from them, not as a hand-bumped number:
`writer_fingerprint` hashes the source of `cli.oci.tarball` and of the standard library's
tarfile (and gzip), the compressor's version and parameters, and the Python version. Any change
there makes new keys, so a stale blob is never reused.

Each reuse checks the blob's size and digest against its record (a record that cannot be read
counts as damage): a damaged entry is removed, one warning, and the layer is made again. A
reuse touches the record's mtime: that is the entry's last use, by which `prune` removes
entries (`cli cache prune`).

The cache lives next to the package cache (`<cache>/oci-layers/`); removing it is always safe.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.file_hashing import sha256_of
from cli.oci import tarball
from cli.oci.tarball import Compression, Entry, LayerBlob, complete, compressor_parameters, zstd_versions

log = logging.getLogger(__name__)
RECORD_FIELDS = ("digest", "diff_id", "size", "media_type", "uncompressed_size")
PARTIAL_AGE = 24 * 3600  # a partial file this old belongs to no build still running


@functools.cache
def writer_fingerprint(compression: Compression) -> str:
    """The sha256 of everything besides a layer's members that decides its bytes (the cache's format)."""
    sources = [Path(tarball.__file__), Path(tarfile.__file__)]
    if compression is Compression.gzip:
        sources.append(Path(gzip.__file__))
    document = {
        "sources": {source.name: hashlib.sha256(source.read_bytes()).hexdigest() for source in sources},
        "python": sys.version,
        "compressor": compressor_parameters(compression),
        "zstandard": zstd_versions()[0] if compression is Compression.zstd else None,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class LayerCache:
    root: Path

    @classmethod
    def beside(cls, package_cache: Path) -> LayerCache:
        return cls(package_cache / LAYERS_FOLDER)

    def key(self, entries: list[Entry], mtime: int, compression: Compression, known: Mapping[str, Entry] | None) -> str:
        """What decides the layer's bytes, hashed."""
        members = complete(entries, known)
        described = [[m.path, m.kind, m.mode, m.uid, m.gid, m.target, *_content(m)] for m in members]
        document = {
            "writer": writer_fingerprint(compression),
            "compression": compression.value,
            "mtime": mtime,
            "members": described,
        }
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()

    def reuse(
        self, key: str, entries: list[Entry], known: Mapping[str, Entry] | None, folder: Path
    ) -> LayerBlob | None:
        """The layer made before under `key`, linked into `folder`, if it is still what it claims."""
        record_path, blob_path = self.root / f"{key}.json", self.root / f"{key}.blob"
        if not record_path.is_file() or not blob_path.is_file():
            return None
        record = _read_record(record_path)
        damage = _damage(record, blob_path)
        if damage is not None:
            log.warning("cached layer %s %s: removed, the layer is made again", blob_path, damage)
            blob_path.unlink(missing_ok=True)
            record_path.unlink(missing_ok=True)
            return None
        assert record is not None
        os.utime(record_path)  # last use, for `prune`
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".layer-", suffix=".tmp", dir=folder)
        os.close(fd)
        linked = Path(name)
        linked.unlink()
        try:
            os.link(blob_path, linked)
        except OSError:  # another file system: copy
            shutil.copyfile(blob_path, linked)
        return LayerBlob(
            path=linked,
            digest=record["digest"],
            diff_id=record["diff_id"],
            size=record["size"],
            media_type=record["media_type"],
            uncompressed_size=record["uncompressed_size"],
            members=complete(entries, known),
        )

    def keep(self, key: str, blob: LayerBlob) -> None:
        """Remember a freshly written layer (a hard link: no copy)."""
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / f"{key}.blob"
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        partial.unlink(missing_ok=True)
        try:
            os.link(blob.path, partial)
        except OSError:
            return  # another file system: not worth a copy
        os.replace(partial, target)
        record = {name: getattr(blob, name) for name in RECORD_FIELDS}
        partial_record = self.root / f".{key}.json.{os.getpid()}"
        partial_record.write_text(json.dumps(record, sort_keys=True))
        os.replace(partial_record, self.root / f"{key}.json")


LAYERS_FOLDER = "oci-layers"


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict) or any(name not in record for name in RECORD_FIELDS):
        return None
    return record


def _damage(record: dict[str, Any] | None, blob: Path) -> str | None:
    """What is wrong with a cache entry (its record, its size, its digest), or None."""
    if record is None:
        return "has an unreadable record"
    digest, size = str(record["digest"]), record["size"]
    if not digest.startswith("sha256:") or not str(record["diff_id"]).startswith("sha256:"):
        return "has a record without sha256 digests"
    actual = blob.stat().st_size
    if actual != size:
        return f"has {actual} bytes where its record says {size}"
    if f"sha256:{sha256_of(blob)}" != digest:
        return f"is not {digest}"
    return None


def _content(entry: Entry) -> tuple[int, str]:
    """Size and content of a member as the layer would hold them: for a package file, what its package vouches for."""
    if entry.kind != "file":
        return 0, ""
    vouch = entry.vouch
    if vouch is not None and vouch.sha256 is not None:
        return (vouch.size if vouch.size is not None else entry.size()), f"vouched:{vouch.sha256}"
    if entry.data is not None:
        return len(entry.data), hashlib.sha256(entry.data).hexdigest()
    assert entry.source is not None
    return entry.size(), sha256_of(entry.source)


# --- prune ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedLayer:
    """One cache entry: its files (record and blob; an entry missing one half is never reused) and last use."""

    key: str
    paths: tuple[Path, ...]
    size: int
    last_used: float  # the record's mtime (a reuse touches it), else the blob's

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "size": self.size, "last_used": round(self.last_used, 3)}


@dataclass
class PruneResult:
    root: Path
    dry_run: bool
    removed: list[CachedLayer] = field(default_factory=list)
    kept: list[CachedLayer] = field(default_factory=list)
    partials: list[Path] = field(default_factory=list)  # left by builds that were stopped

    @property
    def removed_bytes(self) -> int:
        return sum(entry.size for entry in self.removed)

    @property
    def kept_bytes(self) -> int:
        return sum(entry.size for entry in self.kept)

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "dry_run": self.dry_run,
            "removed": [entry.as_dict() for entry in self.removed],
            "removed_bytes": self.removed_bytes,
            "kept": len(self.kept),
            "kept_bytes": self.kept_bytes,
            "partials": [str(path) for path in self.partials],
        }


def cached_layers(root: Path) -> tuple[list[CachedLayer], list[Path]]:
    """The entries of the layer cache at `root`, least recently used first, and stale partial files."""
    halves: dict[str, list[Path]] = {}
    partials = []
    now = time.time()
    for path in root.iterdir() if root.is_dir() else ():
        if path.name.startswith("."):
            if now - path.lstat().st_mtime > PARTIAL_AGE:
                partials.append(path)
        elif path.suffix in (".json", ".blob"):
            halves.setdefault(path.stem, []).append(path)
    entries = []
    for key, paths in halves.items():
        stats = {path.suffix: path.stat() for path in paths}
        last_used = (stats.get(".json") or stats[".blob"]).st_mtime
        entries.append(CachedLayer(key, tuple(sorted(paths)), sum(s.st_size for s in stats.values()), last_used))
    return sorted(entries, key=lambda entry: (entry.last_used, entry.key)), sorted(partials)


def prune_layers(
    root: Path, *, older_than: float | None = None, max_size: int | None = None, dry_run: bool = False
) -> PruneResult:
    """Remove entries unused for `older_than` seconds, then the least recently used until `max_size` bytes remain."""
    entries, partials = cached_layers(root)
    result = PruneResult(root, dry_run, partials=partials)
    now = time.time()
    kept = [entry for entry in entries if older_than is None or now - entry.last_used <= older_than]
    result.removed = [entry for entry in entries if entry not in kept]
    total = sum(entry.size for entry in kept)
    while max_size is not None and kept and total > max_size:
        oldest = kept.pop(0)
        result.removed.append(oldest)
        total -= oldest.size
    result.kept = kept
    if not dry_run:
        for path in [*(p for entry in result.removed for p in entry.paths), *partials]:
            path.unlink(missing_ok=True)  # a build reusing it holds its own hard link
    return result
