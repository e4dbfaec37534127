"""Issue 13: a damaged package cache never reaches a prefix.

Installs check every cache entry against its own paths.json before linking it, repair a damaged
entry from its sha256-checked archive with one log line, and refuse what still does not match;
`cache verify` finds damage and `--repair` removes it; the default link mode keeps prefixes off
the cache's inodes.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rattler import Channel, PackageName, RepoDataRecord, SparseRepoData
from rattler.index import index_fs

from cli.errors import UserError
from cli.lockengine.install import InstallOptions, install_records
from tests.support.channel import FakePackage, build_channel
from tests.support.cli import error_line, run_cli
from tests.support.http_channel import ChannelServer, serve_channel
from tests.support.locks import lock_records

README = "share/pytorch/README.txt"
ENTRY = "pytorch-2.5.0-cuda124_py312_h2_300"
ARCHIVE = f"{ENTRY}.conda"


def install(workspace: Path, prefix: Path, cache: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_cli("install", "pytorch", "--prefix", prefix, "--cache-dir", cache, "--quiet", *args, cwd=workspace)


def install_json(workspace: Path, prefix: Path, cache: Path, *args: str | Path) -> dict[str, Any]:
    result = install(workspace, prefix, cache, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def warnings(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("WARNING")]


def audit(workspace: Path, prefix: Path) -> tuple[int, list[dict[str, str]]]:
    result = run_cli("audit", "prefix", "pytorch", prefix, "--json", cwd=workspace)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)["findings"]


def cache_verify(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("cache", "verify", "--cache-dir", cache, "--quiet", *args, cwd=cache.parent)


def test_an_edit_through_a_hard_link_is_repaired_before_the_next_install(
    locked_workspace: Path, tmp_path: Path, cuda_override: str
) -> None:
    """The acceptance test: edit a hard-linked file in one prefix; the next prefix from that cache is clean."""
    cache = tmp_path / "cache"
    first, second = tmp_path / "first", tmp_path / "second"
    assert install(locked_workspace, first, cache, "--link", "hardlink").returncode == 0
    original = (first / README).read_text()
    edited = first / README
    assert os.stat(edited).st_ino == os.stat(cache / "pkgs" / ENTRY / README).st_ino
    with edited.open("a") as handle:
        handle.write("tampered while debugging\n")
    assert (cache / "pkgs" / ENTRY / README).read_text() != original  # the edit reached the cache

    code, findings = audit(locked_workspace, first)
    assert code == 1
    (finding,) = findings
    assert finding["check"] == "file-modified-in-cache" and finding["subject"] == README
    assert "cache verify --repair" in finding["detail"] and f"--prefix {first} --reinstall" in finding["detail"]

    result = install(locked_workspace, second, cache, "--json")
    assert result.returncode == 0, result.stderr
    (line,) = warnings(result)  # one log line
    assert ENTRY in line and README in line and "re-extracting" in line and ARCHIVE in line
    assert json.loads(result.stdout)["cache"]["repaired"] == [ARCHIVE]
    assert (second / README).read_text() == original
    assert audit(locked_workspace, second) == (0, [])

    # the first prefix is repaired by a reinstall from the now clean cache
    assert install(locked_workspace, first, cache, "--reinstall").returncode == 0
    assert audit(locked_workspace, first) == (0, [])


def test_the_default_link_mode_keeps_prefix_edits_out_of_the_cache(
    locked_workspace: Path, tmp_path: Path, cuda_override: str
) -> None:
    cache = tmp_path / "cache"
    prefix = tmp_path / "env"
    report = install_json(locked_workspace, prefix, cache)
    assert report["link"] == "reflink"
    cached = os.stat(cache / "pkgs" / ENTRY / README)
    installed = os.stat(prefix / README)
    assert installed.st_ino != cached.st_ino and installed.st_nlink == 1
    (prefix / README).write_text("edited\n")
    assert cache_verify(cache).returncode == 0


@pytest.mark.parametrize(("mode", "shared"), [("hardlink", True), ("copy", False), ("reflink", False)])
def test_link_modes(locked_workspace: Path, tmp_path: Path, cuda_override: str, mode: str, shared: bool) -> None:
    cache = tmp_path / "cache"
    prefix = tmp_path / "env"
    assert install_json(locked_workspace, prefix, cache, "--link", mode)["link"] == mode
    same = os.stat(prefix / README).st_ino == os.stat(cache / "pkgs" / ENTRY / README).st_ino
    assert same is shared


def test_warm_installs_hash_nothing_until_a_file_changes(
    locked_workspace: Path, tmp_path: Path, cuda_override: str
) -> None:
    cache = tmp_path / "cache"
    cold = install_json(locked_workspace, tmp_path / "a", cache)
    assert cold["cache"]["hashed_files"] > 0 and len(cold["cache"]["extracted"]) == len(cold["packages"])
    warm = install_json(locked_workspace, tmp_path / "b", cache)
    assert warm["cache"]["verified_entries"] == len(warm["packages"])
    assert warm["cache"]["hashed_files"] == 0 and warm["cache"]["extracted"] == []
    # hard links move every linked file's ctime and link count, and so does deleting their prefix
    install_json(locked_workspace, tmp_path / "c", cache, "--link", "hardlink")
    assert install_json(locked_workspace, tmp_path / "d", cache, "--link", "hardlink")["cache"]["hashed_files"] == 0
    shutil.rmtree(tmp_path / "c")
    shutil.rmtree(tmp_path / "d")
    assert install_json(locked_workspace, tmp_path / "f", cache, "--link", "hardlink")["cache"]["hashed_files"] == 0

    # same size, same mtime, other bytes: the ctime still gives it away
    cached = cache / "pkgs" / ENTRY / README
    before = os.stat(cached)
    text = cached.read_text()
    cached.write_text(text.replace("pytorch", "PYTORCH"))
    os.utime(cached, ns=(before.st_atime_ns, before.st_mtime_ns))
    changed = install_json(locked_workspace, tmp_path / "e", cache)
    assert changed["cache"]["repaired"] == [ARCHIVE]
    assert changed["cache"]["hashed_files"] >= 1
    assert (tmp_path / "e" / README).read_text() == text


@pytest.mark.parametrize(
    "damage",
    ["delete a file", "truncate a file", "replace a file by a folder", "rewrite paths.json to match an edit"],
)
def test_every_kind_of_damage_is_repaired(
    locked_workspace: Path, tmp_path: Path, cuda_override: str, damage: str
) -> None:
    cache = tmp_path / "cache"
    install_json(locked_workspace, tmp_path / "a", cache)
    entry = cache / "pkgs" / ENTRY
    target = entry / README
    original = target.read_text()
    if damage == "delete a file":
        target.unlink()
    elif damage == "truncate a file":
        target.write_text("")
    elif damage == "replace a file by a folder":
        target.unlink()
        target.mkdir()
    else:  # someone who edits the cache and "fixes" its paths.json too
        target.write_text("evil\n")
        paths_json = entry / "info" / "paths.json"
        data = json.loads(paths_json.read_text())
        for item in data["paths"]:
            if item["_path"] == README:
                item["sha256"] = hashlib.sha256(b"evil\n").hexdigest()
                item["size_in_bytes"] = 5
        paths_json.write_text(json.dumps(data))
    assert cache_verify(cache).returncode == 1
    result = install(locked_workspace, tmp_path / "b", cache)
    assert result.returncode == 0, result.stderr
    assert len(warnings(result)) == 1
    assert (tmp_path / "b" / README).read_text() == original
    assert cache_verify(cache).returncode == 0


@pytest.fixture()
def server(gpu_channel: Path) -> Iterator[ChannelServer]:
    with serve_channel(gpu_channel) as running:
        yield running


def test_a_damaged_entry_is_fetched_again_when_its_archive_is_remote(
    locked_workspace: Path, gpu_channel: Path, server: ChannelServer, tmp_path: Path, cuda_override: str
) -> None:
    cache = tmp_path / "cache"
    mirror = ("--mirror", f"{gpu_channel.as_uri()}={server.url}")
    install_json(locked_workspace, tmp_path / "a", cache, *mirror)
    assert server.requests[ARCHIVE] == 1
    (cache / "pkgs" / ENTRY / README).write_text("damaged\n")
    result = install(locked_workspace, tmp_path / "b", cache, *mirror)
    assert result.returncode == 0, result.stderr
    (line,) = warnings(result)
    assert f"{server.url}/linux-64/{ARCHIVE}" in line
    assert server.requests[ARCHIVE] == 2  # the archive is not kept: it was downloaded again, sha256-checked
    # a server that now sends other bytes cannot repair it: the damage never reaches the prefix
    (cache / "pkgs" / ENTRY / README).write_text("damaged again\n")
    server.faults[ARCHIVE] = "wrong"
    refused = install(locked_workspace, tmp_path / "c", cache, *mirror)
    assert refused.returncode == 2
    assert f"sha256 mismatch for {ARCHIVE}" in error_line(refused)
    assert not (tmp_path / "c").exists()


def test_cache_verify_finds_damage_and_repair_cleans_it(
    locked_workspace: Path, tmp_path: Path, cuda_override: str
) -> None:
    cache = tmp_path / "cache"
    prefix = tmp_path / "env"
    install_json(locked_workspace, prefix, cache, "--link", "hardlink")
    clean = cache_verify(cache)
    assert clean.returncode == 0, clean.stderr
    assert "the cache matches every paths.json" in clean.stdout
    with (prefix / README).open("a") as handle:
        handle.write("tampered\n")

    found = cache_verify(cache, "--json")
    assert found.returncode == 1
    report = json.loads(found.stdout)
    (damaged,) = report["damaged"]
    assert damaged["entry"] == ENTRY and damaged["damage"][0]["path"] == README and not report["clean"]
    text = cache_verify(cache)
    assert text.returncode == 1
    assert f"damaged {cache / 'pkgs' / ENTRY / README}:" in text.stdout

    repaired = cache_verify(cache, "--repair")
    assert repaired.returncode == 0, repaired.stderr
    assert "re-extracted from" in repaired.stdout and "sha256 checked" in repaired.stdout
    again = cache_verify(cache, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["clean"]
    locked = lock_records(locked_workspace / "pixi.lock", "pytorch")["pytorch"]
    assert (cache / "pkgs" / ENTRY / README).read_text().startswith(f"pytorch {locked.version}")


def test_cache_verify_repair_without_a_known_origin_removes_the_entry(
    locked_workspace: Path, tmp_path: Path, cuda_override: str
) -> None:
    cache = tmp_path / "cache"
    install_json(locked_workspace, tmp_path / "env", cache)
    memos = json.loads((cache / "verified.json").read_text())
    del memos["entries"][ENTRY]  # e.g. an entry py-rattler or pixi put there
    (cache / "verified.json").write_text(json.dumps(memos))
    (cache / "pkgs" / ENTRY / README).write_text("damaged\n")
    result = cache_verify(cache, "--repair")
    assert result.returncode == 0, result.stderr
    assert "removed (its origin is unknown)" in result.stdout
    assert not (cache / "pkgs" / ENTRY).exists()
    assert install(locked_workspace, tmp_path / "again", cache).returncode == 0  # fetched again


def test_cache_verify_bad_input(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    (tmp_path / "empty").mkdir()
    for folder, words in (
        (tmp_path / "missing", "does not exist"),
        (a_file, "not a folder"),
        (tmp_path / "empty", "not a package cache"),
    ):
        result = cache_verify(folder)
        assert result.returncode == 2, result.stderr
        assert words in error_line(result) and str(folder) in error_line(result)
        shown = run_cli("cache", "verify", "--cache-dir", folder, cwd=tmp_path)  # progress not turned off
        assert shown.returncode == 2 and shown.stderr == error_line(result) + "\n"


# --- a package whose archive contradicts its own paths.json ---------------------------------------


def _tar_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


def write_lying_package(channel: Path) -> Path:
    """A .tar.bz2 whose paths.json states another sha256 for one of its files than the file has."""
    index = {"name": "liar", "version": "1.0", "build": "h0_0", "build_number": 0, "subdir": "linux-64"}
    index.update(depends=[], license="MIT", arch="x86_64", platform="linux")
    files = {"share/liar/honest.txt": b"honest\n", "share/liar/lying.txt": b"what paths.json does not say\n"}
    paths = [
        {
            "_path": name,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(b"something else\n" if "lying" in name else data).hexdigest(),
            "size_in_bytes": len(data),
        }
        for name, data in sorted(files.items())
    ]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        _tar_member(archive, "info/index.json", json.dumps(index).encode())
        _tar_member(archive, "info/paths.json", json.dumps({"paths": paths, "paths_version": 1}).encode())
        for name, data in sorted(files.items()):
            _tar_member(archive, name, data)
    target = channel / "linux-64" / "liar-1.0-h0_0.tar.bz2"
    target.parent.mkdir(parents=True, exist_ok=True)
    (channel / "noarch").mkdir(exist_ok=True)
    target.write_bytes(bz2.compress(buffer.getvalue()))
    return target


def test_a_package_that_contradicts_its_paths_json_is_refused(tmp_path: Path) -> None:
    import asyncio

    channel = tmp_path / "liars"
    write_lying_package(channel)
    asyncio.run(index_fs(channel, write_zst=False, write_shards=False))
    repodata = SparseRepoData(Channel(channel.as_uri()), "linux-64", channel / "linux-64" / "repodata.json")
    records = repodata.load_records(PackageName("liar"))
    prefix = tmp_path / "env"
    with pytest.raises(UserError) as raised:
        install_records(records, prefix, InstallOptions(cache_dir=tmp_path / "cache", show_progress=False))
    line = raised.value.one_line()
    assert "share/liar/lying.txt of liar-1.0-h0_0.tar.bz2 does not match the package's paths.json" in line
    assert "report it to the channel" in line
    assert not prefix.exists()


# --- symbolic links in cache entries ---------------------------------------------------------------

LINKY = FakePackage(
    "linky",
    "1.0",
    "h0_0",
    files={"lib/liblinky.so.1.0": "the library\n", "share/linky/other.txt": "another file\n"},
    symlinks={
        "lib/liblinky.so": "liblinky.so.1.0",  # leads to a file of its own package
        "lib/libdep.so": "libdep.so.2",  # leads to a file another package brings: dangles in the cache
        "share/current": "linky",  # leads to a folder
    },
)
LINKY_ENTRY = "linky-1.0-h0_0"


@pytest.fixture()
def linky_records(tmp_path: Path) -> list[RepoDataRecord]:
    channel = build_channel(tmp_path / "linky-channel", [LINKY])
    repodata = SparseRepoData(Channel(channel.as_uri()), "linux-64", channel / "linux-64" / "repodata.json")
    return repodata.load_records(PackageName("linky"))


@pytest.mark.parametrize(
    ("link", "retarget", "memo"),
    [
        ("lib/liblinky.so", "../share/linky/other.txt", True),
        ("lib/liblinky.so", "../share/linky/other.txt", False),  # paths.json alone shows it: other content
        ("lib/libdep.so", "libdep.so.3", True),  # leaves the entry: the memo shows it
        ("share/current", "../lib", True),
    ],
)
def test_a_retargeted_symbolic_link_in_the_cache_is_found_and_repaired(
    linky_records: list[RepoDataRecord],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    link: str,
    retarget: str,
    memo: bool,
) -> None:
    cache = tmp_path / "cache"
    options = InstallOptions(cache_dir=cache, show_progress=False)
    install_records(linky_records, tmp_path / "a", options)
    original = os.readlink(cache / "pkgs" / LINKY_ENTRY / link)
    assert cache_verify(cache).returncode == 0
    (cache / "pkgs" / LINKY_ENTRY / link).unlink()
    (cache / "pkgs" / LINKY_ENTRY / link).symlink_to(retarget)
    if not memo:
        (cache / "verified.json").unlink()  # a cache filled by pixi or py-rattler alone

    found = cache_verify(cache)
    assert found.returncode == 1, found.stdout + found.stderr
    (damaged,) = [line for line in found.stdout.splitlines() if line.startswith("damaged")]
    assert damaged.startswith(f"damaged {cache / 'pkgs' / LINKY_ENTRY / link}: symbolic link to {retarget!r}")

    with caplog.at_level("WARNING"):
        install_records(linky_records, tmp_path / "b", options)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"{LINKY_ENTRY} is damaged ({link}: symbolic link to {retarget!r}" in warning
    assert os.readlink(tmp_path / "b" / link) == original
    assert os.readlink(cache / "pkgs" / LINKY_ENTRY / link) == original
    assert cache_verify(cache).returncode == 0


def test_cache_verify_repairs_a_retargeted_link(linky_records: list[RepoDataRecord], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    install_records(linky_records, tmp_path / "a", InstallOptions(cache_dir=cache, show_progress=False))
    link = cache / "pkgs" / LINKY_ENTRY / "lib" / "liblinky.so"
    link.unlink()
    link.symlink_to("../share/linky/other.txt")
    repaired = cache_verify(cache, "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert f"repaired {LINKY_ENTRY}: re-extracted from" in repaired.stdout
    assert os.readlink(link) == "liblinky.so.1.0"
