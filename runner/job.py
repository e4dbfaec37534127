"""One job, start to end: contract → resources → code → script → overlay → execution → zipped outputs → record.

Every setup failure ends the job with its one-line reason and a non-zero exit code
(the public runner logs and swallows them, exiting 0). The outputs are zipped and the
record written whatever happened, so a failed job still has every output port and says
why. What the user must know reaches them through the log stream, the only channel
oSPARC passes back besides the output ports: the resources, the script chosen, the
overlay's packages, the outputs written and, last, the reason the job ended.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from runner import __version__
from runner.archive import zip_folder
from runner.contract import Contract, child_environment, output_archive
from runner.diagnosis import script_ending
from runner.discovery import CodeFolder, find_entrypoint, find_requirements, prepare_code
from runner.errors import EXIT_INTERNAL, EXIT_TIMEOUT, BadInput, OutputError, RunnerError
from runner.execute import execute
from runner.logs import INFO, log
from runner.resources import Resources, human_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import FrameType

    from runner.overlay import Overlay

RUNNER_ROOT = Path(__file__).resolve().parent.parent
SUMMARY = "run.json"
RUN_LOG = "run.log"
LOCK = "requirements.lock.txt"
TRUE = ("1", "true", "yes", "on")


class Options:
    """What the command line may set on top of the environment."""

    def __init__(
        self,
        entrypoint: str | None = None,
        timeout: float | None = None,
        policy: str | None = None,
        args: list[str] | None = None,
        clean_outputs: bool = False,
    ) -> None:
        self.entrypoint = entrypoint
        self.timeout = timeout
        self.policy = policy
        self.args = list(args or [])
        self.clean_outputs = clean_outputs


class Ending:
    """How the job ends: its exit code and the last line that says why."""

    def __init__(self, exit_code: int = 0, line: str = "", failed: bool = False) -> None:
        self.exit_code = exit_code
        self.line = line
        self.failed = failed

    def fail(self, exit_code: int, line: str) -> None:
        self.exit_code, self.line, self.failed = exit_code, line, True


class JobState:
    """What every step of a job after its folders are claimed reads and adds to, up to the zipped outputs and record.

    A plain class with __slots__, not a dataclass: importing `dataclasses` costs the start of
    every job (runner/logs.py says why that matters).
    """

    __slots__ = ("contract", "durations", "ending", "recorded", "started", "summary")

    def __init__(self, contract: Contract, started: float, summary: dict[str, object], ending: Ending) -> None:
        self.contract = contract
        self.started = started
        self.summary = summary
        self.ending = ending
        self.durations: dict[str, float] = {}
        self.recorded = False  # whether LOG_FOLDER takes the record


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Terminated(Exception):
    """SIGTERM arrived while the runner itself was working (before or after the user's script)."""


def _terminate(number: int, _frame: FrameType | None) -> None:
    raise Terminated(signal.Signals(number).name)


def run_job(options: Options, environ: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if environ is None else environ)
    started = time.monotonic()
    summary: dict[str, object] = {"runner": __version__, "started_at": _now()}
    state: JobState | None = None  # set once the output folders exist: from then on they are zipped, the record written
    code: CodeFolder | None = None
    overlay: Overlay | None = None
    ending = Ending()
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        contract = Contract.from_environ(env)
        contract.claim_outputs(options.clean_outputs or env.get("RUNNER_CLEAN_OUTPUTS", "").lower() in TRUE)
        contract.prepare_outputs()
        state = JobState(contract, started, summary, ending)
        state.recorded = contract.prepare_log_folder()
        if state.recorded:
            log.attach(contract.log_folder / RUN_LOG)
        summary["folders"] = contract.summary()
        code, overlay = _run(options, env, state)
    except RunnerError as error:
        summary["error"] = error.one_line()
        ending.fail(error.exit_code, error.one_line())
    except (KeyboardInterrupt, Terminated) as error:
        summary["error"] = "interrupted before the script ran"
        exit_code = 143 if isinstance(error, Terminated) else 130
        ending.fail(exit_code, f"interrupted ({error or 'SIGINT'}) before the script ran")
    except Exception as error:
        # A bug of ours must still end as a failed job with a reason and a record, never as exit 0.
        _print_traceback()
        summary["error"] = f"internal error: {type(error).__name__}: {error}"
        reason = f"internal error: {type(error).__name__}: {error}"
        ending.fail(EXIT_INTERNAL, f"{reason} (a runner bug: please report it with the traceback above)")
    finally:
        signal.signal(signal.SIGTERM, previous)
        if overlay is not None:
            overlay.release()
        if code is not None:
            code.cleanup()
    if state is not None:
        _finish(state)
    if ending.failed:
        log.error("%s", ending.line)
    else:
        log.info("%s", ending.line)
    log.detach()
    return ending.exit_code


def _run(options: Options, env: dict[str, str], state: JobState) -> tuple[CodeFolder, Overlay | None]:
    contract, summary, durations = state.contract, state.summary, state.durations
    log.info(
        "osparc runner %s, Python %s (%s); inputs: %s layout in %s; record: %s",
        __version__,
        sys.version.split()[0],
        sys.prefix,
        contract.layout,
        contract.input_folder,
        contract.log_folder if state.recorded else "the log stream only",
    )
    timeout = _timeout(options.timeout, env.get("RUNNER_TIMEOUT"))
    resources = Resources.from_environ(env)
    summary["resources"] = resources.summary()
    child_env = child_environment(env, contract, RUNNER_ROOT)
    resources.apply(child_env)
    with log.heartbeat("preparing the code"):
        source = contract.code_source()
        code = prepare_code(source, env.get("RUNNER_WORK_DIR"), unpack_zips=source != contract.input_folder)
    overlay: Overlay | None = None
    try:
        script, how = find_entrypoint(code.path, options.entrypoint or env.get("RUNNER_ENTRYPOINT"))
        relative = script.relative_to(code.path).as_posix() if script.is_relative_to(code.path) else str(script)
        summary["script"] = relative
        summary["code_folder"] = str(code.path)
        requirements = find_requirements(code.path)
        requirements_name = requirements.relative_to(code.path).as_posix() if requirements else None
        summary["requirements"] = requirements_name
        python = Path(sys.executable)
        if requirements is not None:
            overlay_started = time.monotonic()
            with log.heartbeat("building the overlay for " + str(requirements_name)):
                overlay = _overlay(requirements, code.path, env, options.policy, summary)
            durations["overlay"] = time.monotonic() - overlay_started
            if overlay is not None:
                _say_overlay(overlay)
                python = overlay.python
                if os.path.isdir(os.path.join(sys.prefix, "conda-meta")):
                    # The overlay's sys.prefix is its venv: packages that find their data through
                    # the conda prefix (share/, etc/) must still find the base's.
                    child_env.setdefault("CONDA_PREFIX", sys.prefix)
                child_env["VIRTUAL_ENV"] = str(overlay.venv)
                child_env["PATH"] = os.pathsep.join([str(overlay.venv / "bin"), child_env.get("PATH", os.defpath)])
        supervisor = sys.modules.get("runner.channel")
        if supervisor is not None:
            supervisor.close()  # the script must find no way to root's supervisor (only in the image)
        summary["python"] = str(python)
        durations["setup"] = time.monotonic() - state.started
        resources.check_gpu(env)
        log.info(
            "running %s (%s) with %s", relative, how, "the overlay" if overlay is not None else "the base environment"
        )
        outcome = execute(
            [str(python), str(script), *options.args],
            cwd=code.path,
            env=child_env,
            log_file=contract.log_folder / RUN_LOG if state.recorded else None,
            timeout=timeout,
            kill_grace=_float(env.get("RUNNER_KILL_GRACE"), 10.0),
        )
        durations["script"] = outcome.seconds
        summary["returncode"] = outcome.returncode
        summary["timed_out"] = outcome.timed_out
        summary["signals"] = list(outcome.signals)
        failed, line = script_ending(relative, outcome, requirements_name, resources.memory_bytes, timeout)
        exit_code = EXIT_TIMEOUT if outcome.timed_out else outcome.exit_code
        if failed:
            summary["error"] = line
            state.ending.fail(exit_code, line)
        else:
            state.ending.line = line
        return code, overlay
    except BaseException:
        if overlay is not None:
            overlay.release()
        code.cleanup()
        raise


def _overlay(
    requirements: Path, folder: Path, env: dict[str, str], policy_option: str | None, summary: dict[str, object]
) -> Overlay | None:
    # Imported here: a job without requirements.txt never pays for them.
    from runner.overlay import policy_from, provide
    from runner.requirements import read_requirements

    policy = policy_from(env, policy_option)
    parsed = read_requirements(requirements, env, display_root=folder)
    for note in parsed.ignored:
        log.warning("%s", note)
    if parsed.is_empty:
        log.info("%s lists no packages: running on the base environment", summary["requirements"])
        return None
    name = str(summary["requirements"])
    channel = sys.modules.get("runner.channel")  # imported by root's supervisor, in the image only
    if channel is not None and channel.supervisor is not None:
        # In the image: root's supervisor makes the overlay from a copy of what this file names (runner/supervisor.py).
        return channel.supervisor.request_overlay(parsed, folder, policy, name, summary)
    return provide(parsed, env, policy, summary, name)


def _say_overlay(overlay: Overlay) -> None:
    """The resolved overlay in the log stream: in oSPARC the user sees no run.json, only the log."""
    packages = ", ".join(f"{p.get('name')} {p.get('version')}" for p in overlay.packages) or "no packages"
    how = "reused" if overlay.reused else f"built in {overlay.seconds:.1f} s"
    shadowed = f"; shadowing the base's {', '.join(overlay.shadowed)}" if overlay.shadowed else ""
    log.info("overlay %s (%s): %s%s", overlay.key, how, packages, shadowed)


def _timeout(option: float | None, text: str | None) -> float | None:
    if option is not None:
        value: float | None = option
    elif text:
        try:
            value = float(text)
        except ValueError:
            raise BadInput(f"RUNNER_TIMEOUT={text!r} is not a number of seconds", "e.g. RUNNER_TIMEOUT=3600") from None
    else:
        value = None
    if value is not None and value <= 0:
        raise BadInput(f"timeout {value:g} must be a positive number of seconds", "e.g. RUNNER_TIMEOUT=3600")
    return value


def _float(text: str | None, default: float) -> float:
    try:
        return float(text) if text else default
    except ValueError:
        return default


def _finish(state: JobState) -> None:
    """Zip every output folder and write the record; a failure here fails a run that succeeded."""
    contract, summary, durations, ending = state.contract, state.summary, state.durations, state.ending
    zipping = time.monotonic()
    outputs: list[dict[str, object]] = []
    said, failed = [], []
    with log.heartbeat("zipping the outputs"):
        for folder in contract.outputs:
            archive = folder.with_name(output_archive(folder.name))
            try:
                files, size = zip_folder(folder, archive)
            except OSError as error:
                failed.append(
                    f"{archive.name}: {error.strerror or error}" + (f" ({error.filename})" if error.filename else "")
                )
                continue
            outputs.append({"name": folder.name, "zip": archive.name, "files": files, "bytes": size})
            said.append(f"{archive.name} ({_files(files, size)})")
    if said:
        log.info("outputs: %s", ", ".join(said))
    if failed:
        reason = f"cannot zip the outputs: {'; '.join(failed)}"
        _late_failure(state, OutputError(reason, "check the space and permissions of OUTPUT_FOLDER"))
    durations["outputs"] = time.monotonic() - zipping
    durations["total"] = time.monotonic() - state.started
    lock_text = summary.pop("overlay_lock", None)
    if not state.recorded:
        return
    summary.update(
        {
            "exit_code": ending.exit_code,
            "status": _status(ending, summary),
            "outputs": outputs,
            "durations": {name: round(seconds, 3) for name, seconds in durations.items()},
            "finished_at": _now(),
        }
    )
    try:
        if isinstance(lock_text, str) and lock_text:
            (contract.log_folder / LOCK).write_text(lock_text, encoding="utf-8")
        (contract.log_folder / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    except OSError as error:
        _late_failure(state, OutputError(f"cannot write the run record to {contract.log_folder}: {error}"))


def _late_failure(state: JobState, failure: RunnerError) -> None:
    """A failure after the script: it becomes the job's reason only if nothing failed before."""
    if state.ending.failed:
        log.warning("%s", failure.one_line())
        return
    state.summary["error"] = failure.one_line()
    state.ending.fail(failure.exit_code, failure.one_line())


def _files(count: int, size: int) -> str:
    return "empty" if count == 0 else f"{count} file{'' if count == 1 else 's'}, {human_bytes(size)}"


def _status(ending: Ending, summary: dict[str, object]) -> str:
    if "returncode" not in summary:
        return "setup-failed"
    if summary.get("timed_out"):
        return "timed-out"
    return "failed" if ending.failed else "succeeded"


def _print_traceback() -> None:
    """Our own traceback, each line marked as the runner's: a code line like `    0.5 * x` must not read as progress."""
    import traceback

    log.emit(INFO, "%s", (traceback.format_exc().rstrip(),), always=True)
