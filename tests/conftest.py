"""Session-wide fixtures: one local GPU-stack channel, and fresh workspaces on it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.process_exit import FinalExit
from tests.support.channel import build_channel, gpu_stack_packages
from tests.support.workspace import lock_and_export, write_workspace

# The suite runs py-rattler and rattler-build in this process: end it the way the CLI ends, right
# before interpreter finalization, which a py-rattler thread can abort (see cli/process_exit.py).
_FINAL_EXIT = FinalExit()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _FINAL_EXIT.status = int(exitstatus)


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    cache = tmp_path_factory.mktemp("caches")
    saved = {k: os.environ.get(k) for k in ("RATTLER_CACHE_DIR", "UV_CACHE_DIR", "XDG_CACHE_HOME")}
    os.environ["RATTLER_CACHE_DIR"] = str(cache / "rattler")
    os.environ["UV_CACHE_DIR"] = str(cache / "uv")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def gpu_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file:// conda channel with cpu and cuda builds of a small GPU stack (built once per session)."""
    root = tmp_path_factory.mktemp("channel")
    return build_channel(root / "gpu-forge", gpu_stack_packages())


@pytest.fixture()
def workspace(tmp_path: Path, gpu_channel: Path) -> Path:
    """A fresh workspace with pytorch and tensorflow flavors on the fixture channel, not yet locked."""
    return write_workspace(tmp_path / "ws", gpu_channel.as_uri())


@pytest.fixture(scope="session")
def _locked_template(tmp_path_factory: pytest.TempPathFactory, gpu_channel: Path) -> Path:
    root = write_workspace(tmp_path_factory.mktemp("locked") / "ws", gpu_channel.as_uri())
    return lock_and_export(root)


@pytest.fixture()
def locked_workspace(tmp_path: Path, _locked_template: Path) -> Path:
    """A workspace already locked (pixi.lock) and exported (envs/), in its own folder so a test may change it."""
    import shutil

    target = tmp_path / "locked-ws"
    shutil.copytree(_locked_template, target)
    return target


@pytest.fixture()
def cuda_override(monkeypatch: pytest.MonkeyPatch) -> str:
    """Pretend this GPU-less machine has a CUDA 12.4 driver, as a user would with CONDA_OVERRIDE_CUDA."""
    monkeypatch.setenv("CONDA_OVERRIDE_CUDA", "12.4")
    return "12.4"
