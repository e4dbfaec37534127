"""Layers written side by side: the image's layers are independent once each knows the directories below it.

A layer must repeat the owner and mode of every parent directory a lower layer wrote
(`cli.oci.tarball.complete`), so its bytes depend on the layers below, but only through their
members, which follow from their entries alone. `LayerWriter.add` works those out at once, in
image order, and hands the packing (tar, hashes, compression) to a pool of `LAYER_WORKERS`
threads; `finish` collects the blobs in image order. Reading files, sha256 and zstd release the
GIL, so two layers are packed at once on two cores. The bytes are those of packing one after
the other (`tests/oci/test_layer_writer.py`).

A layer kept from an earlier build (`cli.oci.layer_cache`) is reused instead of packed.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cli.oci.layer_cache import LayerCache
from cli.oci.layout import BlobStore, Descriptor
from cli.oci.tarball import Compression, Entry, LayerBlob, complete, write_layer

log = logging.getLogger(__name__)
LAYER_WORKERS = 2  # the machine has two cores; zstd's own workers share them


@dataclass(frozen=True)
class WrittenLayer:
    role: str
    label: str
    packages: tuple[str, ...]
    description: str
    blob: LayerBlob
    descriptor: Descriptor


@dataclass
class _Pending:
    role: str
    label: str
    packages: tuple[str, ...]
    description: str
    key: str | None
    blob: LayerBlob | Future[LayerBlob]


class LayerWriter:
    """Adds layers in image order, packs them on a thread pool, files them in `store` in that order."""

    def __init__(
        self,
        store: BlobStore,
        work: Path,
        compression: Compression,
        directories: dict[str, Entry],
        cache: LayerCache | None,
        workers: int | None = None,
    ) -> None:
        self.store = store
        self.work = work
        self.compression = compression
        self.directories = dict(directories)  # what an implicit parent directory must repeat
        self.cache = cache
        self.pool = ThreadPoolExecutor(max_workers=workers or LAYER_WORKERS, thread_name_prefix="layer")
        self.pending: list[_Pending] = []

    def add(
        self,
        role: str,
        entries: list[Entry],
        mtime: int,
        description: str,
        label: str = "",
        packages: tuple[str, ...] = (),
    ) -> None:
        """Reuse the layer or start packing it; the next layer sees its directories either way."""
        known = dict(self.directories)
        key = self.cache.key(entries, mtime, self.compression, known) if self.cache else None
        reused = self.cache.reuse(key, entries, known, self.work) if self.cache and key else None
        blob: LayerBlob | Future[LayerBlob]
        if reused is not None:
            members, blob = reused.members, reused
        else:
            members = complete(entries, known)
            blob = self.pool.submit(write_layer, entries, self.work, mtime, self.compression, known)
        self.directories.update({entry.path: entry for entry in members if entry.kind == "dir"})
        self.pending.append(_Pending(role, label, packages, description, key if reused is None else None, blob))

    def finish(self) -> list[WrittenLayer]:
        """Wait for every layer added so far, keep the new ones in the cache, file them in image order."""
        written = []
        try:
            for pending in self.pending:
                blob = pending.blob.result() if isinstance(pending.blob, Future) else pending.blob
                if self.cache and pending.key:
                    self.cache.keep(pending.key, blob)
                descriptor = self.store.adopt(blob.path, blob.digest, blob.media_type)
                log.info(
                    "%s layer %s %s: %d entries, %d bytes",
                    pending.role, pending.label, blob.digest, len(blob.members), blob.size,
                )  # fmt: skip
                written.append(
                    WrittenLayer(pending.role, pending.label, pending.packages, pending.description, blob, descriptor)
                )
        except BaseException:
            self.close()
            raise
        self.pending = []
        return written

    def close(self) -> None:
        """Stop: layers not started are dropped, those being packed end (the caller removes the work folder)."""
        self.pool.shutdown(wait=True, cancel_futures=True)
