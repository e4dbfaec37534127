"""Where an overlay's packages come from, and which kinds of files it accepts: one explicit answer for uv.

Three layers set the package sources, highest precedence first:
1. the job's requirements.txt (`-i`, `--extra-index-url`, `-f`, `--no-index`, `--only-binary`, ...);
2. uv's own variables (`UV_DEFAULT_INDEX`/`UV_INDEX_URL`, `UV_INDEX`/`UV_EXTRA_INDEX_URL`,
   `UV_FIND_LINKS`, `UV_CONSTRAINT`);
3. pip's settings (`PIP_*` variables and pip.conf files, see `pip_settings.py`).

The default index is the first layer's that names one (else uv's default, PyPI); extra
indexes, find-links locations and constraint files add up, in that order. The result is
passed to uv as explicit options, and the UV_ variables it came from are taken out of uv's
environment, so what run.json records is exactly what uv used.

Binary-only by default: `--only-binary :all:` comes first, so no package from an index
or URL is built from source unless requirements.txt says so with pip's own options
(`--only-binary :none:` for every package, `--no-binary NAME` for one). Sources shipped
with the job's code (a folder or an sdist named in requirements.txt) are built: they are
the job's own code.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

from runner.errors import OverlayError
from runner.pip_settings import PipSettings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runner.requirements import RequirementSet

# uv's variables for the sources the runner passes explicitly (removed from uv's environment).
MERGED_UV_VARIABLES = (
    "UV_DEFAULT_INDEX",
    "UV_INDEX_URL",
    "UV_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_CONSTRAINT",
)
DEFAULT_INDEX = "https://pypi.org/simple"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_NAMED_INDEX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*=(?=[A-Za-z][A-Za-z0-9+.-]*:|/|\.)")
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
# pip option -> the variable uv reads for it (transport only: not part of an overlay's identity).
_TRANSPORT = {
    "cert": ("SSL_CERT_FILE",),
    "client-cert": ("SSL_CLIENT_CERT",),
    "timeout": ("UV_HTTP_TIMEOUT",),
    "retries": ("UV_HTTP_RETRIES",),
}


class Location:
    """An index URL, find-links location or constraints file, and the setting it came from."""

    __slots__ = ("origin", "value")

    def __init__(self, value: str, origin: str) -> None:
        self.value = value
        self.origin = origin

    def record(self) -> dict[str, str]:
        return {"url": redact(self.value), "from": self.origin}


class Sources:
    """The explicit uv options for an overlay's sources and build policy, with their origins."""

    def __init__(self) -> None:
        self.default_index: Location | None = None
        self.extra_indexes: list[Location] = []
        self.find_links: list[Location] = []
        self.no_index: str | None = None  # where --no-index came from
        self.constraints: list[Location] = []
        self.flags: list[str] = []
        self.environment: dict[str, str] = {}  # for uv's process: transport settings mapped from pip
        self.notes: list[str] = []  # pip settings with no effect on an overlay
        self.refusals: list[OverlayError] = []  # raised by `refuse`, only once an overlay is needed

    def refuse(self) -> None:
        """Fail on a setting that cannot be honoured (kept until now: a job needing no overlay never cares)."""
        if self.refusals:
            raise self.refusals[0]

    def args(self) -> list[str]:
        """Options for `uv pip compile` and `uv pip sync`."""
        args: list[str] = []
        if self.default_index is not None:
            args += ["--index-url", self.default_index.value]
        for location in self.extra_indexes:
            args += ["--extra-index-url", location.value]
        for location in self.find_links:
            args += ["--find-links", location.value]
        if self.no_index:
            args.append("--no-index")
        for location in self.constraints:
            args += ["-c", location.value]
        return args + self.flags

    def key_lines(self) -> list[str]:
        """What decides the overlay's content: the options, and the content of local constraint files."""
        lines = self.args()
        for location in self.constraints:
            path = Path(location.value.removeprefix("file://"))
            if not _SCHEME.match(location.value) or location.value.startswith("file:"):
                try:
                    lines.append(f"{location.value} {hashlib.sha256(path.read_bytes()).hexdigest()}")
                except OSError as error:
                    self.refusals.append(
                        OverlayError(
                            f"{location.origin}: cannot read the constraints file {location.value}: {error.strerror}",
                            "fix the path, or remove the setting",
                        )
                    )
        return lines

    def local_locations(self) -> list[str]:
        """The index, extra index and find-links locations that are local paths (constraints: see key_lines)."""
        locations = [self.default_index] if self.default_index is not None else []
        locations += [*self.extra_indexes, *self.find_links]
        return [x.value for x in locations if not _SCHEME.match(x.value) or x.value.startswith("file:")]

    def uv_environment(self, environ: Mapping[str, str]) -> dict[str, str]:
        """uv's environment: `environ` without the merged UV_ variables, plus pip's transport settings."""
        env = {k: v for k, v in environ.items() if k not in MERGED_UV_VARIABLES}
        env.update(self.environment)
        return env

    def record(self) -> dict[str, object]:
        """For run.json: the indexes and locations used, credentials hidden."""
        if self.no_index:
            default: dict[str, str] | None = None
        elif self.default_index is not None:
            default = self.default_index.record()
        else:
            default = {"url": DEFAULT_INDEX, "from": "uv's default"}
        return {
            "index": default,
            "extra_indexes": [location.record() for location in self.extra_indexes],
            "find_links": [location.record() for location in self.find_links],
            "no_index": self.no_index,
            "constraints": [location.record() for location in self.constraints],
            "source_builds": self.source_builds,
        }

    @property
    def source_builds(self) -> str | list[str]:
        """What may be built from source: "any", or the packages named with --no-binary ([] = wheels only)."""
        allowed: str | list[str] = "any"
        for flag, value in zip(self.flags, self.flags[1:], strict=False):
            if (flag, value) in (("--only-binary", ":all:"), ("--no-binary", ":none:")):
                allowed = []
            elif (flag, value) in (("--only-binary", ":none:"), ("--no-binary", ":all:")):
                allowed = "any"
            elif flag == "--no-binary" and isinstance(allowed, list) and value not in allowed:
                allowed.append(value)
        return allowed

    def describe(self) -> str:
        """One line for the log: where packages come from."""
        record = self.record()
        parts = []
        index = record["index"]
        if isinstance(index, dict):
            parts.append(f"index {index['url']} ({index['from']})")
        else:
            parts.append(f"no index ({self.no_index})")
        parts += [f"extra index {x.record()['url']} ({x.origin})" for x in self.extra_indexes]
        parts += [f"find-links {x.record()['url']} ({x.origin})" for x in self.find_links]
        parts += [f"constraints {x.record()['url']} ({x.origin})" for x in self.constraints]
        if self.environment:
            parts.append("pip's transport settings for uv: " + ", ".join(sorted(self.environment)))
        builds = self.source_builds
        if builds == "any":
            parts.append("builds from source allowed")
        else:
            parts.append(f"wheels only, but {', '.join(builds)} from source" if builds else "wheels only")
        return "; ".join(parts)


def resolve_sources(requirements: RequirementSet, environ: Mapping[str, str], pip: PipSettings) -> Sources:
    """Merge requirements.txt, uv's variables and pip's settings (see the module docstring).

    Nothing is refused here (see `Sources.refuse`): the key of an overlay is computed for
    every requirements.txt, also those the base satisfies, which install nothing.
    """
    sources = Sources()
    try:
        pip.refuse_unmappable()
        _merge(sources, requirements, environ, pip)
    except OverlayError as error:
        sources.refusals.append(error)
    return sources


def _merge(sources: Sources, requirements: RequirementSet, environ: Mapping[str, str], pip: PipSettings) -> None:
    sources.notes = pip.no_effect()
    where = requirements.path.name
    # The default index: the first layer that names one.
    if requirements.index_url:
        sources.default_index = Location(requirements.index_url, f"{where} --index-url")
    else:
        for variable in ("UV_DEFAULT_INDEX", "UV_INDEX_URL"):
            if environ.get(variable, "").strip():
                sources.default_index = Location(environ[variable].strip(), variable)
                break
        else:
            setting = pip.get("index-url")
            if setting is not None and setting.value.strip():
                sources.default_index = Location(setting.value.strip(), setting.origin)
    # Extra indexes, find-links and constraints add up, highest layer first.
    extra = [Location(url, f"{where} --extra-index-url") for url in requirements.extra_index_urls]
    extra += [Location(_NAMED_INDEX.sub("", url), "UV_INDEX") for url in environ.get("UV_INDEX", "").split()]
    extra += [Location(url, "UV_EXTRA_INDEX_URL") for url in environ.get("UV_EXTRA_INDEX_URL", "").split()]
    extra += _pip_locations(pip, "extra-index-url", local=False)
    sources.extra_indexes = _unique(extra)
    links = [Location(link, f"{where} --find-links") for link in requirements.find_links]
    links += [Location(_absolute(link), "UV_FIND_LINKS") for link in environ.get("UV_FIND_LINKS", "").split(",")]
    links += _pip_locations(pip, "find-links", local=True)
    sources.find_links = _unique([link for link in links if link.value])
    constraints = [Location(_absolute(path), "UV_CONSTRAINT") for path in environ.get("UV_CONSTRAINT", "").split()]
    constraints += _pip_locations(pip, "constraint", local=True)
    sources.constraints = _unique(constraints)
    if requirements.no_index:
        sources.no_index = f"{where} --no-index"
    elif (setting := pip.get("no-index")) is not None and setting.enabled:
        sources.no_index = setting.origin
    sources.flags = _build_flags(requirements, environ, pip)
    sources.environment = _transport(environ, pip)


def _build_flags(requirements: RequirementSet, environ: Mapping[str, str], pip: PipSettings) -> list[str]:
    """Binary-only first, then the job's own sources exempted, then pip's and requirements.txt's choices."""
    flags = ["--only-binary", ":all:"]
    for name in requirements.local_source_names():
        flags += ["--no-binary", name]
    for option in ("only-binary", "no-binary"):
        setting = pip.get(option)
        if setting is not None:
            for value in setting.value.replace(",", " ").split():
                flags += [f"--{option}", value]
    if (setting := pip.get("pre")) is not None and setting.enabled and not environ.get("UV_PRERELEASE"):
        flags += ["--prerelease", "allow"]
    if (setting := pip.get("trusted-host")) is not None and not environ.get("UV_INSECURE_HOST"):
        for host in setting.values:
            flags += ["--allow-insecure-host", host]
    if (setting := pip.get("keyring-provider")) is not None and not environ.get("UV_KEYRING_PROVIDER"):
        provider = setting.value.strip()
        if provider not in ("disabled", "subprocess"):
            raise OverlayError(
                f"{setting.origin}: pip setting keyring-provider = {provider!r} has no uv counterpart",
                "use keyring-provider = subprocess (or disabled), or set UV_KEYRING_PROVIDER",
            )
        flags += ["--keyring-provider", provider]
    return flags + requirements.uv_flags


def _transport(environ: Mapping[str, str], pip: PipSettings) -> dict[str, str]:
    """pip's certificate, proxy, timeout and retry settings as the variables uv reads, unless already set."""
    env: dict[str, str] = {}
    for option, variables in _TRANSPORT.items():
        setting = pip.get(option)
        if setting is not None and setting.value.strip() and not any(environ.get(v) for v in variables):
            env[variables[0]] = setting.value.strip()
    proxy = pip.get("proxy")
    if proxy is not None and proxy.value.strip() and not any(environ.get(v) for v in _PROXY_VARIABLES):
        env["HTTPS_PROXY"] = env["HTTP_PROXY"] = proxy.value.strip()
    return env


def _pip_locations(pip: PipSettings, option: str, *, local: bool) -> list[Location]:
    setting = pip.get(option)
    if setting is None:
        return []
    values = [_absolute(v) for v in setting.values] if local else setting.values
    return [Location(value, setting.origin) for value in values if value]


def _absolute(location: str) -> str:
    """A local path as pip and uv read it, from where they run; uv runs in the overlay folder, so made absolute."""
    location = location.strip()
    if not location or _SCHEME.match(location):
        return location
    return os.path.abspath(os.path.expanduser(location))


def _unique(locations: list[Location]) -> list[Location]:
    seen: set[str] = set()
    kept = []
    for location in locations:
        if location.value not in seen:
            seen.add(location.value)
            kept.append(location)
    return kept


_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:]*)(?P<secret>:[^/@\s]*)?@")


def redact(text: str) -> str:
    """`https://user:secret@host/simple` → `https://user:***@host/simple` (also inside a longer text):
    run.json, logs and transcripts never hold index credentials."""
    return _CREDENTIALS.sub(_hide, text)


def _hide(match: re.Match[str]) -> str:
    if match["secret"]:
        return f"{match['scheme']}{match['user']}:***@"
    return f"{match['scheme']}***@"
