"""Every file of an overlay must be one its distributions' RECORD lists, with the sha256 and size listed there.

uv installs a wheel by copying its unpacked archive out of uv's cache, and writes each
distribution's RECORD: the path, sha256 and size of every file it installed (those it adds
itself, `INSTALLER`, `direct_url.json`…, and the console scripts it writes included). If
uv's cache held an archive changed after it was unpacked (an edited module, an added
`.pth`), the overlay would be sealed with the change, and every later overlay made from that
archive too. No job can write uv's shared cache in the image; this check is the second
guard: a file that differs from its RECORD, or that no RECORD lists, refuses the overlay
before it is sealed. Besides the distributions' files a venv holds only what `uv venv`
writes (`VENV_FILES`); the runner adds its own files (the `.pth` linking the base, the byte
code) after this check.

What this cannot see: an archive changed together with its RECORD, consistently.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import posixpath

from runner.errors import OverlayError
from runner.nofollow import read_bytes, shown

# What `uv venv` writes outside site-packages (uv 0.13: its activation scripts, the venv's config and markers).
VENV_FILES = frozenset({".gitignore", "CACHEDIR.TAG", "pyvenv.cfg", ".lock", "bin/pydoc.bat", "bin/activate_this.py"})
VENV_SCRIPT_PREFIXES = ("bin/activate", "bin/deactivate")
SIGNATURES = ("RECORD", "RECORD.jws", "RECORD.p7s")  # a RECORD does not hash itself, nor its signatures
FIX = (
    "uv's cache may hold a damaged or altered copy of that package: locally run 'uv cache clean' (or point "
    "UV_CACHE_DIR elsewhere) and run again; if it comes back, the package's wheel itself installs files it does not "
    "list: report it to its authors"
)


def encode_hash(data: bytes) -> str:
    """A RECORD's hash field for `data`: `sha256=<urlsafe base64, no padding>` (the wheel format, PEP 376/427)."""
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def decode_hash(field: str) -> tuple[str, str]:
    """A RECORD's hash field as (algorithm, hex digest); ValueError when it cannot be read."""
    algorithm, _, encoded = field.partition("=")
    try:
        return algorithm, base64.urlsafe_b64decode((encoded + "=" * (-len(encoded) % 4)).encode("ascii")).hex()
    except UnicodeEncodeError as error:
        raise ValueError(str(error)) from None


class Mismatch(OverlayError):
    """An overlay file that is not what its distribution's RECORD says (or that no RECORD lists)."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = f"{shown(path)} {problem}"
        super().__init__(f"the overlay's files do not match their RECORD: {self.problem}", FIX)


class Listed:
    __slots__ = ("algorithm", "digest", "record", "size")

    def __init__(self, algorithm: str, digest: str, size: int | None, record: str) -> None:
        self.algorithm = algorithm
        self.digest = digest
        self.size = size
        self.record = record


def verify(venv: str, site_packages: str, files: dict[str, tuple[str, int]]) -> list[str]:
    """Check `files` (path in the venv -> sha256 hex, size) of the venv copied at `venv` against their RECORDs.

    `site_packages` is the venv's site-packages, relative to the venv. Returns the byte-code
    files a RECORD lists without a hash (old installers did): they cannot be checked, and are
    to be deleted before the overlay is compiled. Raises `Mismatch` naming the first bad file.
    """
    records = _records(site_packages, files)
    listed = _listings(venv, site_packages, records)
    unverifiable = []
    for path in sorted(files):
        digest, size = files[path]
        entries = listed.get(path)
        if entries is None:
            if path in VENV_FILES or path.startswith(VENV_SCRIPT_PREFIXES) or path in records:
                continue
            raise Mismatch(path, "is listed in no RECORD")
        for entry in entries:
            if not entry.digest:
                if path == entry.record or posixpath.basename(path) in SIGNATURES[1:]:
                    continue
                if path.endswith(".pyc"):
                    unverifiable.append(path)
                    continue
                raise Mismatch(path, f"is listed without a hash in {shown(entry.record)}")
            if entry.size is not None and entry.size != size:
                raise Mismatch(path, f"has {size} bytes, {shown(entry.record)} says {entry.size}")
            found = digest if entry.algorithm == "sha256" else _digest_of(venv, path, entry.algorithm)
            if found != entry.digest:
                raise Mismatch(path, f"does not have the {entry.algorithm} that {shown(entry.record)} lists")
    return unverifiable


def _records(site_packages: str, files: dict[str, tuple[str, int]]) -> list[str]:
    """The RECORD of each distribution installed in site-packages (`<name>.dist-info/RECORD`)."""
    found = []
    for path in files:
        head, _, name = path.rpartition("/")
        if name == "RECORD" and head.endswith(".dist-info") and posixpath.dirname(head) == site_packages:
            found.append(path)
    return sorted(found)


def _listings(venv: str, site_packages: str, records: list[str]) -> dict[str, list[Listed]]:
    """path in the venv -> every RECORD row that lists it, the digests as hex."""
    listed: dict[str, list[Listed]] = {}
    prefix = site_packages + "/"
    for record in records:
        try:
            text = read_bytes(posixpath.join(venv, record)).decode("utf-8")
            rows = list(csv.reader(io.StringIO(text)))
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise Mismatch(record, f"cannot be read ({error})") from None
        for row in rows:
            if not row or not row[0]:
                continue
            raw = row[0]
            path = posixpath.normpath(posixpath.join(prefix, raw))
            if raw.startswith("/") or path == ".." or path.startswith("../") or "\\" in raw:
                raise Mismatch(record, f"lists {shown(raw)}, outside the overlay")
            listed.setdefault(path, []).append(_listed(row, record))
    return listed


def _listed(row: list[str], record: str) -> Listed:
    algorithm, digest = "", ""
    if len(row) > 1 and row[1]:
        try:
            algorithm, digest = decode_hash(row[1])
            hashlib.new(algorithm)
        except ValueError:
            raise Mismatch(record, f"has a hash that cannot be read: {shown(row[1])}") from None
        if algorithm in ("md5", "sha1"):
            raise Mismatch(record, f"uses {algorithm}, which the wheel format forbids")
    size: int | None = None
    if len(row) > 2 and row[2]:
        try:
            size = int(row[2])
        except ValueError:
            raise Mismatch(record, f"has a size that is not a number: {shown(row[2])}") from None
    return Listed(algorithm, digest, size, record)


def _digest_of(venv: str, path: str, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    digest.update(read_bytes(posixpath.join(venv, path)))
    return digest.hexdigest()
