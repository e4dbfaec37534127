"""Virtual packages (`__cuda`, `__glibc`, …): what a platform promises the machines it runs on.

pixi's rules (pixi_manifest's `platform.rs`): every subdir has default virtual packages
(`__unix=0=0`, `__linux=4.18`, `__glibc=2.28`, `__win=10.0`, `__osx=13.0`, `__archspec=0=<arch>`);
a platform declares its own on top (`cuda = "12"` → `__cuda=12`), which win by name over the
defaults. pixi.lock records them per platform, as `name=version[=build]`. A lock describes the
machines the workspace promises to run on, never the machine that happens to write it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rattler import GenericVirtualPackage

DEFAULT_LINUX = "4.18"
DEFAULT_GLIBC = "2.28"
DEFAULT_WINDOWS = "10.0"
DEFAULT_MACOS = "13.0"
# rattler's Archspec::from_platform: the minimal microarchitecture of each subdir
ARCHSPEC = {
    "linux-64": "x86_64",
    "osx-64": "x86_64",
    "win-64": "x86_64",
    "linux-32": "x86",
    "win-32": "x86",
    "linux-aarch64": "aarch64",
    "linux-armv6l": "aarch64",
    "linux-armv7l": "aarch64",
    "win-arm64": "aarch64",
    "linux-ppc64le": "ppc64le",
    "linux-ppc64": "ppc64",
    "linux-s390x": "s390x",
    "linux-riscv64": "riscv64",
    "linux-riscv32": "riscv32",
    "linux-loongarch64": "loongarch64",
    "osx-arm64": "m1",
}
LIBC_NAMES = ("__glibc", "__musl", "__eglibc")


@dataclass(frozen=True)
class VirtualPackage:
    """One virtual package as pixi declares and records it: `__cuda=12`, `__unix=0=0`, `__archspec=0=m1`."""

    name: str
    version: str
    build: str = ""

    def text(self) -> str:
        return f"{self.name}={self.version}" + (f"={self.build}" if self.build else "")

    @classmethod
    def parse(cls, text: str) -> VirtualPackage | None:
        """`name=version[=build]` as pixi.lock writes it; None for anything else."""
        name, sep, rest = text.partition("=")
        if not sep or not name.startswith("__") or not rest:
            return None
        version, _, build = rest.partition("=")
        if not _valid_version(version):
            return None
        return cls(name, version, build)

    def same_as(self, other: VirtualPackage) -> bool:
        """Equal as rattler compares them: conda version equality (`12` == `12.0`), build as written."""
        return self.name == other.name and self.build == other.build and _versions_equal(self.version, other.version)


def subdir_defaults(subdir: str) -> tuple[VirtualPackage, ...]:
    """pixi's `subdir_default_virtual_packages`, in its order."""
    family = subdir.split("-")[0]
    defaults: list[VirtualPackage] = []
    if family in ("linux", "osx", "emscripten", "wasi", "zos"):
        defaults.append(VirtualPackage("__unix", "0", "0"))
    if family == "linux":
        defaults += [VirtualPackage("__linux", DEFAULT_LINUX), VirtualPackage("__glibc", DEFAULT_GLIBC)]
    if family == "win":
        defaults.append(VirtualPackage("__win", DEFAULT_WINDOWS))
    if family == "osx":
        defaults.append(VirtualPackage("__osx", DEFAULT_MACOS))
    if subdir in ARCHSPEC:
        defaults.append(VirtualPackage("__archspec", "0", ARCHSPEC[subdir]))
    return tuple(defaults)


def is_subdir_default(package: VirtualPackage, subdir: str) -> bool:
    return any(package.same_as(default) for default in subdir_defaults(subdir))


def with_defaults(declared: list[VirtualPackage], subdir: str) -> tuple[VirtualPackage, ...]:
    """pixi's `merge_subdir_defaults`: the declared ones first, then each default not declared by name."""
    names = {p.name for p in declared}
    has_libc = any(p.name in LIBC_NAMES for p in declared)
    merged = list(declared)
    for default in subdir_defaults(subdir):
        if default.name in names or (default.name == "__glibc" and has_libc):
            continue
        merged.append(default)
    return tuple(merged)


def customised(packages: tuple[VirtualPackage, ...] | list[VirtualPackage], subdir: str) -> list[str]:
    """What a platform declares beyond its subdir's defaults, sorted: the platform's identity in pixi."""
    return sorted(p.text() for p in packages if not is_subdir_default(p, subdir))


def applies_to_subdir(name: str, subdir: str) -> bool:
    """pixi's `virtual_package_applies_to_subdir`, for the legacy `[system-requirements]` migration."""
    if name in ("__linux", *LIBC_NAMES):
        return subdir.startswith("linux-")
    if name == "__osx":
        return subdir.startswith("osx-")
    if name == "__cuda":
        return not subdir.startswith("osx-")
    return True


@cache
def _rattler_version(text: str) -> object:
    from rattler import Version

    return Version(text)


def _valid_version(text: str) -> bool:
    try:
        _rattler_version(text)
    except Exception:  # rattler's InvalidVersionError
        return False
    return True


def _versions_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return bool(_rattler_version(a) == _rattler_version(b))
    except Exception:
        return False


def solver_virtual_packages(packages: tuple[VirtualPackage, ...]) -> list[GenericVirtualPackage]:
    """The virtual packages a solve assumes, as py-rattler's GenericVirtualPackage."""
    from rattler import BuildString, GenericVirtualPackage, PackageName, Version

    result = []
    for package in packages:
        # detected archspec is version 1 (rattler's From<Archspec>); pixi records the declared 0
        version = "1" if package.name == "__archspec" else package.version
        result.append(
            GenericVirtualPackage(PackageName(package.name), Version(version), BuildString(package.build or "0"))
        )
    return result
