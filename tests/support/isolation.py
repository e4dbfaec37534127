"""An environment for a process that runs pip or uv, free of this machine's (or the caller's) pip and uv settings.

The runner honours pip's settings (PIP_* variables, pip.conf files) and uv's (UV_*) for the
overlays it builds. A test machine may have any of them: this one has an /etc/pip.conf and an
/etc/xdg/pip/pip.conf with a constraints file. Tests that build overlays start from this
environment and add back only what they mean to test.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def without_pip_and_uv_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`environ` (default: ours) without PIP_*/UV_* variables, and with pip's own switch to read no pip.conf."""
    source = os.environ if environ is None else environ
    env = {name: value for name, value in source.items() if not name.startswith(("PIP_", "UV_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env
