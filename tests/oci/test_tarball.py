"""The deterministic tar writer: order, owners, times, parents and the gzip header do not depend on the machine."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from cli.oci.tarball import (
    Compression,
    complete,
    directory,
    file_bytes,
    file_copy,
    normalize_member_name,
    symlink,
    tar_bytes,
    tree_entries,
    write_layer,
)


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
        return archive.getmembers()


def test_order_of_entries_does_not_matter() -> None:
    entries = [
        file_bytes("b/z.txt", b"z"),
        symlink("a/link", "../b/z.txt"),
        file_bytes("a/x.txt", b"x", mode=0o755),
        directory("b", uid=8004, gid=8004),
    ]
    assert tar_bytes(entries, 42) == tar_bytes(list(reversed(entries)), 42)
    names = [m.name for m in members(tar_bytes(entries, 42))]
    assert names == ["a", "a/link", "a/x.txt", "b", "b/z.txt"]


def test_fixed_metadata_and_explicit_parents() -> None:
    data = tar_bytes([file_bytes("opt/deep/er/file", b"data", uid=8004, gid=8004)], 1234)
    found = members(data)
    assert [m.name for m in found] == ["opt", "opt/deep", "opt/deep/er", "opt/deep/er/file"]
    for member in found:
        assert member.mtime == 1234
        assert member.uname == "" and member.gname == ""
        assert set(member.pax_headers) <= {"path", "linkpath"}  # no atime, ctime or xattrs
    assert [(m.uid, m.gid, m.mode) for m in found[:3]] == [(0, 0, 0o755)] * 3
    assert (found[3].uid, found[3].gid, found[3].mode) == (8004, 8004, 0o644)


def test_known_parents_keep_the_lower_layers_owner() -> None:
    known = {"home/scu": directory("home/scu", uid=8004, gid=8004)}
    found = {m.name: m for m in members(tar_bytes([file_bytes("home/scu/service.cli/run", b"")], 0))}
    assert found["home/scu"].uid == 0
    found = {m.name: m for m in members(tar_bytes([file_bytes("home/scu/service.cli/run", b"")], 0, known))}
    assert (found["home/scu"].uid, found["home"].uid) == (8004, 0)


def test_conflicting_entries_are_refused() -> None:
    with pytest.raises(ValueError, match="two different entries"):
        complete([file_bytes("a", b"1"), file_bytes("a", b"2")])
    with pytest.raises(ValueError, match="parent directory"):
        complete([file_bytes("a", b"1"), file_bytes("a/b", b"2")])
    with pytest.raises(ValueError, match="relative and normalised"):
        file_bytes("/etc/passwd", b"")


def test_member_names_are_normalised() -> None:
    assert normalize_member_name("./etc//passwd") == "etc/passwd"
    assert normalize_member_name("/usr/bin/") == "usr/bin"
    assert normalize_member_name("./") == ""


def _tree(root: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        (root / "pkg" / "__pycache__").mkdir(parents=True)
        (root / "pkg" / "__init__.py").write_text("x = 1\n")
        (root / "pkg" / "__pycache__" / "m.pyc").write_bytes(b"junk")
        tool = root / "pkg" / "tool"
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o777 & ~umask)
        (root / "pkg" / "link").symlink_to("tool")
    finally:
        os.umask(old)


def test_tree_entries_ignore_umask_and_mtime(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    _tree(one, 0o022)
    _tree(two, 0o077)
    for path in two.rglob("*"):
        os.utime(path, (1, 987654321), follow_symlinks=False)
    skip = lambda p: p.name == "__pycache__"  # noqa: E731
    first = tar_bytes(tree_entries(one / "pkg", "opt/pkg", skip=skip), 7)
    second = tar_bytes(tree_entries(two / "pkg", "opt/pkg", skip=skip), 7)
    assert first == second
    found = {m.name: m for m in members(first)}
    assert set(found) == {"opt", "opt/pkg", "opt/pkg/__init__.py", "opt/pkg/link", "opt/pkg/tool"}
    assert found["opt/pkg/tool"].mode == 0o755 and found["opt/pkg/__init__.py"].mode == 0o644
    assert found["opt/pkg/link"].issym() and found["opt/pkg/link"].linkname == "tool"


def test_hard_links_are_regular_files(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("same\n")
    os.link(tmp_path / "a", tmp_path / "b")
    found = members(tar_bytes(tree_entries(tmp_path, "x"), 0))
    assert all(m.isfile() for m in found if m.name != "x")


def test_gzip_layer_has_a_fixed_header_and_two_digests(tmp_path: Path) -> None:
    entries = [file_bytes("etc/hello", b"hello\n"), file_copy("etc/copy", _write(tmp_path / "src", b"copy\n"))]
    blob = write_layer(entries, tmp_path / "out", 99, Compression.gzip)
    data = blob.path.read_bytes()
    assert data[:4] == b"\x1f\x8b\x08\x00"  # gzip, deflate, no FNAME/FEXTRA/FCOMMENT
    assert data[4:8] == b"\x00\x00\x00\x00"  # mtime 0
    assert blob.digest == f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert blob.diff_id == f"sha256:{hashlib.sha256(gzip.decompress(data)).hexdigest()}"
    assert blob.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    again = write_layer(list(reversed(entries)), tmp_path / "again", 99, Compression.gzip)
    assert again.path.read_bytes() == data


def test_uncompressed_layer(tmp_path: Path) -> None:
    blob = write_layer([file_bytes("a", b"a")], tmp_path, 0, Compression.none)
    data = blob.path.read_bytes()
    assert blob.digest == blob.diff_id == f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert blob.media_type == "application/vnd.oci.image.layer.v1.tar"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_zstd_layer_bytes_do_not_depend_on_the_number_of_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """zstd's multi-threaded mode gives the same frame for any number of workers: a 2-core and a 64-core
    machine write the same layer. (Enough data for several zstd jobs, so the workers really split it.)"""
    import random

    from cli.oci import tarball

    source = _write(tmp_path / "big", random.Random(7).randbytes(6 << 20) + bytes(20 << 20))
    entries = [file_copy("opt/big", source), file_bytes("etc/hello", b"hello\n")]
    blobs = []
    for threads in (1, 2, 5):
        monkeypatch.setattr(tarball, "ZSTD_THREADS", threads)
        blobs.append(write_layer(entries, tmp_path / f"out-{threads}", 99, Compression.zstd))
    assert len({blob.digest for blob in blobs}) == 1
    data = blobs[0].path.read_bytes()
    assert data[:4] == b"\x28\xb5\x2f\xfd"
    assert blobs[0].media_type == "application/vnd.oci.image.layer.v1.tar+zstd"
    import zstandard

    assert (
        blobs[0].diff_id
        == f"sha256:{hashlib.sha256(zstandard.ZstdDecompressor().decompressobj().decompress(data)).hexdigest()}"
    )


def test_the_zstandard_pin_is_the_one_the_writer_expects_and_the_one_running() -> None:
    """pyproject.toml pins zstandard exactly; the writer names the same pin and the libzstd that wheel carries."""
    import tomllib

    from cli.oci.tarball import ZSTANDARD_PIN, ZSTD_LIBRARY_PIN, zstd_versions

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    pins = [d for d in pyproject["project"]["dependencies"] if d.replace(" ", "").startswith("zstandard")]
    assert pins == [f"zstandard=={ZSTANDARD_PIN}"]
    assert zstd_versions() == (ZSTANDARD_PIN, ZSTD_LIBRARY_PIN)  # this environment installed the pin


def test_another_libzstd_is_refused_in_one_line_another_binding_only_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from cli.errors import UserError
    from cli.oci.tarball import ZSTANDARD_PIN, ZSTD_LIBRARY_PIN, check_compressor

    pyproject = tmp_path / "pyproject.toml"
    with pytest.raises(UserError) as refused:
        check_compressor(Compression.zstd, ("0.23.0", "1.5.6"), pyproject=pyproject)
    line = refused.value.one_line()
    assert line.startswith(f"{pyproject}: zstandard 0.23.0 carries libzstd 1.5.6, not the pinned {ZSTD_LIBRARY_PIN}")
    assert f"pip install zstandard=={ZSTANDARD_PIN}" in line and "--compression gzip" in line
    assert "\n" not in line
    check_compressor(Compression.gzip, ("0.23.0", "1.5.6"))  # gzip layers do not use it
    check_compressor(Compression.zstd, ("0.99.0", ZSTD_LIBRARY_PIN))
    assert "zstandard 0.99.0 is not the pinned" in caplog.text and "the same" in caplog.text
    caplog.clear()
    check_compressor(Compression.zstd)  # the running one: the pin
    assert caplog.text == ""


def test_the_compression_label_names_the_library_and_every_parameter() -> None:
    import zlib

    from cli.oci.tarball import ZSTD_LIBRARY_PIN, compression_label

    assert compression_label(Compression.zstd) == (
        f"zstd libzstd={ZSTD_LIBRARY_PIN} level=3 checksum=true content_size=false mode=multi-threaded"
    )
    assert compression_label(Compression.gzip) == f"gzip zlib={zlib.ZLIB_RUNTIME_VERSION} level=6 header=fixed"
