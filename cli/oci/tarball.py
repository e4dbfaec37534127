"""Deterministic tar layers: the same entries give the same bytes, whatever the machine, umask or clock.

A layer is a list of `Entry` (directory, file or symlink) with its owner and mode stated
outright. `write_layer` sorts the entries, adds every missing parent directory, sets each
mtime to the layer's time, leaves user and group names empty (numeric ids only, so no
unpacker maps them through its own /etc/passwd), writes no atime, ctime or xattrs, and
compresses with fixed parameters. The sha256 of the tar is the layer's diff_id, the sha256
of the compressed bytes its blob digest.

Compression (see README, "Layer compression"): zstd by default, multi-threaded zstd at a
fixed level with a checksum; its output does not depend on the number of threads, and the
`zstandard` wheel pinned in pyproject.toml carries its own libzstd, so the bytes do not
depend on the machine either. gzip (for engines older than Docker 23 / containerd 1.5) is
the standard library's, fixed header (no file name, mtime 0).

A file entry may carry a `Vouch`: what its package says its bytes are. The bytes are
hashed as they stream into the layer, and a file that is not what its package says stops
the layer (`UnvouchedFile`).

Hard links are written as regular files: whether an installer hard-linked two files
depends on its package cache, not on the lock.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

from cli.errors import UserError

CHUNK = 1 << 20
GZIP_LEVEL = 6
ZSTD_LEVEL = 3
ZSTD_THREADS = max(1, min(4, os.cpu_count() or 1))  # the output is the same for any number >= 1
# pyproject.toml pins zstandard to this version (tests/oci/test_tarball.py checks that they agree); its
# wheel bundles this libzstd, which is what decides the compressed bytes.
ZSTANDARD_PIN = "0.25.0"
ZSTD_LIBRARY_PIN = "1.5.7"
COMPRESSION_LABEL = "io.osparc.runner.layer.compression"
DIR_MODE = 0o755
FILE_MODE = 0o644
EXEC_MODE = 0o755

MEDIA_TYPE_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

Kind = Literal["dir", "file", "symlink"]
log = logging.getLogger(__name__)


class Compression(StrEnum):
    """How layers are stored: zstd (the default), gzip (for older engines) or none."""

    zstd = "zstd"
    gzip = "gzip"
    none = "none"

    @property
    def media_type(self) -> str:
        return {
            Compression.zstd: MEDIA_TYPE_LAYER_ZSTD,
            Compression.gzip: MEDIA_TYPE_LAYER_GZIP,
            Compression.none: MEDIA_TYPE_LAYER,
        }[self]


@dataclass(frozen=True)
class Vouch:
    """What a file's package says its bytes are (sha256 hex and size), and how to name the package."""

    package: str
    sha256: str | None
    size: int | None
    fix: str


class UnvouchedFile(UserError):
    """A file's bytes are not what its package says: it must not reach an image."""


@dataclass(frozen=True)
class Entry:
    """One tar member; `path` is relative and POSIX (`etc/passwd`), content from `data` or the file `source`."""

    path: str
    kind: Kind
    mode: int
    uid: int = 0
    gid: int = 0
    data: bytes | None = None
    source: Path | None = None
    target: str = ""
    vouch: Vouch | None = None

    def __post_init__(self) -> None:
        clean = normalize_member_name(self.path)
        if clean != self.path or not clean:
            raise ValueError(f"layer path must be relative and normalised: {self.path!r}")

    @property
    def sort_key(self) -> bytes:
        return self.path.encode("utf-8", "surrogateescape")

    def size(self) -> int:
        if self.kind != "file":
            return 0
        if self.data is not None:
            return len(self.data)
        assert self.source is not None
        return self.source.stat().st_size


def normalize_member_name(name: str) -> str:
    """`./etc/passwd`, `/etc/passwd/` and `etc//passwd` all name `etc/passwd`."""
    parts = [p for p in PurePosixPath("/" + name).parts[1:] if p not in ("", ".")]
    return "/".join(parts)


def directory(path: str, *, mode: int = DIR_MODE, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path, "dir", mode, uid, gid)


def file_bytes(path: str, data: bytes, *, mode: int = FILE_MODE, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path, "file", mode, uid, gid, data=data)


def file_copy(path: str, source: Path, *, mode: int | None = None, uid: int = 0, gid: int = 0) -> Entry:
    """A file from disk; its mode is 0755 if any execute bit is set, else 0644, unless `mode` is given."""
    if mode is None:
        mode = normal_mode(source.stat().st_mode)
    return Entry(path, "file", mode, uid, gid, source=source)


def symlink(path: str, target: str, *, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path, "symlink", 0o777, uid, gid, target=target)


def normal_mode(st_mode: int) -> int:
    """Modes that do not depend on the umask: 0755 for directories and executables, 0644 otherwise."""
    if stat.S_ISDIR(st_mode) or st_mode & 0o111:
        return EXEC_MODE
    return FILE_MODE


def tree_entries(
    root: Path,
    prefix: str,
    *,
    uid: int = 0,
    gid: int = 0,
    skip: Callable[[Path], bool] | None = None,
) -> list[Entry]:
    """Everything under `root` placed under `prefix` (which is included as a directory), modes normalised."""
    entries = [directory(prefix, uid=uid, gid=gid)]
    for current, dirnames, filenames in os.walk(root):
        here = Path(current)
        dirnames.sort()
        kept = []
        for name in dirnames:
            path = here / name
            if skip is not None and skip(path):
                continue
            if path.is_symlink():  # os.walk lists a symlink to a directory among directories
                filenames.append(name)
                continue
            kept.append(name)
            entries.append(directory(_inside(prefix, root, path), uid=uid, gid=gid))
        dirnames[:] = kept
        for name in sorted(filenames):
            path = here / name
            if skip is not None and skip(path):
                continue
            entries.append(_entry_for(path, _inside(prefix, root, path), uid, gid))
    return entries


def _inside(prefix: str, root: Path, path: Path) -> str:
    return f"{prefix}/{path.relative_to(root).as_posix()}"


def _entry_for(path: Path, member: str, uid: int, gid: int) -> Entry:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return symlink(member, os.readlink(path), uid=uid, gid=gid)
    if stat.S_ISREG(info.st_mode):
        return Entry(member, "file", normal_mode(info.st_mode), uid, gid, source=path)
    if stat.S_ISDIR(info.st_mode):
        return directory(member, uid=uid, gid=gid)
    raise UserError(f"cannot put this file type into an image layer: {stat.filemode(info.st_mode)}", path=path)


def complete(entries: Iterable[Entry], known: Mapping[str, Entry] | None = None) -> list[Entry]:
    """Sorted, each path once, with every parent directory present before its children.

    A parent not given is written as the layers below have it (`known`: path -> directory
    entry), or as 0755 root when they do not have it: an upper layer that names a directory
    replaces its owner and mode, so it must repeat them.
    """
    known = known or {}
    by_path: dict[str, Entry] = {}
    for entry in entries:
        seen = by_path.get(entry.path)
        if seen is not None and seen != entry:
            raise ValueError(f"two different entries for {entry.path}: {seen} and {entry}")
        by_path[entry.path] = entry
    for path in list(by_path):
        parent = PurePosixPath(path).parent
        while str(parent) != ".":
            key = str(parent)
            seen = by_path.get(key)
            if seen is None:
                by_path[key] = known.get(key) or directory(key)
            elif seen.kind != "dir":
                raise ValueError(f"{key} is both a {seen.kind} and a parent directory")
            parent = parent.parent
    return sorted(by_path.values(), key=lambda e: e.sort_key)


class _HashingSink:
    """A write-only file object that hashes and counts what passes through to `target` (if any)."""

    def __init__(self, target: _HashingSink | gzip.GzipFile | object | None) -> None:
        self.target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.digest.update(data)
        self.size += len(data)
        if self.target is not None:
            self.target.write(data)  # type: ignore[attr-defined]
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        flush = getattr(self.target, "flush", None)
        if flush is not None:
            flush()

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


@dataclass(frozen=True)
class LayerBlob:
    """A written layer: `path` holds the blob, named by nothing yet (the caller files it by digest)."""

    path: Path
    digest: str  # sha256:<hex> of the blob as stored
    diff_id: str  # sha256:<hex> of the uncompressed tar
    size: int
    media_type: str
    uncompressed_size: int
    members: list[Entry]

    def directories(self) -> dict[str, Entry]:
        return {entry.path: entry for entry in self.members if entry.kind == "dir"}


def tar_info(entry: Entry, epoch: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.mode = entry.mode
    info.uid = entry.uid
    info.gid = entry.gid
    info.uname = ""
    info.gname = ""
    info.mtime = epoch
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
    else:
        info.type = tarfile.REGTYPE
        info.size = entry.size()
    return info


def write_tar(
    entries: Iterable[Entry], sink: object, epoch: int, known: Mapping[str, Entry] | None = None
) -> list[Entry]:
    """Write the completed, sorted entries as a PAX tar stream to `sink`; returns the members written.

    Every member's mtime is `epoch`. A file with a `Vouch` is hashed as it streams and must match it.
    """
    members = complete(entries, known)
    with tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK) as archive:  # type: ignore[call-overload]
        for entry in members:
            info = tar_info(entry, epoch)
            if entry.kind != "file":
                archive.addfile(info)
            elif entry.data is not None:
                archive.addfile(info, _BytesReader(entry.data))
            else:
                assert entry.source is not None
                with entry.source.open("rb") as handle:
                    reader = _VouchingReader(handle) if entry.vouch is not None else None
                    archive.addfile(info, reader or handle)
                if entry.source.stat().st_size != info.size:
                    raise UserError("file changed while it was packed into a layer", path=entry.source)
                if entry.vouch is not None and reader is not None:
                    check_vouched(entry, entry.vouch, reader.hexdigest(), info.size)
    return members


def check_vouched(entry: Entry, vouch: Vouch, sha256: str, size: int) -> None:
    """The bytes that went into the layer are those the package states, or the layer is abandoned."""
    if vouch.size is not None and vouch.size != size:
        found = f"{size} bytes where {vouch.package} has {vouch.size}"
    elif vouch.sha256 is not None and vouch.sha256 != sha256:
        found = f"sha256 {sha256[:12]}... where {vouch.package} has {vouch.sha256[:12]}..."
    else:
        return
    raise UnvouchedFile(
        f"is not the file of package {vouch.package} ({found}): its package cache entry is damaged",
        path=f"/{entry.path}",
        fix=vouch.fix,
    )


class _VouchingReader:
    """A file read by tarfile, hashed on the way (sha256 runs at GB/s; the bytes are read anyway)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self.handle.read(size)
        self.digest.update(chunk)
        return chunk

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.offset + size
        chunk = self.data[self.offset : end]
        self.offset += len(chunk)
        return chunk


def write_layer(
    entries: Iterable[Entry],
    folder: Path,
    epoch: int,
    compression: Compression,
    known: Mapping[str, Entry] | None = None,
) -> LayerBlob:
    """Write one layer blob into `folder` (a temporary name), hashing the tar and the blob as they stream."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".layer-", suffix=".tmp", dir=folder)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            blob = _HashingSink(handle)
            if compression is Compression.zstd:
                with zstd_writer(blob) as zipped:
                    tar = _HashingSink(zipped)
                    members = write_tar(entries, tar, epoch, known)
            elif compression is Compression.gzip:
                with gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=blob, mtime=0) as zipped:
                    tar = _HashingSink(zipped)
                    members = write_tar(entries, tar, epoch, known)
            else:
                tar = blob
                members = write_tar(entries, tar, epoch, known)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return LayerBlob(
        path=path,
        digest=f"sha256:{blob.hexdigest()}",
        diff_id=f"sha256:{tar.hexdigest()}",
        size=blob.size,
        media_type=compression.media_type,
        uncompressed_size=tar.size,
        members=members,
    )


def zstd_versions() -> tuple[str, str]:
    """The running python-zstandard and the libzstd it carries (`0.25.0`, `1.5.7`)."""
    import zstandard

    return zstandard.__version__, ".".join(str(part) for part in zstandard.ZSTD_VERSION)


def check_compressor(
    compression: Compression, versions: tuple[str, str] | None = None, *, pyproject: Path | None = None
) -> None:
    """Refuse a libzstd other than the pinned one: its zstd layers could have other bytes than other machines'.

    Another python-zstandard release carrying the pinned libzstd gives the same bytes (every
    parameter is set here, none left to the binding): a warning, not a refusal.
    """
    if compression is not Compression.zstd:
        return
    binding, library = versions or zstd_versions()
    where = pyproject or Path(__file__).resolve().parents[2] / "pyproject.toml"
    if library != ZSTD_LIBRARY_PIN:
        raise UserError(
            f"zstandard {binding} carries libzstd {library}, not the pinned {ZSTD_LIBRARY_PIN} (zstandard=="
            f"{ZSTANDARD_PIN}): its zstd layers would not have the bytes, nor the digests, of other machines' builds",
            path=where,
            fix=f"install the pin: pip install zstandard=={ZSTANDARD_PIN}; or build with --compression gzip",
        )
    if binding != ZSTANDARD_PIN:
        log.warning(
            "zstandard %s is not the pinned %s; it carries the pinned libzstd %s, so the layers' bytes are the same",
            binding,
            ZSTANDARD_PIN,
            library,
        )


def compressor_parameters(compression: Compression) -> dict[str, Any]:
    """Everything besides the tar that decides a layer's compressed bytes (image label and layer cache key)."""
    if compression is Compression.zstd:
        library = zstd_versions()[1]  # not the binding's version: it sets no parameter of its own here
        return {"format": "zstd", "libzstd": library, "level": ZSTD_LEVEL, "checksum": True,
                "content_size": False, "mode": "multi-threaded"}  # fmt: skip
    if compression is Compression.gzip:
        import zlib

        return {"format": "gzip", "zlib": zlib.ZLIB_RUNTIME_VERSION, "level": GZIP_LEVEL, "header": "fixed"}
    return {"format": "none"}


def compression_label(compression: Compression) -> str:
    """`zstd libzstd=1.5.7 level=3 ...`: the image records what compressed its layers."""
    parameters = compressor_parameters(compression)
    rest = " ".join(f"{key}={_label_value(value)}" for key, value in parameters.items() if key != "format")
    return f"{parameters['format']} {rest}".strip()


def _label_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def zstd_writer(target: _HashingSink) -> Any:
    """A zstd frame writer with fixed parameters: multi-threaded mode (same bytes for any thread count), checksum."""
    import zstandard

    compressor = zstandard.ZstdCompressor(
        level=ZSTD_LEVEL, threads=ZSTD_THREADS, write_checksum=True, write_content_size=False
    )
    return compressor.stream_writer(target, closefd=False)  # type: ignore[arg-type]


def tar_bytes(entries: Iterable[Entry], epoch: int, known: Mapping[str, Entry] | None = None) -> bytes:
    """The uncompressed tar of `entries` in memory (small archives and tests)."""
    import io

    buffer = io.BytesIO()
    write_tar(entries, buffer, epoch, known)
    return buffer.getvalue()
