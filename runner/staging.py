"""The image's overlay builds: root prepares a staging folder, a builder identity installs, root seals and publishes.

Root's supervisor never runs uv, a build or user code (runner/supervisor.py). To build an
overlay it:
1. makes `building/<key>.<random>` (the staging folder) and `<...>.work` (HOME, TMPDIR and,
   for source builds, a private uv cache) inside `building/`, which is root's and mode 0711:
   no listing, so no process of another container with the same UID can find them;
2. gives both, and its copy of the job's files, to the builder: `scu-build` for wheels only
   (it owns uv's shared cache, `RUNNER_CACHE_DIR/uv`, mode 0700), `scu-src` when the job lets
   packages build from source (their build code is arbitrary code: it gets a throwaway uv
   cache, and can reach nothing shared);
3. forks a process that becomes the builder for good and runs `overlay.install` there (uv,
   the lock, the checks against the base), sending back what it installed;
4. kills every process left with the builder's UID (a build may leave one behind, holding a
   file open for writing), takes the tree back for root (a hard link is refused), records
   every file's sha256 and the marker, takes every write permission away, and renames the
   folder to `overlays/<key>`: one atomic rename on one file system, so an overlay there is
   complete and sealed from the moment it exists.

`prepare` makes the cache's own folders root's (and uv's cache the builder's) before each
request; anything there it did not make (an older image's cache, owned by the job user) is
emptied, since nothing a job user could have written may be trusted.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import stat
import time
from pathlib import Path

from runner import seal
from runner.channel import error_of
from runner.errors import OverlayError, RunnerError
from runner.identities import Identities, Identity, kill_processes_of
from runner.logs import log
from runner.overlay import Installed, Overlay, Plan, built, install, seal_overlay

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from runner.base import BaseEnvironment
    from runner.cache import Cache
    from runner.uv import Uv

UV_CACHE = "uv"
CACHE_MODE, BUILDING_MODE, UV_CACHE_MODE = 0o755, 0o711, 0o700


def prepare(cache: Cache, builder: Identity) -> None:
    """root's cache: its folder, `overlays/`, `locks/` (0755), `building/` (0711) root's; `uv/` the builder's (0700)."""
    os.makedirs(cache.root, CACHE_MODE, exist_ok=True)
    status = os.stat(cache.root)
    if not stat.S_ISDIR(status.st_mode):
        raise OverlayError(f"overlay cache {cache.root} is not a folder", "point RUNNER_CACHE_DIR at a folder")
    if status.st_uid != 0 or stat.S_IMODE(status.st_mode) & 0o022:
        log.info("overlay cache %s: made root's (it was %d:%d, mode %o)", cache.root, status.st_uid, status.st_gid,
                 stat.S_IMODE(status.st_mode))  # fmt: skip
        os.chown(cache.root, 0, 0)
        os.chmod(cache.root, CACHE_MODE)
    for folder, owner, mode in (
        (cache.overlays, (0, 0), CACHE_MODE),
        (cache.locks, (0, 0), CACHE_MODE),
        (cache.building, (0, 0), BUILDING_MODE),
        (cache.root / UV_CACHE, (builder.uid, builder.gid), UV_CACHE_MODE),
    ):
        _own_folder(cache.root, folder, owner, mode)


def _own_folder(root: Path, folder: Path, owner: tuple[int, int], mode: int) -> None:
    try:
        status: os.stat_result | None = os.lstat(folder)
    except FileNotFoundError:
        status = None
    if status is not None and (
        not stat.S_ISDIR(status.st_mode) or status.st_uid != owner[0] or stat.S_IMODE(status.st_mode) != mode
    ):
        log.warning(
            "%s was not made by the image's supervisor (owned by %d:%d, mode %o): emptied, it cannot be trusted",
            folder, status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode),
        )  # fmt: skip
        discarded = root / f".discarded-{secrets.token_hex(8)}"
        with contextlib.suppress(FileNotFoundError):  # another supervisor took it away first
            os.rename(folder, discarded)
        seal.remove(discarded)
    try:
        os.mkdir(folder, mode)
    except FileExistsError:
        return  # made meanwhile by another supervisor, as root
    os.lchown(folder, *owner)
    os.chmod(folder, mode)


def request_folder(cache: Cache) -> Path:
    """Where the supervisor unpacks a job's files: `building/request.<random>`, root's."""
    folder = cache.building / f"request.{secrets.token_hex(16)}"
    os.mkdir(folder, 0o755)
    return folder


def builds_from_source(the_plan: Plan) -> bool:
    return bool(the_plan.requirements.sources.source_builds)


class Builder:
    """`overlay.Build` for the image: the overlay made by a builder identity in a staging folder, sealed by root."""

    def __init__(self, identities: Identities, request: Path | None) -> None:
        self.identities = identities
        self.request = request

    def __call__(
        self,
        the_plan: Plan,
        base: BaseEnvironment,
        cache: Cache,
        key: str,
        make_uv: Callable[[Path | None], Uv],
        started: float,
    ) -> Overlay:
        from_source = builds_from_source(the_plan)
        who = self.identities.source if from_source else self.identities.build
        _require_roots(make_uv(None).executable)
        cache.remove_leftovers(key)  # a killed container's staging folders for this key (we hold its build lock)
        token = secrets.token_hex(16)
        stage = cache.building / f"{key}.{token}"
        work = cache.building / f"{key}.{token}.work"
        log.info(
            "building overlay %s as %s%s", key, who,
            ", which may build packages from source, with a private uv cache" if from_source else "",
        )  # fmt: skip
        try:
            try:
                for folder, mode in ((stage, 0o755), (work, 0o700), (work / "home", 0o700), (work / "tmp", 0o700)):
                    os.mkdir(folder, mode)
                    os.lchown(folder, who.uid, who.gid)
                if self.request is not None:
                    _chown_tree(self.request, who.uid, who.gid)
                uv_cache = work / "uv-cache" if from_source else cache.root / UV_CACHE
                installed = _install_as(who, the_plan, base, stage, work, make_uv, uv_cache)
            finally:
                kill_processes_of(who)
            _chown_tree(stage, 0, 0, refuse_hard_links=True)
            seal.remove(work)
            seconds = time.monotonic() - started
            seal_overlay(stage, key, the_plan, base, installed, seconds)
            folder = cache.folder(key)
            if folder.exists() or folder.is_symlink():
                seal.remove(folder)
            os.rename(stage, folder)
        except BaseException:
            seal.remove(work)
            seal.remove(stage)
            raise
        return built(key, folder, the_plan, installed, seconds)


def _require_roots(executable: Path) -> None:
    """The uv a builder runs must be root's: a uv a job user could replace would write uv's shared cache."""
    path = os.path.realpath(executable)
    status = os.stat(path)
    if status.st_uid != 0 or stat.S_IMODE(status.st_mode) & 0o022:
        raise OverlayError(
            f"uv at {path} belongs to UID {status.st_uid} (mode {stat.S_IMODE(status.st_mode):o}); "
            "the image builds overlays only with root's uv",
            "use the uv of the flavor's environment (RUNNER_UV, PATH)",
        )


def _chown_tree(top: Path, uid: int, gid: int, refuse_hard_links: bool = False) -> None:
    """Give `top` and everything under it to uid:gid without following a link; no process of its owner runs."""
    for folder, dirs, files in os.walk(top):
        for name in (*dirs, *files):
            path = os.path.join(folder, name)
            status = os.lstat(path)
            if refuse_hard_links and stat.S_ISREG(status.st_mode) and status.st_nlink > 1:
                raise OverlayError(
                    f"the build left a hard link in the overlay ({os.path.relpath(path, top)})",
                    "overlays hold copies only; report the package that does this",
                )
            os.lchown(path, uid, gid)
    os.lchown(top, uid, gid)


def _install_as(
    who: Identity,
    the_plan: Plan,
    base: BaseEnvironment,
    stage: Path,
    work: Path,
    make_uv: Callable[[Path | None], Uv],
    uv_cache: Path,
) -> Installed:
    """`overlay.install` in a process that is `who` for good; its answer comes back over a pipe."""
    reading, writing = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the builder process; its work is checked by the tests through the overlay
        os.close(reading)
        _builder_process(writing, who, the_plan, base, stage, work, make_uv, uv_cache)
    os.close(writing)
    try:
        with os.fdopen(reading, "rb") as pipe:
            data = pipe.read()
    except BaseException:
        kill_processes_of(who)
        os.waitpid(pid, 0)
        raise
    os.waitpid(pid, 0)
    try:
        answer = json.loads(data)
    except ValueError:
        raise OverlayError(f"the overlay build as {who} ended without an answer", "see the lines above") from None
    if "error" in answer:
        if answer["error"] in ("OverlayError", "BadInput"):
            raise error_of({**answer, "type": answer["error"]})
        raise RuntimeError(f"the overlay build as {who} failed: {answer['reason']}")
    return Installed(answer["packages"], answer["shadowed"], answer["lock_text"])


def _builder_process(
    writing: int,
    who: Identity,
    the_plan: Plan,
    base: BaseEnvironment,
    stage: Path,
    work: Path,
    make_uv: Callable[[Path | None], Uv],
    uv_cache: Path,
) -> None:  # pragma: no cover - runs in the forked child, ends with os._exit
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, signal.SIG_DFL)  # the supervisor's handlers forward to the job: not ours to do
    answer: dict[str, object]
    try:
        who.become()
        os.umask(0o022)
        os.chdir(stage)
        uv = make_uv(stage / "uv.log")
        env = who.environment(uv.environ, home=str(work / "home"))
        env.update({"TMPDIR": str(work / "tmp"), "UV_CACHE_DIR": str(uv_cache)})
        uv.environ = env
        installed = install(the_plan, base, stage, uv)
        answer = {"packages": installed.packages, "shadowed": installed.shadowed, "lock_text": installed.lock_text}
    except RunnerError as error:
        answer = {"error": type(error).__name__, "reason": error.reason, "fix": error.fix, "details": error.details}
    except BaseException as error:
        import traceback

        answer = {"error": "internal", "reason": f"{type(error).__name__}: {error}\n{traceback.format_exc()}"}
    status = 0
    try:
        data = json.dumps(answer).encode()
        while data:
            data = data[os.write(writing, data) :]
    except BaseException:
        status = 1
    os._exit(status)
