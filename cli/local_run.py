"""`cli run`: the in-container runner on local folders, with a flavor's environment, no Docker, no root.

The runner is started exactly as in the image (`<python> -m runner`, INPUT_FOLDER and
OUTPUT_FOLDER set), with the flavor's interpreter: the current one (inside
`pixi shell -e <flavor>`), `--python PATH`, or `--prefix DIR` made by `cli install`.
Only the folder holding `runner/` is put on PYTHONPATH, never the CLI's own packages.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from cli.errors import UserError
from cli.flavors import get_flavor
from cli.lockengine.manifest import Workspace

log = logging.getLogger(__name__)

RUNNER_PACKAGE = "runner"
# Variables of the oSPARC contract that a local run sets itself; stale ones from the shell must not leak in.
CONTRACT_VARIABLES = ("INPUT_FOLDER", "OUTPUT_FOLDER", *(f"INPUT_{n}" for n in range(1, 6)))


@dataclass(frozen=True)
class LocalRun:
    flavor: str
    input_folder: Path
    output_folder: Path
    python: Path | None = None
    prefix: Path | None = None
    entrypoint: str | None = None
    timeout: float | None = None
    overlay_policy: str | None = None
    cache_dir: Path | None = None
    script_args: list[str] = field(default_factory=list)


def base_python(request: LocalRun, environ: Mapping[str, str]) -> Path:
    """The interpreter of the flavor's environment, checked to exist."""
    if request.python is not None and request.prefix is not None:
        raise UserError("--python and --prefix both given", fix="pass one of them")
    if request.prefix is not None:
        python = request.prefix / "bin" / "python"
        if not python.exists():
            raise UserError(
                "no bin/python in this prefix",
                path=request.prefix,
                fix=f"install the flavor first: python -m cli install {request.flavor} --prefix {request.prefix}",
            )
        return python.absolute()
    if request.python is not None:
        found = shutil.which(str(request.python))
        if found is None:
            raise UserError("not an executable Python", path=request.python, fix="pass the flavor's python")
        return Path(found).absolute()
    active = environ.get("PIXI_ENVIRONMENT_NAME")
    if active and active != request.flavor:
        raise UserError(
            f"this shell is pixi environment '{active}', not '{request.flavor}'",
            fix=f"run inside `pixi shell -e {request.flavor}`, or pass --python / --prefix",
        )
    if not active:
        log.warning("not inside `pixi shell -e %s`: using %s as the flavor's Python", request.flavor, sys.executable)
    return Path(sys.executable)


def _runner_package() -> Path:
    """The `runner/` folder next to `cli/` (a checkout, or both installed side by side)."""
    package = Path(__file__).resolve().parent.parent / RUNNER_PACKAGE
    if not (package / "__main__.py").is_file():
        raise UserError("the runner package is missing", path=package, fix="reinstall osparc-ml-runners")
    return package


@contextmanager
def runner_path() -> Iterator[Path]:
    """A folder holding `runner/` and nothing else of ours that the flavor's Python could import.

    In a checkout that is the repository root. When the CLI is installed, the runner sits in
    site-packages next to the CLI's dependencies: copy it out rather than expose those.
    """
    package = _runner_package()
    if package.parent.name not in ("site-packages", "dist-packages"):
        yield package.parent
        return
    with tempfile.TemporaryDirectory(prefix="osparc-runner-") as folder:
        shutil.copytree(package, Path(folder) / RUNNER_PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
        yield Path(folder)


def runner_environment(request: LocalRun, root: Path, environ: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in environ.items() if k not in CONTRACT_VARIABLES}
    env["INPUT_FOLDER"] = str(request.input_folder.absolute())
    env["OUTPUT_FOLDER"] = str(request.output_folder.absolute())
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [environ.get("PYTHONPATH")])])
    if request.prefix is not None:
        # What the runner reads conda-meta from for its duplicate-CUDA guard.
        env.setdefault("RUNNER_BASE_PREFIX", str(request.prefix.absolute()))
    for variable, value in (
        ("RUNNER_ENTRYPOINT", request.entrypoint),
        ("RUNNER_TIMEOUT", None if request.timeout is None else f"{request.timeout:g}"),
        ("RUNNER_OVERLAY_POLICY", request.overlay_policy),
        ("RUNNER_CACHE_DIR", None if request.cache_dir is None else str(request.cache_dir.absolute())),
    ):
        if value is not None:
            env[variable] = value
    return env


def run_locally(workspace: Workspace, request: LocalRun, environ: Mapping[str, str] | None = None) -> int:
    """Run one job; the runner's exit status (the script's, or the runner's setup-failure code) is returned."""
    env = os.environ if environ is None else environ
    get_flavor(workspace, request.flavor)
    if not request.input_folder.is_dir():
        raise UserError("no such input folder", path=request.input_folder, fix="pass --input DIR holding the script")
    python = base_python(request, env)
    with runner_path() as root:
        command = [str(python), "-m", RUNNER_PACKAGE, *(["--", *request.script_args] if request.script_args else [])]
        log.info("running %s with PYTHONPATH=%s", " ".join(command), root)
        try:
            # Its own process group: a terminal's Ctrl-C reaches it once, through us, as in the image.
            process = subprocess.Popen(command, env=runner_environment(request, root, env), process_group=0)
        except OSError as error:
            raise UserError(f"cannot start {python}: {error}", fix="pass a working --python") from None
        returncode = _wait_forwarding(process)
    return 128 - returncode if returncode < 0 else returncode


def _wait_forwarding(process: subprocess.Popen[bytes]) -> int:
    """Wait for the runner, passing SIGTERM and SIGINT on (it passes them on to the script)."""

    def forward(number: int, _frame: FrameType | None) -> None:
        process.send_signal(number)

    previous = {number: signal.signal(number, forward) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        return process.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
