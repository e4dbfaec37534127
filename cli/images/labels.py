"""Image labels oSPARC reads: `io.simcore.<key>` from metadata.yml, `simcore.service.*` from runtime.yml.

oSPARC's catalog decodes each `io.simcore.<key>` label as JSON and expects `{"<key>": <value>}`
(what `ooil` writes); `simcore.service.settings` is the JSON list of runtime settings and
`simcore.service.restart-policy` a plain word.

runtime.yml may also hold `environment:`, the flavor's defaults for variables the image sets
(e.g. `TF_FORCE_GPU_ALLOW_GROWTH: "true"` for tensorflow). They are not labels: both engines
set them as image ENV, and `cli run` applies them; a value in the job's environment wins.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from cli.errors import UserError
from cli.images.metadata import ServiceMetadata

SIMCORE_PREFIX = "io.simcore."
SETTINGS_LABEL = "simcore.service.settings"
RESTART_POLICY_LABEL = "simcore.service.restart-policy"
ENVIRONMENT_KEY = "environment"
VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Set by the images themselves or by oSPARC's backend: a flavor default for one of them would be wrong or ignored.
RESERVED_VARIABLES = frozenset(
    {
        "PATH", "HOME", "CONDA_PREFIX", "RUNNER_PYTHON", "RUNNER_FLAVOR", "RUNNER_HOME", "RUNNER_CACHE_DIR",
        "INPUT_FOLDER", "OUTPUT_FOLDER", "LOG_FOLDER", "SC_USER_NAME", "SC_USER_ID", "SC_USER_HOME",
        "SC_COMP_SERVICES_SCHEDULED_AS", "SIMCORE_NANO_CPUS_LIMIT", "SIMCORE_MEMORY_BYTES_LIMIT",
        "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "NVIDIA_REQUIRE_CUDA",
    }
)  # fmt: skip


def simcore_labels(metadata: ServiceMetadata) -> dict[str, str]:
    """One `io.simcore.<key>` label per metadata field, in the file's order."""
    return {
        f"{SIMCORE_PREFIX}{key}": json.dumps({key: value}, ensure_ascii=False)
        for key, value in metadata.as_document().items()
    }


def decode_simcore_labels(labels: dict[str, str]) -> dict[str, Any]:
    """The inverse of `simcore_labels`: the metadata document back from an image's labels."""
    document: dict[str, Any] = {}
    for label, text in labels.items():
        if not label.startswith(SIMCORE_PREFIX):
            continue
        key = label.removeprefix(SIMCORE_PREFIX)
        decoded = json.loads(text)
        if not isinstance(decoded, dict) or list(decoded) != [key]:
            raise ValueError(f"label {label} does not hold {{{key!r}: ...}}")
        document[key] = decoded[key]
    return document


def read_runtime(path: Path) -> dict[str, Any]:
    """runtime.yml as a mapping ({} when the flavor has none)."""
    if not path.is_file():
        return {}
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise UserError(f"not valid YAML: {error}".replace("\n", " "), path=path, fix="correct the syntax") from error
    if not isinstance(document, dict):
        raise UserError("expected a mapping", path=path, fix="write runtime.yml as key: value pairs")
    return document


def runtime_environment(path: Path) -> dict[str, str]:
    """runtime.yml's `environment:` mapping as image ENV: names checked, YAML scalars as the shell would see them."""
    environment = read_runtime(path).get(ENVIRONMENT_KEY)
    if environment is None:
        return {}
    if not isinstance(environment, dict):
        raise UserError(
            f"field '{ENVIRONMENT_KEY}': expected a mapping of variable names to values",
            path=path,
            fix='write e.g. environment: {TF_FORCE_GPU_ALLOW_GROWTH: "true"}',
        )
    values: dict[str, str] = {}
    for name, value in environment.items():
        if not isinstance(name, str) or not VARIABLE_NAME.match(name):
            raise UserError(
                f"field '{ENVIRONMENT_KEY}': {name!r} is not a variable name",
                path=path,
                fix="use letters, digits and underscores, not starting with a digit",
            )
        if name in RESERVED_VARIABLES:
            raise UserError(
                f"field '{ENVIRONMENT_KEY}': {name} is set by the image or by oSPARC, not by a flavor",
                path=path,
                fix=f"remove {name} from {ENVIRONMENT_KEY}",
            )
        if isinstance(value, bool):
            values[name] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            values[name] = str(value)
        else:
            raise UserError(
                f"field '{ENVIRONMENT_KEY}': {name} must be a single value, not {type(value).__name__}",
                path=path,
                fix=f'quote it: {name}: "..."',
            )
        if "\n" in values[name]:
            raise UserError(
                f"field '{ENVIRONMENT_KEY}': the value of {name} spans lines",
                path=path,
                fix="give a one-line value",
            )
    return values


def runtime_labels(path: Path) -> dict[str, str]:
    """`simcore.service.*` labels from runtime.yml's `settings` and `restart-policy` (other keys are not labels)."""
    document = read_runtime(path)
    labels: dict[str, str] = {}
    settings = document.get("settings")
    if settings is not None:
        if not isinstance(settings, list) or not all(isinstance(s, dict) and "name" in s for s in settings):
            raise UserError(
                "field 'settings': expected a list of {name, type, value}",
                path=path,
                fix="see flavors/pytorch/runtime.yml",
            )
        labels[SETTINGS_LABEL] = json.dumps(settings, ensure_ascii=False)
    policy = document.get("restart-policy")
    if policy is not None:
        if policy not in ("no-restart", "on-inputs-downloaded"):
            raise UserError(
                f"field 'restart-policy': {policy!r} is not a restart policy",
                path=path,
                fix="use no-restart or on-inputs-downloaded",
            )
        labels[RESTART_POLICY_LABEL] = str(policy)
    return labels
