"""From a finished build to a sealed overlay: a copy of the venv the sealer makes itself, checked, compiled, sealed.

Every overlay is built in a staging folder, `building/<key>.<random>`, by whoever builds it:
locally the user's runner, in the image a builder identity that may have run a package's
build code (runner/staging.py), and that code may have planted links or odd names there.
So the sealer (root in the image) never writes into that folder, and reads it only through
descriptors opened without following a link:

1. the staging folder may hold only what a build writes there (`STAGE_ENTRIES`: the venv, uv's
   inputs and lock, its transcript); anything else refuses the overlay;
2. the venv is copied, file by file, into a fresh folder the sealer makes,
   `building/<key>.<random>.seal`: folders and regular files only (plus the venv's links to its
   interpreter), names of printable UTF-8, each new file created with `O_EXCL`, with modes the
   sealer chooses. Nothing of the builder's (a link, a file it still holds open, a hard link,
   a set-user-ID bit) reaches the copy;
3. the copy must match its distributions' RECORD (runner/records.py);
4. then the sealer adds its own files: the `.pth` that links the base, the byte code (the base
   interpreter compiles the copy without its site: compiling runs none of it), the lock,
   `files.sha256` and the marker;
5. every write permission goes, and the folder is renamed to `overlays/<key>`: one rename, so
   an overlay there is sealed from the moment it exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from runner import records, seal
from runner.cache import MARKER
from runner.errors import OverlayError
from runner.nofollow import NEW, is_plain_name, open_folder, open_regular, shown, write_new

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runner.base import BaseEnvironment
    from runner.overlay import Installed, Plan

# What `overlay.install` leaves in its staging folder; only the venv is taken.
STAGE_ENTRIES = frozenset(
    {"venv", "requirements.in", "requirements.lock.txt", "base-pins.txt", "base-names.txt", "user-constraints.txt",
     "uv.log"}
)  # fmt: skip
LOCK_FILE = "requirements.lock.txt"
PTH_NAME = "_osparc_runner_base.pth"
SEALING_SUFFIX = ".seal"
_CHUNK = 1 << 20
LEFT_BEHIND_FIX = "a build must write only through uv into the overlay's venv; report the package that does this"

# Run by the base interpreter without its site (no .pth file runs); a file that does not compile is left as
# source, as uv's --compile-bytecode leaves it.
_COMPILE = "import compileall, sys; compileall.compile_dir(sys.argv[1], quiet=2, workers=0)"


def site_packages() -> str:
    """The venv's site-packages, relative to the venv (the base's Python version: the sealer runs on it)."""
    return "lib/python{}.{}/site-packages".format(*sys.version_info[:2])


def publish(
    stage: Path,
    destination: Path,
    key: str,
    the_plan: Plan,
    base: BaseEnvironment,
    installed: Installed,
    seconds: float,
) -> None:
    """Make `destination` (which must not exist) the sealed overlay of what was built in `stage`."""
    sealing = stage.with_name(stage.name + SEALING_SUFFIX)
    stage_fd = _open_stage(stage)
    try:
        os.mkdir(sealing, 0o700)
        try:
            files = _copy_venv(stage_fd, sealing, base)
        except BaseException:
            seal.remove(sealing)
            raise
    finally:
        os.close(stage_fd)
    try:
        venv = sealing / "venv"
        for path in records.verify(str(venv), site_packages(), files):
            os.unlink(venv / path)
        _link_base(venv, base)
        _compile(venv, base)
        write_new(sealing / LOCK_FILE, installed.lock_text.encode("utf-8"), 0o444)
        marker = _marker(key, the_plan, base, installed, seconds)
        marker["manifest_sha256"] = seal.record(sealing, frozenset({MARKER}))
        # Written last: it records the seal; then nothing is writable, and the rename publishes it.
        write_new(sealing / MARKER, (json.dumps(marker, indent=2, sort_keys=True) + "\n").encode(), 0o444)
        os.chmod(sealing, 0o755)
        seal.make_read_only(sealing)
        os.rename(sealing, destination)
    except BaseException:
        seal.remove(sealing)
        raise


def _open_stage(stage: Path) -> int:
    """The staging folder's descriptor, once it is known to hold only what a build leaves there."""
    try:
        fd = open_folder(stage)
    except OSError as error:
        raise OverlayError(f"the staging folder cannot be opened ({error.strerror})", LEFT_BEHIND_FIX) from None
    try:
        with os.scandir(fd) as entries:
            names = sorted(entry.name for entry in entries)
        for name in names:
            if name not in STAGE_ENTRIES:
                raise OverlayError(f"the build left {shown(name)} in the overlay's staging folder", LEFT_BEHIND_FIX)
        if "venv" not in names or not stat.S_ISDIR(os.stat("venv", dir_fd=fd, follow_symlinks=False).st_mode):
            raise OverlayError("the build left no venv folder in its staging folder", LEFT_BEHIND_FIX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _copy_venv(stage_fd: int, sealing: Path, base: BaseEnvironment) -> dict[str, tuple[str, int]]:
    """Copy `venv/` of the staging folder into `sealing`; every regular file's (sha256, size) by its venv path."""
    files: dict[str, tuple[str, int]] = {}
    target_fd = open_folder(sealing)
    try:
        os.mkdir("venv", 0o755, dir_fd=target_fd)
        _copy_folder(stage_fd, target_fd, "venv", "", files, _Links(base))
    finally:
        os.close(target_fd)
    return files


class _Links:
    """The only links a venv may hold: `lib64 -> lib`, and its `python*` names for the base interpreter."""

    def __init__(self, base: BaseEnvironment) -> None:
        version = "python{}.{}".format(*sys.version_info[:2])
        self.pythons = ("python", "python3", version)
        self.interpreter = os.path.realpath(base.python)

    def allowed(self, path: str, target: str) -> bool:
        if path == "lib64":
            return target == "lib"
        folder, _, name = path.rpartition("/")
        if folder != "bin" or name not in self.pythons:
            return False
        if target in self.pythons:
            return True
        return os.path.isabs(target) and os.path.realpath(target) == self.interpreter


def _copy_folder(
    source_parent: int, target_parent: int, name: str, prefix: str, files: dict[str, tuple[str, int]], links: _Links
) -> None:
    """Copy the folder `name` of `source_parent` into the (new, empty) folder `name` of `target_parent`."""
    source = open_folder(name, dir_fd=source_parent)
    try:
        target = open_folder(name, dir_fd=target_parent)
        try:
            with os.scandir(source) as entries:
                names = sorted(entry.name for entry in entries)
            for entry in names:
                path = prefix + entry
                if not is_plain_name(entry):
                    raise OverlayError(f"the build made a file named {shown(path)} in the venv", LEFT_BEHIND_FIX)
                status = os.stat(entry, dir_fd=source, follow_symlinks=False)
                if stat.S_ISDIR(status.st_mode):
                    os.mkdir(entry, 0o755, dir_fd=target)
                    _copy_folder(source, target, entry, path + "/", files, links)
                elif stat.S_ISREG(status.st_mode):
                    files[path] = _copy_file(source, target, entry)
                elif stat.S_ISLNK(status.st_mode):
                    link = os.readlink(entry, dir_fd=source)
                    if not links.allowed(path, link):
                        raise OverlayError(f"the build made a link in the venv: {shown(path)} -> {shown(link)}",
                                           LEFT_BEHIND_FIX)  # fmt: skip
                    os.symlink(link, entry, dir_fd=target)
                else:
                    raise OverlayError(f"the build made {shown(path)} in the venv, neither a file nor a folder",
                                       LEFT_BEHIND_FIX)  # fmt: skip
        finally:
            os.close(target)
    finally:
        os.close(source)


def _copy_file(source_folder: int, target_folder: int, name: str) -> tuple[str, int]:
    """A new file in `target_folder` with the bytes of `name` in `source_folder`; (sha256, size) of what was written."""
    digest = hashlib.sha256()
    size = 0
    with os.fdopen(open_regular(name, dir_fd=source_folder), "rb", buffering=0) as source:
        mode = 0o755 if os.fstat(source.fileno()).st_mode & 0o111 else 0o644
        with os.fdopen(os.open(name, NEW, mode, dir_fd=target_folder), "wb") as target:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                target.write(chunk)
                size += len(chunk)
    return digest.hexdigest(), size


def _link_base(venv: Path, base: BaseEnvironment) -> None:
    """Make the overlay see exactly the base's site folders, after its own (see runner/overlay.py)."""
    lines = "".join(f"import site; site.addsitedir({folder!r})\n" for folder in base.site_dirs)
    write_new(venv / site_packages() / PTH_NAME, lines.encode("utf-8"), 0o644)


def _compile(venv: Path, base: BaseEnvironment) -> None:
    """Byte-compile the copy with the base interpreter, without its site: compiling runs no code of the packages."""
    command = [str(base.python), "-I", "-S", "-c", _COMPILE, str(venv / site_packages())]
    environment = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C.UTF-8"}
    done = subprocess.run(command, env=environment, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        raise OverlayError(
            f"cannot byte-compile the overlay: {(done.stderr.strip().splitlines() or ['no output'])[-1]}",
            "see the runner's log",
            details=done.stderr,
        )


def _marker(key: str, the_plan: Plan, base: BaseEnvironment, installed: Installed, seconds: float) -> dict[str, object]:
    from runner.overlay import FORMAT

    requirements = the_plan.requirements
    return {
        "format": FORMAT,
        "key": key,
        "created": time.time(),
        "seconds": round(seconds, 3),
        "python": str(base.python),
        "base_fingerprint": base.fingerprint,
        "policy": the_plan.policy,
        "requirements": requirements.virtual(requirements.requirements_in()).splitlines(),
        "shadowed": installed.shadowed,
        "packages": installed.packages,
        "sources": requirements.recorded_sources(),
    }
