"""docker-compose.yml at the workspace root: one build target per image, from the same plan `cli build` runs.

It holds what is fixed by the committed sources (tags, build args, io.simcore.* labels);
the per-commit provenance labels, NVIDIA_REQUIRE_CUDA and the flavor's ENV defaults
(runtime.yml `environment:`) are added by `cli build` only: compose cannot set an image's ENV.
"""

from __future__ import annotations

from typing import Any

import yaml

from cli.images.plan import BuildStep
from cli.images.runscript import header


def compose_document(steps: list[BuildStep]) -> dict[str, Any]:
    services: dict[str, Any] = {}
    for step in steps:
        build: dict[str, Any] = {"context": ".", "dockerfile": step.dockerfile.as_posix()}
        if step.build_args:
            build["args"] = dict(step.build_args)
        if step.labels:
            build["labels"] = dict(step.labels)
        service: dict[str, Any] = {"image": step.image, "build": build}
        if step.parent is not None:
            # Compose v2 builds a service's depends_on before it (docker/compose#9587 and later work).
            service["depends_on"] = [step.parent]
        services[step.name] = service
    return {"services": services}


def render_compose(steps: list[BuildStep], source: str) -> str:
    lines = [
        *header(source),
        "# Build order: common, then the shared stage (`shared`), then the flavors: `docker compose build` follows",
        "# depends_on (one flavor with its stages: `docker compose build --with-dependencies pytorch`); or",
        "# `python -m cli build`, which also sets NVIDIA_REQUIRE_CUDA and the flavor's ENV defaults from runtime.yml.",
    ]
    body = yaml.safe_dump(compose_document(steps), sort_keys=False, width=1_000_000, allow_unicode=True)
    return "\n".join(lines) + "\n" + body
