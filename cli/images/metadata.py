"""The schema of flavors/<name>/metadata.yml: the oSPARC computational-service metadata.

Only the fields the oSPARC contract (design.md) uses are accepted, so a typo such as
`displayorder` is an error naming the field rather than a silently missing label.

The ports must also be the runner's (runner/contract.py): it exports INPUT_N for `input_N`,
and leaves each `output_N/` as the file `output_N.zip`, nothing else. A port it does not serve
(an `output_5`, an output read from `result.csv`) would pass `generate` and `build`, then
fail every oSPARC job, so it is refused here, where generate, build, version and run read
the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from cli.errors import UserError
from runner.contract import INPUT_PORTS, OUTPUT_PORTS, output_archive

COMPUTATIONAL_PREFIX = "simcore/services/comp/"
SEMVER = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
# A port key becomes a shell variable (input_1 -> INPUT_1), so it must be an identifier.
PORT_KEY = r"^[a-z][a-z0-9_]*$"
SERVICE_KEY = r"^simcore/services/comp/[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*$"
PORT_TYPE = r"^(number|integer|boolean|string|ref_contentSchema|data:[^\s/]+/[^\s/]+)$"

PATTERN_HINTS = {
    SEMVER: "expected a semantic version such as 1.2.3",
    PORT_KEY: "expected a lower-case identifier such as input_1",
    SERVICE_KEY: f"expected {COMPUTATIONAL_PREFIX}<service> in lower case",
    PORT_TYPE: "expected data:<type>/<subtype> (e.g. data:*/*), number, integer, boolean or string",
}

SemVer = Annotated[str, StringConstraints(pattern=SEMVER)]
NonEmpty = Annotated[str, StringConstraints(min_length=1)]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Author(_Strict):
    name: NonEmpty
    email: Email
    affiliation: str | None = None


class Port(_Strict):
    display_order: int | float = Field(alias="displayOrder", gt=0)
    label: NonEmpty
    description: NonEmpty
    type: Annotated[str, StringConstraints(pattern=PORT_TYPE)]
    file_to_key_map: dict[NonEmpty, NonEmpty] | None = Field(default=None, alias="fileToKeyMap")
    default_value: Any = Field(default=None, alias="defaultValue")
    unit: str | None = None


Ports = dict[Annotated[str, StringConstraints(pattern=PORT_KEY)], Port]


class ServiceMetadata(_Strict):
    """One flavor's metadata.yml; field names are the YAML keys (aliases where they are not identifiers)."""

    name: NonEmpty
    key: Annotated[str, StringConstraints(pattern=SERVICE_KEY)]
    type: Literal["computational"]
    integration_version: SemVer = Field(alias="integration-version")
    version: SemVer
    description: NonEmpty
    contact: Email
    authors: list[Author] = Field(min_length=1)
    inputs: Ports
    outputs: Ports
    thumbnail: str | None = None
    version_display: str | None = None

    @model_validator(mode="after")
    def _file_maps_name_their_port(self) -> ServiceMetadata:
        for direction, ports in (("inputs", self.inputs), ("outputs", self.outputs)):
            for key, port in ports.items():
                for file_name, target in (port.file_to_key_map or {}).items():
                    if target != key:
                        raise ValueError(
                            f"{direction}.{key}.fileToKeyMap: '{file_name}' maps to '{target}', not to '{key}'"
                        )
        return self

    @property
    def service(self) -> str:
        """`simcore/services/comp/osparc-pytorch-runner` -> `osparc-pytorch-runner`."""
        return self.key.removeprefix(COMPUTATIONAL_PREFIX)

    @property
    def image(self) -> str:
        """The image reference oSPARC expects: `<key>:<version>`."""
        return f"{self.key}:{self.version}"

    def ordered_inputs(self) -> list[str]:
        return sorted(self.inputs, key=lambda k: (self.inputs[k].display_order, k))

    def ordered_outputs(self) -> list[str]:
        return sorted(self.outputs, key=lambda k: (self.outputs[k].display_order, k))

    def as_document(self) -> dict[str, Any]:
        """The metadata as written in the YAML file (aliases, only the fields given)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _field_path(location: tuple[int | str, ...]) -> str:
    """pydantic reports locations by alias (the YAML key), so they read as written in the file."""
    return ".".join(str(part) for part in location) or "(top level)"


def describe_errors(error: ValidationError) -> str:
    """pydantic's errors as `field 'inputs.input_1.type': <problem>`, joined by '; '."""
    messages = []
    for item in error.errors(include_url=False):
        location = tuple(p for p in item["loc"] if not (isinstance(p, str) and re.fullmatch(r"\w+\[.*\]", p)))
        problem = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            problem = "unknown field"
        elif item["type"] == "missing":
            problem = "required field is missing"
        elif item["type"] == "string_pattern_mismatch":
            pattern = item["ctx"]["pattern"]
            problem = f"{item.get('input')!r}: {PATTERN_HINTS.get(pattern, f'does not match {pattern}')}"
        messages.append(f"field '{_field_path(location)}': {problem}" if location else problem)
    return "; ".join(messages)


def parse_metadata(document: Any, path: Path) -> ServiceMetadata:
    if not isinstance(document, dict):
        raise UserError("expected a mapping of metadata fields", path=path, fix="see flavors/pytorch/metadata.yml")
    try:
        metadata = ServiceMetadata.model_validate(document)
    except ValidationError as error:
        raise UserError(
            describe_errors(error), path=path, fix="correct metadata.yml (fields: see design.md)"
        ) from error
    check_runner_ports(metadata, path)
    return metadata


def check_runner_ports(metadata: ServiceMetadata, path: Path) -> None:
    """Refuse, in one line naming the port, an input the runner does not read or an output it does not write."""
    for key in metadata.inputs:
        if key not in INPUT_PORTS:
            raise UserError(
                f"input port '{key}' is not one the runner reads (it exports INPUT_N for {_span(INPUT_PORTS)})",
                path=path,
                fix=f"name the port one of {_span(INPUT_PORTS)}",
            )
    for key, port in metadata.outputs.items():
        if key not in OUTPUT_PORTS:
            raise UserError(
                f"output port '{key}' is not one the runner writes (it zips {_span(OUTPUT_PORTS)})",
                path=path,
                fix=f"name the port one of {_span(OUTPUT_PORTS)}, with fileToKeyMap {{output_N.zip: output_N}}",
            )
        archive = output_archive(key)
        made = f"fileToKeyMap {{{archive}: {key}}}"
        if not port.type.startswith("data:"):
            raise UserError(
                f"output port '{key}' has type {port.type}, but the runner writes only the file {archive}",
                path=path,
                fix=f"give it type data:*/* and {made}",
            )
        if port.file_to_key_map != {archive: key}:
            given = ", ".join(port.file_to_key_map or {}) or f"{key} (it has no fileToKeyMap)"
            raise UserError(
                f"output port '{key}' is read from {given}, but the runner writes {archive}",
                path=path,
                fix=f"set {made}",
            )


def _span(ports: tuple[str, ...]) -> str:
    return f"{ports[0]}..{ports[-1]}"


def load_metadata(path: Path) -> ServiceMetadata:
    """Read and validate one metadata.yml; every problem is a UserError naming the file and the field."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise UserError("no metadata file", path=path, fix="add metadata.yml to the flavor folder") from error
    except yaml.YAMLError as error:
        raise UserError(f"not valid YAML: {error}".replace("\n", " "), path=path, fix="correct the syntax") from error
    return parse_metadata(document, path)
