"""`cli install` over HTTP: py-rattler downloads from a local server, and a failure names URL, package and fix.

The locked workspace's packages live in a file:// channel; `--mirror CHANNEL=http://127.0.0.1:…`
makes the install fetch them from a server on 127.0.0.1 instead, which can refuse, answer 404,
cut a download short, or serve other bytes than were locked.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import error_line, run_cli
from tests.support.http_channel import ChannelServer, refused_url, serve_channel
from tests.support.locks import lock_records

FIX_WORDS = ("--mirror", "HTTPS_PROXY", "--cache-dir")
NUMPY = "numpy-2.0.0-py312_h0_0.conda"


@pytest.fixture()
def server(gpu_channel: Path) -> Iterator[ChannelServer]:
    with serve_channel(gpu_channel) as running:
        yield running


def install(
    workspace: Path, prefix: Path, cache: Path, *args: str | Path, mirror_to: str | None = None, quiet: bool = True
) -> subprocess.CompletedProcess[str]:
    channel = next(iter(lock_records(workspace / "pixi.lock", "pytorch").values())).url.rsplit("/", 2)[0]
    mirror = ("--mirror", f"{channel}={mirror_to}") if mirror_to else ()
    flags = ("--quiet",) if quiet else ()
    return run_cli(
        "install", "pytorch", "--prefix", prefix, "--cache-dir", cache, *flags, *mirror, *args, cwd=workspace
    )


def test_install_downloads_with_py_rattler_and_records_the_lock_urls(
    locked_workspace: Path, server: ChannelServer, tmp_path: Path, cuda_override: str
) -> None:
    prefix = tmp_path / "env"
    result = install(locked_workspace, prefix, tmp_path / "cache", "--json", mirror_to=server.url)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    locked = lock_records(locked_workspace / "pixi.lock", "pytorch")
    archives = {r.file_name for r in locked.values()}
    assert sorted(report["cache"]["downloaded"]) == sorted(locked)  # every package came over HTTP
    assert set(server.requests) == archives
    sizes = sum(r.size or 0 for r in locked.values())
    assert report["cache"]["downloaded_bytes"] == sizes == server.bytes_sent
    assert report["cache"]["hashed_files"] > 0  # the fresh entries were checked against paths.json
    for meta in (prefix / "conda-meta").glob("*.json"):  # the lock's URL, not the mirror's
        data = json.loads(meta.read_text())
        assert data["url"] == locked[data["name"]].url
    # warm: nothing is downloaded again
    again = install(locked_workspace, tmp_path / "env2", tmp_path / "cache", "--json", mirror_to=server.url)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["cache"]["downloaded"] == []
    assert sum(server.requests.values()) == len(archives)


def test_refused_connection_names_url_package_and_fix(
    locked_workspace: Path, tmp_path: Path, cuda_override: str
) -> None:
    refused = refused_url()
    # no --quiet: with stderr a pipe there is no progress display, and nothing but the error line
    result = install(locked_workspace, tmp_path / "env", tmp_path / "cache", mirror_to=refused, quiet=False)
    assert result.returncode == 2, result.stderr
    line = error_line(result)
    assert result.stderr == line + "\n"
    assert "cannot download" in line and refused in line and ".conda" in line
    assert all(word in line for word in FIX_WORDS), line
    assert "check the path and its permissions" not in line
    assert not (tmp_path / "env").exists()  # nothing half-installed: a new prefix appears only when complete
    assert not list(tmp_path.glob(".env.installing-*"))


def test_404_names_url_package_and_fix(
    locked_workspace: Path, server: ChannelServer, tmp_path: Path, cuda_override: str
) -> None:
    server.faults[NUMPY] = "404"
    result = install(locked_workspace, tmp_path / "env", tmp_path / "cache", mirror_to=server.url)
    assert result.returncode == 2, result.stderr
    line = error_line(result)
    assert f"{server.url}/linux-64/{NUMPY}" in line and "numpy 2.0.0 py312_h0_0" in line and "HTTP 404" in line
    assert "--mirror" in line and "--cache-dir" in line


def test_truncated_download_is_retried_then_named(
    locked_workspace: Path, server: ChannelServer, tmp_path: Path, cuda_override: str
) -> None:
    server.faults[NUMPY] = "truncate"
    cache = tmp_path / "cache"
    result = install(locked_workspace, tmp_path / "env", cache, mirror_to=server.url)
    assert result.returncode == 2, result.stderr
    line = error_line(result)
    assert "numpy 2.0.0 py312_h0_0" in line and f"{server.url}/linux-64/{NUMPY}" in line and "cut off" in line
    assert all(word in line for word in FIX_WORDS), line
    assert server.requests[NUMPY] > 1  # py-rattler retried before giving up
    assert not (cache / "pkgs" / NUMPY.removesuffix(".conda")).exists()


def test_wrong_bytes_never_land(
    locked_workspace: Path, server: ChannelServer, tmp_path: Path, cuda_override: str
) -> None:
    server.faults[NUMPY] = "wrong"
    cache = tmp_path / "cache"
    prefix = tmp_path / "env"
    result = install(locked_workspace, prefix, cache, mirror_to=server.url)
    assert result.returncode == 2, result.stderr
    line = error_line(result)
    locked = lock_records(locked_workspace / "pixi.lock", "pytorch")["numpy"]
    assert f"sha256 mismatch for {NUMPY}" in line and locked.sha256 is not None and locked.sha256.hex() in line
    assert f"{server.url}/linux-64/{NUMPY}" in line and "--mirror" in line
    assert not (cache / "pkgs" / NUMPY.removesuffix(".conda")).exists()
    assert not prefix.exists()


def test_garbage_is_named_as_such(
    locked_workspace: Path, server: ChannelServer, tmp_path: Path, cuda_override: str
) -> None:
    server.faults[NUMPY] = "garbage"
    cache = tmp_path / "cache"
    result = install(locked_workspace, tmp_path / "env", cache, mirror_to=server.url)
    assert result.returncode == 2, result.stderr
    line = error_line(result)
    assert f"{server.url}/linux-64/{NUMPY}" in line and "not a readable archive" in line and "--mirror" in line
    assert not (cache / "pkgs" / NUMPY.removesuffix(".conda")).exists()
    assert not (tmp_path / "env").exists()  # a new prefix is renamed into place only once complete


def test_a_file_error_stays_a_file_error(
    locked_workspace: Path, server: ChannelServer, tmp_path: Path, cuda_override: str
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the prefix's parent should be\n")
    result = install(locked_workspace, blocker / "env", tmp_path / "cache", mirror_to=server.url)
    assert result.returncode == 2, result.stderr
    line = error_line(result)
    assert str(blocker / "env") in line and "cannot install into the prefix" in line
    assert "download" not in line and "--mirror" not in line
    cache_file = tmp_path / "cache-file"
    cache_file.write_text("")
    result = install(locked_workspace, tmp_path / "env", cache_file, mirror_to=server.url)
    assert result.returncode == 2
    assert "cannot create the package cache" in error_line(result) and "download" not in error_line(result)


def test_mirror_to_a_local_copy_and_a_mirror_no_package_uses(
    locked_workspace: Path, gpu_channel: Path, tmp_path: Path, cuda_override: str
) -> None:
    copy = tmp_path / "copy-of-channel"
    shutil.copytree(gpu_channel, copy)
    prefix = tmp_path / "env"
    result = install(locked_workspace, prefix, tmp_path / "cache", "--json", mirror_to=str(copy))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["cache"]["extracted"]) == len(report["packages"])  # local archives, sha256-checked here
    unused = run_cli(
        "install", "pytorch", "--prefix", prefix, "--mirror", f"https://example.invalid/other={copy}",
        cwd=locked_workspace,
    )  # fmt: skip
    assert unused.returncode == 2
    assert "which no package of 'pytorch' comes from" in error_line(unused)
    bad = run_cli("install", "pytorch", "--mirror", "no-equals-sign", cwd=locked_workspace)
    assert bad.returncode == 2 and "NAME=URL" in error_line(bad)


def test_install_defaults_to_the_workspace_envs_folder(locked_workspace: Path, cuda_override: str) -> None:
    result = run_cli("install", "pytorch", "--quiet", cwd=locked_workspace, env={"NO_COLOR": "1"})
    assert result.returncode == 0, result.stderr
    prefix = locked_workspace / ".envs" / "pytorch"
    assert (prefix / "conda-meta").is_dir() and str(prefix) in result.stdout
    assert os.path.exists(prefix / "bin" / "python")


def test_a_client_hanging_up_leaves_no_noise(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A download dropped half way (as py-rattler drops wrong bytes) is kept by the server, never printed."""
    (tmp_path / "big.conda").write_bytes(bytes(32 << 20))  # more than the socket buffers hold
    with serve_channel(tmp_path) as server:
        client = socket.create_connection(("127.0.0.1", server.server_address[1]))
        client.sendall(b"GET /big.conda HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        client.recv(1024)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, not a close
        client.close()
        deadline = time.monotonic() + 10
        while not server.errors and time.monotonic() < deadline:
            time.sleep(0.05)
    assert [type(e) for e in server.errors] in ([ConnectionResetError], [BrokenPipeError])
    assert capfd.readouterr().err == ""
