"""Root's part of a job in the image: start the job as the job user, make its overlay, never run its code.

The entrypoint hands the image's command over as root, with `RUNNER_JOB_USER` set to the
user it made match the mounts' owner (common/entrypoint_lib.sh). `python -m runner` then
comes here (runner/__main__.py):

1. Root settles: working folder `/`, nothing on `sys.path` that is not root's (the job
   user's home was the working folder, and `-m` put it first), no user site.
2. It forks the **job process**, which becomes the job user for good (runner/identities.py)
   and runs the job as a local run would (runner/job.py), with one difference: it asks root
   for its overlay over a socket (runner/channel.py). Root never opens the job's files: a
   symbolic link among them can never make root read or write what the job user could not.
3. Root answers at most one request. It unpacks the job's files into a folder of its own,
   reads requirements.txt from there and computes the overlay's key itself, reuses a
   sealed overlay after checking its seal, or has a builder identity build one
   (runner/staging.py). It holds the overlay's use lock until the job ends, and sends the
   job process every log line it writes on the way.
4. It forwards SIGTERM and SIGINT to the job process (a build in progress is stopped and
   removed), waits for it, and exits with its status.

`python -m runner cache list|prune` (an operator's command) runs as root directly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys

from runner.errors import EXIT_INTERNAL, OverlayError, RunnerError
from runner.identities import JOB_VARIABLE, Identities, Identity, IdentityError, identity
from runner.logs import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

    from runner.channel import Frames, Request
    from runner.overlay import Overlay

SEPARATE_UIDS_FIX = (
    "the image keeps UIDs {build} and {source} for building overlays: give the job's folders another owner"
)


class Interrupted(Exception):
    """SIGTERM or SIGINT while the supervisor works on a request."""


class _State:
    job = 0  # the job process's PID, once forked
    interruptible = False


_state = _State()


def main(argv: Sequence[str]) -> int:
    environ = dict(os.environ)
    _settle()
    log.setup(environ.get("RUNNER_LOG_LEVEL"))
    if list(argv[:1]) == ["cache"]:
        from runner.cli import main as command

        return command(argv)  # an operator's command, on root's cache
    try:
        job = identity(environ[JOB_VARIABLE])
    except IdentityError as error:
        log.error("%s (the entrypoint names the job's user in %s)", error, JOB_VARIABLE)
        return EXIT_INTERNAL
    if job.uid == 0:
        log.error("the job's user %s is root (the entrypoint names the job's user in %s)", job, JOB_VARIABLE)
        return EXIT_INTERNAL
    job_env = _job_environment(job, environ)
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the job process; what it does is checked through the job's outputs
        ours.close()
        _job_process(job, job_env, theirs, argv)
    theirs.close()
    _state.job = pid
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, _forward)
    overlay = _serve(ours, job, environ, job_env)
    ours.close()
    status = _wait(pid)
    if overlay is not None:
        overlay.release()
    return status


def _job_environment(job: Identity, environ: dict[str, str]) -> dict[str, str]:
    """The job user's environment: without a UV_CACHE_DIR in root's cache (uv's shared one is the builder's).

    The job's own script may run uv: with no UV_CACHE_DIR it gets one in the job user's home.
    """
    env = job.environment(environ)
    uv_cache = env.get("UV_CACHE_DIR")
    if uv_cache:
        from runner.cache import default_cache_root

        cache = os.path.abspath(default_cache_root(env))
        if os.path.commonpath([cache, os.path.abspath(uv_cache)]) == cache:
            del env["UV_CACHE_DIR"]
    return env


def _settle() -> None:
    """No file of the job's user may ever be imported or read as root's by accident."""
    import site

    try:
        here = os.getcwd()
    except OSError:
        here = ""
    os.chdir("/")
    os.umask(0o022)
    site.ENABLE_USER_SITE = False
    user_site = site.getusersitepackages()
    sys.path[:] = [entry for entry in sys.path if entry and entry not in (here, user_site)]


def _job_process(job: Identity, job_env: dict[str, str], connection: socket.socket, argv: Sequence[str]) -> None:
    code = EXIT_INTERNAL
    try:
        job.become()
        os.environ.clear()
        os.environ.update(job_env)
        with contextlib.suppress(OSError):
            os.chdir(job.home)
        from runner import channel
        from runner.cli import main as run

        channel.attach(connection)
        code = run(argv)
    except SystemExit as ended:  # argparse's --help, --version, usage errors
        code = ended.code if isinstance(ended.code, int) else (0 if ended.code is None else 2)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
    os._exit(code)


def _forward(number: int, _frame: FrameType | None) -> None:
    if _state.job:
        with contextlib.suppress(ProcessLookupError):
            os.kill(_state.job, number)
    if _state.interruptible:
        raise Interrupted(signal.Signals(number).name)


def _wait(pid: int) -> int:
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return EXIT_INTERNAL
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _serve(
    connection: socket.socket, job: Identity, environ: dict[str, str], job_env: dict[str, str]
) -> Overlay | None:
    """Answer the job process's one request, if it makes one; the overlay (its use lock held) or None."""
    from runner.channel import Frames, ProtocolError, forward_logs, next_request

    frames = Frames(connection)
    request: Request | None = None
    _state.interruptible = True
    try:
        request = next_request(frames)
        if request is None:
            return None  # no overlay needed: the job process closed the socket
        forward_logs(frames)
        summary, overlay = _provide(request, job, environ, job_env)
        request.answer(summary)
        return overlay
    except Exception as error:
        if not isinstance(error, (RunnerError, ProtocolError, Interrupted)):
            _log_traceback()
        _tell(request, error)
    finally:
        _state.interruptible = False
        log.forward = None
        _close(frames)
    return None


def _provide(
    request: Request, job: Identity, environ: dict[str, str], job_env: dict[str, str]
) -> tuple[dict[str, object], Overlay | None]:
    from runner import seal, staging
    from runner.cache import Cache, default_cache_root
    from runner.overlay import POLICIES, provide
    from runner.requirements import read_requirements

    if request.policy not in POLICIES:
        raise OverlayError(f"unknown overlay policy {request.policy!r}", f"use one of: {', '.join(POLICIES)}")
    try:
        identities = Identities.with_builders(job, environ)
    except IdentityError as error:
        raise OverlayError(
            f"cannot build overlays: {error}",
            "the image's builders come from common/Dockerfile; check RUNNER_BUILD_USER, RUNNER_SOURCE_USER",
        ) from None
    try:
        identities.check_apart()
    except IdentityError as error:
        raise OverlayError(
            str(error), SEPARATE_UIDS_FIX.format(build=identities.build.uid, source=identities.source.uid)
        ) from None
    cache = Cache(default_cache_root(job_env), owner=0)
    try:
        staging.prepare(cache, identities.build)
        held = cache.new_request()
    except OSError as error:
        raise OverlayError(
            f"overlay cache {cache.root}: {error.strerror or error}", "mount a folder root may own at RUNNER_CACHE_DIR"
        ) from None
    folder = held.path
    try:
        request.unpack(folder)
        parsed = read_requirements(
            folder / request.requirements.lstrip("/"),
            job_env,
            display_root=folder / request.folder.lstrip("/"),
            root=folder,
            settings_owner=0,
        )
        summary: dict[str, object] = {}
        if parsed.is_empty:
            return summary, None
        overlay = provide(
            parsed, job_env, request.policy, summary, request.name, cache=cache,
            build=staging.Builder(identities, folder),
        )  # fmt: skip
        return summary, overlay
    finally:
        seal.remove(folder)
        held.release()


def _tell(request: Request | None, error: Exception) -> None:
    if request is None:
        return
    with contextlib.suppress(OSError):  # the job process is gone
        request.fail(error)


def _close(frames: Frames) -> None:
    with contextlib.suppress(OSError):
        frames.close()


def _log_traceback() -> None:
    import traceback

    log.error("%s", traceback.format_exc().rstrip())
