"""What the runner needs from a flavor's lock, checked before any build work by both engines.

The image's Python and uv come from the flavor's lock (the runner feature of pixi.toml),
sha256-checked like every package: the same uv in the Docker and the OCI image, never the
build machine's own. A lock without them would give an image whose jobs fail at start.
"""

from __future__ import annotations

from cli.errors import UserError
from cli.lockengine.manifest import Workspace

LOCKED_TOOLS = ("python", "uv")
PLATFORM = "linux-64"


def check_locked_tools(workspace: Workspace, flavor: str, platform: str = PLATFORM) -> dict[str, str]:
    """The locked versions of LOCKED_TOOLS for `flavor`; one line naming what the lock lacks otherwise."""
    from cli.lockengine.lockfile import locked_records

    versions = {r.name.normalized: str(r.version) for r in locked_records(workspace, flavor, platform)}
    missing = [tool for tool in LOCKED_TOOLS if tool not in versions]
    if missing:
        raise UserError(
            f"the lock of '{flavor}' ({platform}) has no {', '.join(missing)}, which the runner needs in the image",
            path=workspace.lock_path,
            fix=f"add {', '.join(missing)} to the runner feature of pixi.toml and relock",
        )
    return {tool: versions[tool] for tool in LOCKED_TOOLS}
