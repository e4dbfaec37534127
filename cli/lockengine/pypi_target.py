"""What PyPI sees of a conda environment on one platform: markers, wheel tags, PyPI names of conda packages.

pixi's rules (pypi_modifiers' `pypi_marker_env.rs` and `pypi_tags.rs`, pixi_core's
`package_identifier.rs`): markers and tags come from the platform and the locked `python`
record; a conda package provides the PyPI packages its `purls` name (conda-forge records
without `purls` provide the package of their own name; `purls: []` provides none).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from packaging import tags
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from cli.lockengine.platforms import PlatformSpec

MACHINES = {
    "linux-32": "i386",
    "linux-64": "x86_64",
    "linux-aarch64": "aarch64",
    "linux-armv6l": "armv6l",
    "linux-armv7l": "armv7l",
    "linux-ppc64le": "ppc64le",
    "linux-ppc64": "ppc64",
    "linux-s390x": "s390x",
    "linux-riscv32": "riscv32",
    "linux-riscv64": "riscv64",
    "osx-64": "x86_64",
    "osx-arm64": "arm64",
    "win-32": "x86",
    "win-64": "AMD64",
    "win-arm64": "ARM64",
}
WINDOWS_TAGS = {"win-64": "win_amd64", "win-32": "win32", "win-arm64": "win_arm64"}
LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


def marker_environment(platform: PlatformSpec, python_version: str) -> dict[str, str] | None:
    """pixi's `determine_marker_environment`; None where pixi cannot tell (not linux, osx or windows)."""
    family = platform.subdir.split("-")[0]
    systems = {
        "linux": ("linux", "Linux", "posix"),
        "osx": ("darwin", "Darwin", "posix"),
        "win": ("win32", "Windows", "nt"),
    }
    if family not in systems:
        return None
    sys_platform, platform_system, os_name = systems[family]
    parts = python_version.split(".")
    return {
        "implementation_name": "cpython",
        "implementation_version": python_version,
        "os_name": os_name,
        "platform_machine": MACHINES.get(platform.subdir, ""),
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": platform_system,
        "platform_version": "",
        "python_full_version": python_version,
        "python_version": ".".join(parts[:2]),
        "sys_platform": sys_platform,
    }


def _declared(platform: PlatformSpec, name: str) -> str | None:
    return next((p.version for p in platform.virtual_packages if p.name == name), None)


def _major_minor(text: str, default: tuple[int, int]) -> tuple[int, int]:
    parts = [int(p) for p in text.split(".")[:2] if p.isdigit()]
    return (parts[0], parts[1] if len(parts) > 1 else 0) if parts else default


def platform_tags(platform: PlatformSpec) -> list[str]:
    """The wheel platform tags a platform accepts, best first (manylinux from its `__glibc`, macOS from `__osx`)."""
    subdir = platform.subdir
    machine = MACHINES.get(subdir, "")
    if subdir.startswith("linux-"):
        arch = {"i386": "i686"}.get(machine, machine)
        musl = _declared(platform, "__musl")
        if musl:
            major, minor = _major_minor(musl, (1, 2))
            return [f"musllinux_{major}_{m}_{arch}" for m in range(minor, -1, -1)] + [f"linux_{arch}"]
        major, minor = _major_minor(_declared(platform, "__glibc") or "2.28", (2, 28))
        lowest = 5 if arch in ("x86_64", "i686") else 17
        result = []
        for m in range(minor, lowest - 1, -1):
            result.append(f"manylinux_{major}_{m}_{arch}")
            legacy = LEGACY_MANYLINUX.get((major, m))
            if legacy:
                result.append(f"{legacy}_{arch}")
        return [*result, f"linux_{arch}"]
    if subdir.startswith("osx-"):
        version = _major_minor(_declared(platform, "__osx") or "13.0", (13, 0))
        return list(tags.mac_platforms(version, machine))
    if subdir in WINDOWS_TAGS:
        return [WINDOWS_TAGS[subdir]]
    return []


def wheel_tags(platform: PlatformSpec, python_version: str, python_build: str = "") -> set[str]:
    """Every `python-abi-platform` tag a wheel may carry to install into this environment."""
    version = tuple(int(p) for p in python_version.split(".")[:2] if p.isdigit())
    if len(version) < 2:
        return set()
    free_threaded = "t" if f"_cp{version[0]}{version[1]}t" in python_build else ""
    abi = f"cp{version[0]}{version[1]}{free_threaded}"
    platforms = platform_tags(platform)
    found = {str(t) for t in tags.cpython_tags(version, [abi], platforms)}
    found |= {str(t) for t in tags.compatible_tags(version, f"cp{version[0]}{version[1]}", platforms)}
    return found


def wheel_is_compatible(file_name: str, supported: set[str]) -> bool:
    stem = file_name[: -len(".whl")]
    parts = stem.split("-")
    if len(parts) < 5:
        return True  # not a wheel name this check can read: not held against the lock
    python, abi, plat = parts[-3], parts[-2], parts[-1]
    return any(
        f"{p}-{a}-{pl}" in supported for p in python.split(".") for a in abi.split(".") for pl in plat.split(".")
    )


def file_name_of(location: str) -> str:
    path = urlparse(location).path if "://" in location else location
    return unquote(path.rstrip("/").rsplit("/", 1)[-1])


@dataclass(frozen=True)
class CondaPypiPackage:
    """A PyPI package that a locked conda package installs."""

    name: str  # normalised PyPI name
    version: Version | None
    conda_name: str


def pypi_names_of_purls(purls: Iterable[str]) -> list[str]:
    names: list[str] = []
    for purl in purls:
        if not purl.startswith("pkg:pypi/"):
            continue
        name = purl[len("pkg:pypi/") :].split("?")[0].split("@")[0].split("#")[0]
        names.append(canonicalize_name(unquote(name)))
    return names


def is_conda_forge_channel(channel: str | None) -> bool:
    return bool(channel) and urlparse(str(channel)).path.startswith("/conda-forge")


def conda_pypi_packages(
    name: str, version: str, purls: list[str] | None, channel: str | None
) -> list[CondaPypiPackage]:
    """pixi's `PypiPackageIdentifier::from_repodata_record`."""
    try:
        pypi_version: Version | None = Version(version)
    except InvalidVersion:
        pypi_version = None
    if purls is not None:
        return [CondaPypiPackage(n, pypi_version, name) for n in pypi_names_of_purls(purls)]
    if is_conda_forge_channel(channel) and pypi_version is not None:
        return [CondaPypiPackage(canonicalize_name(name), pypi_version, name)]
    return []
