"""The fixture flavor's conda channel: packages that really run inside a Debian container.

No conda channel is reachable here, so each package is written by hand as a `.tar.bz2`
(the format micromamba's stand-in can unpack without zstd), indexed with
`rattler.index.index_fs`, and served as a file:// channel. What they hold is real:

- `python`: the base image's own interpreter, made into an environment the way `python -m
  venv` does it (a `pyvenv.cfg` whose `home` is /usr/bin, `bin/python` a symlink to
  /usr/bin/python3.X), so the prefix has its own site-packages and nothing of Debian's. It
  stands in for conda-forge's python, which cannot be downloaded here.
- `uv`: the uv executable of this test environment (the PyPI `uv` package), versioned as it
  reports itself; the image's uv must be this one, never the build machine's own.
- `packaging`: the pure-Python `packaging` of this test environment, with its dist-info.
- `cuda-version` (noarch, `__cuda >=12` as conda-forge's), and `fixture-lib`, a small module
  the job imports to show the environment is on its path (`second-lib`, the same for a second flavor).
"""

from __future__ import annotations

import asyncio
import bz2
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from rattler.index import index_fs

EPOCH = 1_700_000_000
FIXTURE_LIB_VERSION = "1.0.0"


@dataclass
class Package:
    name: str
    version: str
    build: str
    subdir: str = "linux-64"
    depends: list[str] = field(default_factory=list)
    constrains: list[str] = field(default_factory=list)
    files: dict[str, bytes | Path] = field(default_factory=dict)  # relative path -> content or a file to copy
    symlinks: dict[str, str] = field(default_factory=dict)  # relative path -> target
    executables: frozenset[str] = frozenset()

    @property
    def file_name(self) -> str:
        return f"{self.name}-{self.version}-{self.build}.tar.bz2"

    def index(self) -> dict[str, object]:
        index: dict[str, object] = {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "build_number": 0,
            "subdir": self.subdir,
            "depends": self.depends,
            "constrains": self.constrains,
            "license": "MIT",
            "timestamp": EPOCH * 1000,
        }
        if self.subdir == "noarch":
            index["noarch"] = "generic"
        else:
            index.update(arch="x86_64", platform="linux")
        return index

    def content(self, path: str) -> bytes:
        value = self.files[path]
        return value.read_bytes() if isinstance(value, Path) else value


def _add(archive: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, EPOCH
    archive.addfile(info, io.BytesIO(data))


def write_package(package: Package, channel: Path) -> Path:
    paths = []
    for name in sorted(package.files):
        data = package.content(name)
        paths.append(
            {
                "_path": name,
                "path_type": "hardlink",
                "sha256": hashlib.sha256(data).hexdigest(),
                "size_in_bytes": len(data),
            }
        )
    for name in sorted(package.symlinks):
        paths.append({"_path": name, "path_type": "softlink", "size_in_bytes": 0})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        _add(archive, "info/index.json", json.dumps(package.index(), sort_keys=True).encode())
        _add(archive, "info/paths.json", json.dumps({"paths": paths, "paths_version": 1}).encode())
        listing = sorted([*package.files, *package.symlinks])
        _add(archive, "info/files", "".join(f"{name}\n" for name in listing).encode())
        for name in sorted(package.files):
            _add(archive, name, package.content(name), 0o755 if name in package.executables else 0o644)
        for name, link in sorted(package.symlinks.items()):
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, link, 0o777, EPOCH
            archive.addfile(info)
    target = channel / package.subdir / package.file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(bz2.compress(buffer.getvalue(), compresslevel=1))
    return target


def uv_package(uv: Path) -> Package:
    version = subprocess.run([str(uv), "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
    return Package("uv", version, "h0_engine", files={"bin/uv": uv}, executables=frozenset({"bin/uv"}))


def python_package(version: str) -> Package:
    """A venv over the base image's /usr/bin/python3.X, installed as the `python` package."""
    minor = ".".join(version.split(".")[:2])
    config = f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {version}\n"
    return Package(
        "python",
        version,
        "h0_venv_over_base",
        files={
            "pyvenv.cfg": config.encode(),
            f"lib/python{minor}/site-packages/README.engine-fixture": b"site-packages of the fixture flavor\n",
        },
        symlinks={"bin/python": f"/usr/bin/python{minor}", "bin/python3": "python", f"bin/python{minor}": "python"},
    )


def packaging_package(python_minor: str) -> Package:
    """This environment's `packaging` (pure Python), files and dist-info, in the prefix's site-packages."""
    import packaging

    source = Path(packaging.__file__).parent
    site = source.parent
    (dist_info,) = site.glob(f"packaging-{packaging.__version__}.dist-info")
    target = f"lib/python{python_minor}/site-packages"
    files: dict[str, bytes | Path] = {}
    for folder in (source, dist_info):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.name not in ("RECORD", "INSTALLER"):
                files[f"{target}/{path.relative_to(site).as_posix()}"] = path
    return Package("packaging", packaging.__version__, "pyh0_engine", depends=[f"python {python_minor}.*"], files=files)


def fixture_lib_package(python_minor: str, name: str = "fixture-lib") -> Package:
    """A flavor's own small library (`fixture-lib`; `second-lib` for a second flavor), importable by the job."""
    target = f"lib/python{python_minor}/site-packages"
    module_name = name.replace("-", "_")
    module = f'"""The {name} flavor library."""\nVERSION = "{FIXTURE_LIB_VERSION}"\n'
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {FIXTURE_LIB_VERSION}\n"
    return Package(
        name,
        FIXTURE_LIB_VERSION,
        "py_h0_engine",
        depends=[f"python {python_minor}.*"],
        files={
            f"{target}/{module_name}/__init__.py": module.encode(),
            f"{target}/{module_name}-{FIXTURE_LIB_VERSION}.dist-info/METADATA": metadata.encode(),
        },
    )


def cuda_version_package() -> Package:
    return Package("cuda-version", "12.4", "h0_engine", subdir="noarch", constrains=["__cuda >=12"])


def build_engine_channel(channel: Path, python_version: str, uv: Path) -> Path:
    """Every package of the fixture flavor, indexed, at `channel` (replaced if it exists)."""
    shutil.rmtree(channel, ignore_errors=True)
    minor = ".".join(python_version.split(".")[:2])
    (channel / "noarch").mkdir(parents=True)
    for package in (
        python_package(python_version),
        uv_package(uv),
        packaging_package(minor),
        fixture_lib_package(minor),
        fixture_lib_package(minor, "second-lib"),  # the second flavor of tests/engine/test_shared_stage.py
        cuda_version_package(),
    ):
        write_package(package, channel)
    asyncio.run(index_fs(channel, write_zst=False, write_shards=False))
    return channel
