"""An sdist whose build can be held open: the window a test needs to kill a job in the middle of its overlay.

`slowpkg` carries its own PEP 517 backend (`backend-path = ["."]`, no build requirements,
so uv builds it offline). Its `build_wheel` writes the file named by
ENGINE_TEST_SLOW_BUILD_MARKER, when that is set, and then waits; without it, it builds at
once. The marker says who builds (`building as UID:GID`): in the image, the source builder.
The wheel holds `slowpkg.VALUE`.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from tests.support.build_backend import backend_module, pyproject

NAME = "slowpkg"
VERSION = "1.0"
VALUE = "built from the sdist"
MARKER_VARIABLE = "ENGINE_TEST_SLOW_BUILD_MARKER"

PYPROJECT = pyproject(NAME, VERSION, "slow_backend")

METADATA = f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n"

BACKEND = backend_module(
    NAME,
    VERSION,
    repr({f"{NAME}/__init__.py": f"VALUE = {VALUE!r}\n"}),
    before_build=f"""
        marker = os.environ.get("{MARKER_VARIABLE}")
        if marker:
            pathlib.Path(marker).write_text(f"building as {{os.getuid()}}:{{os.getgid()}}\\n")
            time.sleep(3600)
    """,
)


def write_sdist(folder: Path) -> Path:
    """`slowpkg-1.0.tar.gz` in `folder` (a find-links folder for uv)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{NAME}-{VERSION}.tar.gz"
    root = f"{NAME}-{VERSION}"
    with tarfile.open(target, "w:gz") as archive:
        for name, text in (
            ("pyproject.toml", PYPROJECT),
            ("slow_backend.py", BACKEND),
            ("PKG-INFO", METADATA),
        ):
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            archive.addfile(info, io.BytesIO(data))
    return target
