"""Build planning from given inputs: order, tags, build args, labels, and the engine commands."""

from __future__ import annotations

from pathlib import Path

import yaml

from cli.flavors import discover_flavors
from cli.images.plan import BuildFacts, Engine, FlavorSpec, build_command, commands, plan_builds
from cli.lockengine.manifest import load_workspace


def specs(root: Path) -> list[FlavorSpec]:
    workspace = load_workspace(root)
    return [FlavorSpec.load(workspace, flavor) for flavor in discover_flavors(workspace)]


def option_values(command: list[str], option: str) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command) if word == option]


def test_common_first_then_flavors_with_tags_args_and_labels(plain_workspace: Path) -> None:
    workspace = load_workspace(plain_workspace)
    facts = BuildFacts(
        common_labels={"org.opencontainers.image.revision": "abc"},
        flavor_labels={"pytorch": {"io.osparc.runner.cuda.version": "12.4"}},
        flavor_args={"pytorch": {"CUDA_VERSION": "12.4"}},
    )
    steps = plan_builds(workspace, specs(plain_workspace), base_image="debian:12", facts=facts)
    assert [s.name for s in steps] == ["common", "shared", "pytorch", "tensorflow"]
    assert [s.parent for s in steps] == [None, "common", "shared", "shared"]
    common, shared, pytorch, tensorflow = (build_command(s, Engine.docker, plain_workspace) for s in steps)
    assert common[:4] == ["docker", "build", "--file", f"{plain_workspace}/common/Dockerfile"]
    assert option_values(common, "--tag") == ["fixture-runners/common:0.1.0"]
    assert option_values(common, "--build-arg") == ["BASE_IMAGE=debian:12"]
    assert option_values(common, "--label") == ["org.opencontainers.image.revision=abc"]
    assert common[-1] == str(plain_workspace)
    assert shared[:4] == ["docker", "build", "--file", f"{plain_workspace}/flavors/Dockerfile.shared"]
    assert option_values(shared, "--tag") == ["fixture-runners/shared:0.1.0"]
    assert option_values(shared, "--build-arg") == ["COMMON_IMAGE=fixture-runners/common:0.1.0"]
    assert option_values(pytorch, "--tag") == ["simcore/services/comp/osparc-pytorch-runner:1.0.0"]
    assert option_values(pytorch, "--build-arg") == [
        "FLAVOR=pytorch",
        "SHARED_IMAGE=fixture-runners/shared:0.1.0",
        "CUDA_VERSION=12.4",
    ]
    labels = option_values(pytorch, "--label")
    assert 'io.simcore.version={"version": "1.0.0"}' in labels
    assert "io.osparc.runner.cuda.version=12.4" in labels
    assert "io.osparc.runner.cuda.version=12.4" not in option_values(tensorflow, "--label")


def test_push_tags_and_pushes_flavors_only(plain_workspace: Path) -> None:
    workspace = load_workspace(plain_workspace)
    steps = plan_builds(workspace, specs(plain_workspace)[:1], registry="registry.example.org:5000")
    all_commands = commands(steps, Engine.podman, plain_workspace)
    assert [c[:2] for c in all_commands] == [["podman", "build"]] * 3 + [["podman", "push"]]
    image = "simcore/services/comp/osparc-pytorch-runner:1.0.0"
    assert option_values(all_commands[2], "--tag") == [image, f"registry.example.org:5000/{image}"]
    assert all_commands[3] == ["podman", "push", f"registry.example.org:5000/{image}"]  # the stages stay local
    assert "--progress=plain" not in all_commands[0]


def test_podman_gets_the_dockerfile_ignore_file(plain_workspace: Path) -> None:
    (plain_workspace / "common" / "Dockerfile.dockerignore").write_text("*\n")
    workspace = load_workspace(plain_workspace)
    step = plan_builds(workspace, [])[0]
    assert option_values(build_command(step, Engine.podman, plain_workspace), "--ignorefile") == [
        f"{plain_workspace}/common/Dockerfile.dockerignore"
    ]
    assert "--ignorefile" not in build_command(step, Engine.docker, plain_workspace)


def test_a_flavor_fragment_builds_on_the_generic_flavor_image(plain_workspace: Path) -> None:
    fragment = plain_workspace / "flavors" / "tensorflow" / "Dockerfile"
    fragment.write_text("ARG FLAVOR_IMAGE\nFROM ${FLAVOR_IMAGE}\nRUN true\n")
    workspace = load_workspace(plain_workspace)
    steps = plan_builds(workspace, specs(plain_workspace))
    assert [s.name for s in steps] == ["common", "shared", "pytorch", "tensorflow-base", "tensorflow"]
    base, final = steps[3], steps[4]
    assert (base.parent, final.parent) == ("shared", "tensorflow-base")
    assert base.dockerfile == Path("flavors/Dockerfile")
    assert base.tags == ("fixture-runners/tensorflow-base:1.0.0",)
    assert "io.simcore.key" not in base.labels
    assert final.dockerfile == Path("flavors/tensorflow/Dockerfile")
    assert final.build_args["FLAVOR_IMAGE"] == "fixture-runners/tensorflow-base:1.0.0"
    assert final.tags == ("simcore/services/comp/osparc-tensorflow-runner:1.0.0",)
    assert "io.simcore.key" in final.labels


def test_a_flavor_cannot_take_the_shared_stage_name(plain_workspace: Path) -> None:
    from tests.images.conftest import cli
    from tests.support.workspace import flavor_metadata

    manifest = plain_workspace / "pixi.toml"
    manifest.write_text(manifest.read_text() + 'shared = ["cuda", "runner"]\n')
    (plain_workspace / "flavors" / "shared").mkdir()
    (plain_workspace / "flavors" / "shared" / "metadata.yml").write_text(yaml.safe_dump(flavor_metadata("shared")))
    done = cli("generate", "--manifest-path", plain_workspace)
    assert done.returncode == 2
    assert "'shared' is reserved: it names a build step or target of `cli build`" in done.stderr
