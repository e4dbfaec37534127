"""requirements.txt as the runner reads it: pip's file format around PEP 508 requirements that `packaging` parses."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from runner.errors import BadInput
from runner.requirements import InvalidRequirement, parse_requirement, read_requirements


@pytest.mark.parametrize(
    ("marker", "extras", "expected"),
    [
        (f'python_version >= "{sys.version_info[0]}.{sys.version_info[1]}"', ("",), True),
        ('python_version < "3"', ("",), False),
        ('sys_platform == "linux" or sys_platform == "darwin"', ("",), sys.platform in ("linux", "darwin")),
        ('extra == "and_cuda"', ("",), False),
        ('extra == "and_cuda"', ("", "and-cuda"), True),  # extra names compare normalised
    ],
)
def test_a_marker_decides_whether_a_requirement_applies(marker: str, extras: tuple[str, ...], expected: bool) -> None:
    assert parse_requirement(f"pkg ; {marker}").applies(extras) is expected


@pytest.mark.parametrize(
    ("requirement", "version", "expected"),
    [
        ("basepkg>=1", "1.0", True),
        ("basepkg>=2", "1.0", False),
        ("torch==2.5.0", "2.5.0+cu124", True),
        ("numpy<2", "2.0.0rc1", False),
        ("numpy>=2", "2.1.0rc1", True),  # the base's locked pre-release is what it is
        ("basepkg", "not a version", None),
        ("tool @ https://example.org/tool-1.0-py3-none-any.whl", "1.0", None),
    ],
)
def test_a_locked_version_against_a_requirement(requirement: str, version: str, expected: bool | None) -> None:
    assert parse_requirement(requirement).satisfied_by(version) is expected


@pytest.mark.parametrize(
    ("text", "name", "extras", "specifier", "url", "marker"),
    [
        ("numpy", "numpy", (), "", None, None),
        ("torch>=2.4,<3", "torch", (), "<3,>=2.4", None, None),  # packaging sorts the clauses
        ("tensorflow[and-cuda]==2.17.*", "tensorflow", ("and-cuda",), "==2.17.*", None, None),
        ('pkg (>=1.0) ; python_version > "3.8"', "pkg", (), ">=1.0", None, 'python_version > "3.8"'),
        (
            "tool @ https://example.org/tool-1.0-py3-none-any.whl",
            "tool",
            (),
            "",
            "https://example.org/tool-1.0-py3-none-any.whl",
            None,
        ),
        ("Foo_Bar.baz[b,a] ~= 1.4", "Foo_Bar.baz", ("a", "b"), "~=1.4", None, None),
    ],
)
def test_requirement_lines(
    text: str, name: str, extras: tuple[str, ...], specifier: str, url: str | None, marker: str | None
) -> None:
    requirement = parse_requirement(text)
    found_marker = str(requirement.marker) if requirement.marker else None
    assert (requirement.name, requirement.extras, str(requirement.specifier), requirement.url, found_marker) == (
        name,
        extras,
        specifier,
        url,
        marker,
    )


@pytest.mark.parametrize(
    "text",
    [
        "userpkg>>1",
        "numpy 1.2",
        "pkg[extra",
        "pkg @ not-a-url",
        "pkg; python_version >>> '3'",
        "pkg;",
        "==1.0",
        "pkg=1.0",
    ],
)
def test_bad_requirement_lines(text: str) -> None:
    with pytest.raises(InvalidRequirement) as caught:
        parse_requirement(text)
    assert "\n" not in str(caught.value) and str(caught.value)


def test_requirements_file_options_and_normalization(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "local-1.0-py3-none-any.whl").write_bytes(b"not really a wheel")
    (tmp_path / "more.txt").write_text("extra-one==1.0\n")
    (tmp_path / "pins.txt").write_text("shared==2.0\n")
    path = tmp_path / "requirements.txt"
    path.write_text(
        "# a comment\n"
        "--index-url https://pypi.example.org/simple\n"
        "--extra-index-url=https://extra.example.org/simple\n"
        "-f ./wheels\n"
        "-r more.txt\n"
        "-c pins.txt\n"
        "Zeta>=1  # trailing comment\n"
        "alpha==1.0 \\\n"
        "    --hash=sha256:0123\n"
        "./wheels/local-1.0-py3-none-any.whl\n"
        "--pre\n"
        "${NAME_FROM_ENV}==3.0\n"
    )
    parsed = read_requirements(path, {"NAME_FROM_ENV": "gamma"})
    assert [r.name for r in parsed.requirements] == ["extra-one", "Zeta", "alpha", "gamma"]
    assert parsed.requirements[2].hashes == ("sha256:0123",)
    assert [c.name for c in parsed.constraints] == ["shared"]
    assert parsed.index_url == "https://pypi.example.org/simple"
    assert parsed.extra_index_urls == ["https://extra.example.org/simple"]
    assert parsed.find_links == [str(wheels.resolve())]
    assert parsed.direct[0].target == str((wheels / "local-1.0-py3-none-any.whl").resolve())
    assert "--prerelease" in parsed.source_args()
    # Reordering lines and editing comments keeps the normalised form (and so the overlay key).
    reordered = tmp_path / "reordered.txt"
    lines = path.read_text().replace("# a comment\n", "").splitlines(keepends=True)
    reordered.write_text("".join(lines[:6] + lines[9:11] + lines[6:9] + lines[11:]) + "# new comment\n")
    assert read_requirements(reordered, {"NAME_FROM_ENV": "gamma"}).normalized() == parsed.normalized()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("good==1.0\nuserpkg>>1\n", "requirements.txt line 2: cannot parse 'userpkg>>1'"),
        ("--global-option=x\n", "unsupported option --global-option"),
        ("pkg==1.0 --config-settings x=y\n", "per-requirement option --config-settings"),
        ("-r missing.txt\n", "missing.txt: no such requirements file"),
        ("./nowhere/tool-1.0-py3-none-any.whl\n", "no such file or folder"),
        ("-e ./pkg\n", "requirements.txt line 1: '-e ./pkg': editable installs (-e) are not supported"),
    ],
)
def test_requirements_file_errors_name_the_line(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text(content)
    with pytest.raises(BadInput) as caught:
        _ = read_requirements(path, {}).requirements  # each requirement is read by packaging when first used
    assert expected in caught.value.one_line()
    assert "\n" not in caught.value.one_line()
