"""Finding the code: unpack code archives, then the script to run and at most one requirements.txt.

The rule is the public runner's (one `*.py`; if several, the one `main.py`), plus an
explicit entry point (RUNNER_ENTRYPOINT / --entrypoint), and errors that list what was
found instead of guessing.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from runner.archive import UnsafeArchive, unpack
from runner.errors import BadInput
from runner.logs import log

REQUIREMENTS = "requirements.txt"
ENTRY_NAME = "main.py"
SKIPPED_DIRS = frozenset({"__pycache__", "__MACOSX", "site-packages", "node_modules"})
MAX_LISTED = 8


class CodeFolder:
    __slots__ = ("path", "work")

    def __init__(self, path: Path, work: Path | None) -> None:
        self.path = path
        self.work = work  # a temporary folder we made (and remove) for unpacked archives

    def cleanup(self) -> None:
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)


def prepare_code(source: Path, work_root: str | None, unpack_zips: bool = True) -> CodeFolder:
    """The folder to run in: `source` itself, or a work copy with its zip archives unpacked.

    `unpack_zips=False` for the flat layout: oSPARC unpacks code zips itself, so a zip still
    there is a port's data that it kept as a zip on purpose (type data:application/zip).
    """
    archives = (
        [p for p in sorted(source.iterdir()) if p.is_file() and p.suffix.lower() == ".zip"] if source.is_dir() else []
    )
    if not archives or not unpack_zips:
        return CodeFolder(source, None)
    import tempfile  # only for jobs that ship a zip

    if work_root:
        Path(work_root).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="runner-code-", dir=work_root))
    try:
        for item in sorted(source.iterdir()):
            if item in archives:
                continue
            if item.is_dir():
                shutil.copytree(item, work / item.name, symlinks=True)
            else:
                shutil.copy2(item, work / item.name)
        for archive in archives:
            try:
                count = unpack(archive, work)
            except (zipfile.BadZipFile, UnsafeArchive) as error:
                raise BadInput(f"cannot unpack {archive.name}: {error}", "upload a valid .zip of your code") from None
            log.info("unpacked %s (%d files)", archive.name, count)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return CodeFolder(work, work)


def _walk(folder: Path, pattern: str) -> list[Path]:
    found = []
    for path in sorted(folder.rglob(pattern)):
        relative = path.relative_to(folder).parts
        if any(part.startswith(".") or part in SKIPPED_DIRS for part in relative[:-1]):
            continue
        if path.is_file() and not relative[-1].startswith("."):
            found.append(path)
    return found


def _listing(paths: list[Path], folder: Path) -> str:
    names = [p.relative_to(folder).as_posix() for p in paths[:MAX_LISTED]]
    more = f", … {len(paths) - MAX_LISTED} more" if len(paths) > MAX_LISTED else ""
    return ", ".join(names) + more


def find_entrypoint(folder: Path, override: str | None) -> tuple[Path, str]:
    """(script, how it was chosen)."""
    scripts = _walk(folder, "*.py")
    if override:
        candidate = Path(override)
        path = candidate if candidate.is_absolute() else folder / candidate
        if path.is_file():
            return path, "RUNNER_ENTRYPOINT"
        known = f"Python files here: {_listing(scripts, folder)}" if scripts else "no Python files here"
        raise BadInput(
            f"entry point {override} not found in {folder} ({known})", "fix RUNNER_ENTRYPOINT / --entrypoint"
        )
    if not scripts:
        zips = sorted(p.name for p in folder.glob("*.zip"))
        kept = f" ({', '.join(zips)} left zipped: in the flat layout a zip is a port's data)" if zips else ""
        raise BadInput(
            f"no Python script in {folder}{kept}",
            "put one .py file (or a main.py, or a .zip of your code) in input_1, or set RUNNER_ENTRYPOINT",
        )
    if len(scripts) == 1:
        return scripts[0], "only .py file"
    mains = [p for p in scripts if p.name == ENTRY_NAME]
    if len(mains) == 1:
        return mains[0], "main.py"
    if not mains:
        raise BadInput(
            f"{len(scripts)} Python files and no main.py in {folder}: {_listing(scripts, folder)}",
            "name the script to run main.py, or set RUNNER_ENTRYPOINT=<file>",
        )
    raise BadInput(
        f"{len(mains)} main.py files in {folder}: {_listing(mains, folder)}",
        "keep one main.py, or set RUNNER_ENTRYPOINT=<file>",
    )


def find_requirements(folder: Path) -> Path | None:
    found = _walk(folder, REQUIREMENTS)
    if len(found) > 1:
        raise BadInput(
            f"{len(found)} requirements.txt files in {folder}: {_listing(found, folder)}",
            "keep one requirements.txt (it may include others with -r)",
        )
    return found[0] if found else None
