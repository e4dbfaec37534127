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

from runner.nofollow import is_plain_name, open_regular, read_text, shown, write_new

MANIFEST = "files.sha256"
_KINDS = ("f", "l", "o")
_CHUNK = 1 << 20
PARALLEL_FROM_BYTES = 16 * 1024 * 1024  # below, threads cost more than they save


def record(folder: Path, skip: frozenset[str]) -> str:
    """Write `folder/files.sha256` (every entry but `skip` and itself); return the sha256 of that text.

    `folder` is the sealer's own (runner/publish.py made it and copied every file into it), so
    nobody else can rename or replace what is listed here; the list itself is a new file, never
    written through a link, and names that would break its one-entry-a-line format are refused.
    """
    listing = _listing(folder, skip)
    for path in listing:
        if not all(is_plain_name(part) for part in path.split("/")):
            raise ValueError(f"{shown(path)}: a name files.sha256 cannot record on one line")
    text = "".join(f"{kind} {digest} {path}\n" for path, (kind, digest) in sorted(listing.items()))
    write_new(folder / MANIFEST, text.encode("utf-8"), 0o444)
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
        text = read_text(folder / MANIFEST)
    except (OSError, UnicodeDecodeError):
        return f"{MANIFEST} is missing"
    if hashlib.sha256(text.encode()).hexdigest() != manifest_digest:
        return f"{MANIFEST} changed"
    expected = _parse(text)
    if expected is None:
        return f"{MANIFEST} cannot be read"
    try:
        found = _listing(folder, skip | {MANIFEST})
    except OSError as error:  # e.g. a folder or file whose read permission was taken away
        where = os.path.relpath(error.filename, folder) if error.filename else "a file"
        return f"{shown(where)} cannot be read ({error.strerror})"
    for path in sorted(expected.keys() | found.keys()):
        if path not in found:
            return f"{shown(path)} is missing"
        if path not in expected:
            return f"{shown(path)} was added"
        if found[path] != expected[path]:
            return f"{shown(path)} changed"
    return None


def _parse(text: str) -> dict[str, tuple[str, str]] | None:
    """path -> (kind, digest) as `record` wrote them; None for a text it cannot have written."""
    expected: dict[str, tuple[str, str]] = {}
    lines = text.split("\n")
    if lines.pop() != "":  # every line ends with a newline
        return None
    for line in lines:
        kind, _, rest = line.partition(" ")
        digest, _, path = rest.partition(" ")
        if kind not in _KINDS or not path or not (digest == "-" or len(digest) == 64):
            return None
        expected[path] = (kind, digest)
    return expected


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
    with os.fdopen(open_regular(path), "rb") as handle:
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
