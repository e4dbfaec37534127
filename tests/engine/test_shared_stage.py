"""Issue 12 point 2 under a real engine: the shared stage is built once and both flavor images are built FROM it.

A workspace of two flavors on the engine channel (`fixture` with fixture-lib, `second` with
second-lib; both with the cuda and runner features, so cuda-version, python, uv and packaging
are locked identically in both) is locked, exported and generated, then built with
`cli build all --engine podman` from this repository's Dockerfiles, on the stand-ins (the
micromamba stand-in installs the two @EXPLICIT files the way micromamba 2.5 does). podman
stores layers by digest, so the flavor images sharing the stage's layers is read from
`podman image inspect`: the same digests, in the same order, below each flavor's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.engine.conftest import EngineSession, cli, podman_name
from tests.engine.podman import Podman
from tests.engine.workspace import metadata, runtime
from tests.support.workspace import add_image_files, lock_and_export

FLAVORS = {"fixture": "fixture-lib", "second": "second-lib"}
SHARED = ("cuda-version", "packaging", "python", "uv")
PREFIX = "/opt/conda/envs/flavor"

PIXI_TOML = """\
[workspace]
name = "{name}"
version = "0.1.0"
channels = ["{channel}"]
platforms = [{{ platform = "linux-64", cuda = "12" }}]

[feature.cuda.dependencies]
cuda-version = "12.*"

[feature.runner.dependencies]
python = "{python}.*"
uv = "*"
packaging = "*"

[feature.fixture.dependencies]
fixture-lib = "*"

[feature.second.dependencies]
second-lib = "*"

[environments]
fixture = ["fixture", "cuda", "runner"]
second = ["second", "cuda", "runner"]
"""


@dataclass(frozen=True)
class StagedBuild:
    workspace: Path
    stage: str
    flavors: dict[str, str]  # flavor -> its image's name in podman
    log: str


def write_two_flavor_workspace(root: Path, session: EngineSession) -> Path:
    root.mkdir(parents=True)
    minor = ".".join(session.python.split(".")[:2])
    name = f"engine-stage-{session.token}"
    (root / "pixi.toml").write_text(PIXI_TOML.format(name=name, channel=session.channel.as_uri(), python=minor))
    for flavor in FLAVORS:
        folder = root / "flavors" / flavor
        folder.mkdir(parents=True)
        document = metadata(f"engine-stage-{flavor}-{session.token}")
        (folder / "metadata.yml").write_text(yaml.safe_dump(document, sort_keys=False))
        (folder / "runtime.yml").write_text(yaml.safe_dump(runtime(), sort_keys=False))
    add_image_files(root, runner=True)
    return lock_and_export(root, generate=True)


def engine_env(podman: Podman) -> dict[str, str]:
    return {k: v for k, v in podman.env.items() if k.startswith("CONTAINERS_")}


@pytest.fixture(scope="module")
def staged(
    engine_session: EngineSession, podman: Podman, standins: None, tmp_path_factory: pytest.TempPathFactory
) -> StagedBuild:
    root = tmp_path_factory.mktemp("shared-stage")
    workspace = write_two_flavor_workspace(root / "ws", engine_session)
    logs = root / "logs"
    done = cli("build", "all", "--engine", "podman", "--manifest-path", workspace, "--log-dir", logs,
               env=engine_env(podman))  # fmt: skip
    log = "\n".join(path.read_text() for path in sorted(logs.glob("*.log")))
    assert done.returncode == 0, f"{done.stderr}\n{log[-4000:]}"
    stage = podman_name(podman, f"engine-stage-{engine_session.token}/shared:0.1.0")
    flavors = {
        flavor: podman_name(podman, f"simcore/services/comp/engine-stage-{flavor}-{engine_session.token}:1.0.0")
        for flavor in FLAVORS
    }
    return StagedBuild(workspace, stage, flavors, log)


def layers(podman: Podman, image: str) -> list[str]:
    root_fs = podman.inspect(image)["RootFS"]
    assert isinstance(root_fs, dict)
    return list(root_fs["Layers"])


def conda_meta(podman: Podman, image: str) -> list[str]:
    done = podman.shell(image, f"ls {PREFIX}/conda-meta")
    assert done.returncode == 0, done.stderr
    return sorted(name.rsplit("-", 2)[0] for name in done.stdout.split() if name.endswith(".json"))


def test_the_dry_run_plans_the_shared_stage_once(staged: StagedBuild, podman: Podman) -> None:
    done = cli("build", "all", "--dry-run", "--json", "--engine", "podman", "--manifest-path", staged.workspace,
               env=engine_env(podman))  # fmt: skip
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)["steps"]
    assert [(s["name"], s["from"]) for s in steps] == [
        ("common", None), ("shared", "common"), ("fixture", "shared"), ("second", "shared"),
    ]  # fmt: skip
    assert [s["dockerfile"] for s in steps].count("flavors/Dockerfile.shared") == 1
    for step in steps[2:]:
        assert step["build_args"]["SHARED_IMAGE"] == steps[1]["image"]


def test_the_real_build_makes_the_stage_once_then_each_flavor_on_it(staged: StagedBuild) -> None:
    commands = [line for line in staged.log.splitlines() if line.startswith("$ podman build")]
    assert len(commands) == 4 and staged.log.count("# exit 0") == 4
    assert [c for c in commands if "flavors/Dockerfile.shared" in c] == [commands[1]]
    # The stage installs what both flavors lock identically; each flavor then installs only its own package.
    assert staged.log.count(f"micromamba (stand-in): installed {len(SHARED)} packages into {PREFIX}") == 1
    assert staged.log.count(f"micromamba (stand-in): installed 1 packages into {PREFIX}") == 2
    shared = (staged.workspace / "envs" / "_shared" / "linux-64.explicit").read_text()
    assert sorted(line.rsplit("/", 1)[1].rsplit("-", 2)[0] for line in shared.splitlines() if "://" in line) == list(
        SHARED
    )


def test_both_flavor_images_share_the_stage_layers(staged: StagedBuild, podman: Podman) -> None:
    stage = layers(podman, staged.stage)
    below = {}
    for flavor, image in staged.flavors.items():
        own = layers(podman, image)
        assert own[: len(stage)] == stage, flavor  # the same layer digests, in the same order
        below[flavor] = own[len(stage) :]
        assert below[flavor], flavor  # and the flavor's own layers above them
    assert not set(below["fixture"]) & set(below["second"])  # their own layers differ (other packages, service)
    labels = podman.inspect(staged.flavors["fixture"])["Labels"]
    assert isinstance(labels, dict)
    shared_export = staged.workspace / "envs" / "_shared" / "linux-64.explicit"
    from hashlib import sha256

    assert labels["io.osparc.runner.shared.sha256"] == sha256(shared_export.read_bytes()).hexdigest()


def test_each_flavor_has_the_stage_packages_and_only_its_own(staged: StagedBuild, podman: Podman) -> None:
    assert conda_meta(podman, staged.stage) == list(SHARED)
    for flavor, library in FLAVORS.items():
        image = staged.flavors[flavor]
        assert conda_meta(podman, image) == sorted([*SHARED, library])
        other = next(lib for lib in FLAVORS.values() if lib != library).replace("-", "_")
        check = (f"{PREFIX}/bin/python -c 'import packaging, {library.replace('-', '_')}' "
                 f"&& ! {PREFIX}/bin/python -c 'import {other}' 2>/dev/null "
                 f"&& test -x {PREFIX}/bin/uv && test -f /opt/conda/locks/{flavor}/conda-lock.yml")  # fmt: skip
        done = podman.shell(image, check)
        assert done.returncode == 0, f"{flavor}: {done.stderr}"
        # What the flavor adds to the stage: its own package and its files, never the stage's packages again.
        changed = podman.run("image", "diff", image, staged.stage).stdout.split()
        paths = [p for p in changed if p.startswith(PREFIX)]
        assert any(f"/{library.replace('-', '_')}/" in p for p in paths), flavor
        assert not [p for p in paths if p.startswith((f"{PREFIX}/bin/", f"{PREFIX}/pyvenv.cfg"))], flavor
