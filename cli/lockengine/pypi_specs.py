"""`[pypi-dependencies]` and `[pypi-options]` of pixi.toml, read into plain data.

A PyPI dependency is a registry requirement (`numpy = ">=2"`, `{ version, extras, index,
env-markers }`), a local path (`{ path = ".", editable = true }`), a direct URL or a git
repository. `requirement()` gives the PEP 508 form the resolver and the freshness check use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

DEFAULT_INDEX = "https://pypi.org/simple"
PRERELEASE_MODES = ("disallow", "allow", "if-necessary", "explicit", "if-necessary-or-explicit")
DEFAULT_PRERELEASE_MODE = "if-necessary-or-explicit"
INDEX_STRATEGIES = ("first-index", "unsafe-first-match", "unsafe-best-match")

REGISTRY = "registry"
PATH = "path"
URL = "url"
GIT = "git"


@dataclass(frozen=True)
class PypiDependency:
    """One entry of `[pypi-dependencies]`."""

    name: str
    kind: str = REGISTRY
    specifier: str = ""
    extras: tuple[str, ...] = ()
    marker: str | None = None
    index: str | None = None
    path: str | None = None
    editable: bool = False
    url: str | None = None
    git: str | None = None
    reference: tuple[str, str] | None = None  # ("branch" | "tag" | "rev", value)
    subdirectory: str | None = None

    @property
    def normalized_name(self) -> str:
        return canonicalize_name(self.name)

    def requirement(self, root: Path) -> str:
        """PEP 508: `name[extras] specifier ; marker`, or `name @ url` for paths, URLs and git."""
        text = self.name + (f"[{','.join(self.extras)}]" if self.extras else "")
        if self.kind == REGISTRY:
            text += self.specifier
        elif self.kind == PATH:
            text += f" @ {self.absolute_path(root).as_uri()}"
        elif self.kind == URL:
            text += f" @ {self.url}"
        else:
            ref = f"@{self.reference[1]}" if self.reference else ""
            sub = f"#subdirectory={self.subdirectory}" if self.subdirectory else ""
            text += f" @ git+{self.git}{ref}{sub}"
        if self.marker:
            text += f" ; {self.marker}"
        return text

    def absolute_path(self, root: Path) -> Path:
        assert self.path is not None
        path = Path(self.path).expanduser()
        return Path(_normalize(root / path)) if not path.is_absolute() else path


def _normalize(path: Path) -> str:
    import os

    return os.path.normpath(str(path))


def parse_pypi_dependency(name: str, value: Any) -> PypiDependency:
    """A ValueError names what cannot be read."""
    if isinstance(value, str):
        return PypiDependency(name, specifier=_specifier(value))
    if not isinstance(value, dict):
        raise ValueError("expected a version string or a table")
    extras = value.get("extras", [])
    if not isinstance(extras, list) or not all(isinstance(e, str) for e in extras):
        raise ValueError("extras must be a list of names")
    common: dict[str, Any] = {"extras": tuple(extras), "marker": value.get("env-markers")}
    if "path" in value:
        return PypiDependency(
            name, PATH, path=str(value["path"]), editable=bool(value.get("editable", False)), **common
        )
    if "url" in value:
        return PypiDependency(name, URL, url=str(value["url"]), subdirectory=value.get("subdirectory"), **common)
    if "git" in value:
        reference = next(((k, str(value[k])) for k in ("branch", "tag", "rev") if k in value), None)
        return PypiDependency(
            name, GIT, git=str(value["git"]), reference=reference, subdirectory=value.get("subdirectory"), **common
        )
    unknown = set(value) - {"version", "extras", "index", "env-markers"}
    if unknown:
        raise ValueError(f"unknown key {', '.join(sorted(unknown))}")
    return PypiDependency(
        name, specifier=_specifier(str(value.get("version", "*"))), index=value.get("index"), **common
    )


def _specifier(text: str) -> str:
    """pixi accepts `*` and a bare version (`1.2` means `==1.2`); PEP 440 for the rest."""
    text = text.strip()
    if text in ("", "*"):
        return ""
    if text[0].isdigit():
        return f"=={text}"
    return text


@dataclass(frozen=True)
class PypiOptions:
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[tuple[str, str], ...] = ()  # ("url" | "path", location)
    no_build: bool | tuple[str, ...] = False
    no_binary: bool | tuple[str, ...] = False
    index_strategy: str | None = None
    prerelease_mode: str | None = None
    dependency_overrides: dict[str, str] = field(default_factory=dict)
    no_build_isolation: bool | tuple[str, ...] = False

    def indexes(self) -> list[str]:
        """The indexes pixi.lock records: the index URL (PyPI unless set), then the extra ones."""
        return [self.index_url or DEFAULT_INDEX, *self.extra_index_urls]

    def overlay(self, other: PypiOptions) -> PypiOptions:
        """`other` (the features) wins on single values; lists and sets are merged."""
        return PypiOptions(
            index_url=other.index_url or self.index_url,
            extra_index_urls=_merged(self.extra_index_urls, other.extra_index_urls),
            find_links=_merged(self.find_links, other.find_links),
            no_build=_merged_flag(self.no_build, other.no_build),
            no_binary=_merged_flag(self.no_binary, other.no_binary),
            index_strategy=other.index_strategy or self.index_strategy,
            prerelease_mode=other.prerelease_mode or self.prerelease_mode,
            dependency_overrides={**self.dependency_overrides, **other.dependency_overrides},
            no_build_isolation=_merged_flag(self.no_build_isolation, other.no_build_isolation),
        )


def _merged(a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys([*a, *b]))


def _merged_flag(a: bool | tuple[str, ...], b: bool | tuple[str, ...]) -> bool | tuple[str, ...]:
    if a is True or b is True:
        return True
    return _merged(a or (), b or ()) or False


def parse_pypi_options(table: Any) -> PypiOptions:
    if not isinstance(table, dict):
        raise ValueError("expected a table")
    known = {
        "index-url",
        "extra-index-urls",
        "find-links",
        "no-build",
        "no-binary",
        "index-strategy",
        "prerelease-mode",
        "dependency-overrides",
        "no-build-isolation",
    }
    unknown = set(table) - known
    if unknown:
        raise ValueError(f"unknown key {', '.join(sorted(unknown))}")
    find_links = []
    for item in table.get("find-links", []):
        if isinstance(item, dict) and len(item) == 1 and next(iter(item)) in ("url", "path"):
            key = next(iter(item))
            find_links.append((key, str(item[key])))
        else:
            raise ValueError(f"cannot read find-links entry {item!r} (use {{ url = ... }} or {{ path = ... }})")
    mode = table.get("prerelease-mode")
    if mode is not None and mode not in PRERELEASE_MODES:
        raise ValueError(f"prerelease-mode must be one of {', '.join(PRERELEASE_MODES)}")
    strategy = table.get("index-strategy")
    if strategy is not None and strategy not in INDEX_STRATEGIES:
        raise ValueError(f"index-strategy must be one of {', '.join(INDEX_STRATEGIES)}")
    overrides = table.get("dependency-overrides", {})
    if not isinstance(overrides, dict):
        raise ValueError("dependency-overrides must be a table")
    return PypiOptions(
        index_url=table.get("index-url"),
        extra_index_urls=tuple(table.get("extra-index-urls", [])),
        find_links=tuple(find_links),
        no_build=_flag(table.get("no-build", False)),
        no_binary=_flag(table.get("no-binary", False)),
        index_strategy=strategy,
        prerelease_mode=mode,
        dependency_overrides={str(k): _override(v) for k, v in overrides.items()},
        no_build_isolation=_flag(table.get("no-build-isolation", False)),
    )


def _flag(value: Any) -> bool | tuple[str, ...]:
    if isinstance(value, bool):
        return value
    if isinstance(value, list):
        return tuple(canonicalize_name(str(v)) for v in value)
    raise ValueError(f"expected true, false or a list of names, not {value!r}")


def _override(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("version", "*")
    return _specifier(str(value))


def render_requirement(text: str) -> str:
    """A requirement the way pixi writes `requires_dist` (pep508_rs): `name[extras]specifiers ; marker`."""
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        return text
    head = text.split(";", 1)[0]
    name_part = re.match(r"\s*[A-Za-z0-9._-]+(\s*\[[^\]]*\])?", head)
    rest = head[name_part.end() :] if name_part else ""
    out: str = canonicalize_name(requirement.name)
    if requirement.extras and name_part and name_part.group(1):
        # as written (pep508_rs keeps their order; packaging's are a set, in another order each run)
        written = [canonicalize_name(e.strip()) for e in name_part.group(1).strip().strip("[]").split(",") if e.strip()]
        out += f"[{','.join(dict.fromkeys(written))}]"
    if requirement.url:
        out += f" @ {requirement.url}"
    else:
        specifiers = [s.strip() for s in rest.strip().strip("()").split(",") if s.strip()]
        out += ",".join(render_specifier(s) for s in specifiers)
    if requirement.marker is not None:
        out += f" ; {str(requirement.marker).replace(chr(34), chr(39))}"
    return out


def render_specifier(text: str) -> str:
    """One version specifier as pep508_rs writes it: no spaces, the version normalised (`>= 1.0` → `>=1.0`)."""
    match = re.match(r"^(===|~=|==|!=|<=|>=|<|>)\s*(.+)$", text)
    if not match:
        return text.replace(" ", "")
    operator, version = match.groups()
    if version.endswith(".*"):
        return f"{operator}{version}"
    try:
        return f"{operator}{Version(version)}"
    except InvalidVersion:
        return f"{operator}{version}"
