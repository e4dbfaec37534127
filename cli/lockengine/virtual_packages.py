"""Declared system requirements → the virtual packages a solve assumes (`__cuda`, `__glibc`, …).

The defaults are pixi's: a lock describes the machines the workspace promises to run on,
never the machine that happens to write it.
"""

from __future__ import annotations

from rattler import BuildString, GenericVirtualPackage, PackageName, Version

from cli.lockengine.manifest import PlatformSpec

DEFAULT_LINUX = "4.18"
DEFAULT_GLIBC = "2.28"
DEFAULT_MACOS = {"osx-64": "13.0", "osx-arm64": "13.0"}
DEFAULT_ARCHSPEC = {
    "linux-64": "x86_64",
    "linux-aarch64": "aarch64",
    "linux-ppc64le": "ppc64le",
    "osx-64": "x86_64",
    "osx-arm64": "m1",
    "win-64": "x86_64",
}


def virtual_package_strings(platform: PlatformSpec) -> list[str]:
    """`name=version[=build]` strings, in the form pixi.lock (format 7) records per platform."""
    req = platform.requirements
    subdir = platform.subdir
    result: list[str] = []
    if req.cuda:
        result.append(f"__cuda={req.cuda}")
    if subdir.startswith(("linux-", "osx-")):
        result.append("__unix=0=0")
    if subdir.startswith("linux-"):
        result.append(f"__linux={req.linux or DEFAULT_LINUX}")
        result.append(f"__glibc={req.glibc or DEFAULT_GLIBC}")
    elif subdir.startswith("osx-"):
        result.append(f"__osx={req.macos or DEFAULT_MACOS.get(subdir, '13.0')}")
    elif subdir.startswith("win-"):
        result.append("__win=0=0")
    archspec = req.archspec or DEFAULT_ARCHSPEC.get(subdir)
    if archspec:
        result.append(f"__archspec=1={archspec}")
    return result


_ORDER = ("__cuda", "__unix", "__linux", "__glibc", "__osx", "__win", "__archspec")


def merge_virtual_packages(lists: list[list[str]]) -> list[str]:
    """One platform entry for several environments: every virtual package any of them assumes.

    pixi.lock keeps one entry per platform, shared by all environments; an environment that
    declares CUDA at feature level must not lose `__cuda` to one that does not. Where two
    environments assume different versions, the entry names the higher.
    """
    chosen: dict[str, str] = {}
    for items in lists:
        for text in items:
            name, _, rest = text.partition("=")
            previous = chosen.get(name)
            if previous is None or Version(rest.partition("=")[0] or "0") > Version(previous.partition("=")[0] or "0"):
                chosen[name] = rest
    order = {name: index for index, name in enumerate(_ORDER)}
    names = sorted(chosen, key=lambda n: (order.get(n, len(order)), n))
    return [f"{name}={chosen[name]}" for name in names]


def parse_virtual_package(text: str) -> GenericVirtualPackage:
    name, _, rest = text.partition("=")
    version, _, build = rest.partition("=")
    return GenericVirtualPackage(PackageName(name), Version(version or "0"), BuildString(build or "0"))


def virtual_packages(platform: PlatformSpec) -> list[GenericVirtualPackage]:
    return [parse_virtual_package(text) for text in virtual_package_strings(platform)]
