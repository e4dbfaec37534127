"""YAML in and out, the way rattler_lock's serde_yaml does it, so pixi.lock bytes match pixi's.

Out: block style, sequences not indented under their key, no line wrapping, UTF-8 as is.
A string is written plain unless serde_yaml would read it back as something else (null,
a bool, an int or a float: `'2.28'`, `'0'`, `'>=3.9'` is quoted by the emitter itself).
PyYAML's emitter is a port of libyaml's, which serde_yaml drives, so only that one decision
(which strings may be plain) is taken here.

In: PyYAML's C loader when present, refusing duplicate keys (rattler_lock does).
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

import yaml

_BASE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BASE_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class DuplicateKeyError(ValueError):
    pass


class _Loader(_BASE_LOADER):  # type: ignore[valid-type,misc]
    """Safe loading as serde reads a typed model: plain scalars stay strings (a sha256 of digits keeps its
    zeros), except null and true/false; a mapping that names a key twice is an error."""

    yaml_implicit_resolvers: ClassVar[dict[Any, Any]] = {}

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                mark = key_node.start_mark
                raise DuplicateKeyError(f"duplicate entry with key {key!r} at line {mark.line + 1}")
            seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])


def load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


_INT = re.compile(r"^[+-]?(0x[0-9a-fA-F]+|0o[0-7]+|0b[01]+|[0-9]+)$")
_FLOAT_CHARS = re.compile(r"^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|infinity|nan)$", re.IGNORECASE)


def _digits_but_not_number(text: str) -> bool:
    """YAML 1.2: leading zeros followed by digits is a string (serde_yaml's rule)."""
    body = text[1:] if text[:1] in "+-" else text
    return len(body) > 1 and body.startswith("0") and body[1:].isdigit()


def serde_scalar_type(text: str) -> str:
    """What serde_yaml reads a plain scalar as: null, bool, int, float or str."""
    if text in ("", "~", "null", "Null", "NULL"):
        return "null"
    if text in ("true", "True", "TRUE", "false", "False", "FALSE"):
        return "bool"
    if _INT.match(text) and not _digits_but_not_number(text):
        return "int"
    body = text[1:] if text.startswith("+") else text
    if body in (".inf", ".Inf", ".INF") or text in ("-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN"):
        return "float"
    if _FLOAT_CHARS.match(text) and not text.lower().lstrip("+-").startswith(("inf", "nan")):
        try:
            return "float" if math.isfinite(float(text)) else "str"
        except ValueError:
            return "str"
    return "str"


class _Resolver(yaml.resolver.BaseResolver):
    """A plain scalar means what serde_yaml reads it as; a string that would read otherwise gets quoted."""

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            return f"tag:yaml.org,2002:{serde_scalar_type(value)}"
        return str(super().resolve(kind, value, implicit))


class _Dumper(yaml.emitter.Emitter, yaml.serializer.Serializer, yaml.representer.SafeRepresenter, _Resolver):
    def __init__(self, stream: Any, **kwargs: Any) -> None:
        yaml.emitter.Emitter.__init__(
            self,
            stream,
            canonical=False,
            indent=2,
            width=1 << 30,
            allow_unicode=True,
            line_break="\n",
        )
        yaml.serializer.Serializer.__init__(self, encoding=None, explicit_start=False, explicit_end=False)
        yaml.representer.SafeRepresenter.__init__(self, default_style=None, default_flow_style=False, sort_keys=False)
        _Resolver.__init__(self)


def _represent_str(dumper: _Dumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_bool(dumper: _Dumper, value: bool) -> yaml.ScalarNode:
    return yaml.ScalarNode("tag:yaml.org,2002:bool", "true" if value else "false")


def _represent_int(dumper: _Dumper, value: int) -> yaml.ScalarNode:
    return yaml.ScalarNode("tag:yaml.org,2002:int", str(value))


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(bool, _represent_bool)
_Dumper.add_representer(int, _represent_int)


_C_EMITTER: Any
try:
    from yaml._yaml import CEmitter as _C_EMITTER
except ImportError:  # PyYAML without libyaml
    _C_EMITTER = None


if _C_EMITTER is not None:

    class _CDumper(_C_EMITTER, yaml.representer.SafeRepresenter, _Resolver):
        """The same, with libyaml's own emitter (what serde_yaml uses) doing the writing: much faster."""

        def __init__(self, stream: Any, **kwargs: Any) -> None:
            _C_EMITTER.__init__(
                self, stream, canonical=False, indent=2, width=1 << 30, allow_unicode=True, line_break="\n"
            )
            yaml.representer.SafeRepresenter.__init__(
                self, default_style=None, default_flow_style=False, sort_keys=False
            )
            _Resolver.__init__(self)

    _CDumper.add_representer(str, _represent_str)
    _CDumper.add_representer(bool, _represent_bool)
    _CDumper.add_representer(int, _represent_int)


def dump(data: Any) -> str:
    """serde_yaml's rendering of plain data (dicts keep their order)."""
    dumper = _CDumper if _C_EMITTER is not None else _Dumper
    return yaml.dump(data, Dumper=dumper)


def dump_python(data: Any) -> str:
    """The same through PyYAML's pure-Python emitter (a port of libyaml's): kept to check the two agree."""
    return yaml.dump(data, Dumper=_Dumper)
