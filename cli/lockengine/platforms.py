"""Workspace platforms as pixi (0.71 and later) models them: a name, a conda subdir, virtual packages.

- `"linux-64"` is a *subdir platform*: named after its subdir, carrying the subdir's defaults.
- `{ platform = "linux-64", cuda = "12" }` is a *rich platform*: its declared virtual packages
  come first, the defaults fill in the rest; without a `name` it is named after its content
  (`linux-64-cuda-12`).
- In pixi.lock, subdir platforms keep their name and rich ones are written as `p1`, `p2`, …
  in manifest order; a lock platform is matched back to the manifest by *identity* (subdir plus
  the virtual packages beyond the defaults), so renaming a platform in pixi.toml needs no relock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from cli.lockengine.virtual_packages import (
    VirtualPackage,
    customised,
    is_subdir_default,
    with_defaults,
)

KNOWN_SUBDIRS = frozenset(
    {
        "noarch",
        "linux-32",
        "linux-64",
        "linux-aarch64",
        "linux-armv6l",
        "linux-armv7l",
        "linux-ppc64le",
        "linux-ppc64",
        "linux-ppc",
        "linux-s390x",
        "linux-riscv32",
        "linux-riscv64",
        "linux-loongarch64",
        "osx-64",
        "osx-arm64",
        "win-32",
        "win-64",
        "win-arm64",
        "emscripten-wasm32",
        "wasi-wasm32",
        "zos-z",
    }
)
# friendly keys of a platform table, in the order pixi names platforms after them
FRIENDLY_KEYS = (
    ("cuda", (), "__cuda", "version"),
    ("archspec", (), "__archspec", "microarch"),
    ("glibc", (), "__glibc", "version"),
    ("linux", (), "__linux", "version"),
    ("macos", ("osx",), "__osx", "version"),
    ("windows", (), "__win", "version"),
)
FAMILIES = {
    "unix": ("linux", "osx", "emscripten", "wasi", "zos"),
    "linux": ("linux",),
    "win": ("win",),
    "osx": ("osx",),
    "macos": ("osx",),
}
_NAME = re.compile(r"^[A-Za-z](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class SystemRequirements:
    """The declared virtual packages read as versions (`cuda` from `__cuda`, …); None where not declared."""

    cuda: str | None = None
    glibc: str | None = None
    linux: str | None = None
    macos: str | None = None
    archspec: str | None = None


@dataclass(frozen=True)
class PlatformSpec:
    name: str
    subdir: str
    virtual_packages: tuple[VirtualPackage, ...] = ()

    @property
    def is_subdir_platform(self) -> bool:
        return self.name == self.subdir

    @property
    def customised(self) -> list[str]:
        return customised(self.virtual_packages, self.subdir)

    @property
    def identity(self) -> tuple[str, tuple[str, ...]]:
        return (self.subdir, tuple(self.customised))

    @property
    def requirements(self) -> SystemRequirements:
        values: dict[str, str] = {}
        for package in self.virtual_packages:
            if is_subdir_default(package, self.subdir):
                continue
            values[package.name] = package.build if package.name == "__archspec" else package.version
        return SystemRequirements(
            cuda=values.get("__cuda"),
            glibc=values.get("__glibc"),
            linux=values.get("__linux"),
            macos=values.get("__osx"),
            archspec=values.get("__archspec"),
        )

    def virtual_package_texts(self) -> list[str]:
        return [p.text() for p in self.virtual_packages]

    def matches_reference(self, reference: str) -> bool:
        """A feature's `platforms = [...]` entry selects a platform by its name or its subdir."""
        return reference in (self.name, self.subdir)

    def matches_target(self, selector: str) -> bool:
        """`[target.<selector>]`: a platform name, a subdir, a family (`linux`, `unix`, …) or a glob."""
        if selector in (self.name, self.subdir):
            return True
        family = FAMILIES.get(selector)
        if family is not None:
            return self.subdir.split("-")[0] in family
        if "*" in selector:
            return fnmatchcase(self.name, selector)
        return False


def subdir_platform(subdir: str) -> PlatformSpec:
    return PlatformSpec(subdir, subdir, with_defaults([], subdir))


def valid_platform_name(name: str) -> bool:
    return bool(_NAME.match(name)) and name not in FAMILIES


def parse_platform_entry(item: Any) -> PlatformSpec:
    """One entry of `[workspace] platforms`; a ValueError names what is wrong."""
    if isinstance(item, str):
        if item not in KNOWN_SUBDIRS or item == "noarch":
            raise ValueError(f"unknown platform '{item}'")
        return subdir_platform(item)
    if not isinstance(item, dict):
        raise ValueError(f"cannot read platform {item!r}")
    table = dict(item)
    name = table.pop("name", None)
    subdir = table.pop("platform", None) or (name if name in KNOWN_SUBDIRS else None)
    if not isinstance(subdir, str) or subdir not in KNOWN_SUBDIRS or subdir == "noarch":
        raise ValueError(f"unknown platform {subdir!r}")
    declared = _declared_virtual_packages(table)
    if name is None:
        name = synthesize_name(subdir, declared)
    if not isinstance(name, str) or not valid_platform_name(name):
        raise ValueError(f"'{name}' is not a valid platform name (letters, digits and '-')")
    if name == subdir:
        if any(not is_subdir_default(p, subdir) for p in declared):
            raise ValueError(f"platform '{name}' declares virtual packages but is named after its subdir")
        return subdir_platform(subdir)
    return PlatformSpec(name, subdir, with_defaults(declared, subdir))


def _declared_virtual_packages(table: dict[str, Any]) -> list[VirtualPackage]:
    declared: list[VirtualPackage] = []
    cuda = table.pop("cuda", None)
    if isinstance(cuda, dict):
        driver, arch = cuda.get("driver"), cuda.get("arch")
        if driver is None:
            raise ValueError("cuda.arch needs cuda.driver")
        declared.append(VirtualPackage("__cuda", str(driver)))
        if arch is not None:
            declared.append(VirtualPackage("__cuda_arch", str(arch)))
    elif cuda is not None:
        declared.append(VirtualPackage("__cuda", str(cuda)))
    for key, aliases, conda_name, kind in FRIENDLY_KEYS[1:]:
        values = [table.pop(k) for k in (key, *aliases) if k in table]
        if len(values) > 1:
            raise ValueError(f"'{key}' is given twice")
        if values:
            value = str(values[0])
            package = (
                VirtualPackage(conda_name, "0", value) if kind == "microarch" else VirtualPackage(conda_name, value)
            )
            declared.append(package)
    for key in [k for k in table if k.startswith("__")]:
        value = str(table.pop(key))
        version, _, build = value.partition("=")
        if any(p.name == key for p in declared):
            raise ValueError(f"'{key}' is declared more than once")
        declared.append(VirtualPackage(key, version, build))
    if table:
        raise ValueError(f"unknown platform key {', '.join(sorted(table))}")
    return declared


def synthesize_name(subdir: str, declared: list[VirtualPackage] | tuple[VirtualPackage, ...]) -> str:
    """pixi's `synthesize_name_string`: `<subdir>-<key>-<value>…`, friendly keys first, then raw ones."""
    custom = [p for p in declared if not is_subdir_default(p, subdir)]
    parts = [subdir]
    consumed: set[str] = set()
    for key, _, conda_name, kind in FRIENDLY_KEYS:
        package = next((p for p in custom if p.name == conda_name), None)
        if package is None:
            continue
        fits = package.build in ("", "0") if kind == "version" else package.version == "0" and package.build != ""
        if not fits:
            continue
        consumed.add(conda_name)
        parts.append(f"{key}-{_sanitize(package.version if kind == 'version' else package.build)}")
    for package in sorted((p for p in custom if p.name not in consumed), key=lambda p: p.name):
        value = package.version if package.build in ("", "0") else f"{package.version}={package.build}"
        parts.append(f"{_sanitize(package.name.lstrip('_'))}-{_sanitize(value)}")
    return "-".join(parts)


def _sanitize(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def lock_names(platforms: list[PlatformSpec]) -> dict[str, str]:
    """Workspace platform name → its name in pixi.lock: subdir platforms as they are, rich ones `p1`, `p2`, …"""
    names: dict[str, str] = {}
    ordinal = 0
    for platform in platforms:
        if platform.is_subdir_platform:
            names[platform.name] = platform.name
        else:
            ordinal += 1
            names[platform.name] = f"p{ordinal}"
    return names
