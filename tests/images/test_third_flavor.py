"""Adding a flavor needs no code change: a feature + environment in pixi.toml and flavors/<new>/metadata.yml.

A temporary workspace gains a `jax` flavor (a cuda and a cpu build of a fake jaxlib on its own
channel), and goes through the maintainer's whole path with the CLI as a user runs it:
lock, export, generate, dry-run build.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from tests.images.conftest import cli
from tests.support.channel import FakePackage, build_channel, gpu_stack_packages
from tests.support.workspace import add_image_files, flavor_metadata, write_workspace

JAX_FEATURE = """
[feature.jax.dependencies]
jaxlib = { version = "*", build = "cuda*" }
jax = "*"
"""


def jax_packages() -> list[FakePackage]:
    return [
        FakePackage("jaxlib", "0.4.30", "cpu_py312_h7_0", track_features=["jaxlib-cpu"],
                    depends=["python >=3.12,<3.13", "numpy >=1.23"], license="Apache-2.0"),
        FakePackage("jaxlib", "0.4.30", "cuda124_py312_h8_200", build_number=200,
                    depends=["python >=3.12,<3.13", "numpy >=1.23", "__cuda", "cuda-version >=12,<13", "cudnn >=9,<10"],
                    license="Apache-2.0"),
        FakePackage("jax", "0.4.30", "pyhd8_0", "noarch", depends=["jaxlib >=0.4.30", "python >=3.12"],
                    license="Apache-2.0"),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def jax_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_channel(tmp_path_factory.mktemp("jax-channel") / "forge", gpu_stack_packages() + jax_packages())


def test_a_third_flavor_without_code_changes(tmp_path: Path, jax_channel: Path) -> None:
    root = add_image_files(write_workspace(tmp_path / "ws", jax_channel.as_uri()))
    manifest = root / "pixi.toml"
    text = manifest.read_text().replace("[environments]", JAX_FEATURE.lstrip() + "\n[environments]")
    manifest.write_text(text + 'jax = ["jax", "cuda", "runner"]\n')
    folder = root / "flavors" / "jax"
    folder.mkdir()
    (folder / "metadata.yml").write_text(yaml.safe_dump(flavor_metadata("jax", "0.1.0"), sort_keys=False))

    for step in (["lock"], ["export"], ["generate"]):
        done = cli(*step, "--manifest-path", root)
        assert done.returncode == 0, f"{step}: {done.stderr}"
    assert (root / "envs" / "jax" / "conda-lock.yml").is_file()
    assert "jaxlib" in (root / "envs" / "jax" / "conda-lock.yml").read_text()
    run = (root / "flavors" / "jax" / "service.cli" / "run").read_text()
    assert ': "${INPUT_2:=${INPUT_FOLDER}/input_2}"' in run
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())["services"]
    assert compose["jax"]["image"] == "simcore/services/comp/osparc-jax-runner:0.1.0"

    done = cli("build", "jax", "--dry-run", "--manifest-path", root)
    assert done.returncode == 0, done.stderr
    common, shared, flavor = (shlex.split(line) for line in done.stdout.splitlines())
    assert "common/Dockerfile" in common[3] and "flavors/Dockerfile.shared" in shared[3]
    assert flavor[3] == f"{root}/flavors/Dockerfile"
    assert "simcore/services/comp/osparc-jax-runner:0.1.0" in flavor
    assert "FLAVOR=jax" in flavor and "CUDA_VERSION=12.4" in flavor
    assert "io.osparc.runner.flavor=jax" in flavor

    everything = cli("build", "all", "--dry-run", "--manifest-path", root)
    assert everything.returncode == 0, everything.stderr
    flavors = [line.split("FLAVOR=")[1].split()[0] for line in everything.stdout.splitlines()[2:]]
    assert flavors == ["jax", "pytorch", "tensorflow"]
