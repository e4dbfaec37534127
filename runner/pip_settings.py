"""A user's pip settings, read the way `pip install` reads them, so an overlay honours them.

uv ignores pip's configuration. A user whose pip.conf or PIP_INDEX_URL points at a
mirror would see the overlay go to PyPI instead, with no word said. So the runner reads
what pip would use, here, for `pip install`:

- files: the global ones (`<each XDG_CONFIG_DIRS entry>/pip/pip.conf`, then `/etc/pip.conf`),
  the user's (`~/.pip/pip.conf`, then `$XDG_CONFIG_HOME/pip/pip.conf`; skipped when
  PIP_CONFIG_FILE names an existing file), the site one (`<base prefix>/pip.conf`), then
  `PIP_CONFIG_FILE`; a later file overrides an earlier one, and `PIP_CONFIG_FILE=/dev/null`
  (pip's own switch) reads none;
- in each, the `[global]` section, overridden by `[install]`;
- then the `PIP_<OPTION>` variables, which override every file.

Each setting found is then one of: mapped to uv (see `sources.py`), of no effect on an
overlay (listed in one log line), or refused (one error line naming where it was set).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from runner.errors import OverlayError

# What each pip option becomes for an overlay.
MAPPED = frozenset(
    [
        "index-url",
        "extra-index-url",
        "find-links",
        "no-index",
        "constraint",
        "pre",
        "only-binary",
        "no-binary",
        "trusted-host",
        "cert",
        "client-cert",
        "proxy",
        "timeout",
        "retries",
        "keyring-provider",
    ]
)
ALIASES = {"default-timeout": "timeout"}
LISTS = frozenset({"extra-index-url", "find-links", "trusted-host", "constraint"})  # whitespace-separated, as pip reads
PIP_OWN = [
    "disable-pip-version-check",
    "no-color",
    "progress-bar",
    "quiet",
    "verbose",
    "no-input",
    "log",
    "log-file",
    "cache-dir",
    "no-cache-dir",
    "require-virtualenv",
    "no-python-version-warning",
    "debug",
    "root-user-action",
    "break-system-packages",
    "use-deprecated",
    "use-feature",
    "resume-retries",
    "no-warn-script-location",
    "no-warn-conflicts",
    "isolated",
    "python",
    "report",
    "dry-run",
]
FRESH_INSTALL = [
    "upgrade",
    "upgrade-strategy",
    "force-reinstall",
    "ignore-installed",
    "exists-action",
    "compile",
    "no-compile",
]
NO_EFFECT = {
    **dict.fromkeys(PIP_OWN, "pip's own behaviour"),
    **dict.fromkeys(FRESH_INSTALL, "an overlay is always a fresh, byte-compiled install"),
    "prefer-binary": "overlays use wheels only unless requirements.txt allows sources",
}
REFUSED = frozenset(  # they change what is installed, and the runner has no uv counterpart for them
    [
        "requirement",
        "editable",
        "no-deps",
        "user",
        "target",
        "root",
        "prefix",
        "src",
        "platform",
        "python-version",
        "implementation",
        "abi",
        "ignore-requires-python",
        "no-build-isolation",
        "use-pep517",
        "no-use-pep517",
        "check-build-dependencies",
        "config-settings",
        "global-option",
        "build-option",
        "require-hashes",
        "group",
    ]
)
_TRUE = frozenset({"y", "yes", "t", "true", "on", "1"})
_FALSE = frozenset({"n", "no", "f", "false", "off", "0"})


class Setting:
    """One pip option as pip would apply it: its value(s) and where it was set."""

    __slots__ = ("name", "origin", "value")

    def __init__(self, name: str, value: str, origin: str) -> None:
        self.name = name
        self.value = value
        self.origin = origin

    @property
    def values(self) -> list[str]:
        return self.value.split() if self.name in LISTS else [self.value.strip()]

    @property
    def enabled(self) -> bool:
        text = self.value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise OverlayError(
            f"{self.origin}: pip setting {self.name} = {self.value!r} is not a yes/no value", "use true or false"
        )


class PipSettings:
    """The pip options that `pip install` would use here, and the ones that only make sense to pip."""

    def __init__(
        self,
        settings: dict[str, Setting],
        files: list[Path],
        unreadable: OverlayError | None = None,
        skipped: list[Path] | None = None,
    ) -> None:
        self.settings = settings
        self.files = files
        self.unreadable = unreadable  # a pip.conf that cannot be read: refused when an overlay is needed
        self.skipped = skipped or []  # files not read because another user than `owner` owns them

    def get(self, name: str) -> Setting | None:
        return self.settings.get(name)

    def no_effect(self) -> list[str]:
        """`name (origin: why)` for each setting that changes nothing in an overlay, for one log line."""
        notes = []
        for name, setting in sorted(self.settings.items()):
            if name in NO_EFFECT:
                notes.append(f"{name} ({setting.origin}: {NO_EFFECT[name]})")
            elif name not in MAPPED and name not in REFUSED:
                notes.append(f"{name} ({setting.origin}: not a pip install option, pip ignores it too)")
        notes += [
            f"{path} (not owned by root: the image builds overlays with root's pip files only)" for path in self.skipped
        ]
        return notes

    def refuse_unmappable(self) -> None:
        if self.unreadable is not None:
            raise self.unreadable
        refused = [s for name, s in sorted(self.settings.items()) if name in REFUSED]
        if refused:
            where = "; ".join(f"{s.origin}: {s.name}" for s in refused)
            raise OverlayError(
                f"pip setting(s) the overlay cannot honour: {where}",
                "remove them, unset the PIP_ variable, or set PIP_CONFIG_FILE=/dev/null to build overlays "
                "without pip's configuration files",
            )


def read_pip_settings(environ: Mapping[str, str], site_prefix: Path, owner: int | None = None) -> PipSettings:
    """pip's view of its configuration for `pip install` (see the module docstring for the order).

    With `owner` (the image's supervisor: 0), a file that another user owns is not read (a job
    user's ~/.config/pip/pip.conf, say): it is named in the notes instead.
    """
    found = configuration_files(environ, site_prefix)
    files = [path for path in found if owner is None or _owner(path) == owner]
    skipped = [path for path in found if path not in files]
    merged: dict[str, Setting] = {}  # "section.name" -> setting; a later file overrides an earlier one
    unreadable = None
    for path in files:
        try:
            entries = _read_file(path)
        except OverlayError as error:
            unreadable = unreadable or error
            continue
        for section, name, value in entries:
            merged[f"{section}.{name}"] = Setting(name, value, f"{path} [{section}]")
    settings: dict[str, Setting] = {}
    for section in ("global", "install"):
        for key, setting in merged.items():
            if key.startswith(section + "."):
                settings[setting.name] = setting
    for variable, value in environ.items():
        if variable.startswith("PIP_") and variable not in ("PIP_CONFIG_FILE",):
            name = _normalize(variable[len("PIP_") :])
            if name not in ("version", "help"):
                settings[name] = Setting(name, value, variable)
    return PipSettings(settings, files, unreadable, skipped)


def _owner(path: Path) -> int | None:
    try:
        return path.stat().st_uid
    except OSError:
        return None


def configuration_files(environ: Mapping[str, str], site_prefix: Path) -> list[Path]:
    """The pip.conf files pip reads for this environment, lowest precedence first, those that exist."""
    named = environ.get("PIP_CONFIG_FILE")
    if named == os.devnull:
        return []
    xdg_dirs = environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    candidates = [Path(folder) / "pip" / "pip.conf" for folder in xdg_dirs.split(os.pathsep) if folder]
    candidates.append(Path("/etc/pip.conf"))
    if not (named and os.path.exists(named)):
        home = Path(environ.get("HOME") or Path.home())
        config_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
        candidates += [home / ".pip" / "pip.conf", config_home / "pip" / "pip.conf"]
    candidates.append(site_prefix / "pip.conf")
    if named:
        candidates.append(Path(named))
    return [path for path in candidates if path.is_file()]


def _read_file(path: Path) -> list[tuple[str, str, str]]:
    import configparser  # only when a pip.conf exists

    parser = configparser.RawConfigParser()
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, UnicodeDecodeError, configparser.Error) as error:
        reason = " ".join(str(error).split())
        raise OverlayError(
            f"{path}: cannot read this pip configuration file: {reason}",
            "fix the file, or set PIP_CONFIG_FILE=/dev/null to build overlays without pip's configuration files",
        ) from None
    return [
        (section, _normalize(name), value)
        for section in parser.sections()
        if section in ("global", "install")
        for name, value in parser.items(section)
    ]


def _normalize(name: str) -> str:
    name = name.lower().replace("_", "-").removeprefix("--")
    return ALIASES.get(name, name)
