"""Sealing a finished overlay, and checking the seal before each reuse.

A job runs arbitrary code, and overlays are shared between jobs: a job that edits a file
of a cached overlay (found through `module.__file__`) must not change what the next job
runs. So when an overlay is finished it is sealed:

- `files.sha256` records every file and symbolic link it holds (a sha256 of the content,
  or of the link's target), written before the completion marker, which records the
  sha256 of that list;
- every file and folder loses its write permissions.

A reuse lists the folder again and hashes every file: a changed, added or missing file
(a new `.pth` or `.pyc` counts) names itself, and the overlay is discarded and rebuilt.

Read-only modes stop a job running as another user (the image's design: overlays are
built and owned by another identity than the job's). For a job running as the overlay's
owner (local runs), or as root, only the check stands between it and the next job; it
catches any edit that does not also rewrite `files.sha256` and the marker.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

MANIFEST = "files.sha256"
_CHUNK = 1 << 20
PARALLEL_FROM_BYTES = 16 * 1024 * 1024  # below, threads cost more than they save


def record(folder: Path, skip: frozenset[str]) -> str:
    """Write `folder/files.sha256` (every entry but `skip` and itself); return the sha256 of that text."""
    text = "".join(f"{kind} {digest} {path}\n" for path, (kind, digest) in sorted(_listing(folder, skip).items()))
    (folder / MANIFEST).write_text(text, encoding="utf-8")
    return hashlib.sha256(text.encode()).hexdigest()


def make_read_only(folder: Path) -> None:
    """Take every write permission away, the folder's own included (symbolic links have no modes of their own).

    Set-user-ID, set-group-ID and sticky bits go too: an overlay never needs them, and in the
    image a file a builder made set-user-ID would be root's once the overlay is root's.
    """
    for root, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            _drop_write(os.path.join(root, name))
    _drop_write(str(folder))


def check(folder: Path, manifest_digest: str, skip: frozenset[str]) -> str | None:
    """None when `folder` holds exactly what it held when sealed; else what differs, naming one file."""
    try:
        text = (folder / MANIFEST).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return f"{MANIFEST} is missing"
    if hashlib.sha256(text.encode()).hexdigest() != manifest_digest:
        return f"{MANIFEST} changed"
    expected: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        kind, digest, path = line.split(" ", 2)
        expected[path] = (kind, digest)
    try:
        found = _listing(folder, skip | {MANIFEST})
    except OSError as error:  # e.g. a folder or file whose read permission was taken away
        where = os.path.relpath(error.filename, folder) if error.filename else "a file"
        return f"{where} cannot be read ({error.strerror})"
    for path in sorted(expected.keys() | found.keys()):
        if path not in found:
            return f"{path} is missing"
        if path not in expected:
            return f"{path} was added"
        if found[path] != expected[path]:
            return f"{path} changed"
    return None


def remove(folder: Path) -> None:
    """Delete an overlay folder, sealed or not (a read-only folder's entries cannot be unlinked as its owner).

    Root needs no write permission, and must not follow a symbolic link another user put in the
    tree: it only calls `shutil.rmtree`, which works through directory descriptors and never
    follows links.
    """
    if not folder.exists() and not folder.is_symlink():
        return
    if os.geteuid() == 0:
        if folder.is_symlink():
            folder.unlink()
        else:
            shutil.rmtree(folder, ignore_errors=True)
        return
    for root, dirs, _files in os.walk(folder):
        for name in dirs:
            _allow_write(os.path.join(root, name))
    _allow_write(str(folder))
    shutil.rmtree(folder, ignore_errors=True)


def _listing(folder: Path, skip: frozenset[str]) -> dict[str, tuple[str, str]]:
    """relative path -> (kind, sha256) for each file ("f") and symbolic link ("l") under `folder`, but `skip`."""
    found: dict[str, tuple[str, str]] = {}
    files: list[tuple[str, str]] = []  # (relative path, path) of the regular files, hashed below
    size = 0
    pending = [(str(folder), "")]
    while pending:
        directory, prefix = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                relative = prefix + entry.name
                if not prefix and entry.name in skip:
                    continue
                if entry.is_symlink():
                    found[relative] = ("l", hashlib.sha256(os.fsencode(os.readlink(entry.path))).hexdigest())
                elif entry.is_dir():
                    pending.append((entry.path, relative + "/"))
                elif entry.is_file():
                    files.append((relative, entry.path))
                    size += entry.stat().st_size
                else:
                    found[relative] = ("o", "-")  # a fifo, socket or device: never part of an overlay
    if size < PARALLEL_FROM_BYTES:
        found.update((relative, ("f", _file_sha256(path))) for relative, path in files)
    else:
        # hashlib and file reads release the GIL: a few threads use the cores a large overlay deserves.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            digests = pool.map(_file_sha256, [path for _relative, path in files], chunksize=16)
            found.update((relative, ("f", digest)) for (relative, _path), digest in zip(files, digests, strict=True))
    return found


def _file_sha256(path: str) -> str:
    with open(path, "rb") as handle:
        digest = hashlib.sha256()
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _drop_write(path: str) -> None:
    mode = os.lstat(path).st_mode
    if not stat.S_ISLNK(mode):
        os.chmod(path, stat.S_IMODE(mode) & ~0o7222)


def _allow_write(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
        if stat.S_ISDIR(mode):
            os.chmod(path, stat.S_IMODE(mode) | 0o700)
    except OSError:
        pass
