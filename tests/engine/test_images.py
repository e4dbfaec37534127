"""What is inside both engines' images of the fixture flavor, read with podman (issue 9, points 1 and 7)."""

from __future__ import annotations

import json

import pytest

from cli.images.locked_tools import check_locked_tools
from cli.lockengine.manifest import load_workspace
from tests.engine.conftest import DockerBuild, EngineSession
from tests.engine.podman import Podman
from tests.engine.workspace import FLAVOR, FLAVOR_DEFAULT

# Run inside the image: where uv is, its version and sha256; the runner's byte-code; leftovers; CA certificates.
INSPECT = r"""
import glob, hashlib, json, os, shutil, subprocess, sys
uv = shutil.which("uv")
pycs = sorted(glob.glob("/opt/runner/runner/**/__pycache__/*.pyc", recursive=True))
sources = sorted(glob.glob("/opt/runner/runner/**/*.py", recursive=True))
print(json.dumps({
    "uv": os.path.realpath(uv),
    "uv_version": subprocess.run([uv, "--version"], capture_output=True, text=True).stdout.split()[1],
    "uv_sha256": hashlib.sha256(open(uv, "rb").read()).hexdigest(),
    "sources": len(sources),
    "pycs": [os.path.basename(p) for p in pycs],
    "pyc_flags": sorted({int.from_bytes(open(p, "rb").read()[4:8], "little") for p in pycs}),
    "pyc_sha256": hashlib.sha256(b"".join(open(p, "rb").read() for p in pycs)).hexdigest(),
    "cachedir_tags": glob.glob("/opt/conda/**/CACHEDIR.TAG", recursive=True),
    "ca_bundle": os.path.getsize("/etc/ssl/certs/ca-certificates.crt"),
    "python": "%d.%d" % sys.version_info[:2],
}))
"""


def inspect(podman: Podman, image: str) -> dict[str, object]:
    done = podman.run("run", "--rm", "--entrypoint", "python", image, "-c", INSPECT)
    document = json.loads(done.stdout)
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def both(podman: Podman, oci_image: str, docker_image: DockerBuild) -> dict[str, dict[str, object]]:
    return {"oci": inspect(podman, oci_image), "docker": inspect(podman, docker_image.image)}


def test_uv_is_the_locked_one_in_both_engines(
    both: dict[str, dict[str, object]], engine_session: EngineSession
) -> None:
    locked = check_locked_tools(load_workspace(engine_session.workspace), FLAVOR)["uv"]
    for seen in both.values():
        assert seen["uv_version"] == locked
        assert str(seen["uv"]).startswith("/opt/conda/envs/") and str(seen["uv"]).endswith("/bin/uv")
    assert both["oci"]["uv_sha256"] == both["docker"]["uv_sha256"]  # the same locked file, not two builds' own


def test_the_runner_is_byte_compiled_alike_in_both_engines(both: dict[str, dict[str, object]]) -> None:
    for seen in both.values():
        pycs = seen["pycs"]
        assert isinstance(pycs, list) and len(pycs) == seen["sources"]
        assert all(name.endswith(f".cpython-{str(seen['python']).replace('.', '')}.pyc") for name in pycs)
        assert seen["pyc_flags"] == [0b11]  # hash-based, checked against the source: no file time involved
    assert both["oci"]["pyc_sha256"] == both["docker"]["pyc_sha256"]


def test_no_cachedir_tag_and_ca_certificates_present(both: dict[str, dict[str, object]]) -> None:
    for seen in both.values():
        assert seen["cachedir_tags"] == []
        assert isinstance(seen["ca_bundle"], int) and seen["ca_bundle"] > 0


def test_image_config_of_both_engines(podman: Podman, oci_image: str, docker_image: DockerBuild) -> None:
    configs = {"oci": podman.image_env(oci_image), "docker": podman.image_env(docker_image.image)}
    for env in configs.values():
        assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
        assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
        assert env["NVIDIA_REQUIRE_CUDA"] == "cuda>=12.0"
        assert env[FLAVOR_DEFAULT[0]] == FLAVOR_DEFAULT[1]
        assert (env["INPUT_FOLDER"], env["OUTPUT_FOLDER"]) == ("/inputs", "/outputs")

    for name in ("oci", "docker"):
        config = podman.inspect(oci_image if name == "oci" else docker_image.image)["Config"]
        assert isinstance(config, dict)
        assert config["Entrypoint"] == ["/bin/sh", "/usr/local/lib/osparc-runner/entrypoint.sh"]
        assert config["Cmd"] == ["run"]
        labels = config["Labels"]
        assert labels["io.osparc.runner.cuda.driver.minimum"] == "525.60.13"


def test_both_engines_give_the_same_environment(podman: Podman, oci_image: str, docker_image: DockerBuild) -> None:
    assert podman.image_env(oci_image) == podman.image_env(docker_image.image)
