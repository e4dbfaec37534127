"""What the assembled image holds: the layout, the layers, the config, and the layers both flavors share."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import yaml

from cli.oci import OciBuildResult
from cli.oci.tarball import ZSTD_LIBRARY_PIN
from tests.oci.conftest import (
    PLACEHOLDER,
    REPO,
    Built,
    blob,
    environment_files,
    environment_members,
    json_blob,
    layer_file,
    layer_members,
    layer_tar_bytes,
    read_layout,
)


def _config(files: dict[str, bytes], result: OciBuildResult) -> Any:
    manifest = json_blob(files, result.manifest_digest)
    return json_blob(files, manifest["config"]["digest"])


def test_both_flavors_share_the_common_layer_and_their_common_packages(built_images: dict[str, Built]) -> None:
    """Acceptance (issue 12): the packages both flavors lock identically are the same layers, by digest."""
    pytorch, tensorflow = built_images["pytorch"].result, built_images["tensorflow"].result
    roles = [layer.role for layer in pytorch.layers]
    assert roles[:2] == ["base", "common"] and roles[-2:] == ["environment", "service"]
    assert set(roles[2:-2]) == {"shared", "flavor"}
    assert roles.index("flavor") > max(i for i, role in enumerate(roles) if role == "shared")  # shared lowest
    assert pytorch.layer("base").digest == tensorflow.layer("base").digest
    assert pytorch.layer("common").digest == tensorflow.layer("common").digest
    assert pytorch.layer("common").diff_id == tensorflow.layer("common").diff_id
    # The same chain: shared layers sit right above the common layer, in the same order.
    shared = len(pytorch.layers_of("shared"))
    assert shared >= 3
    assert [layer.digest for layer in pytorch.layers[: 2 + shared]] == [
        layer.digest for layer in tensorflow.layers[: 2 + shared]
    ]
    packages = {name for layer in pytorch.layers_of("shared") for name in layer.packages}
    assert {"python", "cudnn", "cuda-version", "numpy", "uv"} <= packages
    assert not packages & {"pytorch", "torchvision", "tensorflow"}
    assert {name for layer in pytorch.layers_of("flavor") for name in layer.packages} == {"pytorch", "torchvision"}
    assert {name for layer in tensorflow.layers_of("flavor") for name in layer.packages} == {"tensorflow"}
    assert pytorch.layer("environment").digest != tensorflow.layer("environment").digest  # the lock export
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


def test_layers_are_zstd_with_fixed_times(built_images: dict[str, Built]) -> None:
    built = built_images["tensorflow"]
    files = read_layout(built.archive)
    for layer in built.result.layers[1:]:
        data = blob(files, layer.digest)
        assert data[:4] == b"\x28\xb5\x2f\xfd", layer.role  # a zstd frame
        assert layer.media_type == "application/vnd.oci.image.layer.v1.tar+zstd"
        assert layer.diff_id == f"sha256:{hashlib.sha256(layer_tar_bytes(data)).hexdigest()}"
        for name, member in layer_members(data).items():
            assert member.mtime == built.result.source_date_epoch, name  # 0 here: every package is newer
            assert member.uname == member.gname == "", name
            assert set(member.pax_headers) <= {"path", "linkpath"}, name
            assert not member.islnk(), name  # hard links become files


def test_config_entrypoint_env_labels(built_images: dict[str, Built], oci_template: Path) -> None:
    built = built_images["pytorch"]
    config = _config(read_layout(built.archive), built.result)
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert config["created"] == "1970-01-01T00:00:00Z"
    assert config["rootfs"]["diff_ids"] == [layer.diff_id for layer in built.result.layers]
    assert len(config["history"]) == len(built.result.layers)
    assert "packages every flavor shares" in config["history"][2]["created_by"]
    image = config["config"]
    assert image["Entrypoint"] == ["/bin/sh", "/usr/local/lib/osparc-runner/entrypoint.sh"]
    assert image["Cmd"] == ["run"]
    assert image["WorkingDir"] == "/home/scu"
    env = dict(item.split("=", 1) for item in image["Env"])
    assert env["INPUT_FOLDER"] == "/inputs" and env["OUTPUT_FOLDER"] == "/outputs"
    assert env["PATH"] == (
        "/opt/conda/envs/flavor/bin:/home/scu/service.cli:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    )
    assert env["RUNNER_PYTHON"] == "/opt/conda/envs/flavor/bin/python"
    assert env["CONDA_PREFIX"] == "/opt/conda/envs/flavor"
    labels = image["Labels"]
    metadata = yaml.safe_load((oci_template / "flavors" / "pytorch" / "metadata.yml").read_text())
    for key, value in metadata.items():
        assert json.loads(labels[f"io.simcore.{key}"]) == {key: value}
    assert labels["io.osparc.runner.flavor"] == "pytorch"
    assert labels["io.osparc.runner.cuda.version"] == "12.4"
    # provenance of the layers' bytes: the library and every parameter that decides them
    assert labels["io.osparc.runner.layer.compression"].startswith(f"zstd libzstd={ZSTD_LIBRARY_PIN} level=3 ")
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
    # scu runs the job; the overlay builders have no home and no login (runner/README.md, "In the image").
    assert passwd.endswith(
        "scu:x:8004:8004::/home/scu:/bin/sh\n"
        "scu-build:x:8005:8005::/nonexistent:/usr/sbin/nologin\nscu-src:x:8006:8006::/nonexistent:/usr/sbin/nologin\n"
    )
    assert layer_file(data, "etc/group").decode().endswith("scu:x:8004:\nscu-build:x:8005:\nscu-src:x:8006:\n")
    shadow = found["etc/shadow"]
    assert (shadow.mode, shadow.uid, shadow.gid) == (0o640, 0, 42)  # the base's owner and mode
    assert layer_file(data, "etc/shadow").decode().endswith("scu-src:!:0:0:99999:7:::\n")
    assert "etc/gshadow" not in found  # the base has none
    for folder in ("home/scu", "inputs", "outputs"):
        assert (found[folder].uid, found[folder].gid, found[folder].mode) == (8004, 8004, 0o755), folder
    cache = found["var/cache/osparc-runner"]
    assert (cache.uid, cache.gid, cache.mode) == (0, 0, 0o755)  # root's: the runner's supervisor keeps it
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


def test_environment_layers_name_the_final_prefix(built_images: dict[str, Built], oci_template: Path) -> None:
    for flavor, built in built_images.items():
        files = read_layout(built.archive)
        found = environment_members(files, built.result)
        data = environment_files(files, built.result)
        prefix = "opt/conda/envs/flavor"
        conf = data[f"{prefix}/etc/prefixed-tool.conf"].decode()
        assert conf == "prefix=/opt/conda/envs/flavor\ndata=/opt/conda/envs/flavor/share/prefixed-tool\n"
        script = data[f"{prefix}/bin/prefixed-tool"].decode()
        assert script.startswith("#!/opt/conda/envs/flavor/bin/python\n") and PLACEHOLDER not in script
        assert found[f"{prefix}/bin/prefixed-tool"].mode == 0o755
        entry_point = data[f"{prefix}/bin/entry-tool"].decode()  # written by the installer
        assert entry_point.startswith("#!/opt/conda/envs/flavor/bin/python3.12\n")
        assert "from entry_tool.cli import main" in entry_point
        assert f"{prefix}/lib/python3.12/site-packages/entry_tool/cli.py" in found
        assert not any("__pycache__" in name for name in found)
        assert found[f"{prefix}/bin/python"].issym()
        lock = yaml.safe_load((oci_template / "envs" / flavor / "conda-lock.yml").read_text())
        urls = {package["name"]: package["url"] for package in lock["package"]}
        metas = [name for name in found if name.startswith(f"{prefix}/conda-meta/") and name.endswith(".json")]
        assert len(metas) == len(urls)
        for name in metas:
            record = json.loads(data[name])
            assert record["url"] == urls[record["name"]]
            assert not {"extracted_package_dir", "package_tarball_full_path", "link"} & set(record)
            assert found[name].mode == 0o644
        assert (
            data[f"opt/conda/locks/{flavor}/conda-lock.yml"]
            == (oci_template / "envs" / flavor / "conda-lock.yml").read_bytes()
        )
        assert not any("oci-build" in name for name in found)


def test_each_package_and_its_record_are_in_one_layer(built_images: dict[str, Built]) -> None:
    """conda-meta/<package>.json travels with the package's files, so a layer is a set of whole packages."""
    built = built_images["pytorch"]
    files = read_layout(built.archive)
    for layer in built.result.layers_of("shared", "flavor"):
        members = layer_members(blob(files, layer.digest))
        records = [
            json.loads(layer_file(blob(files, layer.digest), name)) for name in members if "/conda-meta/" in name
        ]
        assert sorted(record["name"] for record in records) == sorted(layer.packages)
        listed = {f"opt/conda/envs/flavor/{path}" for record in records for path in record["files"]}
        listed |= {f"opt/conda/envs/flavor/conda-meta/{r['name']}-{r['version']}-{r['build']}.json" for r in records}
        assert {name for name, member in members.items() if not member.isdir()} == listed


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
