"""Python distributions a PyPI installer (uv, pip) put into a prefix's site-packages, and the files each owns.

A distribution is a `*.dist-info` folder: METADATA gives its Name and Version, RECORD lists every
file the installer wrote as a CSV row `path,sha256=<urlsafe base64 without padding>,size`. Paths are
relative to site-packages and may go up (`../../../bin/tool`, a console script); RECORD's own row
has no hash (nor may rows an installer adds), so such a file is owned but only its presence checked.
A row whose path leaves the prefix, lexically or through a symbolic link, is refused as a problem:
nothing outside the prefix is read.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from packaging.metadata import parse_email
from packaging.utils import canonicalize_name

from cli.audit.readers import PYPI, LockedPackage
from runner.records import decode_hash

SITE_PACKAGES = ("lib/python*/site-packages", "Lib/site-packages")
DIST_INFO = ".dist-info"
RECORD = "RECORD"
HASH_ALGORITHM = "sha256"  # the one `cli.file_hashing` computes; other algorithms leave presence and size checks
BYTE_CODE_SUFFIX = ".pyc"
BYTE_CODE_FOLDER = "__pycache__"


@dataclass(frozen=True)
class RecordedFile:
    path: str  # relative to the prefix
    sha256: str | None  # hex, as conda's paths.json writes it
    size: int | None
    byte_code: bool  # Python rewrites (or deletes) it at will: never hashed, may be missing


@dataclass(frozen=True)
class RecordProblem:
    path: str  # relative to the prefix
    problem: str
    detail: str


@dataclass(frozen=True)
class InstalledDistribution:
    package: LockedPackage
    dist_info: str  # relative to the prefix
    files: tuple[RecordedFile, ...]
    problems: tuple[RecordProblem, ...]


def dist_info_folders(prefix: Path) -> list[Path]:
    return sorted(path for pattern in SITE_PACKAGES for path in prefix.glob(f"{pattern}/*{DIST_INFO}") if path.is_dir())


def _name_and_version(dist_info: Path) -> tuple[str, str]:
    """METADATA's Name and Version; the folder name (`name-version.dist-info`) where METADATA lacks them."""
    stem_name, _, stem_version = dist_info.name[: -len(DIST_INFO)].partition("-")
    try:
        raw, _unparsed = parse_email((dist_info / "METADATA").read_bytes())
    except OSError:
        raw = {}
    return canonicalize_name(str(raw.get("name") or stem_name)), str(raw.get("version") or stem_version)


def _hex_digest(field: str) -> str | None:
    """`sha256=<urlsafe base64>` → hex; None for an empty field or another algorithm."""
    try:
        algorithm, digest = decode_hash(field)
    except ValueError:
        return None
    return digest if algorithm == HASH_ALGORITHM and digest else None


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _prefix_relative(prefix: Path, site_packages: str, written: str) -> str | None:
    """The RECORD path relative to the prefix; None if it leaves the prefix (by `..`, absoluteness or a link)."""
    root = os.path.abspath(prefix)
    target = os.path.normpath(written if os.path.isabs(written) else os.path.join(root, site_packages, written))
    if not _inside(target, root):
        return None
    if not _inside(os.path.realpath(os.path.dirname(target)), os.path.realpath(root)):
        return None
    return os.path.relpath(target, root)


def read_record(prefix: Path, dist_info: Path) -> tuple[list[RecordedFile], list[RecordProblem]]:
    record = dist_info / RECORD
    site_packages = os.path.relpath(dist_info.parent, prefix)
    record_path = os.path.relpath(record, prefix)
    try:
        with open(record, encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
    except FileNotFoundError:
        return [], [RecordProblem(record_path, "missing", "the distribution lists no files (no RECORD)")]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        return [], [RecordProblem(record_path, "unreadable", f"cannot read RECORD: {error}")]
    files, problems = [], []
    for row in rows:
        if not row or not row[0]:
            continue
        written = row[0]
        relative = _prefix_relative(prefix, site_packages, written)
        if relative is None:
            problems.append(RecordProblem(record_path, "outside-prefix", f"lists {written!r}, which leaves the prefix"))
            continue
        digest = _hex_digest(row[1]) if len(row) > 1 else None
        size = int(row[2]) if len(row) > 2 and row[2].isdigit() else None
        parts = Path(relative).parts
        byte_code = relative.endswith(BYTE_CODE_SUFFIX) or BYTE_CODE_FOLDER in parts
        files.append(RecordedFile(relative, None if byte_code else digest, size, byte_code))
    return files, problems


def installed_distributions(prefix: Path, conda_folders: set[str]) -> list[InstalledDistribution]:
    """The prefix's distributions that no conda package installed (conda's own are checked through conda-meta)."""
    result = []
    for dist_info in dist_info_folders(prefix):
        relative = os.path.relpath(dist_info, prefix)
        if relative in conda_folders:
            continue
        name, version = _name_and_version(dist_info)
        files, problems = read_record(prefix, dist_info)
        package = LockedPackage(kind=PYPI, name=name, version=version)
        result.append(InstalledDistribution(package, relative, tuple(files), tuple(problems)))
    return result
