"""A package that carries its own PEP 517 build backend, for tests of builds from source.

`backend-path = ["."]` and no build requirements, so uv builds it offline. The backend's
`build_wheel` runs the test's own statements first (hold the build, attack the staging folder,
read a file), then evaluates the test's expression for the wheel's modules and writes a wheel
whose RECORD lists every file with its hash, as a real backend would.
"""

from __future__ import annotations

import textwrap


def pyproject(name: str, version: str, backend: str) -> str:
    """The `pyproject.toml` of `name` built by the module `backend` next to it."""
    return textwrap.dedent(f"""\
        [build-system]
        requires = []
        build-backend = "{backend}"
        backend-path = ["."]

        [project]
        name = "{name}"
        version = "{version}"
        """)


def backend_module(name: str, version: str, modules: str, *, before_build: str = "", helpers: str = "") -> str:
    """The backend's source. `modules` is an expression giving {path in the wheel: text} at build time;
    `before_build` holds statements run first; `helpers` is module-level code they may use."""
    body = textwrap.indent(textwrap.dedent(before_build).strip() or "pass", "    ")
    return f"""\
import base64, hashlib, os, pathlib, time, zipfile

NAME, VERSION = {name!r}, {version!r}
INFO = f"{{NAME}}-{{VERSION}}.dist-info"
{textwrap.dedent(helpers).strip() + chr(10) if helpers.strip() else ""}

def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
{body}
    files = dict({modules})
    files[f"{{INFO}}/METADATA"] = f"Metadata-Version: 2.1\\nName: {{NAME}}\\nVersion: {{VERSION}}\\n"
    files[f"{{INFO}}/WHEEL"] = "Wheel-Version: 1.0\\nGenerator: tests\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    wheel_name = f"{{NAME}}-{{VERSION}}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(pathlib.Path(wheel_directory) / wheel_name, "w") as wheel:
        for path, text in files.items():
            data = text.encode()
            wheel.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{{path}},sha256={{digest}},{{len(data)}}")
        record.append(f"{{INFO}}/RECORD,,")
        wheel.writestr(f"{{INFO}}/RECORD", "\\n".join(record) + "\\n")
    return wheel_name
"""
