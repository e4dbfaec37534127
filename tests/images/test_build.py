"""`cli build`: dry-run commands, provenance labels, refusal on stale inputs, and a run with a stand-in engine."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from pathlib import Path

import pytest

from tests.images.conftest import cli

FAKE_ENGINE = """#!/bin/sh
if [ "$1" = buildx ]; then
    [ -z "$NO_BUILDX" ] || { echo "docker: 'buildx' is not a docker command." >&2; exit 1; }
    echo "github.com/docker/buildx v0.20.0"; exit 0
fi
printf '%s DOCKER_BUILDKIT=%s\\n' "$*" "${DOCKER_BUILDKIT-unset}" >> "$ENGINE_RECORD"
echo "step 1/2 : pretending to $1"
echo "step 2/2 : done"
case "$*" in *"$FAIL_ON"*) [ -n "$FAIL_ON" ] && { echo "boom" >&2; exit 3; } ;; esac
exit 0
"""


def labels_of(command: list[str]) -> dict[str, str]:
    pairs = [command[i + 1] for i, word in enumerate(command) if word == "--label"]
    return dict(pair.split("=", 1) for pair in pairs)


def args_of(command: list[str]) -> dict[str, str]:
    pairs = [command[i + 1] for i, word in enumerate(command) if word == "--build-arg"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_dry_run_prints_common_then_the_shared_stage_then_flavor(ready_workspace: Path) -> None:
    done = cli("build", "pytorch", "--dry-run", "--manifest-path", ready_workspace)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    common, shared, flavor = (shlex.split(line) for line in lines)
    assert common[:4] == ["docker", "build", "--file", f"{ready_workspace}/common/Dockerfile"]
    assert "fixture-runners/common:0.1.0" in common
    assert args_of(common)["BASE_IMAGE"] == "docker.io/library/ubuntu:24.04"
    assert shared[:4] == ["docker", "build", "--file", f"{ready_workspace}/flavors/Dockerfile.shared"]
    assert shared[shared.index("--tag") + 1] == "fixture-runners/shared:0.1.0"
    assert args_of(shared)["COMMON_IMAGE"] == "fixture-runners/common:0.1.0"
    assert flavor[:4] == ["docker", "build", "--file", f"{ready_workspace}/flavors/Dockerfile"]
    assert flavor[flavor.index("--tag") + 1] == "simcore/services/comp/osparc-pytorch-runner:1.0.0"
    args = args_of(flavor)
    assert args["FLAVOR"] == "pytorch"
    assert args["SHARED_IMAGE"] == "fixture-runners/shared:0.1.0"
    assert args["CUDA_VERSION"] == "12.4"
    labels = labels_of(flavor)
    assert json.loads(labels["io.simcore.key"]) == {"key": "simcore/services/comp/osparc-pytorch-runner"}
    assert json.loads(labels["io.simcore.version"]) == {"version": "1.0.0"}


def test_provenance_labels_trace_the_image_to_its_inputs(ready_workspace: Path) -> None:
    done = cli("build", "pytorch", "--dry-run", "--manifest-path", ready_workspace)
    labels = labels_of(shlex.split(done.stdout.splitlines()[2]))
    export = ready_workspace / "envs" / "pytorch" / "conda-lock.yml"
    assert labels["io.osparc.runner.flavor"] == "pytorch"
    assert labels["io.osparc.runner.export.sha256"] == hashlib.sha256(export.read_bytes()).hexdigest()
    assert labels["io.osparc.runner.lock.format-version"] == "7"
    assert labels["io.osparc.runner.cuda.version"] == "12.4"
    assert labels["io.osparc.runner.cuda.driver.toolkit"] == "550.54.14"
    assert labels["io.osparc.runner.cuda.driver.minimum"] == "525.60.13"
    for key in ("revision", "created", "source", "version"):
        assert f"org.opencontainers.image.{key}" in labels
    assert labels["org.opencontainers.image.version"] == "1.0.0"


def test_all_as_json_lists_every_step(ready_workspace: Path) -> None:
    done = cli("build", "all", "--dry-run", "--json", "--engine", "podman", "--manifest-path", ready_workspace)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert [s["name"] for s in document["steps"]] == ["common", "shared", "pytorch", "tensorflow"]
    assert [s["from"] for s in document["steps"]] == [None, "common", "shared", "shared"]
    assert all(s["command"][:2] == ["podman", "build"] for s in document["steps"])
    assert document["push"] == []


def test_common_alone(ready_workspace: Path) -> None:
    done = cli("build", "common", "--dry-run", "--manifest-path", ready_workspace)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1
    assert "common/Dockerfile" in done.stdout


def test_refuses_stale_generated_file_and_export(ready_workspace: Path) -> None:
    run = ready_workspace / "flavors" / "pytorch" / "service.cli" / "run"
    run.write_text(run.read_text() + "# local change\n")
    export = ready_workspace / "envs" / "tensorflow" / "conda-lock.yml"
    export.write_text(export.read_text() + "# local change\n")
    done = cli("build", "pytorch", "--dry-run", "--manifest-path", ready_workspace)
    assert done.returncode == 2
    assert "refusing to build" in done.stderr
    problems = done.stderr.splitlines()[1:]
    assert any("flavors/pytorch/service.cli/run: differs from what metadata.yml gives" in p for p in problems)
    assert any("envs/tensorflow/conda-lock.yml: differs from pixi.lock" in p for p in problems)
    assert "docker build" not in done.stdout


def test_freshness_is_the_audit_of_the_flavors_built(ready_workspace: Path) -> None:
    from cli.images.freshness import StaleInputs, check_fresh
    from cli.images.generated import flavor_specs
    from cli.lockengine.manifest import load_workspace

    workspace = load_workspace(ready_workspace)
    specs = flavor_specs(workspace)
    check_fresh(workspace, specs)
    compose = ready_workspace / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("1.0.0", "9.9.9"))
    with pytest.raises(StaleInputs) as caught:
        check_fresh(workspace, specs)
    assert "docker-compose.yml: differs from what metadata.yml gives" in caught.value.details


def test_refuses_a_lock_out_of_step_with_the_manifest(ready_workspace: Path) -> None:
    manifest = ready_workspace / "pixi.toml"
    manifest.write_text(manifest.read_text().replace('torchvision = "*"', 'torchvision = "*"\nnumpy = ">=3"'))
    done = cli("build", "pytorch", "--dry-run", "--manifest-path", ready_workspace)
    assert done.returncode == 2
    assert "pixi.lock" in done.stderr and "numpy" in done.stderr
    (ready_workspace / "pixi.lock").unlink()
    missing = cli("build", "pytorch", "--dry-run", "--manifest-path", ready_workspace)
    assert missing.returncode == 2
    assert f"{ready_workspace / 'pixi.lock'}: missing" in missing.stderr


def test_unknown_flavor_and_bad_registry(ready_workspace: Path) -> None:
    unknown = cli("build", "jax", "--dry-run", "--manifest-path", ready_workspace)
    assert unknown.returncode == 2
    assert "unknown flavor 'jax'" in unknown.stderr
    bad = cli("build", "pytorch", "--dry-run", "--push", "https://registry", "--manifest-path", ready_workspace)
    assert bad.returncode == 2
    assert "--push" in bad.stderr


def _fake_engine(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "docker").write_text(FAKE_ENGINE)
    (bin_dir / "docker").chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "ENGINE_RECORD": str(tmp_path / "engine.txt")}


def test_build_runs_each_command_and_keeps_a_log(ready_workspace: Path, tmp_path: Path) -> None:
    env = _fake_engine(tmp_path)
    logs = tmp_path / "logs"
    done = cli(
        "build", "tensorflow", "--push", "reg.example:5000", "--log-dir", logs, "--manifest-path", ready_workspace,
        env={**env, "FAIL_ON": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    recorded = (tmp_path / "engine.txt").read_text().splitlines()
    assert [line.split()[:1] for line in recorded] == [["build"], ["build"], ["build"], ["push"]]
    assert "common/Dockerfile" in recorded[0] and "flavors/Dockerfile.shared" in recorded[1]
    pushed = "reg.example:5000/simcore/services/comp/osparc-tensorflow-runner:1.0.0"
    assert recorded[3] == f"push {pushed} DOCKER_BUILDKIT=unset"
    assert all("--progress=plain" in line for line in recorded[:3])
    (log,) = logs.glob("build-tensorflow-*.log")
    text = log.read_text()
    assert text.count("pretending to build") == 3
    assert text.count("# exit 0") == 4
    assert "pushed reg.example:5000/simcore/services/comp/osparc-tensorflow-runner:1.0.0" in done.stdout


def test_a_failing_step_stops_the_build_and_names_the_log(ready_workspace: Path, tmp_path: Path) -> None:
    env = _fake_engine(tmp_path)
    logs = tmp_path / "logs"
    done = cli(
        "build", "pytorch", "--log-dir", logs, "--manifest-path", ready_workspace,
        env={**env, "FAIL_ON": "flavors/Dockerfile "},
    )  # fmt: skip
    assert done.returncode == 1
    (log,) = logs.glob("build-pytorch-*.log")
    assert f"error: {log}: build pytorch failed (exit 3)" in done.stderr
    assert "boom" in log.read_text()
    assert "boom" in done.stderr


def test_missing_engine_is_a_clear_error(ready_workspace: Path, tmp_path: Path) -> None:
    done = cli("build", "common", "--manifest-path", ready_workspace, env={"PATH": str(tmp_path)})
    assert done.returncode == 2
    assert "'docker' is not on PATH" in done.stderr


def test_a_docker_without_buildx_builds_with_its_legacy_builder(ready_workspace: Path, tmp_path: Path) -> None:
    env = _fake_engine(tmp_path)
    done = cli(
        "build", "pytorch", "--log-dir", tmp_path / "logs", "--manifest-path", ready_workspace,
        env={**env, "FAIL_ON": "", "NO_BUILDX": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    recorded = (tmp_path / "engine.txt").read_text().splitlines()
    assert len(recorded) == 3
    assert all(line.endswith("DOCKER_BUILDKIT=0") and "--progress" not in line for line in recorded)
    (warning,) = [line for line in done.stderr.splitlines() if "docker has no buildx" in line]
    assert "building with the legacy builder" in warning
    assert "apt install docker-buildx" in warning


def test_the_flavor_gets_the_driver_floor_that_audit_cuda_states(ready_workspace: Path) -> None:
    done = cli("build", "pytorch", "--dry-run", "--json", "--manifest-path", ready_workspace)
    assert done.returncode == 0, done.stderr
    step = json.loads(done.stdout)["steps"][2]
    audit = cli("audit", "cuda", "pytorch", "--json", "--manifest-path", ready_workspace)
    (platform,) = json.loads(audit.stdout)["platforms"]
    assert step["labels"]["io.osparc.runner.cuda.driver.minimum"] == platform["minimum_driver"] == "525.60.13"
    assert step["build_args"]["NVIDIA_REQUIRE_CUDA"] == "cuda>=12.0"  # the CUDA release of driver 525.60.13


def files_of(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_runtime_environment_is_appended_to_a_rendered_dockerfile(ready_workspace: Path, tmp_path: Path) -> None:
    runtime = ready_workspace / "flavors" / "tensorflow" / "runtime.yml"
    runtime.write_text(runtime.read_text() + 'environment:\n  TF_FORCE_GPU_ALLOW_GROWTH: true\n  PRICE: "$5"\n')
    (ready_workspace / "flavors" / "Dockerfile.dockerignore").write_text("*\n!envs\n")
    done = cli("build", "all", "--dry-run", "--json", "--engine", "podman", "--manifest-path", ready_workspace)
    assert done.returncode == 0, done.stderr
    steps = {s["name"]: s for s in json.loads(done.stdout)["steps"]}
    assert steps["pytorch"]["dockerfile"] == "flavors/Dockerfile" and steps["pytorch"]["env"] == {}
    assert steps["pytorch"]["rendered_dockerfile"] is None
    flavor = steps["tensorflow"]
    assert flavor["env"] == {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "PRICE": "$5"}
    rendered = ready_workspace / flavor["dockerfile"]
    assert flavor["command"][3] == str(rendered) and rendered.parent == ready_workspace / "build/dockerfiles/tensorflow"
    # podman is told the committed .dockerignore, which exists whether or not a build wrote its copy
    ignore = flavor["command"][flavor["command"].index("--ignorefile") + 1]
    assert ignore == str(ready_workspace / "flavors" / "Dockerfile.dockerignore")
    original = (ready_workspace / "flavors" / "Dockerfile").read_text()
    text = flavor["rendered_dockerfile"]
    assert text.startswith(original.rstrip("\n"))
    assert text.endswith('ENV TF_FORCE_GPU_ALLOW_GROWTH="true" \\\n    PRICE="\\$5"\n')

    # the real build writes that very text where the dry run said, with the .dockerignore beside it for BuildKit
    env = _fake_engine(tmp_path)
    built = cli("build", "tensorflow", "--log-dir", tmp_path / "logs", "--manifest-path", ready_workspace, env=env)
    assert built.returncode == 0, built.stderr
    assert rendered.read_text() == text
    assert Path(f"{rendered}.dockerignore").read_text() == "*\n!envs\n"
    assert f"--file {rendered} " in (tmp_path / "engine.txt").read_text()


def test_a_dry_run_writes_nothing(ready_workspace: Path) -> None:
    """Not the rendered Dockerfiles, not a log (README: `--dry-run` runs nothing)."""
    runtime = ready_workspace / "flavors" / "tensorflow" / "runtime.yml"
    runtime.write_text(runtime.read_text() + "environment:\n  TF_FORCE_GPU_ALLOW_GROWTH: true\n")
    before = files_of(ready_workspace)
    for engine in ("docker", "podman"):
        for json_option in ([], ["--json"]):
            done = cli(
                "build", "all", "--dry-run", "--engine", engine, *json_option, "--manifest-path", ready_workspace
            )
            assert done.returncode == 0, done.stderr
            assert "build/dockerfiles/tensorflow/Dockerfile" in done.stdout
    assert files_of(ready_workspace) == before
    assert not (ready_workspace / "build").exists()


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ("environment: [A, B]", "'environment' is not a mapping"),
        ("environment: {1X: a}", "'environment.1X' is not a variable name"),
        ("environment: {NVIDIA_VISIBLE_DEVICES: none}", "NVIDIA_VISIBLE_DEVICES' is set by the image or by oSPARC"),
        ("environment: {A: [1, 2]}", "'environment.A' is not a plain value"),
    ],
)
def test_bad_runtime_environment_is_one_line(ready_workspace: Path, environment: str, message: str) -> None:
    runtime = ready_workspace / "flavors" / "pytorch" / "runtime.yml"
    runtime.write_text(runtime.read_text() + environment + "\n")
    done = cli("build", "pytorch", "--dry-run", "--manifest-path", ready_workspace)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {runtime}: ") and message in line


def test_a_lock_without_uv_is_refused_by_both_engines_before_any_build(ready_workspace: Path, tmp_path: Path) -> None:
    from tests.support.workspace import lock_and_export

    manifest = ready_workspace / "pixi.toml"
    manifest.write_text(manifest.read_text().replace('uv = "*"\n', ""))
    lock_and_export(ready_workspace)
    for engine in ("docker", "oci"):
        done = cli(
            "build", "pytorch", "--engine", engine, "--base", tmp_path / "absent.tar", "-o", tmp_path / "out.tar",
            "--manifest-path", ready_workspace, env=_fake_engine(tmp_path / engine) if engine == "docker" else None,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert "the lock of 'pytorch' (linux-64) has no uv, which the runner needs in the image" in line
        assert "add uv to the runner feature of pixi.toml and relock" in line
    assert not (tmp_path / "docker" / "engine.txt").exists() and not (tmp_path / "out.tar").exists()
