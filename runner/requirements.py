"""requirements.txt read into plain data: PEP 508 requirements, direct references and pip-style options.

The runner parses the file itself (instead of only handing it to uv) for three reasons:
a line that does not parse is reported with its line number before anything is
installed; a requirement can be compared with the locked base's installed version to
explain a conflict; and the overlay's cache key is computed from a normalised form, so
reordering lines or editing comments does not rebuild an overlay.

Two levels. The pip file format (options, includes, continuations, hashes, paths) is
read here, line by line. Each requirement itself (PEP 440 versions, PEP 508
requirements and markers) is read by `packaging`, from the base environment (the
flavors lock it in their `runner` feature), and only when it is needed: to compare
with the base and to build an overlay. A job whose overlay is cached never imports it
(about 25 ms here), because the overlay's key comes from the lines' text.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from runner.errors import BadInput, OverlayError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType

    from packaging.markers import Marker
    from packaging.requirements import Requirement as PackagingRequirement
    from packaging.specifiers import SpecifierSet

    from runner.sources import Sources

_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^file:")
_NAMED_URL = re.compile(r"^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[[^\]]*\])?\s*@")
_ARCHIVE = re.compile(r"\.(whl|zip|tar\.gz|tgz|tar\.bz2|tar\.xz)$", re.IGNORECASE)
_SDIST = re.compile(r"^(?P<name>.+?)-[0-9][^-]*\.(zip|tar\.gz|tgz|tar\.bz2|tar\.xz)$", re.IGNORECASE)
_HASH = re.compile(r"\s+--hash[=\s]\s*(\S+)")
_ENV_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")
_COMMENT = re.compile(r"(^|\s+)#.*$")
_NAME_SEPARATORS = re.compile(r"[-_.]+")

PARSE_FIX = "write one requirement per line in PEP 508 form, e.g. 'requests>=2.31' or 'numpy==2.1.*'"


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: `Foo_Bar.baz` → `foo-bar-baz`.

    The standard's own one-line rule (what `packaging.utils.canonicalize_name` does): the
    base's fingerprint needs it on every job, and `packaging.utils` alone imports in ~10 ms.
    """
    return _NAME_SEPARATORS.sub("-", name).lower()


def _packaging() -> tuple[ModuleType, ModuleType, ModuleType, ModuleType]:
    """The `packaging` modules, imported on first use; a base without them is one overlay error."""
    try:
        from packaging import markers, requirements, specifiers, version
    except ModuleNotFoundError:
        raise OverlayError(
            f"requirements.txt needs the 'packaging' library, and the base environment ({sys.prefix}) has none",
            "add packaging to the flavor's environment (the runner feature in pixi.toml), "
            "or run on an environment that has it (cli run --python)",
        ) from None
    return markers, requirements, specifiers, version


def is_version(text: str) -> bool:
    version = _packaging()[3]
    try:
        version.Version(text)
    except version.InvalidVersion:
        return False
    return True


class InvalidRequirement(ValueError):
    pass


class Requirement:
    """One PEP 508 requirement (as `packaging` reads it) and where it came from."""

    __slots__ = ("hashes", "parsed", "where")

    def __init__(self, parsed: PackagingRequirement, hashes: tuple[str, ...] = (), where: str = "") -> None:
        self.parsed = parsed
        self.hashes = hashes
        self.where = where

    @property
    def name(self) -> str:
        return self.parsed.name

    @property
    def key(self) -> str:
        return canonical_name(self.parsed.name)

    @property
    def extras(self) -> tuple[str, ...]:
        return tuple(sorted(self.parsed.extras))

    @property
    def specifier(self) -> SpecifierSet:
        return self.parsed.specifier

    @property
    def url(self) -> str | None:
        return self.parsed.url

    @property
    def marker(self) -> Marker | None:
        return self.parsed.marker

    def applies(self, extras: tuple[str, ...] = ("",)) -> bool:
        """Whether the marker holds on this interpreter for any of `extras` ("" = no extra)."""
        marker = self.parsed.marker
        if marker is None:
            return True
        markers = _packaging()[0]
        try:
            return any(marker.evaluate({"extra": extra}) for extra in extras)
        except (markers.InvalidMarker, markers.UndefinedComparison, markers.UndefinedEnvironmentName):
            return True  # let uv decide; it evaluates markers the same way

    def satisfied_by(self, version: str) -> bool | None:
        """True/False, or None when the installed version is not PEP 440 or this is a URL requirement.

        Pre-releases count, as for pip's check of installed distributions: the base's locked
        version is what it is, whatever the specifier says about choosing new ones.
        """
        if self.parsed.url is not None:
            return None
        versions = _packaging()[3]
        try:
            return self.parsed.specifier.contains(versions.Version(version), prereleases=True)
        except versions.InvalidVersion:
            return None

    def without_marker(self) -> str:
        """`name[extras]specifier`, for messages about a requirement whose marker applied."""
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        return f"{self.name}{extras}{self.parsed.specifier}"

    def pep508(self) -> str:
        return str(self.parsed)

    def line(self) -> str:
        return self.pep508() + "".join(f" --hash={h}" for h in self.hashes)

    def __str__(self) -> str:
        return self.pep508()


def parse_requirement(text: str, where: str = "") -> Requirement:
    """Parse one PEP 508 string; raises InvalidRequirement with a one-line reason."""
    requirements = _packaging()[1]
    try:
        parsed = requirements.Requirement(text.strip())
    except requirements.InvalidRequirement as error:
        raise InvalidRequirement(_first_line(error)) from None
    if parsed.url is not None and not _URL_SCHEME.match(parsed.url):
        raise InvalidRequirement(f"'{parsed.name} @' must be followed by a URL, got {parsed.url!r}")
    return Requirement(parsed, (), where)


def parse_marker(text: str) -> Marker:
    markers = _packaging()[0]
    try:
        return markers.Marker(text)
    except markers.InvalidMarker as error:
        raise InvalidRequirement(_first_line(error)) from None


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class RequirementLine:
    """A requirement line as written (hashes apart), until `packaging` reads it.

    A `name @ file:...` line has its path already resolved against the file's folder, and
    its name known (`url_name`), both read from the text.
    """

    __slots__ = ("hashes", "text", "url", "url_name", "where")

    def __init__(self, text: str, hashes: tuple[str, ...], where: str, url_name: str = "", url: str = "") -> None:
        self.text = text
        self.hashes = hashes
        self.where = where
        self.url_name = url_name
        self.url = url

    def normalized(self) -> str:
        return " ".join(self.text.split()) + "".join(f" --hash={h}" for h in self.hashes)

    def parse(self) -> Requirement:
        try:
            requirement = parse_requirement(self.text, self.where)
        except InvalidRequirement as error:
            raise BadInput(f"{self.where}: cannot parse {self.text!r}: {error}", PARSE_FIX) from None
        requirement.hashes = self.hashes
        return requirement


class DirectReference:
    """A bare path or URL line (`./wheels/tool-1.0-py3-none-any.whl`, `./src`); name unknown until built."""

    __slots__ = ("marker", "target", "where")

    def __init__(self, target: str, marker: str | None = None, where: str = "") -> None:
        self.target = target
        self.marker = marker
        self.where = where

    @property
    def is_local(self) -> bool:
        return not _URL_SCHEME.match(self.target) or self.target.startswith("file:")

    def line(self) -> str:
        return self.target + (f" ; {self.marker}" if self.marker else "")


class RequirementSet:
    """Everything read from a requirements.txt and the files it includes with -r/-c."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: list[Path] = []
        self.lines: list[RequirementLine] = []
        self.constraint_lines: list[RequirementLine] = []
        self.direct: list[DirectReference] = []
        self.index_url: str | None = None
        self.extra_index_urls: list[str] = []
        self.find_links: list[str] = []
        self.no_index = False
        self.uv_flags: list[str] = []
        self.ignored: list[str] = []
        self.environ: Mapping[str, str] = {}
        # The image's supervisor reads a copy of the job's files, each at `root` + the path the job saw it at
        # (see `read_requirements`); locally `root` is None and paths are the file system's.
        self.root: Path | None = None
        self.display_root: Path = path.parent  # paths in messages are shown relative to it
        # Whose pip.conf files are read: anyone's (None), or only that UID's (the supervisor, root, reads only its own).
        self.settings_owner: int | None = None
        self.local_paths: list[Path] = []  # every local file or folder this file names, as read
        self._sources: Sources | None = None
        self._requirements: list[Requirement] | None = None
        self._constraints: list[Requirement] | None = None

    @property
    def is_empty(self) -> bool:
        return not self.lines and not self.direct

    @property
    def requirements(self) -> list[Requirement]:
        """The requirement lines read by `packaging` (first use imports it); a bad line is a BadInput naming it."""
        if self._requirements is None:
            for reference in self.direct:
                if reference.marker:
                    try:
                        parse_marker(reference.marker)
                    except InvalidRequirement as error:
                        raise BadInput(
                            f"{reference.where}: cannot parse {reference.line()!r}: {error}", PARSE_FIX
                        ) from None
            self._requirements = [line.parse() for line in self.lines]
        return self._requirements

    @property
    def constraints(self) -> list[Requirement]:
        if self._constraints is None:
            self._constraints = [line.parse() for line in self.constraint_lines]
        return self._constraints

    @property
    def sources(self) -> Sources:
        """Where the overlay's packages come from: this file, uv's variables and pip's settings, merged."""
        if self._sources is None:
            from runner.pip_settings import read_pip_settings
            from runner.sources import resolve_sources

            # The supervisor (root) reads only root's pip configuration files, never one a job user could write.
            pip = read_pip_settings(self.environ, Path(sys.prefix), owner=self.settings_owner)
            self._sources = resolve_sources(self, self.environ, pip)
        return self._sources

    def source_args(self) -> list[str]:
        """Index, find-links, constraints and build options for `uv pip compile/sync`."""
        return self.sources.args()

    def local_source_names(self) -> list[str]:
        """Names of the packages this file ships as sources (a folder or an sdist next to the code).

        They are the job's own code, built even under the wheels-only default; uv needs their
        names for that (`--no-binary NAME`), read without building: pyproject.toml's
        [project] name, or an sdist's file name.
        """
        names = []
        targets: list[tuple[str | None, str, str]] = [(None, r.target, r.where) for r in self.direct if r.is_local]
        targets += [(r.url_name, r.url, r.where) for r in self.lines if r.url.startswith("file:")]
        for name, target, where in targets:
            path = Path(target.removeprefix("file://").removeprefix("file:"))
            if path.suffix == ".whl":
                continue
            if path.is_dir():
                name = name or _project_name(path)
            elif _SDIST.match(path.name):
                name = name or _SDIST.match(path.name)["name"]  # type: ignore[index]
            if not name:
                raise BadInput(
                    f"{where}: cannot tell the name of the package in {path.name} without building it",
                    "give it a [project] name in its pyproject.toml, or write the line as 'NAME @ ./path'",
                )
            names.append(canonical_name(name))
        return sorted(set(names))

    def requirements_in(self, skip: frozenset[str] = frozenset()) -> str:
        lines = sorted(r.line() for r in self.requirements if r.key not in skip)
        lines += [d.line() for d in self.direct]
        return "".join(line + "\n" for line in lines)

    def constraints_in(self) -> str:
        return "".join(line + "\n" for line in sorted(c.normalized() for c in self.constraint_lines))

    def normalized(self) -> str:
        """A canonical text of what the overlay must contain; order of requirement lines and comments do not count.

        Local paths are written relative to requirements.txt's folder: the same code unpacked
        from a zip lands in a new temporary folder on every run and must keep its overlay.
        """
        lines = sorted(line.normalized() for line in self.lines) + [d.line() for d in self.direct]
        parts = ["[sources]", *self.sources.key_lines(), "[requirements]", *lines]
        parts += ["[constraints]", self.constraints_in(), "[local files]", *self._local_digests()]
        folder = os.path.abspath(self.path.parent)
        return self.virtual("\n".join(parts).replace(folder + os.sep, "./").replace(folder, "."))

    def virtual(self, text: str) -> str:
        """`text` with the paths of a build's copy (runner/shipped.py) written as the job saw them."""
        if self.root is None:
            return text
        from urllib.parse import quote

        return text.replace(str(self.root), "").replace(quote(str(self.root)), "")  # a path, or within a file: URL

    def recorded_sources(self) -> dict[str, object]:
        """Where packages come from, as run.json and overlay.json record it: the paths the job saw."""

        def virtual(value: object) -> object:
            if isinstance(value, str):
                return self.virtual(value)
            if isinstance(value, list):
                return [virtual(item) for item in value]
            if isinstance(value, dict):
                return {name: virtual(item) for name, item in value.items()}
            return value

        return virtual(self.sources.record())  # type: ignore[return-value]

    def _local_digests(self) -> list[str]:
        """What the local files a build can read hold, so that other content gives another overlay.

        The job's own files (local packages, requirements.txt's find-links and index folders):
        the sha256 of every file, hidden ones and caches included (a build may read them). In
        the image root hashes its own copy of them and builds from that same copy, so the job
        cannot change them between the two. Local locations from the settings (UV_FIND_LINKS,
        pip.conf; the service's, read where they are) by each file's size, times and inode
        instead, which stays fast for a large wheel folder: a change by anyone but root (a
        write, a rename, a restored modification time) changes the file's ctime, so an overlay
        built while such a folder was being changed is never found again.
        """
        digests = []
        targets = [r.target for r in self.direct if r.is_local]
        targets += [r.url for r in self.lines if r.url.startswith("file:")]
        targets += [x for x in (self.index_url, *self.extra_index_urls, *self.find_links) if x and _is_local(x)]
        for target in targets:
            digests.append(f"{target} {_content_digest(Path(_local_path(target)))}")
        for location in self.sources.local_locations():
            if location not in targets:
                digests.append(f"{location} {_stat_digest(Path(_local_path(location)))}")
        return digests


def _project_name(folder: Path) -> str | None:
    """`[project] name` of a source folder's pyproject.toml, or None when it is not written there."""
    import tomllib  # only for jobs shipping a source folder

    try:
        with (folder / "pyproject.toml").open("rb") as handle:
            project = tomllib.load(handle).get("project")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    name = project.get("name") if isinstance(project, dict) else None
    return name if isinstance(name, str) and name else None


def _is_local(location: str) -> bool:
    return not _URL_SCHEME.match(location) or location.startswith("file:")


def _local_path(location: str) -> str:
    """The path of a local location (`file:///x`, `file:x` or a path)."""
    from urllib.parse import unquote

    if location.startswith("file:"):
        return unquote(location.removeprefix("file:").removeprefix("//"))
    return location


def _content_digest(path: Path) -> str:
    """sha256 of a file, or of every entry under a folder (files by content, links by target); '-' if absent."""
    if path.is_file():
        return _file_digest(path)
    if not path.is_dir():
        return "-"
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            entry = os.path.join(folder, name)
            relative = os.path.relpath(entry, path)
            if os.path.islink(entry) and not os.path.isfile(entry):
                content = "link " + os.readlink(entry)
            else:
                content = _file_digest(Path(entry))
            digest.update(f"{relative!r} {content}\n".encode())
    return digest.hexdigest()


def _stat_digest(path: Path) -> str:
    """Of every entry under `path` (or of `path`): name, type, size, inode, modification and change times."""
    digest = hashlib.sha256()
    walked = os.walk(path) if path.is_dir() else [(str(path.parent), [], [path.name])]
    for folder, dirs, files in walked:
        dirs.sort()
        for name in sorted(files):
            entry = os.path.join(folder, name)
            try:
                status = os.stat(entry)
            except OSError:
                continue
            fields = [status.st_mode, status.st_size, status.st_dev, status.st_ino, status.st_mtime_ns]
            fields.append(status.st_ctime_ns)
            digest.update(f"{os.path.relpath(entry, path)!r} {fields}\n".encode())
    return digest.hexdigest()


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_requirements(
    path: Path,
    environ: Mapping[str, str] | None = None,
    display_root: Path | None = None,
    root: Path | None = None,
    settings_owner: int | None = None,
) -> RequirementSet:
    """Parse `path` (and what it includes); every problem is a BadInput naming the file and line.

    Local paths are made absolute as pip makes them, by joining them to the folder of the file
    that names them (no symbolic link resolved). With `root` (the image's supervisor reading the
    copy of a job's files it was sent), `path` lies under `root`, and every path the file names
    is read at `root` + that path: nothing outside the copy is ever opened (runner/shipped.py). With
    `settings_owner`, only pip.conf files of that UID are read.
    """
    result = RequirementSet(Path(os.path.abspath(path)))
    result.environ = os.environ if environ is None else environ
    result.root = root
    result.settings_owner = settings_owner
    result.display_root = display_root or result.path.parent
    _Reader(result, result.environ, result.display_root).read(result.path, constraints=False)
    return result


class _Reader:
    def __init__(self, result: RequirementSet, environ: Mapping[str, str], display_root: Path) -> None:
        self.result = result
        self.environ = environ
        self.display_root = display_root
        self.stack: list[Path] = []

    def local(self, folder: Path, value: str) -> Path:
        """The local path `value` names from `folder` (`~` is the job's HOME), recorded for the supervisor's copy."""
        if value == "~" or value.startswith("~/"):
            value = (self.environ.get("HOME") or os.path.expanduser("~")) + value[1:]
        elif value.startswith("~"):
            value = os.path.expanduser(value)  # ~user/...
        root = self.result.root
        if root is None:
            path = Path(os.path.abspath(os.path.join(folder, value)))
        else:
            # The path the job saw, made absolute and normalised as on its side, then read inside the copy.
            seen = os.path.normpath(os.path.join("/" + os.path.relpath(folder, root), value))
            path = root / seen.lstrip("/")
        self.result.local_paths.append(path)
        return path

    def display(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.display_root))
        except ValueError:
            return str(path)

    def fail(self, where: str, text: str, reason: str, fix: str = PARSE_FIX) -> BadInput:
        return BadInput(f"{where}: cannot parse {text!r}: {reason}", fix)

    def read(self, path: Path, constraints: bool) -> None:
        resolved = path.resolve()
        if resolved in self.stack:
            raise BadInput(f"{self.display(path)}: includes itself through -r/-c", "remove the circular include")
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise BadInput(f"{self.display(path)}: no such requirements file", "fix the -r/-c path") from None
        except UnicodeDecodeError:
            raise BadInput(f"{self.display(path)}: not UTF-8 text", "save requirements.txt as UTF-8") from None
        except OSError as error:  # a folder, or a file the job's user may not read
            raise BadInput(f"{self.display(path)}: cannot read it ({error.strerror})", "fix the -r/-c path") from None
        self.stack.append(resolved)
        self.result.files.append(path)
        for number, line in _logical_lines(raw):
            where = f"{self.display(path)} line {number}"
            text = _ENV_VAR.sub(lambda m: self.environ.get(m.group(1), m.group(0)), line)
            if text.startswith("-"):
                self.option(text, path.parent, where, constraints)
            else:
                self.requirement(text, path.parent, where, constraints)
        self.stack.pop()

    def option(self, text: str, folder: Path, where: str, constraints: bool) -> None:
        flag, value = _split_option(text)
        result = self.result
        if flag in ("-r", "--requirement", "-c", "--constraint"):
            if not value:
                raise self.fail(where, text, f"{flag} needs a file name")
            self.read(self.local(folder, value), constraints=constraints or flag in ("-c", "--constraint"))
        elif constraints:
            raise self.fail(where, text, "options are not allowed in a constraints file", "keep only pins in it")
        elif flag in ("-i", "--index-url"):
            result.index_url = self.location(value, folder, where, text)
        elif flag == "--extra-index-url":
            result.extra_index_urls.append(self.location(value, folder, where, text))
        elif flag in ("-f", "--find-links"):
            result.find_links.append(self.location(value, folder, where, text))
        elif flag == "--no-index":
            result.no_index = True
        elif flag in ("-e", "--editable"):
            # An overlay is a sealed copy shared by every job that asks for the same: an editable install would
            # point it at this job's code folder, which the next job does not have (and uv dropped it silently).
            raise BadInput(
                f"{where}: {text!r}: editable installs (-e) are not supported in requirements.txt",
                f"write {value or './your-package'!r} without -e: the package is installed as a copy",
            )
        elif flag == "--pre":
            result.uv_flags += ["--prerelease", "allow"]
        elif flag in ("--only-binary", "--no-binary"):
            result.uv_flags += [flag, self.required(value, where, text)]
        elif flag == "--trusted-host":
            result.uv_flags += ["--allow-insecure-host", self.required(value, where, text)]
        elif flag == "--prefer-binary":
            result.ignored.append(f"{where}: {flag} (uv has no such option; ignored)")
        else:
            raise self.fail(
                where,
                text,
                f"unsupported option {flag}",
                "use -r, -c, -e, -i/--index-url, --extra-index-url, -f/--find-links, --no-index, --pre, "
                "--only-binary, --no-binary or --trusted-host",
            )

    def required(self, value: str, where: str, text: str) -> str:
        if not value:
            raise self.fail(where, text, "this option needs a value")
        return value

    def location(self, value: str, folder: Path, where: str, text: str) -> str:
        """An index or find-links location; a relative local path is relative to the requirements file."""
        value = self.required(value, where, text)
        if not _is_local(value):
            return value
        # A file: URL is a local path too: read (in the image, from root's copy of it) and keyed like one.
        return str(self.local(folder, _local_path(value)))

    def local_target(self, value: str, folder: Path, where: str, text: str) -> str:
        if _URL_SCHEME.match(value) and not value.startswith("file:"):
            return value
        path = self.local(folder, value.removeprefix("file://").removeprefix("file:"))
        if not path.exists():
            raise BadInput(
                f"{where}: no such file or folder {value!r}", "ship it next to requirements.txt or fix the path"
            )
        return str(path)

    def requirement(self, text: str, folder: Path, where: str, constraints: bool) -> None:
        hashes = tuple(_HASH.findall(text))
        body = _HASH.sub("", text).strip()
        if re.search(r"\s--?[A-Za-z]", body):
            option = re.search(r"\s(--?[A-Za-z][\w-]*)", body)
            name = option.group(1) if option else "option"
            raise self.fail(
                where, text, f"per-requirement option {name} is not supported", "keep only --hash after a requirement"
            )
        if self.is_direct(body):
            if constraints:
                raise self.fail(
                    where, text, "a constraints file takes pins, not paths or URLs", "keep only 'name==version' lines"
                )
            target, _, marker = body.partition(";")
            reference = DirectReference(
                self.local_target(target.strip(), folder, where, text), marker.strip() or None, where
            )
            self.result.direct.append(reference)
            return
        url_name = url = ""
        named = _NAMED_URL.match(body)
        if named is not None:
            # `name @ URL [; marker]`: a marker after a URL must follow whitespace (PEP 508), so the URL is one word.
            head, rest = body[: named.end()], body[named.end() :].strip()
            url = rest.split()[0] if rest else ""
            if not _URL_SCHEME.match(url):
                raise self.fail(where, text, f"'{named['name']} @' must be followed by a URL, got {url!r}")
            if url.startswith("file:"):
                # Resolved against requirements.txt's folder, as pip does for relative paths.
                resolved = Path(self.local_target(url, folder, where, text)).as_uri()
                rest = resolved + rest[len(url) :]
                url = resolved
            body = f"{head} {rest}"
            url_name = named["name"]
        line = RequirementLine(body, hashes, where, url_name, url)
        (self.result.constraint_lines if constraints else self.result.lines).append(line)

    @staticmethod
    def is_direct(body: str) -> bool:
        if _NAMED_URL.match(body):
            return False
        head = body.split(";", 1)[0].strip()
        return bool(_URL_SCHEME.match(head) or head.startswith((".", "/", "~")) or "/" in head or _ARCHIVE.search(head))


def _split_option(text: str) -> tuple[str, str]:
    if text.startswith("--") and "=" in text.split()[0]:
        flag, _, value = text.partition("=")
        return flag.strip(), value.strip()
    parts = text.split(None, 1)
    flag = parts[0]
    value = parts[1].strip() if len(parts) > 1 else ""
    if not flag.startswith("--") and len(flag) > 2 and not value:
        # `-rother.txt` / `-f./wheels`: pip accepts the value glued to a short flag.
        flag, value = flag[:2], flag[2:]
    return flag, value


def _logical_lines(raw: str) -> list[tuple[int, str]]:
    """(first line number, text) with comments removed and backslash continuations joined."""
    lines: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, physical in enumerate(raw.splitlines(), start=1):
        if not pending:
            start = number
        text = _COMMENT.sub("", physical).rstrip()
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        text = (pending + text).strip()
        pending = ""
        if text:
            lines.append((start, text))
    if pending.strip():
        lines.append((start, pending.strip()))
    return lines
