"""The requirements overlay: a cached venv layered over the locked base, built with uv.

The overlay venv is created without `--system-site-packages`: for a base that is itself
a venv (as in tests and `cli run --python .venv/bin/python`), that flag would expose the
venv's *base interpreter's* site-packages, not the venv's. Instead a `.pth` file in the
overlay calls `site.addsitedir` on exactly the base's site folders (processing their own
`.pth` files too), after the overlay's own site-packages. The same works for a conda
prefix, where the base's site folder is the prefix's.

uv resolves with the base's distributions excluded (`--excludes`) and pinned (`-c`), so
nothing from the base is reinstalled; a requirement that the base cannot satisfy is
caught by the runner's own comparison before anything is installed (top level) or by
reading the installed overlay's metadata (transitive), and refused unless the policy is
`override`. Resolution (`uv pip compile --generate-hashes`) and installation (`uv pip
sync`) are separate steps so that the exact set, with hashes, is known before anything
is installed: the duplicate-CUDA guard looks at it, and the run summary records it.

Overlays are shared between jobs, so one job must not change what the next one runs:
uv copies files out of its cache (no shared inode) into a staging folder; the sealer copies
the venv from there into a folder of its own, checks every file against its distribution's
RECORD, byte-compiles and seals it (`publish.py`, `seal.py`: a sha256 of every file, no
write permission left) and renames it into the cache; every reuse checks the seal first, and
a changed overlay is discarded and built again. Packages from an index or a URL must be
wheels unless the job allows builds (`sources.py`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import stat
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from runner import cuda, seal
from runner.base import BaseEnvironment
from runner.cache import MARKER, Cache, FileLock
from runner.errors import BadInput, OverlayError
from runner.logs import log
from runner.nofollow import read_text
from runner.requirements import InvalidRequirement, Requirement, RequirementSet, canonical_name, parse_requirement
from runner.uv import Uv, summarize

# 3: the sealer's own copy of the built venv, checked against RECORD (runner/publish.py); 2: sealed where it was
# built (a source build could plant links there), so never trusted again.
FORMAT = 3
PROTECT = "protect"
OVERRIDE = "override"
POLICIES = (PROTECT, OVERRIDE)
UNSEALED = "an older runner made it"
SEAL_SKIP = frozenset({MARKER})  # the marker records the seal, so it cannot be part of it
MAX_SHADOW_ROUNDS = 3

CONFLICT_FIX = (
    "relax or remove that line so the locked version is accepted; "
    "or set RUNNER_OVERLAY_POLICY=override to let the overlay shadow the base, at your own risk"
)


RESOLVE_FIX = (
    "check the package names and versions, and where packages come from (the 'packages from:' line above: "
    "--index-url/--find-links lines, UV_INDEX_URL, UV_FIND_LINKS, UV_OFFLINE, PIP_INDEX_URL, pip.conf)"
)
SOURCE_BUILD_FIX = (
    "overlays install wheels only by default; to let this job build from source, add '--no-binary NAME' "
    "(that package) or '--only-binary :none:' (any package) to requirements.txt, or pin a version that has a wheel"
)


def needs_source_build(uv_output: str) -> bool:
    """Whether uv failed because a package has no wheel and building from source is disabled."""
    text = uv_output.lower()
    return "building from source is disabled" in text or "building source distributions is disabled" in text


def policy_from(environ: Mapping[str, str], given: str | None = None) -> str:
    policy = (given or environ.get("RUNNER_OVERLAY_POLICY") or PROTECT).strip().lower()
    if policy not in POLICIES:
        raise BadInput(f"unknown RUNNER_OVERLAY_POLICY {policy!r}", f"use one of: {', '.join(POLICIES)}")
    return policy


class Conflict:
    __slots__ = ("locked", "needed_by", "package", "requirement", "where")

    def __init__(self, requirement: str, package: str, locked: str, where: str = "", needed_by: str = "") -> None:
        self.requirement = requirement
        self.package = package
        self.locked = locked
        self.where = where
        self.needed_by = needed_by

    def describe(self) -> str:
        who = f"{self.where}: " if self.where else ""
        via = f" (needed by {self.needed_by})" if self.needed_by else ""
        return (
            f"{who}'{self.requirement}'{via} conflicts with the locked base: "
            f"{self.package} {self.locked} is installed by the flavor"
        )


class Plan:
    """What the overlay must add, decided from requirements.txt and the base before any uv call."""

    def __init__(self, requirements: RequirementSet, policy: str, key: str) -> None:
        self.requirements = requirements
        self.policy = policy
        self.key = key
        self.satisfied: dict[str, str] = {}  # base packages that requirements.txt names and the base satisfies
        self.conflicts: list[Conflict] = []
        self.needed = False
        self.compared = False  # False: an overlay for `key` was found, so the comparison with the base was skipped

    @property
    def shadowed(self) -> frozenset[str]:
        return frozenset(canonical_name(c.package) for c in self.conflicts) if self.policy == OVERRIDE else frozenset()

    def reading(self, requirements: RequirementSet) -> Plan:
        """This plan, for the same requirements read from a build's own copy of their files (runner/shipped.py)."""
        moved = copy.copy(self)
        moved.requirements = requirements
        return moved


class Overlay:
    """A complete, verified overlay, held in use (shared lock) until `release`."""

    def __init__(
        self,
        key: str,
        folder: Path,
        packages: list[dict[str, object]],
        shadowed: list[str],
        reused: bool,
        seconds: float,
        lock_text: str,
        sources: dict[str, object],
    ) -> None:
        self.key = key
        self.folder = folder
        self.venv = folder / "venv"
        self.python = self.venv / "bin" / "python"
        self.packages = packages
        self.shadowed = shadowed
        self.reused = reused
        self.seconds = seconds
        self.lock_text = lock_text
        self.sources = sources
        self.rebuilt_because: str | None = None  # what a reuse found changed in the sealed overlay
        self.use_lock: FileLock | None = None

    def release(self) -> None:
        if self.use_lock is not None:
            self.use_lock.release()

    @classmethod
    def from_summary(cls, summary: dict[str, object], lock_text: str) -> Overlay:
        """The overlay as the image's supervisor described it to the job process (which holds no lock: root does)."""
        packages, shadowed, sources = summary.get("packages"), summary.get("shadowed"), summary.get("sources")
        seconds = summary.get("seconds")
        overlay = cls(
            str(summary["key"]),
            Path(str(summary["path"])),
            packages if isinstance(packages, list) else [],
            [str(name) for name in shadowed] if isinstance(shadowed, list) else [],
            summary.get("reused") is True,
            float(seconds) if isinstance(seconds, (int, float)) else 0.0,
            lock_text,
            sources if isinstance(sources, dict) else {},
        )
        because = summary.get("rebuilt_because")
        overlay.rebuilt_because = because if isinstance(because, str) else None
        return overlay

    def summary(self) -> dict[str, object]:
        summary: dict[str, object] = {
            "key": self.key,
            "path": str(self.folder),
            "reused": self.reused,
            "seconds": round(self.seconds, 3),
            "shadowed": self.shadowed,
            "packages": self.packages,
            "sources": self.sources,
        }
        if self.rebuilt_because:
            summary["rebuilt_because"] = self.rebuilt_because
        return summary


def plan(requirements: RequirementSet, base: BaseEnvironment, policy: str) -> Plan:
    """What the overlay must hold: an overlay already built for these requirements, or a comparison with the base.

    A finished overlay for the key means the same requirements were compared with the same
    base (its fingerprint, conda packages and the policy are in the key) and passed: the
    comparison, which needs `packaging`, is skipped until something must be built.
    """
    key = overlay_key(requirements, base, policy)
    from runner.cache import Cache, default_cache_root

    if Cache(default_cache_root(requirements.environ)).marker(key).is_file():
        found = Plan(requirements, policy, key)
        found.needed = True
        return found
    return compare(Plan(requirements, policy, key), base)


def provide(
    requirements: RequirementSet,
    environ: Mapping[str, str],
    policy: str,
    summary: dict[str, object],
    display_name: str,
    cache: Cache | None = None,
    build: Build | None = None,
) -> Overlay | None:
    """The overlay a job's requirements need, or None when the base satisfies them; `summary` gets the record.

    The same steps locally (this process builds) and in the image's supervisor (a builder
    identity builds, `build`, in root's `cache`).
    """
    from runner.cache import default_cache_root
    from runner.uv import find_uv

    base = BaseEnvironment.current(dict(environ))
    the_plan = plan(requirements, base, policy)
    summary["policy"] = policy
    if not the_plan.needed:
        log.info("the base environment already satisfies %s: no overlay needed", display_name)
        summary["overlay"] = {"key": None, "satisfied_by_base": the_plan.satisfied}
        return None
    executable = find_uv(environ)
    cache = cache or Cache(default_cache_root(environ))
    try:
        overlay = ensure_overlay(the_plan, base, cache, lambda transcript: Uv(executable, environ, transcript), build)
    except OSError as error:
        raise OverlayError(
            f"overlay cache {cache.root}: {error.strerror or error}", "set RUNNER_CACHE_DIR to a writable folder"
        ) from None
    summary["overlay"] = overlay.summary()
    summary["overlay_lock"] = overlay.lock_text
    return overlay


def compare(result: Plan, base: BaseEnvironment) -> Plan:
    """Compare each top-level requirement with the base: satisfied, in conflict, or for the overlay."""
    requirements, policy = result.requirements, result.policy
    result.compared = True
    if requirements.direct:
        result.needed = True
    for requirement in requirements.requirements:
        if not requirement.applies():
            log.info("%s: '%s' does not apply here (marker), skipped", requirement.where, requirement)
            continue
        installed = base.distributions.get(requirement.key)
        if installed is None:
            result.needed = True
            continue
        satisfied = requirement.satisfied_by(installed.version)
        if satisfied is False or (satisfied is None and requirement.url is not None):
            result.conflicts.append(Conflict(str(requirement), installed.name, installed.version, requirement.where))
            continue
        result.satisfied[requirement.key] = installed.version
        if requirement.extras:
            log.warning(
                "%s: %s %s comes from the base; its extras [%s] are not added by the overlay",
                requirement.where, installed.name, installed.version, ",".join(requirement.extras),
            )  # fmt: skip
    if result.conflicts:
        if policy == PROTECT:
            raise OverlayError("; ".join(c.describe() for c in result.conflicts), CONFLICT_FIX)
        result.needed = True
        for conflict in result.conflicts:
            log.warning(
                "RUNNER_OVERLAY_POLICY=override: '%s' will shadow the base's %s %s (the locked stack may break)",
                conflict.requirement, conflict.package, conflict.locked,
            )  # fmt: skip
    duplicates = cuda.requested_duplicates(requirements.requirements, base)
    if duplicates:
        _refuse_or_warn(duplicates, policy)
    return result


def _refuse_or_warn(duplicates: list[cuda.Duplicate], policy: str) -> None:
    text = "; ".join(d.describe() for d in duplicates)
    if policy == PROTECT:
        raise OverlayError(f"CUDA from pip on top of CUDA from conda: {text}", cuda.GUARD_FIX)
    log.warning("RUNNER_OVERLAY_POLICY=override: installing duplicate CUDA libraries: %s", text)


def overlay_key(requirements: RequirementSet, base: BaseEnvironment, policy: str) -> str:
    material = {
        "format": FORMAT,
        "requirements": requirements.normalized(),
        "base": base.fingerprint,
        "conda": sorted(f"{p.name}-{p.version}-{p.build}" for p in base.conda_packages.values()),
        "python": f"{base.implementation}-{base.version}",
        "policy": policy,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:20]


Build = Callable[[Plan, BaseEnvironment, Cache, str, Callable[[Path | None], Uv], float], Overlay]


def ensure_overlay(
    the_plan: Plan,
    base: BaseEnvironment,
    cache: Cache,
    make_uv: Callable[[Path | None], Uv],
    build: Build | None = None,
) -> Overlay:
    """The overlay for this plan: reused if complete and intact, else built once under the build lock.

    An overlay whose files changed since it was sealed is never used: the change is logged,
    naming a file, and the overlay is discarded and built again. `build` makes a new one:
    locally by this process (`build_here`); in the image by a builder identity, sealed by
    root (runner/staging.py); both in a staging folder, published by runner/publish.py.
    """
    started = time.monotonic()
    key = the_plan.key
    sources = the_plan.requirements.sources
    sources.refuse()
    cache.ensure()
    cache.sweep()  # what killed builds left behind
    use = cache.use_lock(key)
    use.acquire(shared=True)
    try:
        overlay, problem = _reuse(cache, key, started, the_plan.requirements.recorded_sources())
        if overlay is None:
            build_lock = cache.build_lock(key)
            if not build_lock.acquire(blocking=False):
                log.info("waiting for another run to finish building overlay %s", key)
                build_lock.acquire()
            try:
                overlay, problem = _reuse(cache, key, started, the_plan.requirements.recorded_sources())
                if overlay is None:
                    if problem == UNSEALED:
                        log.warning("overlay %s has no seal (%s): building it again", key, problem)
                        seal.remove(cache.folder(key))
                    elif problem:
                        log.warning(
                            "overlay %s was changed after it was sealed (%s): discarding it and building it again",
                            key, problem,
                        )  # fmt: skip
                        seal.remove(cache.folder(key))
                    if not the_plan.compared:
                        the_plan = compare(the_plan, base)
                    overlay = (build or build_here)(the_plan, base, cache, key, make_uv, started)
                    overlay.rebuilt_because = problem
            finally:
                build_lock.release()
    except BaseException:
        use.release()
        raise
    overlay.use_lock = use
    return overlay


def _reuse(cache: Cache, key: str, started: float, sources: dict[str, object]) -> tuple[Overlay | None, str | None]:
    """The sealed overlay if it is complete and unchanged; else None and what was found changed (None if incomplete)."""
    folder = cache.folder(key)
    if cache.owner is not None:
        try:
            status = os.lstat(folder)
        except OSError:
            return None, None
        if status.st_uid != cache.owner:
            return None, f"overlays/{key} belongs to UID {status.st_uid}, not to the cache's owner {cache.owner}"
        if not stat.S_ISDIR(status.st_mode):
            return None, f"overlays/{key} is not a folder"
    data = cache.read_marker(key)
    if data is None:
        return None, None
    manifest = data.get("manifest_sha256")
    if data.get("format") != FORMAT or not isinstance(manifest, str):
        return None, UNSEALED
    problem = seal.check(folder, manifest, SEAL_SKIP)
    if problem is not None:
        return None, problem
    with contextlib.suppress(OSError):
        os.utime(cache.marker(key))  # last use, for `cache prune`
    packages = data.get("packages")
    shadowed = data.get("shadowed")
    lock_file = folder / "requirements.lock.txt"
    try:
        lock_text = read_text(lock_file)
    except (OSError, UnicodeDecodeError):
        lock_text = ""
    overlay = Overlay(
        key,
        folder,
        packages if isinstance(packages, list) else [],
        shadowed if isinstance(shadowed, list) else [],
        True,
        time.monotonic() - started,
        lock_text,
        sources,
    )
    log.info("overlay %s reused (%d packages, seal checked)", key, len(overlay.packages))
    return overlay, None


def build_here(
    the_plan: Plan,
    base: BaseEnvironment,
    cache: Cache,
    key: str,
    make_uv: Callable[[Path | None], Uv],
    started: float,
) -> Overlay:
    """Build the overlay as this process (local runs) in a staging folder, then publish it sealed.

    The same steps as the image's builder and root (runner/staging.py), in one process, on
    the same kind of copy of the job's files, `building/request.<random>` (runner/shipped.py:
    uv never reuses its build of a folder it met at another path): a build killed half-way
    leaves only folders the next request removes.
    """
    from runner.publish import publish
    from runner.shipped import copy_for_build

    stage = cache.new_staging(key)
    held = cache.new_request()
    log.info("building overlay %s", key)
    try:
        copied = copy_for_build(the_plan.requirements, held.path)
        if overlay_key(copied, base, the_plan.policy) != key:
            raise OverlayError(
                f"the files {the_plan.requirements.path.name} names changed while the overlay was being built",
                "run the job again once they are written",
            )
        the_plan = the_plan.reading(copied)
        installed = install(the_plan, base, stage, make_uv(stage / "uv.log"))
        seconds = time.monotonic() - started
        folder = cache.folder(key)
        seal.remove(folder)  # an older runner's half-built folder
        publish(stage, folder, key, the_plan, base, installed, seconds)
    finally:
        seal.remove(stage)
        seal.remove(held.path)
        held.release()
    return built(key, folder, the_plan, installed, seconds)


class Installed:
    """What `install` put in an overlay folder: the packages as recorded, those shadowing the base, uv's lock."""

    __slots__ = ("lock_text", "packages", "shadowed")

    def __init__(self, packages: list[dict[str, object]], shadowed: list[str], lock_text: str) -> None:
        self.packages = packages
        self.shadowed = shadowed
        self.lock_text = lock_text


def install(the_plan: Plan, base: BaseEnvironment, folder: Path, uv: Uv) -> Installed:
    """Resolve and install the plan into `folder/venv` with uv: the work of whoever builds (see `Build`).

    In the image this runs as the builder, which owns uv's shared cache: it must run no
    third-party code. uv runs no code of a wheel when it installs one, but any Python started
    on a venv runs the `.pth` files installed there: so uv never meets a venv holding
    packages (a new one for each round), and the byte code is compiled later by the base
    interpreter without its site (runner/publish.py), not by uv's `--compile-bytecode`, which
    starts the venv's Python with its site.
    """
    requirements = the_plan.requirements
    sources = requirements.sources
    log.info("packages from: %s", requirements.virtual(sources.describe()))
    if sources.notes:
        log.info("pip settings with no effect on the overlay: %s", "; ".join(sources.notes))
    uv.environ = sources.uv_environment(uv.environ)
    shadowed = set(the_plan.shadowed)
    extra_lines: list[str] = []
    venv = folder / "venv"
    for _round in range(MAX_SHADOW_ROUNDS):
        packages, lock_text = _resolve(the_plan, base, folder, uv, frozenset(shadowed), extra_lines)
        if venv.exists():
            seal.remove(venv)
        # Relocatable: the image builds in a staging folder and renames it into the cache.
        uv.run(
            ["venv", str(venv), "--python", str(base.python), "--no-project", "--relocatable", "--quiet"], cwd=folder
        )
        if packages:
            # Copies, never links into uv's cache: a job editing its overlay must not edit the cache
            # (and every overlay later made from it).
            sync = ["pip", "sync", str(folder / "requirements.lock.txt"), "--python", str(venv / "bin" / "python")]
            try:
                uv.run([*sync, "--link-mode", "copy", *requirements.source_args()], cwd=folder)
            except OverlayError as error:
                if not needs_source_build(error.details or ""):
                    raise
                raise OverlayError(error.reason, SOURCE_BUILD_FIX, details=error.details) from None
        conflicts = transitive_conflicts(_site_packages(venv), base, requirements.requirements, frozenset(shadowed))
        if not conflicts:
            break
        if the_plan.policy == PROTECT:
            raise OverlayError("; ".join(c.describe() for c in conflicts), CONFLICT_FIX)
        for conflict in conflicts:
            log.warning(
                "RUNNER_OVERLAY_POLICY=override: %s needs '%s'; the overlay will shadow the base's %s %s",
                conflict.needed_by, conflict.requirement, conflict.package, conflict.locked,
            )  # fmt: skip
            shadowed.add(canonical_name(conflict.package))
            extra_lines.append(conflict.requirement)
    else:
        raise OverlayError(
            "the overlay still conflicts with the base after shadowing",
            "pin compatible versions in requirements.txt",
        )
    if requirements.root is not None:
        _name_the_jobs_paths(_site_packages(venv), requirements)
    recorded = _record(packages, _site_packages(venv))
    for record in recorded:
        if isinstance(record.get("url"), str):
            record["url"] = requirements.virtual(str(record["url"]))
    # The venv is byte-compiled and linked to the base by whoever seals it (runner/publish.py), after the check
    # of its files; the lock goes there as the job wrote it.
    return Installed(recorded, sorted(shadowed), requirements.virtual(lock_text))


def _name_the_jobs_paths(site_packages: Path, requirements: RequirementSet) -> None:
    """Each `direct_url.json` (PEP 610) names the path the job saw, not the build's copy (removed after it), and
    its distribution's RECORD lists the new content, as the check before sealing requires (runner/records.py)."""
    import csv
    import io

    from runner.records import encode_hash

    for direct_url in site_packages.glob("*.dist-info/direct_url.json"):
        text = direct_url.read_text(encoding="utf-8")
        named = requirements.virtual(text)
        if named == text:
            continue
        data = named.encode()
        direct_url.write_bytes(data)
        record = direct_url.with_name("RECORD")
        rows = list(csv.reader(io.StringIO(record.read_text(encoding="utf-8"))))
        listed = f"{direct_url.parent.name}/{direct_url.name}"
        rows = [[listed, encode_hash(data), str(len(data))] if row and row[0] == listed else row for row in rows]
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        record.write_text(out.getvalue(), encoding="utf-8")


def built(key: str, folder: Path, the_plan: Plan, installed: Installed, seconds: float) -> Overlay:
    names = ", ".join(f"{p['name']} {p['version']}" for p in installed.packages)
    log.info("overlay %s built and sealed in %.1f s: %s", key, seconds, names or "nothing to add")
    sources = the_plan.requirements.recorded_sources()
    return Overlay(key, folder, installed.packages, installed.shadowed, False, seconds, installed.lock_text, sources)


def _resolve(
    the_plan: Plan,
    base: BaseEnvironment,
    folder: Path,
    uv: Uv,
    shadowed: frozenset[str],
    extra_lines: list[str],
) -> tuple[list[LockedPackage], str]:
    requirements = the_plan.requirements
    skip = frozenset(the_plan.satisfied) - shadowed
    text = requirements.requirements_in(skip) + "".join(line + "\n" for line in extra_lines)
    (folder / "requirements.in").write_text(text, encoding="utf-8")
    pins = "".join(
        line + "\n" for line in base.pins().splitlines() if canonical_name(line.split("==")[0]) not in shadowed
    )
    (folder / "base-pins.txt").write_text(pins, encoding="utf-8")
    (folder / "base-names.txt").write_text(base.names(keep=shadowed), encoding="utf-8")
    args = [
        "pip", "compile", "requirements.in", "--output-file", "requirements.lock.txt", "--generate-hashes",
        "--no-header", "--python", str(base.python), "-c", "base-pins.txt", "--excludes", "base-names.txt",
    ]  # fmt: skip
    if requirements.constraints:
        (folder / "user-constraints.txt").write_text(requirements.constraints_in(), encoding="utf-8")
        args += ["-c", "user-constraints.txt"]
    try:
        uv.run([*args, *requirements.source_args(), "--quiet"], cwd=folder)
    except OverlayError as error:
        output = error.details or error.reason
        raise OverlayError(
            f"cannot resolve {requirements.path.name}: {summarize(output)}",
            SOURCE_BUILD_FIX if needs_source_build(output) else RESOLVE_FIX,
            details=error.details,
        ) from None
    lock_text = (folder / "requirements.lock.txt").read_text(encoding="utf-8")
    packages = parse_lock(lock_text)
    duplicates = [
        cuda.Duplicate(p.name, p.version, duplicate, ", ".join(p.via))
        for p in packages
        if (duplicate := cuda.duplicate_of(p.name, p.version, base))
    ]
    if duplicates:
        _refuse_or_warn(duplicates, the_plan.policy)
    return packages, lock_text


def _site_packages(venv: Path) -> Path:
    return venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"


class LockedPackage:
    __slots__ = ("hashes", "name", "url", "version", "via")

    def __init__(self, name: str, version: str, url: str | None, hashes: tuple[str, ...], via: tuple[str, ...]) -> None:
        self.name = name
        self.version = version
        self.url = url
        self.hashes = hashes
        self.via = via


def parse_lock(text: str) -> list[LockedPackage]:
    """Read `uv pip compile --generate-hashes` output: `name==version \\`, `--hash=` and `# via` lines."""
    packages: list[LockedPackage] = []
    current: dict[str, object] | None = None
    in_via = False

    def flush() -> None:
        if current is not None:
            packages.append(
                LockedPackage(
                    str(current["name"]),
                    str(current["version"]),
                    current["url"] if isinstance(current["url"], str) else None,
                    tuple(current["hashes"]),  # type: ignore[arg-type]
                    tuple(current["via"]),  # type: ignore[arg-type]
                )
            )

    for raw in text.splitlines():
        line = raw.strip().rstrip("\\").strip()
        if not line:
            continue
        if not raw[:1].isspace() and not line.startswith("#"):
            flush()
            current = None
            in_via = False
            if line.startswith("-"):
                continue  # -e / --index-url lines: nothing to record by name
            name, _, rest = line.partition("==")
            url = None
            if not rest and " @ " in line:
                name, _, url = line.partition(" @ ")
            elif not rest:
                name, url = "", line  # a bare path or URL: the name is known once it is installed
            current = {"name": name.strip(), "version": rest.strip(), "url": url, "hashes": [], "via": []}
        elif current is not None and line.startswith("--hash="):
            current["hashes"].append(line[len("--hash=") :])  # type: ignore[attr-defined]
        elif current is not None and line.startswith("# via"):
            rest = line[len("# via") :].strip()
            in_via = not rest
            if rest:
                current["via"].append(rest)  # type: ignore[attr-defined]
        elif current is not None and in_via and line.startswith("#"):
            item = line.lstrip("#").strip()
            if item and not item.startswith(("-r ", "-c ")):
                current["via"].append(item)  # type: ignore[attr-defined]
    flush()
    return packages


class InstalledDistribution:
    __slots__ = ("name", "requires", "source", "version")

    def __init__(self, name: str, version: str, requires: tuple[str, ...], source: str | None = None) -> None:
        self.name = name
        self.version = version
        self.requires = requires
        self.source = source  # the URL it was installed from, for direct references


def _installed(site_packages: Path) -> dict[str, InstalledDistribution]:
    found: dict[str, InstalledDistribution] = {}
    if not site_packages.is_dir():
        return found
    for entry in sorted(site_packages.iterdir()):
        if entry.name.endswith(".dist-info") and (entry / "METADATA").is_file():
            dist = _read_metadata(entry / "METADATA")
            if dist is not None:
                found[canonical_name(dist.name)] = dist
    return found


def _read_metadata(path: Path) -> InstalledDistribution | None:
    name = version = ""
    requires = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                break  # end of the headers
            header, _, value = line.partition(":")
            if header == "Name":
                name = value.strip()
            elif header == "Version":
                version = value.strip()
            elif header == "Requires-Dist":
                requires.append(value.strip())
    if not name:
        return None
    source = None
    direct_url = path.parent / "direct_url.json"
    if direct_url.is_file():
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(direct_url.read_text(encoding="utf-8"))
            source = data.get("url") if isinstance(data, dict) else None
    return InstalledDistribution(name, version, tuple(requires), source if isinstance(source, str) else None)


def transitive_conflicts(
    site_packages: Path,
    base: BaseEnvironment,
    top_level: list[Requirement],
    shadowed: frozenset[str],
) -> list[Conflict]:
    """Dependencies of what the overlay installed that the base's locked versions do not satisfy.

    uv never sees them (the base is excluded from its resolution), so this reads each
    installed distribution's Requires-Dist, with the extras requested of it, and compares.
    """
    installed = _installed(site_packages)
    extras: dict[str, set[str]] = {}
    for requirement in top_level:
        extras.setdefault(requirement.key, set()).update(canonical_name(e) for e in requirement.extras)
    conflicts: dict[tuple[str, str], Conflict] = {}
    changed = True
    while changed:
        changed = False
        for key, dist in installed.items():
            wanted = ("", *sorted(extras.get(key, ())))
            for text in dist.requires:
                try:
                    requirement = parse_requirement(text)
                    if not requirement.applies(wanted):
                        continue
                except (InvalidRequirement, ValueError):
                    continue
                if requirement.key in installed:
                    new = {canonical_name(e) for e in requirement.extras} - extras.get(requirement.key, set())
                    if new:
                        extras.setdefault(requirement.key, set()).update(new)
                        changed = True
                    continue
                locked = base.distributions.get(requirement.key)
                if locked is None or requirement.key in shadowed:
                    continue
                if requirement.satisfied_by(locked.version) is False:
                    conflicts[(key, requirement.key)] = Conflict(
                        requirement.without_marker(),
                        locked.name,
                        locked.version,
                        needed_by=f"{dist.name} {dist.version}",
                    )
    return list(conflicts.values())


def _record(packages: list[LockedPackage], site_packages: Path) -> list[dict[str, object]]:
    """What the overlay holds, as the summary records it: name, version, and the sha256 hashes of the
    archives from the lock, or for a package installed from a path or URL that source (PEP 610)."""
    locked = {canonical_name(p.name): p for p in packages if p.name}
    records = []
    for key, dist in sorted(_installed(site_packages).items()):
        package = locked.get(key)
        record: dict[str, object] = {
            "name": dist.name,
            "version": dist.version,
            "hashes": list(package.hashes) if package else [],
        }
        url = package.url if package and package.url else dist.source
        if url:
            record["url"] = url
        records.append(record)
    return records
