"""The one parallel file hasher that `audit prefix` and the package cache's checks share."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from cli.file_hashing import BATCH_BYTES, BATCH_FILES, CHUNK, SMALL_FILE, batches, hash_all, sha256_of


@pytest.mark.parametrize("size", [0, 1, SMALL_FILE, SMALL_FILE + 1, 2 * CHUNK + 7])
def test_sha256_of_reads_small_files_whole_and_large_ones_in_chunks(tmp_path: Path, size: int) -> None:
    path = tmp_path / "file"
    content = os.urandom(size)
    path.write_bytes(content)
    expected = hashlib.sha256(content).hexdigest()
    assert sha256_of(path, size) == expected
    assert sha256_of(path) == expected  # size unknown: chunks
    assert sha256_of(path, 1) == expected  # a stale small size still reads the whole file


def test_batches_put_the_largest_files_first_and_close_at_the_limits() -> None:
    sizes = [1] * (BATCH_FILES + 3) + [BATCH_BYTES, BATCH_BYTES // 2, BATCH_BYTES // 2]
    groups = batches(sizes, lambda size: size)
    assert groups[0] == [BATCH_BYTES]
    assert groups[1] == [BATCH_BYTES // 2, BATCH_BYTES // 2]
    assert [len(g) for g in groups[2:]] == [BATCH_FILES, 3]
    assert sorted(s for g in groups for s in g) == sorted(sizes)


@pytest.mark.parametrize("workers", [1, 2])
def test_hash_all_hashes_every_file_once(tmp_path: Path, workers: int) -> None:
    files = []
    for index in range(300):
        path = tmp_path / f"f{index}"
        path.write_bytes(os.urandom(index * 100))
        files.append((path, index * 100))
    results = list(hash_all(files, lambda job: (job[0], sha256_of(*job)), lambda job: job[1], workers))
    assert sorted(results) == sorted((path, hashlib.sha256(path.read_bytes()).hexdigest()) for path, _ in files)
