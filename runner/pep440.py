"""PEP 440 versions and specifiers, just enough to compare a requirement with an installed version.

`packaging` may not be installed in the user's environment (and the runner must not
import from it anyway), so this is a small standard-library rendering of the spec.
Pre-releases always match, as in `pip check`: the question here is never "which version
to pick" but "does the version already installed satisfy this requirement".
"""

from __future__ import annotations

import re
from functools import total_ordering

_VERSION = re.compile(
    r"""
    ^\s*v?
    (?:(?P<epoch>[0-9]+)!)?
    (?P<release>[0-9]+(?:\.[0-9]+)*)
    (?P<pre>[-_.]?(?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?P<pre_n>[0-9]+)?)?
    (?P<post>(?:-(?P<post_n1>[0-9]+))|(?:[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>[0-9]+)?))?
    (?P<dev>[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>[0-9]+)?)?
    (?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?
    \s*$
    """,
    re.VERBOSE | re.IGNORECASE,
)
_PRE_RANK = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}
_PRE_CANONICAL = {0: "a", 1: "b", 2: "rc"}

OPERATORS = ("===", "~=", "==", "!=", "<=", ">=", "<", ">")


class InvalidVersion(ValueError):
    pass


class InvalidSpecifier(ValueError):
    pass


@total_ordering
class Version:
    """A parsed PEP 440 version; compares and prints in canonical form."""

    __slots__ = ("dev", "epoch", "local", "post", "pre", "release", "text")

    def __init__(self, text: str) -> None:
        match = _VERSION.match(text)
        if match is None:
            raise InvalidVersion(f"not a PEP 440 version: {text!r}")
        self.text = text.strip()
        self.epoch = int(match["epoch"] or 0)
        self.release = tuple(int(part) for part in match["release"].split("."))
        self.pre: tuple[int, int] | None = None
        if match["pre_l"]:
            self.pre = (_PRE_RANK[match["pre_l"].lower()], int(match["pre_n"] or 0))
        self.post: int | None = None
        if match["post"]:
            self.post = int(match["post_n1"] or match["post_n2"] or 0)
        self.dev: int | None = int(match["dev_n"] or 0) if match["dev_l"] else None
        self.local: tuple[int | str, ...] = ()
        if match["local"]:
            self.local = tuple(
                int(part) if part.isdigit() else part.lower() for part in re.split(r"[-_.]", match["local"])
            )

    @property
    def is_prerelease(self) -> bool:
        return self.pre is not None or self.dev is not None

    @property
    def is_postrelease(self) -> bool:
        return self.post is not None

    @property
    def public(self) -> Version:
        return self if not self.local else Version(str(self).split("+", 1)[0])

    @property
    def base(self) -> tuple[int, tuple[int, ...]]:
        return self.epoch, _strip_zeros(self.release)

    def _key(self) -> tuple[object, ...]:
        # Ordering rules of PEP 440: a dev-only release sorts before its pre-releases,
        # a release without post sorts before its post-releases, without dev after its devs,
        # and in local segments numbers sort after strings.
        if self.pre is None and self.post is None and self.dev is not None:
            pre: tuple[int, int] = (-1, 0)
        elif self.pre is None:
            pre = (3, 0)
        else:
            pre = self.pre
        post = -1 if self.post is None else self.post
        dev: tuple[int, int] = (1, 0) if self.dev is None else (0, self.dev)
        local = tuple((1, part, "") if isinstance(part, int) else (0, 0, part) for part in self.local)
        return (self.epoch, _strip_zeros(self.release), pre, post, dev, local)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._key() == other._key()

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        text = f"{self.epoch}!" if self.epoch else ""
        text += ".".join(str(part) for part in self.release)
        if self.pre is not None:
            text += f"{_PRE_CANONICAL[self.pre[0]]}{self.pre[1]}"
        if self.post is not None:
            text += f".post{self.post}"
        if self.dev is not None:
            text += f".dev{self.dev}"
        if self.local:
            text += "+" + ".".join(str(part) for part in self.local)
        return text

    def __repr__(self) -> str:
        return f"Version({str(self)!r})"


def _strip_zeros(release: tuple[int, ...]) -> tuple[int, ...]:
    end = len(release)
    while end > 1 and release[end - 1] == 0:
        end -= 1
    return release[:end]


def is_version(text: str) -> bool:
    return _VERSION.match(text) is not None


class Specifier:
    """One clause such as `>=2.1`, `==1.4.*` or `~=3.2`."""

    __slots__ = ("operator", "version", "wildcard")

    def __init__(self, operator: str, version: str) -> None:
        if operator not in OPERATORS:
            raise InvalidSpecifier(f"unknown operator {operator!r}")
        self.operator = operator
        self.version = version.strip()
        self.wildcard = self.version.endswith(".*")
        if operator == "===":
            if not self.version or any(c.isspace() for c in self.version):
                raise InvalidSpecifier(f"'===' needs a version, got {version!r}")
            return
        if self.wildcard and operator not in ("==", "!="):
            raise InvalidSpecifier(f"'.*' is only allowed with == and !=, not {operator}{self.version}")
        core = self.version[:-2] if self.wildcard else self.version
        try:
            parsed = Version(core)
        except InvalidVersion as error:
            raise InvalidSpecifier(f"{operator}{self.version}: {error}") from None
        if parsed.local and (self.wildcard or operator not in ("==", "!=")):
            raise InvalidSpecifier(f"a local version (+...) is only allowed with == and !=: {operator}{version}")
        if operator == "~=" and len(parsed.release) < 2:
            raise InvalidSpecifier(f"'~=' needs at least two release numbers: ~={self.version}")

    def __str__(self) -> str:
        return f"{self.operator}{self.version}"

    def contains(self, candidate: Version) -> bool:
        operator = self.operator
        if operator == "===":
            return candidate.text.lower() == self.version.lower()
        if self.wildcard:
            prefix = Version(self.version[:-2])
            matched = _prefix_match(candidate, prefix)
            return matched if operator == "==" else not matched
        spec = Version(self.version)
        if operator in ("==", "!="):
            equal = (candidate if spec.local else candidate.public) == spec
            return equal if operator == "==" else not equal
        public = candidate.public
        if operator == "~=":
            prefix = Version(".".join(str(p) for p in spec.release[:-1]))
            prefix.epoch = spec.epoch
            return public >= spec and _prefix_match(candidate, prefix)
        if operator == "<=":
            return public <= spec
        if operator == ">=":
            return public >= spec
        if operator == "<":
            if not public < spec:
                return False
            return spec.is_prerelease or not public.is_prerelease or public.base != spec.base
        # ">": a post-release of the very version is not "greater" unless the spec is one.
        if not public > spec:
            return False
        return spec.is_postrelease or not public.is_postrelease or public.base != spec.base


def _prefix_match(candidate: Version, prefix: Version) -> bool:
    if candidate.epoch != prefix.epoch:
        return False
    width = len(prefix.release)
    release = candidate.release + (0,) * max(0, width - len(candidate.release))
    if release[:width] != prefix.release:
        return False
    # A prefix with a pre/post/dev part (rare: `==1.0rc1.*`) also needs those to agree.
    for part in ("pre", "post", "dev"):
        if getattr(prefix, part) is not None and getattr(prefix, part) != getattr(candidate, part):
            return False
    return True


class SpecifierSet:
    """Comma-separated clauses, all of which must hold; empty means "any version"."""

    __slots__ = ("specifiers",)

    _CLAUSE = re.compile(r"^\s*(?:(===)\s*(\S+)|(~=|==|!=|<=|>=|<|>)\s*([A-Za-z0-9][A-Za-z0-9.*+!_-]*))\s*$")

    def __init__(self, text: str = "") -> None:
        self.specifiers: tuple[Specifier, ...] = ()
        clauses = [c for c in text.split(",")] if text.strip() else []
        parsed = []
        for clause in clauses:
            match = self._CLAUSE.match(clause)
            if match is None:
                bad = clause.strip() or "(empty)"
                raise InvalidSpecifier(
                    f"cannot read version clause {bad!r}: expected an operator ({', '.join(OPERATORS)}) and a version"
                )
            parsed.append(Specifier(match[1] or match[3], match[2] or match[4]))
        self.specifiers = tuple(parsed)

    def __str__(self) -> str:
        return ",".join(str(s) for s in self.specifiers)

    def __bool__(self) -> bool:
        return bool(self.specifiers)

    def contains(self, version: Version | str) -> bool:
        candidate = version if isinstance(version, Version) else Version(version)
        return all(spec.contains(candidate) for spec in self.specifiers)
