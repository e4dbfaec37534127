"""A synthetic conda channel at real size, made from the committed pixi.lock, for `bench/oci.py --realistic`.

One package per locked linux-64 record of the flavors, with the same name, version, build,
build number, noarch kind, dependencies and build time. What is synthetic is the payload:

- **Size.** The record's archive size from the lock; where the lock has none, the estimate
  in `ESTIMATED_ARCHIVE_MB` (stated in the report), else a default by kind. Installed bytes
  are `EXPANSION` times the archive (conda-forge compresses with zstd at a high level;
  binaries shrink about 2.5x, Python sources about 3x).
- **Shape.** Native libraries (CUDA, MKL, ...): most bytes in a few shared objects of at most
  512 MB (libcublasLt is one such file), a tenth in headers, a symlink `lib<name>.so`.
  Compiled Python packages: 40% in modules of about 16 KB, 60% in extension modules. noarch
  Python packages: modules of about 12 KB. python: the standard library's thousands of
  modules, libpython and lib-dynload.
- **Bytes.** Slices of this machine's own shared libraries and Python sources (a texture
  corpus), at offsets drawn from the package and file name: compressors meet real machine
  code and real text, at their real speed and ratio, and two packages never hold the same
  bytes.

`synthetic_lock` rewrites the committed lock to point at the synthetic archives (URL,
sha256, md5, size) and nothing else, so the workspace is exactly as fresh as the real one;
`relocked` swaps one package for another build of it.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rattler import RepoDataRecord

CONDA_FORGE = "https://conda.anaconda.org/conda-forge/"
MB = 1_000_000
# Archive sizes (MB) of records the lock gives no size for: estimates from the published
# wheels and conda-forge packages of the same projects (cuDNN 9 and torch/tensorflow CUDA builds).
ESTIMATED_ARCHIVE_MB = {
    "libcudnn": 650.0,
    "libtorch": 700.0,
    "tensorflow-base": 450.0,
    "pytorch": 25.0,
    "python": 31.0,
    "numpy": 7.5,
    "ucx": 7.0,
    "libgrpc": 7.0,
    "mpich": 6.0,
    "tensorboard": 5.5,
    "hdf5": 4.0,
    "tensorboard-data-server": 3.3,
    "libprotobuf": 2.5,
    "flatbuffers": 1.5,
    "libfabric": 1.5,
    "keras": 1.0,
    "h5py": 1.2,
    "pip": 1.2,
    "rdma-core": 1.2,
    "grpcio": 0.9,
    "libcurl": 0.4,
    "protobuf": 0.4,
    "rich": 0.2,
    "ml_dtypes": 0.2,
    "tensorflow-estimator": 0.3,
}
METAPACKAGES = {"cudnn", "cpython", "mpi", "tensorflow", "libfabric1", "libcudnn-dev"}
DEFAULT_MB = {"native": 0.3, "python": 0.2}
EXPANSION = {"native": 2.5, "python": 3.0}
SHARED_OBJECT_MAX = 512 * 1024 * 1024
TEXTURE_BINARY = 256 * 1024 * 1024
TEXTURE_TEXT = 64 * 1024 * 1024


@dataclass(frozen=True)
class Planned:
    """One synthetic package: the locked record and the bytes it will hold."""

    record: RepoDataRecord
    archive_bytes: int
    estimated: bool
    installed_bytes: int

    @property
    def kind(self) -> str:
        if self.record.noarch.python:
            return "noarch-python"
        if self.record.name.normalized == "python":
            return "python"
        depends_on_python = any(d.split()[0] == "python" for d in self.record.depends if d.split())
        return "compiled-python" if depends_on_python else "native"


def plan_package(record: RepoDataRecord, scale: float) -> Planned:
    name = record.name.normalized
    kind = "python" if record.noarch.python or any(d.split()[0] == "python" for d in record.depends if d) else "native"
    if record.size:
        archive, estimated = record.size, False
    elif name in ESTIMATED_ARCHIVE_MB:
        archive, estimated = int(ESTIMATED_ARCHIVE_MB[name] * MB), True
    elif name in METAPACKAGES:
        archive, estimated = 10_000, True
    else:
        archive, estimated = int(DEFAULT_MB[kind] * MB), True
    installed = max(1_000, int(archive * EXPANSION["native" if name == "python" else kind] * scale))
    return Planned(record, archive, estimated, installed)


class Texture:
    """Real bytes to cut file contents from: this machine's shared libraries and Python sources."""

    def __init__(self) -> None:
        self.binary = _corpus(_find(["/usr/lib", "/usr/local/lib"], re.compile(r"\.so(\.\d+)*$")), TEXTURE_BINARY)
        self.text = _corpus(_find(["/usr/lib", "/usr/local/lib"], re.compile(r"\.py$")), TEXTURE_TEXT)

    def cut(self, corpus: bytes, key: str, size: int) -> Iterator[memoryview]:
        view = memoryview(corpus)
        offset = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % len(corpus)
        while size > 0:
            piece = view[offset : offset + size]
            yield piece
            size -= len(piece)
            offset = 0


def _find(roots: list[str], pattern: re.Pattern[str]) -> list[Path]:
    found = []
    for root in roots:
        for current, dirs, files in os.walk(root):
            dirs.sort()
            found += [Path(current) / name for name in sorted(files) if pattern.search(name)]
    return found


def _corpus(paths: list[Path], limit: int) -> bytes:
    chunks, total = [], 0
    for path in paths:
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        chunks.append(data)
        total += len(data)
        if total >= limit:
            break
    if total < 1_000_000:
        raise SystemExit(f"too few real files to cut synthetic packages from ({total} bytes under {paths[:1]})")
    return b"".join(chunks)[:limit]


def _spread(total: int, count: int) -> list[int]:
    count = max(1, count)
    sizes = [total // count] * count
    sizes[-1] += total - sum(sizes)
    return sizes


def layout(package: Planned) -> list[tuple[str, int, str]]:
    """(relative path, size, "binary"|"text") of every file, in the shape of its kind of package."""
    record, size = package.record, package.installed_bytes
    stem = re.sub(r"[^A-Za-z0-9_]", "_", record.name.normalized)
    files: list[tuple[str, int, str]] = []

    def modules(folder: str, total: int, average: int, limit: int) -> None:
        for number, part in enumerate(_spread(total, min(limit, max(1, total // average)))):
            files.append((f"{folder}/sub{number // 50}/module_{number}.py", part, "text"))

    def shared_objects(folder: str, total: int) -> None:
        for number, part in enumerate(_spread(total, math.ceil(total / SHARED_OBJECT_MAX))):
            files.append((f"{folder}/lib{stem}_{number}.so.{record.version}", part, "binary"))

    kind = package.kind
    if kind == "noarch-python":
        modules(f"site-packages/{stem}", size, 12_000, 3_000)
    elif kind == "compiled-python":
        modules(f"lib/python3.12/site-packages/{stem}", size * 4 // 10, 16_000, 20_000)
        shared_objects(f"lib/python3.12/site-packages/{stem}", size - size * 4 // 10)
    elif kind == "python":
        modules("lib/python3.12", size * 65 // 100, 12_000, 4_000)
        shared_objects("lib", size - size * 65 // 100)
    else:
        headers = size // 10
        for number, part in enumerate(_spread(headers, min(800, max(1, headers // 8_000)))):
            files.append((f"include/{stem}/header_{number}.h", part, "text"))
        shared_objects("lib", size - headers)
    return files


def write_package(package: Planned, channel: Path, work: Path, texture: Texture, build: str | None = None) -> Path:
    """Assemble the synthetic archive of `package` into `channel` (as build `build`, default the locked one)."""
    import rattler_build
    from rattler_build import ArchiveType

    record = package.record
    build = build or str(record.build)
    subdir = "noarch" if record.subdir == "noarch" else record.subdir
    suffix = ".tar.bz2" if record.file_name.endswith(".tar.bz2") else ".conda"
    target = channel / subdir / f"{record.name.normalized}-{record.version}-{build}{suffix}"
    if target.is_file():
        return target
    files_dir = work / f"{record.name.normalized}-{record.version}-{build}"
    shutil.rmtree(files_dir, ignore_errors=True)
    for relative, size, kind in layout(package):
        path = files_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            corpus = texture.binary if kind == "binary" else texture.text
            for piece in texture.cut(corpus, f"{record.name.normalized}/{build}/{relative}", size):
                handle.write(piece)
    first = next((relative for relative, _, kind in layout(package) if relative.startswith("lib/lib")), None)
    if first is not None:
        os.symlink(Path(first).name, files_dir / "lib" / f"lib{record.name.normalized.replace('-', '_')}.so")
    noarch = "python" if record.noarch.python else ("generic" if record.noarch.generic else None)
    output = rattler_build.assemble_package(
        record.name.normalized, str(record.version), subdir, build, channel / subdir,
        files_dir=files_dir, build_number=record.build_number, noarch=noarch,  # type: ignore[arg-type]
        license=record.license or "LicenseRef-synthetic", timestamp=record.timestamp,
        compression_level=1, detect_prefix=False,
        archive_type=ArchiveType.TarBz2 if suffix == ".tar.bz2" else ArchiveType.Conda,
    )  # fmt: skip
    shutil.rmtree(files_dir, ignore_errors=True)
    produced = Path(output.path)
    if produced != target:
        produced.replace(target)
    return target


@dataclass(frozen=True)
class ArchiveFacts:
    url: str  # as a lock names a package of a local channel: its path
    sha256: str
    md5: str
    size: int


def archive_facts(path: Path) -> ArchiveFacts:
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            sha256.update(chunk)
            md5.update(chunk)
    return ArchiveFacts(str(path), sha256.hexdigest(), md5.hexdigest(), path.stat().st_size)


def synthetic_lock(text: str, channel_url: str, facts: dict[str, ArchiveFacts]) -> str:
    """The committed lock with every flavor archive replaced by its synthetic twin (by original URL).

    Archives no flavor locks (the dev environment's, other platforms') keep their conda-forge URL:
    nothing here installs them.
    """
    out: list[str] = []
    current: ArchiveFacts | None = None
    for line in text.splitlines():
        indent, _, rest = line.partition("- conda: ")
        if rest and not indent.strip() and rest.strip() not in facts:
            out.append(line)
            current = None
            continue
        if rest and not indent.strip():
            found = facts[rest.strip()]
            out.append(f"{indent}- conda: {found.url}")
            if not indent:  # the package entry, not an environment's list
                current = found
                out.append(f"  subdir: {Path(found.url).parent.name}")
                out.append(f"  channel: {channel_url.rstrip('/')}")
            continue
        if line.startswith("- "):
            current = None
        if current is not None and line.startswith("  sha256: "):
            out.append(f"  sha256: {current.sha256}")
        elif current is not None and line.startswith("  md5: "):
            out.append(f"  md5: {current.md5}")
            out.append(f"  size: {current.size}")
        elif current is not None and line.startswith(("  size: ", "  subdir: ", "  channel: ")):
            continue
        else:
            out.append(line.replace(CONDA_FORGE, channel_url))
    return "\n".join(out) + "\n"


def another_build(build: str) -> str:
    """The same build string with another hash part (`py312h33ff503_1` -> `py312h<other>_1`), as a rebuild has."""
    found = list(re.finditer(r"h[0-9a-f]{7}", build))
    other = "h" + hashlib.sha256(build.encode()).hexdigest()[:7]
    if not found:
        return f"{build}_{other}"
    last = found[-1]
    return build[: last.start()] + other + build[last.end() :]


def relocked(text: str, old: ArchiveFacts, new: ArchiveFacts, pin: tuple[str, str]) -> str:
    """The synthetic lock with one archive swapped for another build of the same package.

    `pin`: the exact dependency on the old build (`libtorch 2.10.0 <build>`) and on the new one,
    as a package built against it (pytorch against libtorch) names it.
    """
    text = text.replace(f"- {pin[0]}\n", f"- {pin[1]}\n")
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("- conda: "):
            inside = line == f"- conda: {old.url}"
        elif line.startswith("- "):
            inside = False
        if inside and line.startswith("  sha256: "):
            line = f"  sha256: {new.sha256}"
        elif inside and line.startswith("  md5: "):
            line = f"  md5: {new.md5}"
        elif inside and line.startswith("  size: "):
            line = f"  size: {new.size}"
        out.append(line.replace(old.url, new.url))
    return "\n".join(out) + "\n"
