"""The base environment: the Python running the runner and what its site-packages hold.

It is read from the file system only (folder names of `*.dist-info`, `conda-meta/*.json`
file names), never by importing anything from it, and cheaply, because it is computed
on every run that has a requirements.txt, cached overlay or not.
"""

from __future__ import annotations

import hashlib
import os
import site
import sys
from functools import cached_property
from pathlib import Path

from runner.requirements import canonical_name, is_version


class Distribution:
    __slots__ = ("location", "name", "version")

    def __init__(self, name: str, version: str, location: str) -> None:
        self.name = name
        self.version = version
        self.location = location


class CondaPackage:
    __slots__ = ("build", "name", "version")

    def __init__(self, name: str, version: str, build: str) -> None:
        self.name = name
        self.version = version
        self.build = build


class BaseEnvironment:
    """What the user's code sees without an overlay."""

    def __init__(self, python: Path, prefix: Path, site_dirs: list[str], conda_prefix: Path) -> None:
        self.python = python
        self.prefix = prefix
        self.site_dirs = site_dirs
        self.conda_prefix = conda_prefix
        self.version = "{}.{}.{}".format(*sys.version_info[:3])
        self.implementation = sys.implementation.name

    @classmethod
    def current(cls, environ: dict[str, str] | None = None) -> BaseEnvironment:
        """The interpreter running this code; RUNNER_BASE_PREFIX only moves where conda-meta is read."""
        env = os.environ if environ is None else environ
        prefix = Path(sys.prefix)
        return cls(
            python=Path(sys.executable),
            prefix=prefix,
            site_dirs=base_site_dirs(),
            conda_prefix=Path(env.get("RUNNER_BASE_PREFIX") or prefix),
        )

    @cached_property
    def distributions(self) -> dict[str, Distribution]:
        """Installed distributions by canonical name; the first on sys.path wins, as for imports."""
        found: dict[str, Distribution] = {}
        for folder in self.site_dirs:
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                parsed = _parse_metadata_dir(entry)
                if parsed is not None and canonical_name(parsed[0]) not in found:
                    found[canonical_name(parsed[0])] = Distribution(parsed[0], parsed[1], folder)
        return found

    @cached_property
    def conda_packages(self) -> dict[str, CondaPackage]:
        """Packages conda/pixi/micromamba installed into the prefix, from conda-meta file names."""
        packages: dict[str, CondaPackage] = {}
        try:
            names = os.listdir(self.conda_prefix / "conda-meta")
        except OSError:
            return packages
        for file_name in names:
            if not file_name.endswith(".json"):
                continue
            # `<name>-<version>-<build>.json`: name may hold dashes, version and build never do.
            parts = file_name[: -len(".json")].rsplit("-", 2)
            if len(parts) == 3:
                packages[parts[0]] = CondaPackage(*parts)
        return packages

    @cached_property
    def fingerprint(self) -> str:
        """Changes whenever an installed distribution, a site folder or the interpreter changes."""
        digest = hashlib.sha256()
        digest.update(f"{self.implementation}-{self.version}\n{os.path.realpath(self.python)}\n".encode())
        for folder in self.site_dirs:
            digest.update(f"site {folder}\n".encode())
        for key in sorted(self.distributions):
            dist = self.distributions[key]
            digest.update(f"{key}=={dist.version} {dist.location}\n".encode())
        return digest.hexdigest()

    def pins(self) -> str:
        """`name==version` of every base distribution, for `uv pip ... -c`."""
        lines = [f"{key}=={d.version}" for key, d in sorted(self.distributions.items()) if is_version(d.version)]
        return "".join(line + "\n" for line in lines)

    def names(self, keep: frozenset[str] = frozenset()) -> str:
        """Names of base distributions (minus `keep`) for `uv pip ... --excludes`."""
        return "".join(key + "\n" for key in sorted(self.distributions) if key not in keep)


def base_site_dirs() -> list[str]:
    """The site folders this interpreter imports from, in order: for a venv its own (and the
    system's only if the venv includes them), for a conda prefix the prefix's.

    These, not the interpreter's installation, are what an overlay must see: a venv's
    base interpreter has a different site-packages than the venv itself.
    """
    folders = [folder for folder in site.getsitepackages() if os.path.isdir(folder)]
    user = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if user and os.path.isdir(user) and user not in folders:
        folders.insert(0, user)
    return folders


def _parse_metadata_dir(entry: os.DirEntry[str]) -> tuple[str, str] | None:
    name = entry.name
    if name.endswith(".dist-info"):
        stem = name[: -len(".dist-info")]
    elif name.endswith(".egg-info"):
        stem = name[: -len(".egg-info")]
        # `name-1.0-py3.12.egg-info`: drop the python tag.
        head, _, tail = stem.rpartition("-")
        if head and tail.startswith("py"):
            stem = head
    else:
        return None
    project, _, version = stem.rpartition("-")
    if project and version:
        return project, version
    return _read_metadata_name_version(entry.path)


def _read_metadata_name_version(path: str) -> tuple[str, str] | None:
    """For `name.egg-info` without a version in its folder name: read PKG-INFO's headers."""
    candidate = os.path.join(path, "PKG-INFO") if os.path.isdir(path) else path
    name = version = None
    try:
        with open(candidate, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    break
                if line.startswith("Name:"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("Version:"):
                    version = line.split(":", 1)[1].strip()
    except OSError:
        return None
    return (name, version) if name and version else None
