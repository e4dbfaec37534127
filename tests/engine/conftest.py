"""The real-engine harness: a Debian base from mmdebstrap, the fixture flavor, its images loaded into podman.

Session fixtures, built once (the tests are marked `engine`; `pytest -m "not engine"`
leaves them out locally, CI runs them through tests/run.sh):
- `debian_base`: the cached mmdebstrap rootfs (tests/engine/debian_base.py says where);
- `engine_workspace`: the fixture flavor on its channel, locked, exported, generated;
- `podman`: podman with a private store (tests/engine/podman.py), into which
  `oci_image` loads what `cli build --engine oci` made of the fixture flavor on the base,
  and `docker_image` builds both Dockerfiles with `cli build all --engine podman`, on
  local stand-ins named as the Dockerfiles name their images (the base, micromamba);
  `image`, parametrised by `engine`, is each of the two in turn.
A test skips only when podman cannot run at all here, and says why.
"""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.engine.channel import build_engine_channel
from tests.engine.debian_base import debian_base as build_debian_base
from tests.engine.debian_base import python_version
from tests.engine.podman import Podman, unavailable_reason
from tests.engine.workspace import FLAVOR, REPO, write_engine_workspace

STANDINS = Path(__file__).parent / "standins"
BASE_STANDIN = "docker.io/library/ubuntu:24.04"  # common/Dockerfile's default BASE_IMAGE
MICROMAMBA_STANDIN = "docker.io/mambaorg/micromamba:2.5.0"  # common/Dockerfile's MICROMAMBA_IMAGE
NO_SETPRIV_BASE = "localhost/engine-tests/base-without-setpriv:1"
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.engine)


@dataclass(frozen=True)
class EngineSession:
    token: str
    base: Path
    python: str
    channel: Path
    workspace: Path


@pytest.fixture(scope="session")
def engine_session(tmp_path_factory: pytest.TempPathFactory) -> EngineSession:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    base = build_debian_base()
    python = python_version(base)
    root = tmp_path_factory.mktemp("engine")
    token = secrets.token_hex(3)
    uv = Path(sys.executable).with_name("uv")
    if not uv.is_file():
        from uv import find_uv_bin

        uv = Path(find_uv_bin())
    channel = build_engine_channel(root / "channel", python, uv)
    workspace = write_engine_workspace(root / "ws", channel, python, token)
    return EngineSession(token, base, python, channel, workspace)


@pytest.fixture(scope="session")
def podman(engine_session: EngineSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    engine = Podman(tmp_path_factory.mktemp("podman"), binds=[engine_session.channel])
    try:
        engine.run("import", "--change", f"ENV PATH={BASE_PATH}", engine_session.base, BASE_STANDIN)
        reason = engine.smoke_test(BASE_STANDIN)
        if reason:
            pytest.skip(reason)
        yield engine
    finally:
        engine.clean()


@pytest.fixture(scope="session")
def oci_image(engine_session: EngineSession, podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The fixture flavor built by the OCI engine on the Debian base, loaded into podman; its name there."""
    from cli.lockengine.manifest import load_workspace
    from cli.oci import build_oci_image

    folder = tmp_path_factory.mktemp("oci-image")
    archive = folder / "image.tar"
    workspace = load_workspace(engine_session.workspace)
    build_oci_image(workspace, FLAVOR, engine_session.base, archive, cache_dir=folder / "cache")
    loaded = podman.run("load", "--input", archive).stdout
    (name,) = [line.split(":", 1)[1].strip() for line in loaded.splitlines() if line.startswith("Loaded image")]
    archive.unlink()
    # Both engines tag the service's name; the OCI image gets its own, so that `docker_image` cannot replace it.
    own = f"localhost/engine-tests/oci-{FLAVOR}:{engine_session.token}"
    podman.run("tag", name, own)
    podman.run("untag", name, name)
    return own


def cli(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 1200
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *map(str, args)],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def micromamba_standin_tar(target: Path) -> Path:
    """A one-file image rootfs: /bin/micromamba, all that common/Dockerfile copies from the micromamba image."""
    with tarfile.open(target, "w") as archive:
        for folder in ("bin",):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(info)
        data = (STANDINS / "micromamba").read_bytes()
        info = tarfile.TarInfo("bin/micromamba")
        info.size, info.mode = len(data), 0o755
        archive.addfile(info, io.BytesIO(data))
    return target


@pytest.fixture(scope="session")
def standins(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Local images named as the Dockerfiles name theirs (the base one is imported by `podman`)."""
    rootfs = micromamba_standin_tar(tmp_path_factory.mktemp("micromamba") / "rootfs.tar")
    podman.run("import", rootfs, MICROMAMBA_STANDIN)


@dataclass(frozen=True)
class DockerBuild:
    image: str
    log: str


@pytest.fixture(scope="session")
def docker_image(
    engine_session: EngineSession, podman: Podman, standins: None, tmp_path_factory: pytest.TempPathFactory
) -> DockerBuild:
    """common/Dockerfile and flavors/Dockerfile built by `cli build all --engine podman`, unchanged."""
    logs = tmp_path_factory.mktemp("build-logs")
    done = cli("build", "all", "--engine", "podman", "--manifest-path", engine_session.workspace, "--log-dir", logs,
               env={k: v for k, v in podman.env.items() if k.startswith("CONTAINERS_")})  # fmt: skip
    log_text = "\n".join(path.read_text() for path in sorted(logs.glob("*.log")))
    assert done.returncode == 0, f"{done.stderr}\n{log_text[-4000:]}"
    tag = f"simcore/services/comp/engine-fixture-{engine_session.token}:1.0.0"
    return DockerBuild(podman_name(podman, tag), log_text)


ENGINES = ("oci", "docker")


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Which image a test runs: the OCI engine's (`oci_image`), or the one both Dockerfiles give (`docker_image`)."""
    return str(request.param)


@pytest.fixture()
def image(engine: str, request: pytest.FixtureRequest) -> str:
    """The image of `engine`, by its name in podman (a test names its containers after `engine`)."""
    if engine == "oci":
        return str(request.getfixturevalue("oci_image"))
    build: DockerBuild = request.getfixturevalue("docker_image")
    return build.image


def podman_name(podman: Podman, tag: str) -> str:
    """The full name podman stored a `--tag` under (it qualifies a short name, e.g. with docker.io/ or localhost/)."""
    listed = podman.run("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    (name,) = [item for item in listed if item == tag or item.endswith(f"/{tag}")]
    return name
