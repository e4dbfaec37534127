"""Files opened without following a symbolic link: how the runner reads and writes where others could plant one.

In the image root seals overlays that a builder identity made, and reads the cache's files
on every request. A path that ends in a link someone planted would make root read or write
the link's target with root's rights. So every open here refuses a link as the last
component (`O_NOFOLLOW`), never blocks on a FIFO put in a file's place (`O_NONBLOCK`), and
accepts only a regular file; a new file is always a new inode (`O_CREAT | O_EXCL`): an
existing file, or a link in its place, fails instead of being written through. Folders are
opened likewise and walked through their descriptors where a builder could still rename
things (runner/publish.py).
"""

from __future__ import annotations

import errno
import os
import stat

READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def open_regular(path: str | os.PathLike[str], dir_fd: int | None = None) -> int:
    """A descriptor of the regular file at `path`; OSError if it is a link, a folder, a FIFO or anything else."""
    fd = os.open(path, READ, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(path: str | os.PathLike[str], dir_fd: int | None = None) -> bytes:
    fd = open_regular(path, dir_fd)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def read_text(path: str | os.PathLike[str], dir_fd: int | None = None) -> str:
    return read_bytes(path, dir_fd).decode("utf-8")


def write_new(path: str | os.PathLike[str], data: bytes, mode: int = 0o644, dir_fd: int | None = None) -> None:
    """Create the file at `path` (it must not exist, not even as a link) holding `data`."""
    fd = os.open(path, NEW, mode, dir_fd=dir_fd)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def open_folder(path: str | os.PathLike[str], dir_fd: int | None = None) -> int:
    """A descriptor of the folder at `path`, which must not be a link."""
    return os.open(path, FOLDER, dir_fd=dir_fd)


def is_plain_name(name: str) -> bool:
    """A file name the seal can record on one line: printable UTF-8 (no newline, tab or other control character)."""
    if not name.isprintable():
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8, kept by Python as surrogates
        return False
    return True


def shown(name: str) -> str:
    """`name` for a one-line message: as is when plain, else quoted with its control characters escaped."""
    return name if is_plain_name(name) else ascii(name)
