"""One job, start to end: contract → code → script → overlay → execution → zipped outputs → summary.

Every setup failure ends the job with its one-line reason and a non-zero exit code
(the public runner logs and swallows them, exiting 0). The outputs are zipped and the
summary written whatever happened, so a failed job still says why in its logs.
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
from runner.contract import Contract, child_environment
from runner.discovery import CodeFolder, find_entrypoint, find_requirements, prepare_code
from runner.errors import EXIT_INTERNAL, EXIT_TIMEOUT, BadInput, OutputError, OverlayError, RunnerError
from runner.execute import execute
from runner.logs import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import FrameType

    from runner.overlay import Overlay

RUNNER_ROOT = Path(__file__).resolve().parent.parent
SUMMARY = "run.json"
RUN_LOG = "run.log"


class Options:
    """What the command line may set on top of the environment."""

    def __init__(
        self,
        entrypoint: str | None = None,
        timeout: float | None = None,
        policy: str | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.entrypoint = entrypoint
        self.timeout = timeout
        self.policy = policy
        self.args = list(args or [])


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
    durations: dict[str, float] = {}
    contract: Contract | None = None
    code: CodeFolder | None = None
    overlay: Overlay | None = None
    exit_code = 0
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        contract = Contract.from_environ(env)
        contract.prepare_outputs()
        log.attach(contract.logs / RUN_LOG)
        exit_code, code, overlay = _run(options, env, contract, summary, durations, started)
    except RunnerError as error:
        exit_code = error.exit_code
        summary["error"] = error.one_line()
        log.error("%s", error.one_line())
    except (KeyboardInterrupt, Terminated) as error:
        exit_code = 143 if isinstance(error, Terminated) else 130
        summary["error"] = "interrupted before the script ran"
        log.error("interrupted (%s) before the script ran", error or "SIGINT")
    except Exception as error:
        # A bug of ours must still end as a failed job with a reason and a summary, never as exit 0.
        import traceback

        traceback.print_exc()
        exit_code = EXIT_INTERNAL
        summary["error"] = f"internal error: {type(error).__name__}: {error}"
        log.error(
            "internal error: %s: %s (a runner bug: please report it with the traceback above)",
            type(error).__name__,
            error,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
        if overlay is not None:
            overlay.release()
        if code is not None:
            code.cleanup()
    if contract is not None and contract.logs.is_dir():
        exit_code = _finish(contract, summary, durations, started, exit_code)
    log.detach()
    return exit_code


def _run(
    options: Options,
    env: dict[str, str],
    contract: Contract,
    summary: dict[str, object],
    durations: dict[str, float],
    started: float,
) -> tuple[int, CodeFolder, Overlay | None]:
    timeout = _timeout(options.timeout, env.get("RUNNER_TIMEOUT"))
    code = prepare_code(contract.code_source(), env.get("RUNNER_WORK_DIR"))
    overlay: Overlay | None = None
    try:
        script, how = find_entrypoint(code.path, options.entrypoint or env.get("RUNNER_ENTRYPOINT"))
        relative = script.relative_to(code.path).as_posix() if script.is_relative_to(code.path) else str(script)
        summary["script"] = relative
        summary["code_folder"] = str(code.path)
        requirements = find_requirements(code.path)
        summary["requirements"] = requirements.relative_to(code.path).as_posix() if requirements else None
        python = Path(sys.executable)
        child_env = child_environment(env, contract, RUNNER_ROOT)
        if requirements is not None:
            overlay_started = time.monotonic()
            overlay = _overlay(requirements, code.path, env, options.policy, summary)
            durations["overlay"] = time.monotonic() - overlay_started
            if overlay is not None:
                python = overlay.python
                if os.path.isdir(os.path.join(sys.prefix, "conda-meta")):
                    # The overlay's sys.prefix is its venv: packages that find their data through
                    # the conda prefix (share/, etc/) must still find the base's.
                    child_env.setdefault("CONDA_PREFIX", sys.prefix)
                child_env["VIRTUAL_ENV"] = str(overlay.venv)
                child_env["PATH"] = os.pathsep.join([str(overlay.venv / "bin"), child_env.get("PATH", os.defpath)])
        summary["python"] = str(python)
        durations["setup"] = time.monotonic() - started
        log.info(
            "running %s (%s) with %s", relative, how, "the overlay" if overlay is not None else "the base environment"
        )
        outcome = execute(
            [str(python), str(script), *options.args],
            cwd=code.path,
            env=child_env,
            log_file=contract.logs / RUN_LOG,
            timeout=timeout,
            kill_grace=_float(env.get("RUNNER_KILL_GRACE"), 10.0),
        )
        durations["script"] = outcome.seconds
        summary["returncode"] = outcome.returncode
        summary["timed_out"] = outcome.timed_out
        summary["signals"] = list(outcome.signals)
        exit_code = EXIT_TIMEOUT if outcome.timed_out else outcome.exit_code
        if exit_code != 0:
            log.info("the script exited with status %d", exit_code)
        return exit_code, code, overlay
    except BaseException:
        if overlay is not None:
            overlay.release()
        code.cleanup()
        raise


def _overlay(
    requirements: Path, folder: Path, env: dict[str, str], policy_option: str | None, summary: dict[str, object]
) -> Overlay | None:
    # Imported here: a job without requirements.txt never pays for them.
    from runner.base import BaseEnvironment
    from runner.cache import Cache, default_cache_root
    from runner.overlay import ensure_overlay, plan, policy_from
    from runner.requirements import read_requirements
    from runner.uv import Uv, find_uv

    policy = policy_from(env, policy_option)
    parsed = read_requirements(requirements, env, display_root=folder)
    for note in parsed.ignored:
        log.warning("%s", note)
    if parsed.is_empty:
        log.info("%s lists no packages: running on the base environment", summary["requirements"])
        return None
    base = BaseEnvironment.current(env)
    the_plan = plan(parsed, base, policy)
    summary["policy"] = policy
    if not the_plan.needed:
        log.info("the base environment already satisfies %s: no overlay needed", summary["requirements"])
        summary["overlay"] = {"key": None, "satisfied_by_base": the_plan.satisfied}
        return None
    executable = find_uv(env)
    cache = Cache(default_cache_root(env))
    try:
        overlay = ensure_overlay(the_plan, base, cache, lambda transcript: Uv(executable, env, transcript))
    except OSError as error:
        raise OverlayError(
            f"overlay cache {cache.root}: {error.strerror or error}", "set RUNNER_CACHE_DIR to a writable folder"
        ) from None
    summary["overlay"] = overlay.summary()
    summary["overlay_lock"] = overlay.lock_text
    return overlay


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


def _finish(
    contract: Contract, summary: dict[str, object], durations: dict[str, float], started: float, exit_code: int
) -> int:
    """Zip every output folder and write the run summary; a failure here fails a run that succeeded."""
    zipping = time.monotonic()
    outputs = []
    try:
        for folder in contract.outputs:
            files, size = zip_folder(folder, folder.with_suffix(".zip"))
            outputs.append({"name": folder.name, "zip": folder.with_suffix(".zip").name, "files": files, "bytes": size})
    except OSError as error:
        failure = OutputError(f"cannot zip the outputs: {error}", "check the space and permissions of OUTPUT_FOLDER")
        log.error("%s", failure.one_line())
        summary.setdefault("error", failure.one_line())
        if exit_code == 0:
            exit_code = failure.exit_code
    durations["outputs"] = time.monotonic() - zipping
    durations["total"] = time.monotonic() - started
    lock_text = summary.pop("overlay_lock", None)
    if isinstance(lock_text, str) and lock_text:
        (contract.logs / "requirements.lock.txt").write_text(lock_text, encoding="utf-8")
    summary.update(
        {
            "exit_code": exit_code,
            "status": _status(exit_code, summary),
            "outputs": outputs,
            "durations": {name: round(seconds, 3) for name, seconds in durations.items()},
            "finished_at": _now(),
        }
    )
    try:
        (contract.logs / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    except OSError as error:
        log.error("cannot write %s: %s", contract.logs / SUMMARY, error)
        if exit_code == 0:
            exit_code = OutputError.exit_code
    return exit_code


def _status(exit_code: int, summary: dict[str, object]) -> str:
    if "returncode" not in summary:
        return "setup-failed"
    if summary.get("timed_out"):
        return "timed-out"
    return "succeeded" if exit_code == 0 else "failed"
