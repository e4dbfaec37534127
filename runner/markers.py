"""PEP 508 environment markers (`; python_version >= "3.10" and sys_platform == "linux"`).

Evaluated against the interpreter running the runner, which is also the interpreter of
the overlay, so the answers are the ones the user's process would get.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from functools import lru_cache

from runner.pep440 import InvalidSpecifier, InvalidVersion, Specifier, Version

VARIABLES = frozenset(
    {
        "os_name",
        "sys_platform",
        "platform_machine",
        "platform_python_implementation",
        "platform_release",
        "platform_system",
        "platform_version",
        "python_version",
        "python_full_version",
        "implementation_name",
        "implementation_version",
        "extra",
        # Legacy spellings that old metadata still carries.
        "os.name",
        "sys.platform",
        "platform.version",
        "platform.machine",
        "platform.python_implementation",
        "python_implementation",
    }
)
_LEGACY = {
    "os.name": "os_name",
    "sys.platform": "sys_platform",
    "platform.version": "platform_version",
    "platform.machine": "platform_machine",
    "platform.python_implementation": "platform_python_implementation",
    "python_implementation": "platform_python_implementation",
}
_TOKEN = re.compile(
    r"""
    \s*(?:
        (?P<string>'[^']*'|"[^"]*")
      | (?P<op>===|==|!=|<=|>=|~=|<|>|not\s+in\b|in\b)
      | (?P<paren>[()])
      | (?P<bool>and\b|or\b)
      | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
    )
    """,
    re.VERBOSE,
)


class InvalidMarker(ValueError):
    pass


Node = Callable[[dict[str, str]], bool]


def parse_marker(text: str) -> Node:
    """Parse a marker expression into a callable taking an environment dict."""
    tokens = _tokenize(text)
    parser = _Parser(tokens, text)
    node = parser.expression()
    if parser.position != len(tokens):
        raise InvalidMarker(f"unexpected {tokens[parser.position][1]!r} in marker {text!r}")
    return node


def evaluate(text: str, extra: str = "") -> bool:
    return parse_marker(text)({**default_environment(), "extra": extra})


@lru_cache(maxsize=1)
def default_environment() -> dict[str, str]:
    import platform  # only needed when markers are evaluated: keep it off the fast path

    implementation = sys.implementation
    info = implementation.version
    implementation_version = f"{info.major}.{info.minor}.{info.micro}"
    if info.releaselevel != "final":
        implementation_version += info.releaselevel[0] + str(info.serial)
    return {
        "os_name": os.name,
        "sys_platform": sys.platform,
        "platform_machine": platform.machine(),
        "platform_python_implementation": platform.python_implementation(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "python_full_version": platform.python_version(),
        "implementation_name": implementation.name,
        "implementation_version": implementation_version,
    }


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    stripped = text.rstrip()
    while position < len(stripped):
        match = _TOKEN.match(stripped, position)
        if match is None or match.end() == position:
            raise InvalidMarker(f"cannot read marker {text!r} at {stripped[position:].strip()!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match[kind]))
        position = match.end()
    if not tokens:
        raise InvalidMarker("empty marker after ';'")
    return tokens


class _Parser:
    """marker_or := marker_and ('or' marker_and)*; marker_and := atom ('and' atom)*; atom := '(' or ')' | cmp."""

    def __init__(self, tokens: list[tuple[str, str]], text: str) -> None:
        self.tokens = tokens
        self.text = text
        self.position = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise InvalidMarker(f"marker {self.text!r} ends too early")
        self.position += 1
        return token

    def expression(self) -> Node:
        terms = [self.conjunction()]
        while self.peek() == ("bool", "or"):
            self.take()
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else (lambda env: any(t(env) for t in terms))

    def conjunction(self) -> Node:
        terms = [self.atom()]
        while self.peek() == ("bool", "and"):
            self.take()
            terms.append(self.atom())
        return terms[0] if len(terms) == 1 else (lambda env: all(t(env) for t in terms))

    def atom(self) -> Node:
        if self.peek() == ("paren", "("):
            self.take()
            node = self.expression()
            if self.take() != ("paren", ")"):
                raise InvalidMarker(f"missing ')' in marker {self.text!r}")
            return node
        left = self.value()
        kind, op = self.take()
        if kind != "op":
            raise InvalidMarker(f"expected a comparison operator in marker {self.text!r}, got {op!r}")
        right = self.value()
        return _comparison(left, " ".join(op.split()), right)

    def value(self) -> tuple[bool, str]:
        """(is_variable, text)."""
        kind, text = self.take()
        if kind == "string":
            return False, text[1:-1]
        if kind == "name" and text in VARIABLES:
            return True, _LEGACY.get(text, text)
        raise InvalidMarker(f"unknown marker variable or value {text!r} in {self.text!r}")


def _comparison(left: tuple[bool, str], op: str, right: tuple[bool, str]) -> Node:
    def node(env: dict[str, str]) -> bool:
        lhs = env.get(left[1], "") if left[0] else left[1]
        rhs = env.get(right[1], "") if right[0] else right[1]
        if (left[0] and left[1] == "extra") or (right[0] and right[1] == "extra"):
            lhs, rhs = _normalize_extra(lhs), _normalize_extra(rhs)
        return _compare(lhs, op, rhs)

    return node


def _normalize_extra(value: str) -> str:
    return re.sub(r"[-_.]+", "-", value).lower()


def _compare(lhs: str, op: str, rhs: str) -> bool:
    if op == "in":
        return lhs in rhs
    if op == "not in":
        return lhs not in rhs
    try:
        return Specifier(op, rhs).contains(Version(lhs))
    except (InvalidSpecifier, InvalidVersion):
        pass
    if op == "==":
        return lhs == rhs
    if op == "!=":
        return lhs != rhs
    if op == "===":
        return lhs == rhs
    # PEP 508 leaves ordering of non-versions undefined; Python's string order is what pip does.
    return {"<": lhs < rhs, "<=": lhs <= rhs, ">": lhs > rhs, ">=": lhs >= rhs}.get(op, False)
