"""The base: a rootfs tarball (plain or gzip, bytes unchanged) or an OCI archive (layers, diff_ids, env, history)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from cli.errors import UserError
from cli.lockengine.manifest import load_workspace
from cli.oci import build_oci_image
from cli.oci.base import DEBIAN_BASE_RECIPE, import_base
from cli.oci.layout import BlobStore
from tests.oci.conftest import BASE_EPOCH, blob, json_blob, layer_file, layer_members, make_rootfs, read_layout


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _tar(files: dict[str, bytes], prefix: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            info.mtime = BASE_EPOCH
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _digest(data), "size": len(data)}


def oci_archive(path: Path, tmp: Path, *, architecture: str = "amd64") -> dict[str, Any]:
    """A two-layer OCI archive as `skopeo copy ... oci-archive:` or `docker save` would give (docker layer types)."""
    first = gzip.compress(make_rootfs(tmp / "rootfs.tar").read_bytes(), mtime=0)
    second = _tar({"etc/.wh.shadow": b"", "usr/share/tiny/extra": b"from the second layer\n"})
    config = {
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Env": ["PATH=/custom/bin:/usr/sbin:/usr/bin", "BASE_VAR=1"],
            "Cmd": ["/bin/sh"],
            "StopSignal": "SIGINT",
            "Labels": {"org.example.base": "tiny", "org.opencontainers.image.version": "0.0.1"},
        },
        "rootfs": {"type": "layers", "diff_ids": [_digest(gzip.decompress(first)), _digest(second)]},
        "history": [
            {"created_by": "ADD rootfs.tar /"},
            {"created_by": "ENV BASE_VAR=1", "empty_layer": True},
            {"created_by": "RUN rm /etc/shadow"},
        ],
    }
    config_bytes = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": _descriptor("application/vnd.oci.image.config.v1+json", config_bytes),
        "layers": [
            _descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", first),
            _descriptor("application/vnd.docker.image.rootfs.diff.tar", second),
        ],
    }
    manifest_bytes = json.dumps(manifest).encode()
    descriptor = _descriptor("application/vnd.oci.image.manifest.v1+json", manifest_bytes)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {**descriptor, "platform": {"os": "linux", "architecture": "arm64"}},
            {**descriptor, "platform": {"os": "linux", "architecture": architecture}},
        ],
    }
    files = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": json.dumps(index).encode()}
    for data in (first, second, config_bytes, manifest_bytes):
        files[f"blobs/sha256/{_digest(data).split(':')[1]}"] = data
    path.write_bytes(_tar(files, prefix="./"))
    return {"layers": [_digest(first), _digest(second)], "diff_ids": config["rootfs"]["diff_ids"]}  # type: ignore[index]


def test_an_oci_archive_base_keeps_its_layers_env_and_history(oci_workspace: Path, tmp_path: Path) -> None:
    expected = oci_archive(tmp_path / "base-oci.tar", tmp_path)
    result = build_oci_image(
        load_workspace(oci_workspace), "pytorch", tmp_path / "base-oci.tar", tmp_path / "image.tar",
        cache_dir=tmp_path / "cache",
    )  # fmt: skip
    assert [layer.role for layer in result.layers][:3] == ["base", "base", "common"]
    assert [layer.digest for layer in result.layers[:2]] == expected["layers"]
    assert [layer.diff_id for layer in result.layers[:2]] == expected["diff_ids"]
    assert [layer.media_type for layer in result.layers[:2]] == [
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar",
    ]
    files = read_layout(tmp_path / "image.tar")
    manifest = json_blob(files, result.manifest_digest)
    config = json_blob(files, manifest["config"]["digest"])
    env = config["config"]["Env"]
    assert env[:2] == [
        "PATH=/opt/conda/envs/flavor/bin:/home/scu/service.cli:/custom/bin:/usr/sbin:/usr/bin",
        "BASE_VAR=1",
    ]
    assert [h["created_by"] for h in config["history"][:3]] == [
        "ADD rootfs.tar /",
        "ENV BASE_VAR=1",
        "RUN rm /etc/shadow",
    ]
    assert len(config["history"]) == 3 + len(result.layers) - 2  # the base's three, then one per layer added
    assert config["config"]["StopSignal"] == "SIGINT"  # what FROM inherits
    assert config["config"]["Cmd"] == ["run"]
    assert config["config"]["Labels"]["org.example.base"] == "tiny"
    assert config["config"]["Labels"]["org.opencontainers.image.version"] == "1.0.0"  # ours win
    common = blob(files, result.layer("common").digest)
    assert "etc/shadow" not in layer_members(common)  # removed by the base's second layer
    passwd = layer_file(common, "etc/passwd").decode()
    assert "scu:x:8004:8004::/home/scu:/bin/sh\n" in passwd and passwd.endswith(
        "scu-src:x:8006:8006::/nonexistent:/usr/sbin/nologin\n"
    )


def test_a_gzip_rootfs_is_kept_byte_for_byte(tmp_path: Path) -> None:
    base = make_rootfs(tmp_path / "rootfs.tar.gz", compress=True)
    imported = import_base(base, BlobStore(tmp_path / "layout"))
    (layer,) = imported.layers
    assert layer.digest == _digest(base.read_bytes())
    assert layer.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert imported.diff_ids == [_digest(gzip.decompress(base.read_bytes()))]
    assert (tmp_path / "layout" / "blobs" / "sha256" / layer.hex).read_bytes() == base.read_bytes()
    assert imported.env == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert imported.files["etc/shadow"].gid == 42
    assert imported.directories["tmp"].mode == 0o1777


def test_a_plain_rootfs_is_its_own_diff_id(tmp_path: Path) -> None:
    base = make_rootfs(tmp_path / "rootfs.tar")
    imported = import_base(base, BlobStore(tmp_path / "layout"))
    assert imported.layers[0].digest == imported.diff_ids[0] == _digest(base.read_bytes())
    assert imported.layers[0].media_type == "application/vnd.oci.image.layer.v1.tar"


def test_bad_bases_are_one_line_errors(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "layout")
    with pytest.raises(UserError, match="no such base"):
        import_base(tmp_path / "missing.tar", store)
    (tmp_path / "noise.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(UserError, match="not a tar archive"):
        import_base(tmp_path / "noise.tar", store)
    (tmp_path / "docker.tar").write_bytes(_tar({"manifest.json": b"[]", "abc/layer.tar": b"", "abc/json": b"{}"}))
    with pytest.raises(UserError, match=r"docker-archive .* skopeo copy docker-archive:"):
        import_base(tmp_path / "docker.tar", store)
    oci_archive(tmp_path / "arm.tar", tmp_path, architecture="arm64")
    with pytest.raises(UserError, match="cannot pick one linux/amd64 image"):
        import_base(tmp_path / "arm.tar", store)
    (tmp_path / "base.tar.zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 600)
    with pytest.raises(UserError):
        import_base(tmp_path / "base.tar.zst", store)


def _rootfs_without(tmp_path: Path, *names: str) -> Path:
    """The tiny rootfs minus `names`, as a plain tar."""
    source = make_rootfs(tmp_path / "full.tar")
    target = tmp_path / "without.tar"
    with tarfile.open(source) as full, tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as kept:
        for member in full.getmembers():
            if member.name not in names:
                kept.addfile(member, full.extractfile(member) if member.isfile() else None)
    return target


def test_a_base_without_setpriv_is_one_line_naming_it(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "layout")
    with pytest.raises(UserError) as caught:
        import_base(_rootfs_without(tmp_path, "usr/bin/setpriv"), store)
    line = str(caught.value)
    assert "\n" not in line
    assert "the base lacks setpriv, which the image's entrypoint" in line
    assert line.endswith(
        f"(add util-linux (Debian's package names) to the base, or make one that has all: {DEBIAN_BASE_RECIPE})"
    )


def test_every_missing_part_is_named_at_once(tmp_path: Path) -> None:
    gone = ("bin/sh", "usr/bin/getent", "usr/sbin/usermod", "etc/ssl/certs/ca-certificates.crt")
    base = _rootfs_without(tmp_path, *gone)
    with pytest.raises(UserError, match=r"lacks /bin/sh, usermod, getent, CA certificates \(/etc/ssl/certs/") as caught:
        import_base(base, BlobStore(tmp_path / "layout"))
    assert "(add dash, passwd, libc-bin, ca-certificates (Debian's package names) to the base" in str(caught.value)


def test_the_oci_engine_refuses_such_a_base_before_any_build_work(oci_workspace: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match="the base lacks setpriv"):
        build_oci_image(
            load_workspace(oci_workspace), "pytorch", _rootfs_without(tmp_path, "usr/bin/setpriv"),
            tmp_path / "image.tar", cache_dir=cache,
        )  # fmt: skip
    assert not (cache / "verified-archives").exists() and not (cache / "pkgs").exists()  # nothing was installed
    assert not (tmp_path / "image.tar").exists()


def test_tools_are_found_through_merged_usr_links_and_lost_to_whiteouts(tmp_path: Path) -> None:
    """/bin -> usr/bin (as in Debian since bookworm), /usr/bin/sh -> dash; a later layer's whiteout removes a tool."""
    from cli.oci.base import BaseFacts, check_base, read_base_facts

    def layer(name: str, members: list[tarfile.TarInfo]) -> Path:
        path = tmp_path / name
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
            for member in members:
                archive.addfile(member, io.BytesIO(b"") if member.isfile() else None)
        return path

    def entry(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, target
        return info

    files = ["usr/bin/dash", "usr/bin/setpriv", "usr/bin/getent", "etc/ssl/certs/ca-certificates.crt"]
    files += [f"usr/sbin/{tool}" for tool in ("usermod", "groupmod", "groupadd")]
    first = layer(
        "first.tar",
        [
            entry("usr", tarfile.DIRTYPE),
            entry("bin", tarfile.SYMTYPE, "usr/bin"),
            entry("sbin", tarfile.SYMTYPE, "/usr/sbin"),
            entry("usr/bin/sh", tarfile.SYMTYPE, "dash"),
            *(entry(name) for name in files),
        ],
    )
    facts = read_base_facts([(first, "none")], source=first)
    check_base(facts, ["PATH=/sbin:/bin"], first)  # found only through the links
    assert facts.resolve("bin/sh") == "usr/bin/dash"
    loop = BaseFacts(links={"a": "b", "b": "a"})
    assert loop.resolve("a/x") is None

    second = layer("second.tar", [entry("usr/sbin/.wh.groupadd")])
    facts = read_base_facts([(first, "none"), (second, "none")], source=second)
    with pytest.raises(UserError, match=r"the base lacks groupadd, which"):
        check_base(facts, ["PATH=/sbin:/bin"], second)


def test_the_readme_builds_the_base_the_check_asks_for() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"\n{DEBIAN_BASE_RECIPE}\n" in readme
