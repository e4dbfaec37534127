"""`cli run`: the in-container runner on local folders, with a flavor's environment, no Docker, no root.

The runner is started exactly as in the image (`<python> -m runner`, INPUT_FOLDER and
OUTPUT_FOLDER set) with the flavor's interpreter: `--python PATH` or `--prefix DIR` when
given, else the workspace's `.pixi/envs/<flavor>` (pixi's), else `.envs/<flavor>` (`cli
install`'s default). Never the CLI's own environment: its packages are not the flavor's.
The flavor's `runtime.yml` `environment:` applies as in the image, the caller's values
winning. Only the folder holding `runner/` is put on PYTHONPATH, never the CLI's own packages.

With `--port KEY=FILE`, the inputs are staged as oSPARC's backend stages them (cli/staging.py)
and the output ports are then checked as the backend reads them.
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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from cli.errors import UserError
from cli.flavors import Flavor, default_prefix, environment_defaults, get_flavor, pixi_prefix
from cli.lockengine.manifest import Workspace

log = logging.getLogger(__name__)

RUNNER_PACKAGE = "runner"
# Variables of the oSPARC contract that a local run sets itself; stale ones from the shell must not leak in.
CONTRACT_VARIABLES = ("INPUT_FOLDER", "OUTPUT_FOLDER", *(f"INPUT_{n}" for n in range(1, 6)))
EXIT_MISSING_OUTPUT = 4  # the runner's own code for "the outputs are not as they must be"


@dataclass(frozen=True)
class LocalRun:
    flavor: str
    output_folder: Path
    input_folder: Path | None = None
    ports: list[str] = field(default_factory=list)
    staging: Path | None = None
    log_folder: Path | None = None
    python: Path | None = None
    prefix: Path | None = None
    entrypoint: str | None = None
    timeout: float | None = None
    overlay_policy: str | None = None
    cache_dir: Path | None = None
    clean_outputs: bool = False
    script_args: list[str] = field(default_factory=list)


def _python_of(prefix: Path) -> Path:
    return prefix / "bin" / "python"


def base_python(request: LocalRun, workspace: Workspace | None) -> tuple[Path, Path | None]:
    """The interpreter of the flavor's environment, checked to exist, and its prefix when known."""
    if request.python is not None and request.prefix is not None:
        raise UserError("--python and --prefix both given", fix="pass one of them")
    if request.prefix is not None:
        python = _python_of(request.prefix)
        if not python.exists():
            raise UserError(
                "no bin/python in this prefix",
                path=request.prefix,
                fix=f"install the flavor first: python -m cli install {request.flavor} --prefix {request.prefix}",
            )
        return python.absolute(), request.prefix.absolute()
    if request.python is not None:
        found = shutil.which(str(request.python))
        if found is None:
            raise UserError("not an executable Python", path=request.python, fix="pass the flavor's python")
        return Path(found).absolute(), None
    assert workspace is not None  # without a workspace, --python is required (run_locally)
    candidates = (pixi_prefix(workspace, request.flavor), default_prefix(workspace, request.flavor))
    for prefix in candidates:
        if _python_of(prefix).exists():
            log.info("flavor environment: %s", prefix)
            return _python_of(prefix).absolute(), prefix.absolute()
    raise UserError(
        f"no environment for flavor '{request.flavor}' at {candidates[0]} or {candidates[1]}",
        path=workspace.root,
        fix=f"make one: `pixi install -e {request.flavor}`, or `python -m cli install {request.flavor}` "
        f"(into {candidates[1].relative_to(workspace.root)}); or pass --python / --prefix",
    )


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


def runner_environment(
    request: LocalRun,
    root: Path,
    environ: Mapping[str, str],
    input_folder: Path,
    prefix: Path | None = None,
    defaults: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = {k: v for k, v in environ.items() if k not in CONTRACT_VARIABLES}
    for name, value in (defaults or {}).items():
        env.setdefault(name, value)  # the flavor's runtime.yml, as the image sets it; the caller's value wins
    env["INPUT_FOLDER"] = str(input_folder.absolute())
    env["OUTPUT_FOLDER"] = str(request.output_folder.absolute())
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [environ.get("PYTHONPATH")])])
    if prefix is not None:
        # What the runner reads conda-meta from for its duplicate-CUDA guard.
        env.setdefault("RUNNER_BASE_PREFIX", str(prefix))
    settings: tuple[tuple[str, str | None], ...] = (
        ("LOG_FOLDER", None if request.log_folder is None else str(request.log_folder.absolute())),
        ("RUNNER_ENTRYPOINT", request.entrypoint),
        ("RUNNER_TIMEOUT", None if request.timeout is None else f"{request.timeout:g}"),
        ("RUNNER_OVERLAY_POLICY", request.overlay_policy),
        ("RUNNER_CACHE_DIR", None if request.cache_dir is None else str(request.cache_dir.absolute())),
        ("RUNNER_CLEAN_OUTPUTS", "1" if request.clean_outputs else None),
    )
    for variable, setting in settings:
        if setting is not None:
            env[variable] = setting
    return env


def run_locally(workspace: Workspace | None, request: LocalRun, environ: Mapping[str, str] | None = None) -> int:
    """Run one job; the runner's exit status (the script's, or the runner's setup-failure code) is returned."""
    env = os.environ if environ is None else environ
    if (request.input_folder is None) == (not request.ports):
        raise UserError("give the inputs either as --input DIR or as --port KEY=FILE options", fix="pass one of them")
    if workspace is None and (request.python is None or request.ports):
        raise UserError(
            "no pixi.toml in this folder or above",
            path=Path.cwd(),
            fix="run from the workspace root or pass --manifest-path; only --python with --input runs without one",
        )
    flavor = get_flavor(workspace, request.flavor) if workspace is not None else None
    if request.input_folder is not None and not request.input_folder.is_dir():
        raise UserError("no such input folder", path=request.input_folder, fix="pass --input DIR holding the script")
    python, prefix = base_python(request, workspace)
    defaults = environment_defaults(flavor) if flavor is not None else {}
    with ExitStack() as stack:
        input_folder = request.input_folder or _staged_inputs(request, flavor, stack)
        root = stack.enter_context(runner_path())
        command = [str(python), "-m", RUNNER_PACKAGE, *(["--", *request.script_args] if request.script_args else [])]
        log.info("running %s with PYTHONPATH=%s", " ".join(command), root)
        try:
            # Its own process group: a terminal's Ctrl-C reaches it once, through us, as in the image.
            runner_env = runner_environment(request, root, env, input_folder, prefix, defaults)
            process = subprocess.Popen(command, env=runner_env, process_group=0)
        except OSError as error:
            raise UserError(f"cannot start {python}: {error}", fix="pass a working --python") from None
        returncode = _wait_forwarding(process)
    exit_code = 128 - returncode if returncode < 0 else returncode
    if flavor is not None and exit_code == 0:  # the backend reads the outputs of a successful job only
        exit_code = report_outputs(flavor, request.output_folder)
    return exit_code


def _staged_inputs(request: LocalRun, flavor: Flavor | None, stack: ExitStack) -> Path:
    from cli.images.metadata import load_metadata
    from cli.staging import parse_port_values, stage_inputs

    assert flavor is not None
    metadata = load_metadata(flavor.metadata_path)
    values = parse_port_values(request.ports, metadata, flavor.metadata_path)
    folder = request.staging or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="osparc-inputs-")))
    for port in stage_inputs(metadata, values, folder):
        print(f"input {port.key}: {port.source} -> {port.staged_as}", file=sys.stderr)
    return folder


def report_outputs(flavor: Flavor, output_folder: Path) -> int:
    """Check each output port as the backend reads it; a missing required one fails the job."""
    from cli.images.metadata import load_metadata
    from cli.staging import check_outputs

    missing = []
    for port in check_outputs(load_metadata(flavor.metadata_path), output_folder):
        if port.present:
            size = f" ({port.size} bytes)" if port.size is not None else ""
            print(f"output {port.key}: {port.location}{size}", file=sys.stderr)
        else:
            print(f"output {port.key}: {port.location} missing", file=sys.stderr)
            if port.required:
                missing.append(port)
    if missing:
        names = ", ".join(f"{p.key} ({p.location})" for p in missing)
        print(
            f"error: {output_folder}: output port(s) {names} missing: oSPARC would fail this job "
            f"(write them, or give the ports a default in {flavor.metadata_path.name})",
            file=sys.stderr,
        )
        return EXIT_MISSING_OUTPUT
    return 0


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
