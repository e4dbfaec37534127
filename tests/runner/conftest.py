"""Fixtures for the runner: a local wheel index, a base environment (a venv, like the dev one), jobs, and a uv recorder.

Everything is offline: wheels are written by hand (tests/runner/wheels.py) and served
with UV_FIND_LINKS / --find-links / a file:// simple index, with UV_OFFLINE=1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.runner.wheels import FIXTURE_WHEELS, build_wheel, wheel_from_installed, write_simple_index
from tests.support.isolation import without_pip_and_uv_settings

REPO = Path(__file__).resolve().parents[2]


def real_uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    assert Path(found).exists(), "uv is needed for the runner tests"
    return found


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheelhouse")
    for wheel in FIXTURE_WHEELS:
        build_wheel(folder, wheel)
    wheel_from_installed(folder, "packaging")  # the runner's one dependency, which the flavors lock
    return folder


@pytest.fixture(scope="session")
def simple_index(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_simple_index(wheelhouse, tmp_path_factory.mktemp("index") / "simple")


@dataclass(frozen=True)
class BaseEnv:
    """The flavor environment's stand-in: a venv holding basepkg 1.0 and packaging (the flavors lock it too).

    A venv on purpose: its interpreter's site-packages differ from its own, the pitfall the overlay must avoid.
    """

    root: Path
    python: Path
    site_packages: Path


def make_base_env(root: Path, wheelhouse: Path) -> BaseEnv:
    """A venv on this Python holding basepkg 1.0 and packaging, from the fixture wheels, offline."""
    env = {**os.environ, "UV_OFFLINE": "1", "UV_FIND_LINKS": str(wheelhouse), "UV_NO_PROGRESS": "1"}
    env.pop("VIRTUAL_ENV", None)
    subprocess.run([real_uv(), "venv", str(root), "--python", sys.executable, "--quiet"], check=True, env=env)
    python = root / "bin" / "python"
    subprocess.run(
        [real_uv(), "pip", "install", "--python", str(python), "basepkg==1.0", "packaging", "--quiet"],
        check=True,
        env=env,
    )
    site_packages = Path(
        subprocess.run(
            [str(python), "-c", "import site; print(site.getsitepackages()[0])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    return BaseEnv(root, python, site_packages)


@pytest.fixture(scope="session")
def base_env(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> BaseEnv:
    return make_base_env(tmp_path_factory.mktemp("base") / "env", wheelhouse)


@dataclass
class UvRecorder:
    """A `uv` first on PATH that logs each call (and can pause in one), then runs the real uv."""

    folder: Path
    log: Path

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def count(self, prefix: str) -> int:
        return sum(1 for call in self.calls() if call.startswith(prefix))


def write_uv_recorder(folder: Path, log: Path) -> UvRecorder:
    """A `uv` script in `folder` that logs each call to `log` (and can pause in one), then runs the real uv."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "uv"
    script.write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            printf '%s\\n' "$*" >> "{log}"
            if [ -n "$UV_PAUSE_ON" ] && [ "$1 $2" = "$UV_PAUSE_ON" ]; then sleep "${{UV_PAUSE_SECONDS:-30}}"; fi
            exec "{real_uv()}" "$@"
            """
        )
    )
    script.chmod(0o755)
    return UvRecorder(folder, log)


@pytest.fixture()
def uv_recorder(tmp_path: Path) -> UvRecorder:
    return write_uv_recorder(tmp_path / "uv-bin", tmp_path / "uv-calls.log")


@dataclass
class Job:
    root: Path
    input_folder: Path
    output_folder: Path

    @property
    def code(self) -> Path:
        return self.input_folder / "input_1"

    def write(self, relative: str, text: str) -> Path:
        path = self.code / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def summary(self) -> dict[str, object]:
        return json.loads((self.output_folder / "logs" / "run.json").read_text())

    def log_text(self) -> str:
        return (self.output_folder / "logs" / "run.log").read_text()


@pytest.fixture()
def job(tmp_path: Path) -> Job:
    root = tmp_path / "job"
    input_folder = root / "input"
    for n in range(1, 6):
        (input_folder / f"input_{n}").mkdir(parents=True)
    return Job(root, input_folder, root / "output")


@pytest.fixture()
def runner_env(tmp_path: Path, wheelhouse: Path, uv_recorder: UvRecorder) -> dict[str, str]:
    """A job's environment: offline uv on the fixture wheels, a private overlay cache, the uv recorder on PATH.

    pip's and uv's settings are switched off (tests/support/isolation.py): the runner honours
    them, and this machine's pip.conf names a constraints file. The tests of pip settings put
    their own back.
    """
    isolated = without_pip_and_uv_settings()
    env = {k: v for k, v in isolated.items() if not k.startswith(("RUNNER_", "INPUT_", "OUTPUT_"))}
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    env.update(
        {
            "UV_OFFLINE": "1",
            "UV_FIND_LINKS": str(wheelhouse),
            "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR", str(tmp_path / "uv-cache")),
            "RUNNER_CACHE_DIR": str(tmp_path / "overlay-cache"),
            "PATH": os.pathsep.join([str(uv_recorder.folder), env.get("PATH", os.defpath)]),
        }
    )
    return env


RunJob = Callable[..., subprocess.CompletedProcess[str]]


def runner_command(python: Path, *args: str) -> list[str]:
    return [str(python), "-m", "runner", *args]


@pytest.fixture()
def run_job(job: Job, runner_env: dict[str, str], base_env: BaseEnv) -> RunJob:
    """Run the job as the interface says: `python -m runner` from the project root, INPUT_FOLDER/OUTPUT_FOLDER set."""

    def run(*args: str, env: dict[str, str] | None = None, python: Path | None = None, timeout: float = 120):
        full = {**runner_env, "INPUT_FOLDER": str(job.input_folder), "OUTPUT_FOLDER": str(job.output_folder)}
        full["RUNNER_CLEAN_OUTPUTS"] = "1"  # tests run a job again into the same folder; a used one is refused
        full.update(env or {})
        return subprocess.run(
            runner_command(python or base_env.python, *args),
            cwd=REPO,
            env=full,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The runner's reason: the last line of stderr, which must be its only `error: runner:` line."""
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: runner:")]
    assert len(errors) == 1, result.stderr
    assert lines[-1] == errors[0], result.stderr
    return errors[0]


@pytest.fixture()
def conda_cuda_prefix(tmp_path: Path) -> Path:
    """A base prefix whose conda-meta says CUDA comes from conda (cudnn, cuda-version), for the duplicate-CUDA guard."""
    prefix = tmp_path / "conda-prefix"
    meta = prefix / "conda-meta"
    meta.mkdir(parents=True)
    for name, version, build in (
        ("cuda-version", "12.4", "h0_3"),
        ("cudnn", "9.1.0", "h1_0"),
        ("python", "3.12.0", "h0"),
    ):
        (meta / f"{name}-{version}-{build}.json").write_text(json.dumps({"name": name, "version": version}))
    return prefix
