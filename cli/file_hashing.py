"""sha256 of many files at once: `audit prefix` (a prefix's files) and the package cache's checks (its entries').

Hashing is bounded by the CPU (hashlib/OpenSSL uses the SHA instructions), and hashlib releases
the GIL while it hashes more than a few KiB, so a thread pool scales with the cores. One pool task
per file would cost more in scheduling than in hashing the small files of a site-packages, so
files go in batches, the largest first (a big library started last would finish alone).

The choices, checked with `bench/audit.py` (3000 files of 4-128 KiB, one in a hundred of 2 MiB)
on the 2-core machine, where they hash the package cache's entries 10% faster than
`hashlib.file_digest` in batches of 64 files did (0.23 s against 0.26 s):
- a file up to SMALL_FILE is read in one call (its size is known from the stat that precedes
  every hash), a larger one in CHUNK pieces into one buffer; `hashlib.file_digest` zeroes a
  256 KiB buffer for every file, which takes as long as hashing a 4 KiB file;
- a batch closes at BATCH_BYTES or BATCH_FILES: 16 MiB is about 10 ms of hashing, long enough
  to hide the pool's overhead and short enough that the last batches share out evenly;
- at most MAX_WORKERS threads (past the cores they only contend), and with one worker the
  files are hashed inline, without a pool.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

SMALL_FILE = 1 << 20
CHUNK = 1 << 20
BATCH_BYTES = 16 << 20
BATCH_FILES = 256
MAX_WORKERS = 8

Job = TypeVar("Job")
Result = TypeVar("Result")


def sha256_of(path: Path | str, size: int | None = None) -> str:
    """The file's sha256: one read when `size` says it is small, CHUNK pieces otherwise."""
    with open(path, "rb", buffering=0) as handle:
        if size is not None and size <= SMALL_FILE:
            return hashlib.sha256(handle.read()).hexdigest()
        digest = hashlib.sha256()
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        while count := handle.readinto(buffer):
            digest.update(view[:count])
        return digest.hexdigest()


def default_workers() -> int:
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


def batches(jobs: Sequence[Job], size_of: Callable[[Job], int]) -> list[list[Job]]:
    """The jobs, largest file first, in groups of about BATCH_BYTES (or BATCH_FILES small files)."""
    result: list[list[Job]] = []
    current: list[Job] = []
    total = 0
    for job in sorted(jobs, key=size_of, reverse=True):
        current.append(job)
        total += size_of(job)
        if total >= BATCH_BYTES or len(current) >= BATCH_FILES:
            result.append(current)
            current, total = [], 0
    if current:
        result.append(current)
    return result


def hash_all(
    jobs: Sequence[Job],
    work: Callable[[Job], Result],
    size_of: Callable[[Job], int],
    workers: int | None = None,
) -> Iterator[Result]:
    """`work` (which hashes one job's file) over every job, on a thread pool in batches; results in batch order."""
    groups = batches(jobs, size_of)
    count = workers or default_workers()
    if count == 1:
        for group in groups:
            yield from (work(job) for job in group)
        return
    with ThreadPoolExecutor(max_workers=count) as pool:
        for results in pool.map(lambda group: [work(job) for job in group], groups):
            yield from results
