"""The files a job ships for its overlay, copied into a fresh folder that the build reads instead of the job's own.

Every build reads the local files requirements.txt names (the requirement files, local
packages, find-links and index folders) from a copy at `building/request.<random>/<the
path the job saw>`, made for that build alone:
- in the image the job process packs them (`pack`, as the job user) and root unpacks its
  copy (`unpack`): the key and the build come from the same bytes (runner/channel.py,
  runner/supervisor.py);
- locally the runner packs and unpacks them itself (`copy_for_build`), for another reason:
  uv caches its build of a local folder by the folder's path, and rebuilds it only when
  its pyproject.toml, setup.py or setup.cfg change (uv's default `cache-keys`). A package
  the job ships, with an edited module, would otherwise get uv's earlier build of it. A new
  path for every build is a folder uv never built; uv's cache of index and find-links
  wheels is untouched (and works offline).

The copy is read with every local path mapped into it (`read_requirements(root=...)`), and
what the overlay records (run.json, the lock, each `direct_url.json`) names the paths the
job saw (`RequirementSet.virtual`), not the copy, which is removed after the build.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from runner.errors import BadInput

TYPE_CHECKING = False
if TYPE_CHECKING:
    import tarfile
    from typing import BinaryIO

    from runner.requirements import RequirementSet

SPOOL_BYTES = 8 << 20  # a tar of the shipped files stays in memory up to this size, then goes to a temporary file
_CHUNK = 1 << 16


class UnsafeMember(ValueError):
    """A tar member that is not a plain relative path (absolute, `..`, not normalised)."""


def shipped_paths(requirements: RequirementSet) -> list[Path]:
    """Every local file and folder a build of `requirements` may read that the job ships."""
    return [*requirements.files, *requirements.local_paths]


def pack(paths: list[Path], archive: BinaryIO) -> None:
    """A tar of `paths` (files, and folders with every regular file under them), each at its absolute path.

    Read as the job user, following symbolic links to files as uv would; the copy receives
    only regular files and folders.
    """
    import tarfile

    added: set[str] = set()
    with tarfile.open(fileobj=archive, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in paths:
            top = os.path.abspath(path)
            if os.path.isdir(top):
                for folder, dirs, files in os.walk(top):
                    _add_folder(tar, folder, added)
                    for entry in dirs:
                        if os.path.islink(os.path.join(folder, entry)):
                            _add_folder(tar, os.path.join(folder, entry), added)
                    for entry in sorted(files):
                        _add_file(tar, os.path.join(folder, entry), added)
            elif os.path.isfile(top):
                _add_file(tar, top, added)


def unpack(stream: BinaryIO, target: Path) -> None:
    """Write the tar read from `stream` under `target` (an empty folder just made): regular files and folders
    only, at normalised relative paths, never through a link, never over an existing file."""
    import tarfile

    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            name = member_path(member.name)
            if member.isdir():
                os.makedirs(target / name, 0o755, exist_ok=True)
            elif member.isreg():
                destination = target / name
                os.makedirs(destination.parent, 0o755, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                mode = 0o755 if member.mode & 0o111 else 0o644
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                try:
                    fd = os.open(destination, flags, mode)
                except FileExistsError:
                    continue  # the same file twice: the first copy stands
                with os.fdopen(fd, "wb") as handle:
                    while chunk := source.read(_CHUNK):
                        handle.write(chunk)
                os.utime(destination, (member.mtime, member.mtime))


def copy_for_build(requirements: RequirementSet, target: Path) -> RequirementSet:
    """A local build's own copy of what the job ships, under `target` (new and empty), read from there."""
    from runner.requirements import read_requirements

    with tempfile.SpooledTemporaryFile(SPOOL_BYTES) as archive:
        pack(shipped_paths(requirements), archive)  # type: ignore[arg-type]
        archive.seek(0)
        unpack(archive, target)  # type: ignore[arg-type]
    copied = read_requirements(
        target / str(requirements.path).lstrip("/"),
        requirements.environ,
        display_root=target / str(requirements.display_root).lstrip("/"),
        root=target,
        settings_owner=requirements.settings_owner,
    )
    return copied


def member_path(name: str) -> str:
    normal = os.path.normpath(name)
    if not name or "\0" in name or normal.startswith(("/", "..")) or normal == "." or normal != name.rstrip("/"):
        raise UnsafeMember(f"a request file at {name!r}")
    return normal


def _add_folder(tar: tarfile.TarFile, path: str, added: set[str]) -> None:
    import tarfile

    name = path.lstrip("/")
    if name in added:
        return
    added.add(name)
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(info)


def _add_file(tar: tarfile.TarFile, path: str, added: set[str]) -> None:
    name = path.lstrip("/")
    if name in added or not os.path.isfile(path):
        return
    added.add(name)
    import tarfile

    try:
        with open(path, "rb") as handle:
            status = os.fstat(handle.fileno())
            info = tarfile.TarInfo(name)
            info.size, info.mtime = status.st_size, int(status.st_mtime)
            info.mode = 0o755 if status.st_mode & 0o111 else 0o644
            tar.addfile(info, handle)
    except OSError as error:
        raise BadInput(f"{path}: cannot read it ({error.strerror})", "ship files the job can read") from None
