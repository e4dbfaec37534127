"""The Dockerfile a step is built from: the committed one, plus the flavor's ENV defaults when it has any.

Docker has no build option that sets an image's ENV, so a flavor's `environment:` from
runtime.yml (say TF_FORCE_GPU_ALLOW_GROWTH=true) is appended to a copy of its Dockerfile as
one ENV instruction, written to build/dockerfiles/<step>/Dockerfile next to a copy of the
Dockerfile's .dockerignore (BuildKit reads `<Dockerfile>.dockerignore` beside it). The copy
is derived, never committed, and rewritten by every `cli build` just before the engine
runs. `--dry-run` writes nothing: its commands name the path the build would write, and
`--json` gives the text it would write there. The OCI engine sets the same ENV in its image
config.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from cli.fileio import atomic_write_text
from cli.images.plan import BuildStep, ignore_file

RENDERED_DIR = Path("build/dockerfiles")


def quote(value: str) -> str:
    """A double-quoted Dockerfile word holding `value` literally (no $ expansion)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def env_instruction(env: dict[str, str]) -> str:
    """One ENV instruction setting every variable of `env`, in order."""
    pairs = [f"{key}={quote(value)}" for key, value in env.items()]
    return "ENV " + " \\\n    ".join(pairs) + "\n"


def render(step: BuildStep, root: Path) -> str:
    """The committed Dockerfile of `step` with its ENV defaults appended."""
    text = (root / (step.rendered_from or step.dockerfile)).read_text(encoding="utf-8")
    header = f"\n# Appended by `python -m cli build`: the flavor's ENV defaults (flavors/{step.flavor}/runtime.yml)\n"
    return text.rstrip("\n") + "\n" + header + env_instruction(step.env)


def rendered(step: BuildStep) -> BuildStep:
    """`step` itself when its Dockerfile says everything; else the same step on the copy `write_rendered` writes."""
    if not step.env:
        return step
    return replace(step, dockerfile=RENDERED_DIR / step.name / "Dockerfile", rendered_from=step.dockerfile)


def write_rendered(step: BuildStep, root: Path) -> None:
    """Write the copy a `rendered` step is built from, and the copy of its .dockerignore beside it."""
    if step.rendered_from is None:
        return
    target = root / step.dockerfile
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, render(step, root))
    ignore = ignore_file(step, root)
    rendered_ignore = root / f"{step.dockerfile}.dockerignore"
    if ignore.is_file():
        shutil.copyfile(ignore, rendered_ignore)
    else:
        rendered_ignore.unlink(missing_ok=True)
