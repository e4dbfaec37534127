"""Compressed layers kept by what they are made of, so a rebuild compresses only the layers that changed.

A layer's bytes follow from its members (paths, kinds, modes, owners, symlink targets, sizes),
their contents, its mtime and the compression: the key is the sha256 of all that. A package
file's content is named by what its package vouches for (paths.json's sha256): a layer made
before from bytes that matched it holds exactly those bytes, so reusing it packs only
vouched-for bytes, even if the package cache was damaged since. Any other file (conda-meta
records, the lock export) is hashed here. A blob is checked against its digest before reuse;
one that is not what it claims is dropped and made again.

The cache lives next to the package cache (`<cache>/oci-layers/`); removing it is always safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cli.file_hashing import sha256_of
from cli.oci.tarball import (
    GZIP_LEVEL,
    ZSTD_LEVEL,
    Compression,
    Entry,
    LayerBlob,
    complete,
)

log = logging.getLogger(__name__)
FORMAT = 1  # bump when the tar writer changes what it writes for the same members


@dataclass(frozen=True)
class LayerCache:
    root: Path

    @classmethod
    def beside(cls, package_cache: Path) -> LayerCache:
        return cls(package_cache / "oci-layers")

    def key(self, entries: list[Entry], mtime: int, compression: Compression, known: Mapping[str, Entry] | None) -> str:
        """What decides the layer's bytes, hashed."""
        members = complete(entries, known)
        described = [[m.path, m.kind, m.mode, m.uid, m.gid, m.target, *_content(m)] for m in members]
        document = {
            "format": FORMAT,
            "python": list(sys.version_info[:2]),  # tarfile writes the PAX headers
            "compression": compression.value,
            "level": {Compression.zstd: ZSTD_LEVEL, Compression.gzip: GZIP_LEVEL}.get(compression),
            "zstandard": _zstandard_version() if compression is Compression.zstd else None,
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
        record = json.loads(record_path.read_text())
        if sha256_of(blob_path) != record["digest"].split(":", 1)[1]:
            log.warning("cached layer %s is not what it claims: made again", record["digest"])
            blob_path.unlink()
            record_path.unlink()
            return None
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".layer-", suffix=".tmp", dir=folder)
        os.close(fd)
        linked = Path(name)
        linked.unlink()
        try:
            os.link(blob_path, linked)
        except OSError:  # another file system: copy
            import shutil

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
        record = {
            "digest": blob.digest,
            "diff_id": blob.diff_id,
            "size": blob.size,
            "media_type": blob.media_type,
            "uncompressed_size": blob.uncompressed_size,
        }
        partial_record = self.root / f".{key}.json.{os.getpid()}"
        partial_record.write_text(json.dumps(record, sort_keys=True))
        os.replace(partial_record, self.root / f"{key}.json")


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


def _zstandard_version() -> str:
    import zstandard

    return f"{zstandard.__version__}/{zstandard.ZSTD_VERSION}"
