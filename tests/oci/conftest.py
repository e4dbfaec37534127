"""Fixtures for the OCI engine: a channel with a prefix-placeholder package, a ready workspace, a tiny base rootfs.

The workspace is the shared fixture workspace (pytorch + tensorflow on a local channel),
locked, exported and generated, with the repository's common/ files and runner/ copied
in as a maintainer's checkout has them. Its runner feature also depends on two packages
written by hand: `prefixed-tool`, whose text files carry a build prefix placeholder, and
`entry-tool` (noarch: python), whose entry point script the installer writes; a staging
path leaking into either would show.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cli.oci import OciBuildResult
from tests.support.channel import build_channel, gpu_stack_packages
from tests.support.workspace import add_image_files, lock_and_export, write_workspace

REPO = Path(__file__).resolve().parents[2]
PLACEHOLDER = "/opt/placehold_placehold_placehold_placehold_placehold_placehold_placehold_prefix"
BASE_EPOCH = 1_700_000_000
FLAVORS = ("pytorch", "tensorflow")
TOOL_FILES = {
    "etc/prefixed-tool.conf": f"prefix={PLACEHOLDER}\ndata={PLACEHOLDER}/share/prefixed-tool\n",
    "bin/prefixed-tool": f"#!{PLACEHOLDER}/bin/python\nprint('prefixed-tool')\n",
}
ENTRY_FILES = {
    "site-packages/entry_tool/__init__.py": "",
    "site-packages/entry_tool/cli.py": "def main():\n    print('entry-tool')\n",
}
EXTRA_DEPENDENCIES = 'prefixed-tool = "*"\nentry-tool = "*"\n'


def _tar_member(archive: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = BASE_EPOCH
    archive.addfile(info, io.BytesIO(data))


def write_tar_bz2_package(
    channel: Path,
    index: dict[str, Any],
    files: dict[str, str],
    *,
    placeholder: str | None = None,
    link: dict[str, Any] | None = None,
) -> Path:
    """A .tar.bz2 conda package written by hand: the assembler can write neither placeholders nor entry points."""
    index = {"build_number": 0, "depends": [], "license": "MIT", "timestamp": BASE_EPOCH * 1000, **index}
    paths = []
    for name, text in sorted(files.items()):
        path: dict[str, Any] = {
            "_path": name,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "size_in_bytes": len(text.encode()),
        }
        if placeholder is not None and placeholder in text:
            path.update(prefix_placeholder=placeholder, file_mode="text")
        paths.append(path)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        _tar_member(archive, "info/index.json", json.dumps(index).encode())
        _tar_member(archive, "info/paths.json", json.dumps({"paths": paths, "paths_version": 1}).encode())
        _tar_member(archive, "info/files", "".join(f"{name}\n" for name in sorted(files)).encode())
        if placeholder is not None:
            has_prefix = "".join(f"{placeholder} text {name}\n" for name in sorted(files) if placeholder in files[name])
            _tar_member(archive, "info/has_prefix", has_prefix.encode())
        if link is not None:
            _tar_member(archive, "info/link.json", json.dumps(link).encode())
        for name, text in sorted(files.items()):
            _tar_member(archive, name, text.encode(), 0o755 if name.startswith("bin/") else 0o644)
    target = channel / index["subdir"] / f"{index['name']}-{index['version']}-{index['build']}.tar.bz2"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(bz2.compress(buffer.getvalue()))
    return target


def write_prefixed_package(channel: Path) -> Path:
    """linux-64 `prefixed-tool`: text files holding the build prefix placeholder."""
    index = {"name": "prefixed-tool", "version": "1.0.0", "build": "h0_0", "subdir": "linux-64"}
    index.update(arch="x86_64", platform="linux")
    return write_tar_bz2_package(channel, index, TOOL_FILES, placeholder=PLACEHOLDER)


def write_entry_point_package(channel: Path) -> Path:
    """noarch: python `entry-tool`: an entry point, whose script the installer writes with the prefix's python."""
    index: dict[str, Any] = {"name": "entry-tool", "version": "1.0.0", "build": "pyh0_0", "subdir": "noarch"}
    index.update(noarch="python", depends=["python >=3.9"])
    link: dict[str, Any] = {"noarch": {"type": "python", "entry_points": ["entry-tool = entry_tool.cli:main"]}}
    link["package_metadata_version"] = 1
    return write_tar_bz2_package(channel, index, ENTRY_FILES, link=link)


def write_extra_packages(channel: Path) -> None:
    """The hand-written packages, before `build_channel` indexes the channel (depend on them: EXTRA_DEPENDENCIES)."""
    write_prefixed_package(channel)
    write_entry_point_package(channel)


@pytest.fixture(scope="session")
def oci_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    channel = tmp_path_factory.mktemp("oci-channel") / "gpu-forge"
    write_extra_packages(channel)
    build_channel(channel, gpu_stack_packages())  # its index_fs indexes the hand-written packages too
    for subdir, name in (("linux-64", "prefixed-tool-1.0.0-h0_0"), ("noarch", "entry-tool-1.0.0-pyh0_0")):
        repodata = json.loads((channel / subdir / "repodata.json").read_text())
        assert f"{name}.tar.bz2" in repodata.get("packages", {}), f"{name} was not indexed"
    return channel


def prepare_workspace(root: Path, channel: Path) -> Path:
    """Write, lock, export and generate a fixture workspace ready for `build_oci_image`."""
    write_workspace(root, channel.as_uri())
    manifest = root / "pixi.toml"
    manifest.write_text(manifest.read_text().replace('uv = "*"\n', f'uv = "*"\n{EXTRA_DEPENDENCIES}', 1))
    add_image_files(root, runner=True)
    return lock_and_export(root, generate=True)


@pytest.fixture(scope="session")
def oci_template(tmp_path_factory: pytest.TempPathFactory, oci_channel: Path) -> Path:
    return prepare_workspace(tmp_path_factory.mktemp("oci-ws") / "ws", oci_channel)


def copy_workspace(template: Path, target: Path) -> Path:
    shutil.copytree(template, target, symlinks=True)
    return target


@pytest.fixture()
def oci_workspace(tmp_path: Path, oci_template: Path) -> Path:
    """A ready workspace of its own (a test may change it)."""
    return copy_workspace(oci_template, tmp_path / "ws")


# Stand-ins for what the base check asks of a base (the entrypoint's tools, a CA bundle); nothing here runs them.
ENTRYPOINT_STUBS: dict[str, tuple[bytes, int]] = {
    "bin/sh": (b"", 0o755),
    **{f"usr/bin/{tool}": (b"", 0o755) for tool in ("setpriv", "getent")},
    **{f"usr/sbin/{tool}": (b"", 0o755) for tool in ("usermod", "groupmod", "groupadd")},
    "etc/ssl/certs/ca-certificates.crt": (b"", 0o644),
}
BASE_FILES: dict[str, tuple[bytes, int]] = {
    **ENTRYPOINT_STUBS,
    "etc/passwd": (b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644),
    "etc/group": (b"root:x:0:\nshadow:x:42:\nnogroup:x:65534:\n", 0o644),
    "etc/shadow": (b"root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n", 0o640),
    "etc/os-release": (b'NAME="tiny test rootfs"\nID=tiny\n', 0o644),
    "usr/share/tiny/README": (b"a base made by tests/oci\n", 0o644),
}
BASE_DIRS = {"bin": 0o755, "etc": 0o755, "tmp": 0o1777, "usr": 0o755, "usr/share": 0o755, "usr/share/tiny": 0o755}
BASE_DIRS |= {"usr/bin": 0o755, "usr/sbin": 0o755, "etc/ssl": 0o755, "etc/ssl/certs": 0o755}


def make_rootfs(path: Path, extra: dict[str, bytes] | None = None, compress: bool = False) -> Path:
    """A tiny rootfs tarball, byte-identical on every call (fixed mtimes, owners, order)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, mode in sorted(BASE_DIRS.items()):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            info.mtime = BASE_EPOCH
            archive.addfile(info)
        files = {**BASE_FILES, **{k: (v, 0o644) for k, v in (extra or {}).items()}}
        for name, (data, mode) in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.mtime = BASE_EPOCH
            info.gid = 42 if name == "etc/shadow" else 0
            archive.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    if compress:
        import gzip

        data = gzip.compress(data, compresslevel=6, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@dataclass(frozen=True)
class Built:
    """One image built by the session fixture: the result and the archive."""

    result: OciBuildResult
    archive: Path


@pytest.fixture(scope="session")
def built_images(tmp_path_factory: pytest.TempPathFactory, oci_template: Path) -> dict[str, Built]:
    """Both flavors built once per session on the tiny rootfs (SOURCE_DATE_EPOCH from the default rule)."""
    from cli.lockengine.manifest import load_workspace
    from cli.oci import build_oci_image

    folder = tmp_path_factory.mktemp("oci-images")
    base = make_rootfs(folder / "base.tar")
    workspace = load_workspace(oci_template)
    images = {}
    for flavor in FLAVORS:
        archive = folder / f"{flavor}.tar"
        images[flavor] = Built(build_oci_image(workspace, flavor, base, archive, cache_dir=folder / "cache"), archive)
    return images


@pytest.fixture(scope="session")
def gzip_image(tmp_path_factory: pytest.TempPathFactory, oci_template: Path) -> Built:
    """The pytorch image with gzip layers (`--compression gzip`, for engines and tools that read no zstd)."""
    from cli.lockengine.manifest import load_workspace
    from cli.oci import Compression, build_oci_image

    folder = tmp_path_factory.mktemp("oci-gzip")
    base = make_rootfs(folder / "base.tar")
    archive = folder / "pytorch.tar"
    result = build_oci_image(
        load_workspace(oci_template), "pytorch", base, archive, cache_dir=folder / "cache",
        compression=Compression.gzip,
    )  # fmt: skip
    return Built(result, archive)


def read_layout(archive: Path) -> dict[str, bytes]:
    """Every file of an image archive by name."""
    with tarfile.open(archive) as bundle:
        return {m.name: bundle.extractfile(m).read() for m in bundle.getmembers() if m.isfile()}  # type: ignore[union-attr]


def blob(files: dict[str, bytes], digest: str) -> bytes:
    return files[f"blobs/sha256/{digest.split(':', 1)[1]}"]


def json_blob(files: dict[str, bytes], digest: str) -> Any:
    return json.loads(blob(files, digest))


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def layer_tar_bytes(data: bytes) -> bytes:
    """A layer blob's tar: zstd is decompressed here (the standard library's tarfile reads gzip only)."""
    if data[:4] == ZSTD_MAGIC:
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    if data[:2] == b"\x1f\x8b":
        import gzip

        return gzip.decompress(data)
    return data


def layer_members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(layer_tar_bytes(data)), mode="r:") as layer:
        return {m.name.rstrip("/"): m for m in layer.getmembers()}


def layer_file(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(layer_tar_bytes(data)), mode="r:") as layer:
        handle = layer.extractfile(name)
        assert handle is not None, name
        return handle.read()


def environment_files(files: dict[str, bytes], result: OciBuildResult) -> dict[str, bytes]:
    """Every regular file of the environment's layers (shared, flavor, metadata) by path, as a container sees them."""
    found: dict[str, bytes] = {}
    for layer in result.layers_of("shared", "flavor", "environment"):
        tar = layer_tar_bytes(blob(files, layer.digest))
        with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as archive:
            for member in archive.getmembers():
                if member.isfile():
                    handle = archive.extractfile(member)
                    assert handle is not None
                    found[member.name] = handle.read()
    return found


def environment_members(files: dict[str, bytes], result: OciBuildResult) -> dict[str, tarfile.TarInfo]:
    found: dict[str, tarfile.TarInfo] = {}
    for layer in result.layers_of("shared", "flavor", "environment"):
        found.update(layer_members(blob(files, layer.digest)))
    return found
