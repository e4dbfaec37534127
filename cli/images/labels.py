"""Image labels oSPARC reads: `io.simcore.<key>` from metadata.yml, `simcore.service.*` from runtime.yml.

oSPARC's catalog decodes each `io.simcore.<key>` label as JSON and expects `{"<key>": <value>}`
(what `ooil` writes); `simcore.service.settings` is the JSON list of runtime settings and
`simcore.service.restart-policy` a plain word.

runtime.yml may also hold `environment:` (read by `cli.flavors.environment_defaults`): not
labels, but ENV defaults both engines give the image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from cli.errors import UserError
from cli.images.metadata import ServiceMetadata

SIMCORE_PREFIX = "io.simcore."
SETTINGS_LABEL = "simcore.service.settings"
RESTART_POLICY_LABEL = "simcore.service.restart-policy"


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
