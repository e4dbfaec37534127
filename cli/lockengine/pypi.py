"""PyPI dependencies locked with uv, the way pixi locks them, and installed from the lock.

Order as in pixi: the conda solve comes first; the Python packages it installed are held
fixed (each is offered to uv as a wheel of exactly its conda version with no dependencies:
conda already answered for those), then uv resolves the PyPI requirements for the platform's
markers and wheel tags (`uv pip compile --python-platform … --python-version …`). Each locked
package is written as pixi writes it: its wheel URL with sha256, name, version, the index if
not PyPI's, `requires_dist` and `requires_python` from the wheel's METADATA. A local source
tree (`{ path = "." }`) is recorded by its path with its static metadata, as pixi does.
"""

from __future__ import annotations

import email.parser
import hashlib
import io
import logging
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import urllib.request
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from cli.errors import UserError
from cli.lockengine.lockfile import DEFAULT_PYPI_INDEX
from cli.lockengine.platforms import PlatformSpec
from cli.lockengine.pypi_specs import (
    DEFAULT_PRERELEASE_MODE,
    PATH,
    REGISTRY,
    URL,
    PypiDependency,
    PypiOptions,
    render_requirement,
    render_specifier,
)
from cli.lockengine.pypi_target import marker_environment, platform_tags, wheel_tags

log = logging.getLogger(__name__)

UV_MANYLINUX = (17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)


@dataclass
class PypiSolveRequest:
    dependencies: list[PypiDependency]
    conda_provided: dict[str, Version]  # normalised PyPI name → the version conda installs
    python_version: str
    python_build: str
    platform: PlatformSpec
    options: PypiOptions
    root: Path
    exclude_newer: datetime | None = None
    preferences: dict[str, str] = field(default_factory=dict)
    cache_dir: Path | None = None


def uv_executable() -> str:
    """The uv that comes with this project's Python environment (the `uv` dependency), else one on PATH."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return "uv"


def python_platform(platform: PlatformSpec) -> str:
    """uv's `--python-platform` for a conda platform (manylinux level from its declared `__glibc`)."""
    subdir = platform.subdir
    if subdir in ("linux-64", "linux-aarch64"):
        arch = "x86_64" if subdir == "linux-64" else "aarch64"
        glibc = next((p.version for p in platform.virtual_packages if p.name == "__glibc"), "2.28")
        minor = int(glibc.split(".")[1]) if glibc.count(".") >= 1 and glibc.split(".")[1].isdigit() else 28
        level = max((m for m in UV_MANYLINUX if m <= minor), default=17)
        return f"{arch}-manylinux2014" if level == 17 else f"{arch}-manylinux_2_{level}"
    triples = {
        "osx-arm64": "aarch64-apple-darwin",
        "osx-64": "x86_64-apple-darwin",
        "win-64": "x86_64-pc-windows-msvc",
        "win-arm64": "aarch64-pc-windows-msvc",
    }
    if subdir not in triples:
        raise UserError(f"PyPI dependencies cannot be locked for platform {subdir} by this engine", fix="use pixi")
    return triples[subdir]


def _stub_wheel(folder: Path, name: str, version: str) -> Path:
    """A wheel of `name==version` with no dependencies: how uv sees a package conda installed."""
    distribution = re.sub(r"[-_.]+", "_", name)
    info = f"{distribution}-{version}.dist-info"
    files = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: osparc-ml-runners\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/RECORD": "",
    }
    path = folder / f"{distribution}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as bundle:
        for member, text in files.items():
            bundle.writestr(zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0)), text)
    return path


@dataclass
class LocalPackage:
    """A `{ path = … }` PyPI dependency on a source tree: recorded by path with its static metadata."""

    dependency: PypiDependency
    name: str
    location: str
    requires_dist: list[str]
    requires_python: str | None


def local_package(dependency: PypiDependency, root: Path) -> LocalPackage:
    directory = dependency.absolute_path(root)
    pyproject = directory / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project") or {}
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise UserError(
            f"cannot read the PyPI dependency {dependency.name}: {error}",
            path=pyproject,
            fix="give the package a pyproject.toml with a [project] table",
        ) from error
    dynamic = set(project.get("dynamic") or [])
    if dynamic & {"dependencies", "optional-dependencies"}:
        raise UserError(
            f"the PyPI dependency {dependency.name} declares its dependencies dynamically",
            path=pyproject,
            fix="list them statically in [project], or lock with pixi",
        )
    requires = [render_requirement(d) for d in project.get("dependencies") or []]
    for extra, deps in (project.get("optional-dependencies") or {}).items():
        for dep in deps:
            requirement = Requirement(str(dep))
            marker = f"({requirement.marker}) and extra == '{extra}'" if requirement.marker else f"extra == '{extra}'"
            requires.append(render_requirement(f"{str(requirement).split(';')[0].strip()} ; {marker}"))
    relative = os.path.relpath(directory, root).replace(os.sep, "/")
    location = "./" if relative == "." else relative if relative.startswith("../") else f"./{relative}"
    return LocalPackage(
        dependency,
        canonicalize_name(str(project.get("name") or dependency.name)),
        location,
        requires,
        project.get("requires-python"),
    )


def _own_requirements(package: LocalPackage, markers: dict[str, str]) -> list[str]:
    """What installing a local package pulls in on this platform: its dependencies and those of the asked extras."""
    extras: list[str] = [canonicalize_name(e) for e in package.dependency.extras] or [""]
    wanted = []
    for text in package.requires_dist:
        requirement = Requirement(text)
        if requirement.marker is None:
            wanted.append(text)
        elif any(requirement.marker.evaluate({**markers, "extra": extra}) for extra in extras):
            wanted.append(text.split(";", 1)[0].strip())
    return wanted


def _uv_environment(cache_dir: Path | None, platform: PlatformSpec) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_"))}
    if cache_dir is not None or os.environ.get("UV_CACHE_DIR"):
        env["UV_CACHE_DIR"] = str(cache_dir or os.environ["UV_CACHE_DIR"])
    if platform.subdir.startswith("osx-"):
        env["MACOSX_DEPLOYMENT_TARGET"] = next(
            (p.version for p in platform.virtual_packages if p.name == "__osx"), "13.0"
        )
    return env


def _uv_compile(request: PypiSolveRequest, inputs: Path, output: Path, extra: list[str], work: Path) -> None:
    options = request.options
    command = [
        uv_executable(),
        "pip",
        "compile",
        str(inputs),
        "-o",
        str(output),
        "--python-version",
        request.python_version,
        "--python-platform",
        python_platform(request.platform),
        "--no-header",
        "--no-annotate",
        "--no-config",
        "--no-python-downloads",
        "--quiet",
        "--default-index",
        options.index_url or DEFAULT_PYPI_INDEX,
        "--prerelease",
        options.prerelease_mode or DEFAULT_PRERELEASE_MODE,
    ]
    for url in options.extra_index_urls:
        command += ["--index", url]
    for kind, location in options.find_links:
        command += ["--find-links", location if kind == "url" else str((request.root / location).resolve())]
    if options.index_strategy:
        command += ["--index-strategy", options.index_strategy]
    if options.no_build is True:
        command.append("--no-build")
    elif options.no_build:
        command += [a for name in options.no_build for a in ("--no-build-package", name)]
    if request.exclude_newer is not None:
        command += ["--exclude-newer", request.exclude_newer.isoformat()]
    if options.dependency_overrides:
        overrides = work / "overrides.txt"
        overrides.write_text("".join(f"{name}{spec}\n" for name, spec in options.dependency_overrides.items()))
        command += ["--overrides", str(overrides)]
    completed = subprocess.run(
        command + extra,
        env=_uv_environment(request.cache_dir, request.platform),
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        details = (completed.stderr or completed.stdout).strip()
        raise UserError(
            f"uv cannot resolve the PyPI dependencies for {request.platform.name}: "
            + " ".join(details.splitlines()[:6]),
            fix="relax the PyPI requirements, or check the index (the conda packages are held at their versions)",
        )


def resolve_pypi(request: PypiSolveRequest) -> list[dict[str, Any]]:
    """The PyPI package entries (pixi.lock format 7) for one environment (or solve group) and platform."""
    local = [
        local_package(d, request.root) for d in request.dependencies if d.kind == PATH and _is_tree(d, request.root)
    ]
    requirements: list[str] = []
    for dependency in request.dependencies:
        if dependency.kind == REGISTRY and dependency.index:
            raise UserError(
                f"the PyPI dependency {dependency.name} names its own index, which this engine does not lock",
                fix="move the index to [pypi-options], or lock with pixi",
            )
        if dependency.kind == PATH and _is_tree(dependency, request.root):
            continue
        requirements.append(dependency.requirement(request.root))
    markers = marker_environment(request.platform, request.python_version) or {}
    for package in local:
        requirements += _own_requirements(package, markers)
    local_names = {p.name for p in local}
    requirements = [r for r in requirements if canonicalize_name(Requirement(r).name) not in local_names]
    if not requirements:
        return [_local_entry(p) for p in local]
    with tempfile.TemporaryDirectory(prefix="osparc-pypi-") as folder:
        work = Path(folder)
        stubs = work / "conda"
        stubs.mkdir()
        lines = list(requirements)
        for name, version in sorted(request.conda_provided.items()):
            lines.append(f"{name} @ {_stub_wheel(stubs, name, str(version)).as_uri()}")
        inputs = work / "requirements.in"
        inputs.write_text("\n".join(lines) + "\n")
        pins = work / "pins.txt"
        pins.write_text("".join(f"{n}=={v}\n" for n, v in sorted(request.preferences.items())))
        _uv_compile(request, inputs, pins, ["--format", "requirements.txt"], work)
        pylock = work / "pylock.toml"
        _uv_compile(request, inputs, pylock, ["--format", "pylock.toml", "--constraints", str(pins)], work)
        packages = tomllib.loads(pylock.read_text(encoding="utf-8")).get("packages", [])
        indexes = _package_indexes(request, inputs, pins, work)
    entries = [_local_entry(p) for p in local]
    supported = _tag_priority(request.platform, request.python_version, request.python_build)
    for package in packages:
        name = canonicalize_name(str(package["name"]))
        if name in request.conda_provided or name in local_names:
            continue
        entries.append(_registry_entry(package, supported, indexes.get(name), request))
    return entries


def _is_tree(dependency: PypiDependency, root: Path) -> bool:
    return dependency.absolute_path(root).is_dir()


def _local_entry(package: LocalPackage) -> dict[str, Any]:
    entry: dict[str, Any] = {"pypi": package.location, "name": package.name}
    if package.requires_dist:
        entry["requires_dist"] = package.requires_dist
    if package.requires_python:
        entry["requires_python"] = render_requirement(f"x{package.requires_python}")[1:]
    return entry


def _tag_priority(platform: PlatformSpec, python_version: str, python_build: str) -> dict[str, int]:
    """Tag → rank (lower is better), in the order an installer prefers wheels."""
    from packaging import tags

    version = tuple(int(p) for p in python_version.split(".")[:2])
    abi = f"cp{version[0]}{version[1]}"
    ordered = [*tags.cpython_tags(version, [abi], platform_tags(platform))]
    ordered += [*tags.compatible_tags(version, abi, platform_tags(platform))]
    allowed = wheel_tags(platform, python_version, python_build)
    return {str(t): i for i, t in enumerate(ordered) if str(t) in allowed}


def _best_wheel(wheels: list[dict[str, Any]], supported: dict[str, int]) -> dict[str, Any] | None:
    best, best_rank = None, None
    for wheel in wheels:
        url = str(wheel.get("url") or wheel.get("path") or "")
        stem = unquote(urlparse(url).path).rsplit("/", 1)[-1][: -len(".whl")].split("-")
        if len(stem) < 5:
            continue
        ranks = [
            supported[f"{p}-{a}-{pl}"]
            for p in stem[-3].split(".")
            for a in stem[-2].split(".")
            for pl in stem[-1].split(".")
            if f"{p}-{a}-{pl}" in supported
        ]
        if ranks and (best_rank is None or min(ranks) < best_rank):
            best, best_rank = wheel, min(ranks)
    return best


def _registry_entry(
    package: dict[str, Any], supported: dict[str, int], index: str | None, request: PypiSolveRequest
) -> dict[str, Any]:
    name = canonicalize_name(str(package["name"]))
    version = str(package["version"])
    wheel = _best_wheel(list(package.get("wheels") or []), supported)
    artifact = wheel or package.get("sdist") or package.get("archive")
    if not artifact:
        raise UserError(
            f"uv found no distribution of {name} {version} for {request.platform.name}", fix="check the index"
        )
    location = str(artifact.get("url") or Path(str(artifact.get("path"))).resolve().as_uri())
    sha256 = (artifact.get("hashes") or {}).get("sha256")
    metadata = _metadata(location, wheel is not None, sha256)
    entry: dict[str, Any] = {"pypi": location, "name": name, "version": str(Version(version))}
    if sha256:
        entry["sha256"] = sha256
    if index and index.rstrip("/") != DEFAULT_PYPI_INDEX:
        entry["index"] = index
    requires = [render_requirement(r) for r in metadata.get_all("Requires-Dist") or []]
    if requires:
        entry["requires_dist"] = requires
    requires_python = metadata.get("Requires-Python")
    if requires_python:
        entry["requires_python"] = ",".join(
            render_specifier(s.strip()) for s in requires_python.split(",") if s.strip()
        )
    return entry


def _package_indexes(request: PypiSolveRequest, inputs: Path, pins: Path, work: Path) -> dict[str, str]:
    """Which index each package came from (asked of uv only when several could have served it)."""
    options = request.options
    if not options.extra_index_urls and not options.find_links:
        index = options.index_url or DEFAULT_PYPI_INDEX
        return _AllIndex(index)
    annotated = work / "annotated.txt"
    _uv_compile(
        request,
        inputs,
        annotated,
        ["--format", "requirements.txt", "--emit-index-annotation", "--constraints", str(pins)],
        work,
    )
    result: dict[str, str] = {}
    current = None
    for line in annotated.read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            current = canonicalize_name(re.split(r"[=@ ]", line, maxsplit=1)[0])
        elif line.strip().startswith("# from ") and current:
            result[current] = line.strip()[len("# from ") :]
    return result


class _AllIndex(dict[str, str]):
    """Every package came from the one index."""

    def __init__(self, index: str) -> None:
        super().__init__()
        self.index = index

    def get(self, key: str, default: Any = None) -> str:
        return self.index


def _metadata(location: str, is_wheel: bool, sha256: str | None) -> email.message.Message:
    """METADATA of a wheel (PKG-INFO of an sdist): from disk, PEP 658 `.metadata`, or the archive itself."""
    parser = email.parser.HeaderParser()
    parsed = urlparse(location)
    if parsed.scheme == "file" or not parsed.scheme:
        data = Path(unquote(parsed.path)).read_bytes()
        return parser.parsestr(_metadata_from_archive(data, location, is_wheel))
    if is_wheel:
        try:
            with urllib.request.urlopen(location + ".metadata", timeout=60) as response:
                return parser.parsestr(response.read().decode("utf-8", errors="replace"))
        except OSError:
            log.info("no PEP 658 metadata for %s; reading the wheel", location)
    with urllib.request.urlopen(location, timeout=300) as response:
        data = response.read()
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise UserError(f"sha256 mismatch for {location}", fix="the index served another file than it lists")
    return parser.parsestr(_metadata_from_archive(data, location, is_wheel))


def _metadata_from_archive(data: bytes, location: str, is_wheel: bool) -> str:
    if is_wheel:
        with zipfile.ZipFile(io.BytesIO(data)) as bundle:
            member = next(
                (n for n in bundle.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1), None
            )
            if member is None:
                raise UserError(f"{location} has no METADATA", fix="the wheel is broken")
            return bundle.read(member).decode("utf-8", errors="replace")
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        info = next((m for m in archive.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")), None)
        extracted = archive.extractfile(info) if info is not None else None
        if extracted is None:
            raise UserError(f"{location} has no PKG-INFO", fix="lock with pixi, which builds sdists")
        text = extracted.read().decode("utf-8", errors="replace")
    header = email.parser.HeaderParser().parsestr(text)
    if Version(str(header.get("Metadata-Version", "1.0"))) < Version("2.2") or "Requires-Dist" in (
        header.get_all("Dynamic") or []
    ):
        raise UserError(
            f"{location} is an sdist without static metadata", fix="lock with pixi, which builds it, or use a wheel"
        )
    return text


# --- install ------------------------------------------------------------------------------------


def locked_pypi_entries(workspace_root: Path, data: Any, environment: str, platform: str) -> list[dict[str, Any]]:
    """The PyPI entries pixi.lock holds for one environment on one platform (by name, or subdir when unique)."""
    env = data.environments.get(environment)
    if env is None:
        return []
    names = (
        [platform]
        if platform in env.packages
        else [p for p in env.packages if data.platform(p) is not None and data.platform(p).subdir == platform]
    )
    if len(names) != 1:
        return []
    return [e for e in data.environment_packages(environment, names[0]) or [] if "pypi" in e]


UV_LOCK_FILE = ".lock"  # uv's lock against concurrent installs, left at the root of the target prefix


def install_pypi_packages(
    prefix: Path, entries: list[dict[str, Any]], root: Path, retries: int = 3, *, hard_links: bool = False
) -> int:
    """Install the locked PyPI packages into a conda prefix with uv: exactly these, hash-checked, no resolution.

    uv writes the interpreter's path into the scripts it makes (`#!<prefix>/bin/python`): `prefix` must
    be the path the environment will have (see `install.install_records`, which stages it).
    Files are copied from uv's cache unless `hard_links` (the conda packages' `--link hardlink`): uv's
    default links them, so an edit in the prefix would edit uv's cache entry, which uv trusts from then
    on, and every later install would carry it. (uv's `clone` falls back to hard links where the file
    system has no reflinks, so it is no safe middle.)
    """
    if not entries:
        return 0
    python = prefix / ("python.exe" if sys.platform == "win32" else "bin/python")
    lines = []
    packages: dict[str, str] = {}
    for entry in entries:
        location = str(entry["pypi"])
        if "://" not in location:
            path = (root / location).resolve()
            lines.append(f"-e {path}" if path.is_dir() else str(path))
            continue
        packages[location] = f"{entry['name']} {entry.get('version', '')}".strip()
        if entry.get("sha256"):
            lines.append(f"{entry['name']} @ {location} --hash=sha256:{entry['sha256']}")
        else:
            lines.append(f"{entry['name']} @ {location}")
    uv_lock = prefix / UV_LOCK_FILE
    had_lock = uv_lock.exists()
    with tempfile.TemporaryDirectory(prefix="osparc-pypi-install-") as folder:
        requirements = Path(folder) / "requirements.txt"
        requirements.write_text("\n".join(lines) + "\n")
        command = [
            uv_executable(),
            "pip",
            "install",
            "--no-config",
            "--no-python-downloads",
            "--no-deps",
            "--quiet",
            "--python",
            str(python),
            "--prefix",
            str(prefix),
            "--link-mode",
            "hardlink" if hard_links else "copy",
            "-r",
            str(requirements),
        ]
        env = _uv_environment(None, PlatformSpec("linux-64", "linux-64"))
        env["UV_HTTP_RETRIES"] = str(retries)  # as many as py-rattler's client makes for the conda packages
        completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if not had_lock:  # no package owns it (`audit prefix` would call it unexpected) and it is world-writable
        uv_lock.unlink(missing_ok=True)
    if completed.returncode != 0:
        details = (completed.stderr or completed.stdout).strip()
        from cli.lockengine.downloads import uv_fetch_error  # py-rattler's client: only on this error path

        explained = uv_fetch_error(details, packages)
        if explained is not None:
            raise explained
        raise UserError(
            f"uv cannot install the locked PyPI packages: {' '.join(details.splitlines()[:4])}",
            path=prefix,
            fix="check the prefix and the lock",
        )
    return len(entries)


def locked_pypi(workspace_root: Path, lock_path: Path, environment: str, platform: str) -> list[dict[str, Any]]:
    """The environment's locked PyPI packages on one platform (installed after the conda ones, as pixi does)."""
    from cli.lockengine.lockfile import read_lock_data

    return locked_pypi_entries(workspace_root, read_lock_data(lock_path), environment, platform)


__all__ = ["URL", "PypiSolveRequest", "install_pypi_packages", "locked_pypi", "resolve_pypi"]
