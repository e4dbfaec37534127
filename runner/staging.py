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
import tempfile
import time
from pathlib import Path

from runner import records, seal
from runner.cache import DISCARDED
from runner.channel import error_of, kind_of
from runner.errors import OverlayError, RunnerError
from runner.identities import Identities, Identity, kill_processes_of
from runner.logs import log
from runner.nofollow import read_text
from runner.overlay import Installed, Overlay, Plan, built, install
from runner.publish import publish

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from runner.base import BaseEnvironment
    from runner.cache import Cache
    from runner.uv import Uv

UV_CACHE = "uv"
# Root's folders: the cache (listed by anyone), `overlays/` and `building/` (crossed, never listed: an overlay's
# key hashes what it was built from, including the files a job shipped, so a job finds only overlays it could
# have asked for), `locks/` (root's alone). uv's shared cache: the builder's alone.
CACHE_MODE, OVERLAYS_MODE, LOCKS_MODE, BUILDING_MODE, UV_CACHE_MODE = 0o755, 0o711, 0o700, 0o711, 0o700
# Root's record that uv's shared cache was filled only by supervisors that never write into a builder's
# folders (runner/publish.py); a cache without it may hold what an older image's root was made to write there.
UV_GENERATION, UV_TRUSTED = "uv.generation", "2"


def prepare(cache: Cache, builder: Identity) -> None:
    """root's cache: its folder and `overlays/`, `locks/`, `building/` root's; `uv/` the builder's (0700)."""
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
        (cache.overlays, (0, 0), OVERLAYS_MODE),
        (cache.locks, (0, 0), LOCKS_MODE),
        (cache.building, (0, 0), BUILDING_MODE),
        (cache.root / UV_CACHE, (builder.uid, builder.gid), UV_CACHE_MODE),
    ):
        _own_folder(cache.root, folder, owner, mode)
    _trust_uv_cache(cache, builder)


def _trust_uv_cache(cache: Cache, builder: Identity) -> None:
    """Empty uv's shared cache once if it was filled before this supervisor's rules (see UV_GENERATION)."""
    marker = cache.root / UV_GENERATION
    try:
        if read_text(marker).strip() == UV_TRUSTED:
            return
    except (OSError, UnicodeDecodeError):
        pass
    if os.listdir(cache.root / UV_CACHE):
        log.warning(
            "uv's shared cache %s was filled by an older image, whose builds could make root write into it: emptied",
            cache.root / UV_CACHE,
        )
        empty_uv_cache(cache, builder)
    fd, temporary = tempfile.mkstemp(dir=cache.root, prefix=f".{UV_GENERATION}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(UV_TRUSTED + "\n")
    os.chmod(temporary, 0o644)
    os.replace(temporary, marker)


def _own_folder(root: Path, folder: Path, owner: tuple[int, int], mode: int) -> None:
    try:
        status: os.stat_result | None = os.lstat(folder)
    except FileNotFoundError:
        status = None
    if status is not None and stat.S_ISDIR(status.st_mode) and status.st_uid == owner[0]:
        if stat.S_IMODE(status.st_mode) != mode:
            os.chmod(folder, mode)  # its owner's, with an older image's mode
        return
    if status is not None:
        log.warning(
            "%s was not made by the image's supervisor (owned by %d:%d, mode %o): emptied, it cannot be trusted",
            folder, status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode),
        )  # fmt: skip
        discarded = root / f"{DISCARDED}{secrets.token_hex(8)}"
        with contextlib.suppress(FileNotFoundError):  # another supervisor took it away first
            os.rename(folder, discarded)
        seal.remove(discarded)
    try:
        os.mkdir(folder, mode)
    except FileExistsError:
        return  # made meanwhile by another supervisor, as root
    os.lchown(folder, *owner)
    os.chmod(folder, mode)


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
        log.info(
            "building overlay %s as %s%s", key, who,
            ", which may build packages from source, with a private uv cache" if from_source else "",
        )  # fmt: skip
        try:
            return self._build(who, from_source, the_plan, base, cache, key, make_uv, started)
        except records.Mismatch as mismatch:
            if from_source:
                raise  # a private, fresh uv cache: the build itself installed what its RECORD does not list
            # Only scu-build writes uv's shared cache, and it runs nothing it installs: a cache changed all the same
            # (e.g. by an older image, whose root could be made to write through a link) is thrown away.
            log.warning(
                "uv's shared cache gave files that do not match their RECORD (%s): emptying it and building again",
                mismatch.problem,
            )
            empty_uv_cache(cache, self.identities.build)
            return self._build(who, from_source, the_plan, base, cache, key, make_uv, started)

    def _build(
        self,
        who: Identity,
        from_source: bool,
        the_plan: Plan,
        base: BaseEnvironment,
        cache: Cache,
        key: str,
        make_uv: Callable[[Path | None], Uv],
        started: float,
    ) -> Overlay:
        stage = cache.building / f"{key}.{secrets.token_hex(16)}"
        work = stage.with_name(stage.name + ".work")
        try:
            try:
                for folder in (stage, work, work / "home", work / "tmp"):
                    os.mkdir(folder, 0o700)
                    os.lchown(folder, who.uid, who.gid)
                if self.request is not None:
                    _chown_tree(self.request, who.uid, who.gid)
                uv_cache = work / "uv-cache" if from_source else cache.root / UV_CACHE
                installed = _BuilderRun(who, the_plan, base, stage, work, make_uv, uv_cache).install()
            finally:
                # Whatever a build left running, of either builder: root reads the staging folder only after.
                for builder in (self.identities.build, self.identities.source):
                    kill_processes_of(builder)
            seal.remove(work)
            seconds = time.monotonic() - started
            folder = cache.folder(key)
            seal.remove(folder)
            publish(stage, folder, key, the_plan, base, installed, seconds)  # root's own copy, never the stage
        finally:
            seal.remove(work)
            seal.remove(stage)
        return built(key, folder, the_plan, installed, seconds)


def empty_uv_cache(cache: Cache, builder: Identity) -> None:
    """Throw uv's shared cache away and make a new, empty one for the builder."""
    discarded = cache.root / f"{DISCARDED}{secrets.token_hex(8)}"
    with contextlib.suppress(FileNotFoundError):
        os.rename(cache.root / UV_CACHE, discarded)
    seal.remove(discarded)
    _own_folder(cache.root, cache.root / UV_CACHE, (builder.uid, builder.gid), UV_CACHE_MODE)


def _require_roots(executable: Path) -> None:
    """The uv a builder runs must be root's: a uv a job user could replace would write uv's shared cache."""
    path = os.path.realpath(executable)
    status = os.stat(path)
    if status.st_uid != 0 or stat.S_IMODE(status.st_mode) & 0o022:
        raise OverlayError(
            f"uv at {path} belongs to UID {status.st_uid} (mode {stat.S_IMODE(status.st_mode):o}); "
            "the image builds overlays only with root's uv",
            "use the uv of the flavor's environment (next to its python; or name it with RUNNER_UV)",
        )


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    """Give root's copy of the job's files to the builder (it is root's until then: nothing else wrote in it)."""
    for folder, dirs, files in os.walk(top):
        for name in (*dirs, *files):
            os.lchown(os.path.join(folder, name), uid, gid)
    os.lchown(top, uid, gid)


class _BuilderRun:
    """One overlay install as `who`: a forked process that becomes `who` for good and runs `overlay.install`.

    Its answer (what it installed, or the error) comes back over a pipe; nothing of the
    builder's runs in root's process.
    """

    __slots__ = ("base", "make_uv", "plan", "stage", "uv_cache", "who", "work")

    def __init__(
        self,
        who: Identity,
        the_plan: Plan,
        base: BaseEnvironment,
        stage: Path,
        work: Path,
        make_uv: Callable[[Path | None], Uv],
        uv_cache: Path,
    ) -> None:
        self.who = who
        self.plan = the_plan
        self.base = base
        self.stage = stage
        self.work = work
        self.make_uv = make_uv
        self.uv_cache = uv_cache

    def install(self) -> Installed:
        who = self.who
        reading, writing = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the builder process; its work is checked by the tests through the overlay
            os.close(reading)
            self._builder_process(writing)
        os.close(writing)
        try:
            data = _answer_of(reading, pid)
        except BaseException:
            kill_processes_of(who)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            raise
        finally:
            os.close(reading)
        try:
            answer = json.loads(data)
        except ValueError:
            raise OverlayError(f"the overlay build as {who} ended without an answer", "see the lines above") from None
        if "error" in answer:
            if answer["error"] in ("OverlayError", "BadInput"):
                raise error_of({**answer, "type": answer["error"]})
            raise RuntimeError(f"the overlay build as {who} failed: {answer['reason']}")
        return Installed(answer["packages"], answer["shadowed"], answer["lock_text"])

    def _builder_process(self, writing: int) -> None:  # pragma: no cover - runs in the forked child, ends with os._exit
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, signal.SIG_DFL)  # the supervisor's handlers forward to the job: not ours to do
        answer: dict[str, object]
        try:
            self.who.become()
            os.umask(0o077)  # nothing of a build is for anyone else: root copies what it keeps, with its own modes
            os.chdir(self.stage)
            uv = self.make_uv(self.stage / "uv.log")
            env = self.who.environment(uv.environ, home=str(self.work / "home"))
            env.update({"TMPDIR": str(self.work / "tmp"), "UV_CACHE_DIR": str(self.uv_cache)})
            uv.environ = env
            installed = install(self.plan, self.base, self.stage, uv)
            answer = {"packages": installed.packages, "shadowed": installed.shadowed, "lock_text": installed.lock_text}
        except RunnerError as error:
            answer = {"error": kind_of(error), "reason": error.reason, "fix": error.fix, "details": error.details}
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


def _answer_of(reading: int, pid: int) -> bytes:
    """What the builder process wrote on the pipe before it ended (it is reaped here).

    Not "until the pipe's end": a process the build left behind (killed only after this) could
    hold the pipe open to keep root waiting while it changes the staging folder.
    """
    import select

    chunks: list[bytes] = []
    os.set_blocking(reading, False)
    poll = select.poll()
    poll.register(reading, select.POLLIN)
    while True:
        ended = os.waitpid(pid, os.WNOHANG)[0] == pid  # before reading: all it wrote is in the pipe by then
        while True:
            try:
                chunk = os.read(reading, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:  # every writer closed the pipe: the builder is ending
                if not ended:
                    os.waitpid(pid, 0)
                return b"".join(chunks)
            chunks.append(chunk)
        if ended:
            return b"".join(chunks)
        poll.poll(200)
