"""The licence inventory of a flavor, from the licence each locked record declares.

Packages are grouped by licence expression, and each expression by kind: permissive,
weak copyleft, copyleft, proprietary (vendor `LicenseRef-…` terms such as NVIDIA's CUDA EULA),
other (a name that is not a known SPDX identifier) and unknown (no licence recorded).
A `--deny` pattern (an SPDX identifier glob such as `AGPL-*`, or a kind such as `copyleft`)
turns matching packages into findings.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

from cli.audit.findings import Finding
from cli.audit.readers import LockedPackage, from_record
from cli.lockengine.lockfile import locked_records, read_lock
from cli.lockengine.manifest import Workspace

PERMISSIVE = "permissive"
WEAK_COPYLEFT = "weak-copyleft"
COPYLEFT = "copyleft"
PROPRIETARY = "proprietary"
OTHER = "other"
UNKNOWN = "unknown"
KINDS = (PERMISSIVE, WEAK_COPYLEFT, COPYLEFT, PROPRIETARY, OTHER, UNKNOWN)
# How much a licence asks of whoever redistributes the image; an AND takes the most, an OR the least.
_WEIGHT = {PERMISSIVE: 0, OTHER: 1, WEAK_COPYLEFT: 2, COPYLEFT: 3, PROPRIETARY: 4, UNKNOWN: 5}

_NO_LICENCE = frozenset({"", "none", "unknown", "noassertion", "other"})
_PERMISSIVE_WORDS = (
    "0BSD MIT MIT-0 MIT-CMU X11 ISC Zlib zlib-acknowledgement BSL-1.0 Unlicense blessing PSF-2.0 Python-2.0 "
    "Python-2.0.1 CC0-1.0 CC-BY-4.0 curl Libpng libpng-2.0 libtiff OpenSSL SSLeay-standalone HPND NCSA "
    "PostgreSQL FTL IJG TCL Unicode-DFS-2016 Unicode-3.0 WTFPL BSD-Source-Code MPL-2.0-no-copyleft-exception "
    "Apache-1.1 Apache-2.0 AFL-2.1 Artistic-2.0 bzip2-1.0.6 BSD-1-Clause BSD-2-Clause BSD-3-Clause BSD-4-Clause "
    "BSD-2-Clause-Patent BSD-3-Clause-Clear LicenseRef-Public-Domain Public-Domain Intel ICU W3C Zeroclause-BSD "
    "LLVM-exception GCC-exception-3.1 Classpath-exception-2.0 OFL-1.1 MIT-open-group NTP Beerware"
)
_PERMISSIVE_IDS = frozenset(word.lower() for word in _PERMISSIVE_WORDS.split())
_PERMISSIVE_PREFIXES = ("bsd-", "mit-", "apache-", "cc-by-", "psf-")
_WEAK_PREFIXES = ("lgpl-", "mpl-", "epl-", "cddl-", "cpl-", "eupl-")
_COPYLEFT_PREFIXES = ("gpl-", "agpl-", "sspl-", "osl-", "cc-by-sa-")
_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def licence_ids(expression: str) -> list[str]:
    """The SPDX identifiers (and `LicenseRef-…` names) of an expression, exceptions included."""
    return [t for t in _TOKEN.findall(expression) if t not in ("(", ")") and t.upper() not in ("AND", "OR", "WITH")]


def _id_kind(identifier: str) -> str:
    lowered = identifier.lower().rstrip("+")
    if lowered in _PERMISSIVE_IDS:
        return PERMISSIVE
    if lowered.startswith(_COPYLEFT_PREFIXES):
        return COPYLEFT
    if lowered.startswith(_WEAK_PREFIXES):
        return WEAK_COPYLEFT
    if lowered.startswith(_PERMISSIVE_PREFIXES):
        return PERMISSIVE
    if lowered.startswith("licenseref-") or "proprietary" in lowered or "eula" in lowered:
        return PROPRIETARY
    return OTHER


def _split_top(expression: str, operator: str) -> list[str]:
    """Split at `operator` outside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for token in _TOKEN.findall(expression):
        depth += token == "("
        depth -= token == ")"
        if depth == 0 and token.upper() == operator:
            parts.append(" ".join(current))
            current = []
        else:
            current.append(token)
    parts.append(" ".join(current))
    return [p for p in parts if p]


def _strip_parens(expression: str) -> str:
    """`(MIT OR Apache-2.0)` → `MIT OR Apache-2.0`; `(A) AND (B)` is left alone."""
    text = expression.strip()
    while text.startswith("(") and text.endswith(")"):
        depth = 0
        for position, char in enumerate(text):
            depth += char == "("
            depth -= char == ")"
            if depth == 0 and position < len(text) - 1:
                return text  # the first parenthesis closes before the end
        text = text[1:-1].strip()
    return text


def licence_kind(expression: str | None) -> str:
    """The kind of a licence expression: an OR leaves the choice (the lightest applies), an AND adds up."""
    if expression is None or expression.strip().lower() in _NO_LICENCE:
        return UNKNOWN
    text = _strip_parens(expression)
    alternatives = _split_top(text, "OR")
    if len(alternatives) > 1:
        return min((licence_kind(a) for a in alternatives), key=_WEIGHT.__getitem__)
    terms = _split_top(text, "AND")
    if len(terms) > 1:
        return max((licence_kind(t) for t in terms), key=_WEIGHT.__getitem__)
    licence, _, exception = text.partition(" WITH ")
    kind = _id_kind(licence.strip())
    if exception and kind == COPYLEFT and "exception" in exception.lower():
        return WEAK_COPYLEFT  # e.g. GCC's runtime library exception: linking does not spread the GPL
    return kind


@dataclass
class LicenceGroup:
    licence: str
    kind: str
    packages: list[LockedPackage] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "licence": self.licence,
            "kind": self.kind,
            "packages": [{"name": p.name, "version": p.version, "build": p.build} for p in self.packages],
        }


@dataclass
class LicenceAudit:
    flavor: str
    platforms: list[str]
    groups: list[LicenceGroup]
    denied: list[tuple[LockedPackage, str]] = field(default_factory=list)

    def by_kind(self) -> dict[str, int]:
        counts = dict.fromkeys(KINDS, 0)
        for group in self.groups:
            counts[group.kind] += len(group.packages)
        return counts

    def findings(self) -> list[Finding]:
        return sorted(
            Finding("licence-denied", p.name, f"{p.license or 'no licence'} matches --deny {pattern}")
            for p, pattern in self.denied
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "flavor": self.flavor,
            "platforms": self.platforms,
            "kinds": self.by_kind(),
            "licences": [g.as_dict() for g in self.groups],
            "findings": [f.as_dict() for f in self.findings()],
        }


def _denied_by(package: LockedPackage, kind: str, patterns: list[str]) -> str | None:
    ids = [i.lower() for i in licence_ids(package.license or "")]
    for pattern in patterns:
        lowered = pattern.lower()
        if lowered == kind or any(fnmatch.fnmatchcase(i, lowered) for i in ids):
            return pattern
    return None


def audit_licences(
    workspace: Workspace, flavor: str, platforms: list[str] | None = None, deny: list[str] | None = None
) -> LicenceAudit:
    chosen = workspace.platform_names(flavor, platforms)
    lock = read_lock(workspace)
    packages: dict[tuple[str, str, str], LockedPackage] = {}
    for platform in chosen:
        for record in locked_records(workspace, flavor, platform, lock=lock):
            package = from_record(record)
            packages.setdefault((package.name, package.version, package.build), package)
    groups: dict[str, LicenceGroup] = {}
    audit = LicenceAudit(flavor, chosen, [])
    for key in sorted(packages):
        package = packages[key]
        kind = licence_kind(package.license)
        label = package.license.strip() if kind != UNKNOWN and package.license else "(none recorded)"
        groups.setdefault(label, LicenceGroup(label, kind)).packages.append(package)
        pattern = _denied_by(package, kind, deny or [])
        if pattern is not None:
            audit.denied.append((package, pattern))
    audit.groups = sorted(groups.values(), key=lambda g: (KINDS.index(g.kind), g.licence.lower()))
    return audit
