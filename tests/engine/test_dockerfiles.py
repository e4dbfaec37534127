"""The Dockerfiles under a real engine: `cli build` with podman, with a docker that has no buildx, and a failure."""

from __future__ import annotations

import os
from pathlib import Path

from tests.engine.conftest import BASE_STANDIN, NO_SETPRIV_BASE, DockerBuild, EngineSession, cli, podman_name
from tests.engine.podman import Podman

# What Debian's podman-docker puts on PATH as `docker`: podman under docker's name, with no buildx plugin.
PODMAN_AS_DOCKER = '#!/bin/sh\nexec podman "$@"\n'


def engine_env(podman: Podman, **extra: str) -> dict[str, str]:
    return {**{k: v for k, v in podman.env.items() if k.startswith("CONTAINERS_")}, **extra}


def test_both_dockerfiles_build_with_podman_on_stand_ins(docker_image: DockerBuild) -> None:
    log = docker_image.log
    assert log.count("$ podman build") == 3 and log.count("# exit 0") == 3  # common, the shared stage, the flavor
    # One flavor shares with nobody: the stage's environment starts empty and the flavor installs all it locks.
    assert "micromamba (stand-in): created an empty environment at /opt/conda/envs/flavor" in log
    assert "micromamba (stand-in): installed 5 packages into /opt/conda/envs/flavor" in log
    # The base already has the entrypoint's tools and CA certificates: nothing to fetch, so no network needed.
    assert "entrypoint: apt-get could not install" not in log and "Reading package lists" not in log


def test_cli_build_with_a_docker_that_has_no_buildx(
    podman: Podman, docker_image: DockerBuild, engine_session: EngineSession, tmp_path: Path
) -> None:
    shim = tmp_path / "bin" / "docker"
    shim.parent.mkdir()
    shim.write_text(PODMAN_AS_DOCKER)
    shim.chmod(0o755)
    env = engine_env(podman, PATH=f"{shim.parent}:{os.environ['PATH']}")
    done = cli("build", "common", "--engine", "docker", "--manifest-path", engine_session.workspace,
               "--log-dir", tmp_path / "logs", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (warning,) = [line for line in done.stderr.splitlines() if "docker has no buildx" in line]
    assert "building with the legacy builder" in warning and "apt install docker-buildx" in warning
    (log,) = (tmp_path / "logs").glob("build-common-*.log")
    command = log.read_text().splitlines()[0]
    assert command.startswith("$ docker build --file") and "--progress" not in command
    assert podman_name(podman, f"engine-{engine_session.token}/common:0.1.0")


def test_a_failed_build_shows_the_last_lines_of_its_log(
    podman: Podman, standins: None, engine_session: EngineSession, tmp_path: Path
) -> None:
    containerfile = tmp_path / "Containerfile"
    containerfile.write_text(f"FROM {BASE_STANDIN}\nRUN rm /usr/bin/setpriv\n")
    podman.run("build", "--file", containerfile, "--tag", NO_SETPRIV_BASE, tmp_path)
    done = cli("build", "common", "--engine", "podman", "--base-image", NO_SETPRIV_BASE,
               "--manifest-path", engine_session.workspace, "--log-dir", tmp_path / "logs",
               env=engine_env(podman))  # fmt: skip
    assert done.returncode == 1
    (log,) = (tmp_path / "logs").glob("build-common-*.log")
    assert f"error: {log}: build common failed (exit" in done.stderr
    # The log's last lines, shown without opening the log: here the base check naming what is missing.
    assert "error: the base image lacks setpriv, which the entrypoint needs" in done.stderr
