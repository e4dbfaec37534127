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

NAME = "slowpkg"
VERSION = "1.0"
VALUE = "built from the sdist"
MARKER_VARIABLE = "ENGINE_TEST_SLOW_BUILD_MARKER"

PYPROJECT = f"""\
[build-system]
requires = []
build-backend = "slow_backend"
backend-path = ["."]

[project]
name = "{NAME}"
version = "{VERSION}"
"""

METADATA = f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n"

BACKEND = f'''"""A PEP 517 backend that can be told to wait (see tests/engine/slow_sdist.py)."""
import base64
import hashlib
import os
import pathlib
import time
import zipfile

NAME, VERSION = "{NAME}", "{VERSION}"
METADATA = {METADATA!r}
WHEEL = "Wheel-Version: 1.0\\nGenerator: slow_backend\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
FILES = {{
    f"{{NAME}}/__init__.py": {f"VALUE = {VALUE!r}" + chr(10)!r},
    f"{{NAME}}-{{VERSION}}.dist-info/METADATA": METADATA,
    f"{{NAME}}-{{VERSION}}.dist-info/WHEEL": WHEEL,
}}


def _hold_if_asked():
    marker = os.environ.get("{MARKER_VARIABLE}")
    if marker:
        pathlib.Path(marker).write_text(f"building as {{os.getuid()}}:{{os.getgid()}}\\n")
        time.sleep(3600)


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _hold_if_asked()
    name = f"{{NAME}}-{{VERSION}}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(pathlib.Path(wheel_directory) / name, "w") as wheel:
        for path, text in FILES.items():
            data = text.encode()
            wheel.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{{path}},sha256={{digest}},{{len(data)}}")
        record.append(f"{{NAME}}-{{VERSION}}.dist-info/RECORD,,")
        wheel.writestr(f"{{NAME}}-{{VERSION}}.dist-info/RECORD", "\\n".join(record) + "\\n")
    return name
'''


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
