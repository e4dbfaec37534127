"""What the assembled image holds: the layout, the four layers, the config, and the layer shared by both flavors."""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import yaml

from cli.oci import OciBuildResult
from tests.oci.conftest import (
    PLACEHOLDER,
    REPO,
    Built,
    blob,
    json_blob,
    layer_file,
    layer_members,
    read_layout,
)


def _config(files: dict[str, bytes], result: OciBuildResult) -> Any:
    manifest = json_blob(files, result.manifest_digest)
    return json_blob(files, manifest["config"]["digest"])


def test_both_flavors_share_the_common_layer(built_images: dict[str, Built]) -> None:
    pytorch, tensorflow = built_images["pytorch"].result, built_images["tensorflow"].result
    assert [layer.role for layer in pytorch.layers] == ["base", "common", "environment", "service"]
    assert pytorch.layer("base").digest == tensorflow.layer("base").digest
    assert pytorch.layer("common").digest == tensorflow.layer("common").digest
    assert pytorch.layer("common").diff_id == tensorflow.layer("common").diff_id
    assert pytorch.layer("environment").digest != tensorflow.layer("environment").digest
    assert pytorch.layer("service").digest != tensorflow.layer("service").digest
    assert pytorch.manifest_digest != tensorflow.manifest_digest


def test_layout_index_and_manifest(built_images: dict[str, Built]) -> None:
    built = built_images["pytorch"]
    files = read_layout(built.archive)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    (entry,) = index["manifests"]
    assert entry["digest"] == built.result.manifest_digest
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    reference = "docker.io/simcore/services/comp/osparc-pytorch-runner:1.0.0"
    assert entry["annotations"] == {
        "org.opencontainers.image.ref.name": reference,
        "io.containerd.image.name": reference,
    }
    raw = blob(files, built.result.manifest_digest)
    assert hashlib.sha256(raw).hexdigest() == built.result.manifest_digest.split(":")[1]
    manifest = json.loads(raw)
    assert [layer["digest"] for layer in manifest["layers"]] == [layer.digest for layer in built.result.layers]
    for layer in manifest["layers"]:
        data = blob(files, layer["digest"])
        assert layer["size"] == len(data)
        assert f"sha256:{hashlib.sha256(data).hexdigest()}" == layer["digest"]
    (docker,) = json.loads(files["manifest.json"])  # what `docker load` of docker < 25 reads
    assert docker["RepoTags"] == ["simcore/services/comp/osparc-pytorch-runner:1.0.0"]
    assert docker["Config"] == f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"
    assert built.result.archive_size == built.archive.stat().st_size
    with tarfile.open(built.archive) as bundle:
        names = bundle.getnames()
    assert names == sorted(names)


def test_layers_are_gzip_with_fixed_headers_and_fixed_times(built_images: dict[str, Built]) -> None:
    built = built_images["tensorflow"]
    files = read_layout(built.archive)
    for layer in built.result.layers[1:]:
        data = blob(files, layer.digest)
        assert data[:8] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00", layer.role
        assert layer.diff_id == f"sha256:{hashlib.sha256(gzip.decompress(data)).hexdigest()}"
        for name, member in layer_members(data).items():
            assert member.mtime == built.result.source_date_epoch, name
            assert member.uname == member.gname == "", name
            assert set(member.pax_headers) <= {"path", "linkpath"}, name
            assert not member.islnk(), name  # hard links become files


def test_config_entrypoint_env_labels(built_images: dict[str, Built], oci_template: Path) -> None:
    built = built_images["pytorch"]
    config = _config(read_layout(built.archive), built.result)
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert config["created"] == "1970-01-01T00:00:00Z"
    assert config["rootfs"]["diff_ids"] == [layer.diff_id for layer in built.result.layers]
    assert len(config["history"]) == 4
    image = config["config"]
    assert image["Entrypoint"] == ["/bin/sh", "/usr/local/lib/osparc-runner/entrypoint.sh"]
    assert image["Cmd"] == ["run"]
    assert image["WorkingDir"] == "/home/scu"
    env = dict(item.split("=", 1) for item in image["Env"])
    assert env["INPUT_FOLDER"] == "/inputs" and env["OUTPUT_FOLDER"] == "/outputs"
    assert env["PATH"] == (
        "/opt/conda/envs/pytorch/bin:/home/scu/service.cli:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    )
    assert env["RUNNER_PYTHON"] == "/opt/conda/envs/pytorch/bin/python"
    labels = image["Labels"]
    metadata = yaml.safe_load((oci_template / "flavors" / "pytorch" / "metadata.yml").read_text())
    for key, value in metadata.items():
        assert json.loads(labels[f"io.simcore.{key}"]) == {key: value}
    assert labels["io.osparc.runner.flavor"] == "pytorch"
    assert labels["io.osparc.runner.cuda.version"] == "12.4"
    assert labels["org.opencontainers.image.version"] == "1.0.0"
    assert labels["org.opencontainers.image.created"] == "1970-01-01T00:00:00Z"
    export = (oci_template / "envs" / "pytorch" / "conda-lock.yml").read_bytes()
    assert labels["io.osparc.runner.export.sha256"] == hashlib.sha256(export).hexdigest()
    assert built.result.labels == labels


def test_common_layer_adds_scu_entrypoint_runner_and_uv(built_images: dict[str, Built]) -> None:
    built = built_images["pytorch"]
    data = blob(read_layout(built.archive), built.result.layer("common").digest)
    found = layer_members(data)
    passwd = layer_file(data, "etc/passwd").decode()
    assert passwd.startswith("root:x:0:0:root:/root:/bin/sh\nnobody:")  # the base's lines, kept
    assert passwd.endswith("scu:x:8004:8004::/home/scu:/bin/sh\n")
    assert layer_file(data, "etc/group").decode().endswith("scu:x:8004:\n")
    shadow = found["etc/shadow"]
    assert (shadow.mode, shadow.uid, shadow.gid) == (0o640, 0, 42)  # the base's owner and mode
    assert layer_file(data, "etc/shadow").decode().endswith("scu:!:0:0:99999:7:::\n")
    assert "etc/gshadow" not in found  # the base has none
    for folder in ("home/scu", "inputs", "outputs", "var/cache/osparc-runner"):
        assert (found[folder].uid, found[folder].gid, found[folder].mode) == (8004, 8004, 0o755), folder
    assert "usr/local/bin/uv" not in found  # uv comes from the flavor's lock, never from the build machine
    for name in ("entrypoint.sh", "entrypoint_lib.sh"):
        assert layer_file(data, f"usr/local/lib/osparc-runner/{name}") == (REPO / "common" / name).read_bytes()
    runner = {name for name in found if name.startswith("opt/runner/runner/")}
    expected = {
        f"opt/runner/runner/{path.relative_to(REPO / 'runner').as_posix()}"
        for path in (REPO / "runner").rglob("*")
        if "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert runner == expected
    assert "opt/runner/runner/__main__.py" in runner
    assert not any(name.startswith(("opt/conda/envs/", "home/scu/service.cli")) for name in found)  # no flavor


def test_environment_layer_names_the_final_prefix(built_images: dict[str, Built], oci_template: Path) -> None:
    for flavor, built in built_images.items():
        data = blob(read_layout(built.archive), built.result.layer("environment").digest)
        found = layer_members(data)
        prefix = f"opt/conda/envs/{flavor}"
        conf = layer_file(data, f"{prefix}/etc/prefixed-tool.conf").decode()
        assert conf == f"prefix=/opt/conda/envs/{flavor}\ndata=/opt/conda/envs/{flavor}/share/prefixed-tool\n"
        script = layer_file(data, f"{prefix}/bin/prefixed-tool").decode()
        assert script.startswith(f"#!/opt/conda/envs/{flavor}/bin/python\n") and PLACEHOLDER not in script
        assert found[f"{prefix}/bin/prefixed-tool"].mode == 0o755
        entry_point = layer_file(data, f"{prefix}/bin/entry-tool").decode()  # written by the installer
        assert entry_point.startswith(f"#!/opt/conda/envs/{flavor}/bin/python3.12\n")
        assert "from entry_tool.cli import main" in entry_point
        assert f"{prefix}/lib/python3.12/site-packages/entry_tool/cli.py" in found
        assert not any("__pycache__" in name for name in found)
        assert found[f"{prefix}/bin/python"].issym()
        lock = yaml.safe_load((oci_template / "envs" / flavor / "conda-lock.yml").read_text())
        urls = {package["name"]: package["url"] for package in lock["package"]}
        metas = [name for name in found if name.startswith(f"{prefix}/conda-meta/") and name.endswith(".json")]
        assert len(metas) == len(urls)
        for name in metas:
            record = json.loads(layer_file(data, name))
            assert record["url"] == urls[record["name"]]
            assert not {"extracted_package_dir", "package_tarball_full_path", "link"} & set(record)
            assert found[name].mode == 0o644
        assert (
            layer_file(data, f"opt/conda/locks/{flavor}/conda-lock.yml")
            == (oci_template / "envs" / flavor / "conda-lock.yml").read_bytes()
        )
        assert not any("oci-build" in name for name in found)


def test_service_layer_is_owned_by_scu(built_images: dict[str, Built], oci_template: Path) -> None:
    built = built_images["tensorflow"]
    data = blob(read_layout(built.archive), built.result.layer("service").digest)
    found = layer_members(data)
    assert set(found) == {"home", "home/scu", "home/scu/service.cli", "home/scu/service.cli/run"}
    run = found["home/scu/service.cli/run"]
    assert (run.uid, run.gid, run.mode) == (8004, 8004, 0o755)
    assert (found["home/scu"].uid, found["home"].uid) == (8004, 0)  # the common layer's owners, repeated
    expected = (oci_template / "flavors" / "tensorflow" / "service.cli" / "run").read_bytes()
    assert layer_file(data, "home/scu/service.cli/run") == expected
