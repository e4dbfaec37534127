"""Deterministic zip archives of the output folders, and safe unpacking of code archives.

Same files in, same bytes out: entries sorted, timestamps fixed at 1980-01-01 (the
earliest a zip can hold), permissions reduced to 0644/0755, so that an output's zip
only changes when its content does (oSPARC caches by content).
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from runner.contract import PARTIAL_SUFFIX
from runner.logs import log

FIXED_TIME = (1980, 1, 1, 0, 0, 0)
ZIP64_LIMIT = (1 << 31) - 1


def zip_folder(folder: Path, archive: Path) -> tuple[int, int]:
    """Zip `folder`'s content into `archive`, complete or not at all; returns (files, bytes of content).

    Written as `.<name>.partial` next to it, then renamed: a job killed while zipping (oSPARC
    cancels with SIGKILL) leaves no truncated archive under the output port's name.
    """
    partial = archive.with_name(f".{archive.name}{PARTIAL_SUFFIX}")
    try:
        counts = _write_zip(folder, partial)
        os.replace(partial, archive)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return counts


def _write_zip(folder: Path, archive: Path) -> tuple[int, int]:
    entries: list[tuple[str, Path | None]] = []  # (name in the archive, file or None for a folder)
    for root, _dirs, names in os.walk(folder):
        relative_root = Path(root).relative_to(folder)
        if relative_root != Path("."):
            entries.append((relative_root.as_posix() + "/", None))
        entries += [((relative_root / name).as_posix(), Path(root, name)) for name in names]
    entries.sort(key=lambda entry: entry[0])
    files = total = 0
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as bundle:
        for name, path in entries:
            if path is None:
                bundle.writestr(_info(name, 0o755, directory=True), b"")
                continue
            try:
                mode = path.stat().st_mode
            except OSError:
                log.warning("skipping %s in the output (broken link)", path)
                continue
            if not stat.S_ISREG(mode):
                log.warning("skipping %s in the output (not a regular file)", path)
                continue
            size = path.stat().st_size
            info = _info(name, 0o755 if mode & 0o111 else 0o644)
            with path.open("rb") as source, bundle.open(info, "w", force_zip64=size > ZIP64_LIMIT) as target:
                shutil.copyfileobj(source, target, 1 << 20)
            files += 1
            total += size
    return files, total


def _info(name: str, mode: int, directory: bool = False) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.create_system = 3  # unix, so the permission bits below are honoured
    info.external_attr = ((stat.S_IFDIR if directory else stat.S_IFREG) | mode) << 16
    if directory:
        info.external_attr |= 0x10  # MS-DOS directory flag
    info.compress_type = zipfile.ZIP_STORED if directory else zipfile.ZIP_DEFLATED
    return info


class UnsafeArchive(ValueError):
    pass


def unpack(archive: Path, destination: Path) -> int:
    """Extract a code archive, refusing entries that would land outside `destination`; returns the file count."""
    count = 0
    destination = destination.resolve()
    with zipfile.ZipFile(archive) as bundle:
        for info in bundle.infolist():
            parts = PurePosixPath(info.filename.replace("\\", "/")).parts
            if info.filename.startswith("/") or ".." in parts:
                raise UnsafeArchive(f"entry {info.filename!r} points outside the archive")
            if parts and parts[0] == "__MACOSX":
                continue
            if (info.external_attr >> 16) & 0o170000 == stat.S_IFLNK:
                raise UnsafeArchive(f"entry {info.filename!r} is a symbolic link")
            bundle.extract(info, destination)
            if not info.is_dir():
                count += 1
                mode = (info.external_attr >> 16) & 0o777
                if mode & 0o111:
                    os.chmod(destination / info.filename, 0o755)
    return count
