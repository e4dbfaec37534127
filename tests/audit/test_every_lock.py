"""No traceback on any lock in tests/data: export and `audit diff` either work or refuse in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.audit.diff import diff_files
from cli.audit.readers import read_snapshot
from cli.errors import UserError
from cli.lockengine.export import lock_exports
from cli.lockengine.lockfile import read_lock_data
from tests.support.cli import REPO_ROOT, run_cli

DATA = REPO_ROOT / "tests" / "data"
EVERY_LOCK = sorted(
    str(p.relative_to(DATA)) for p in [*DATA.rglob("*.lock"), *DATA.rglob("*.yml")] if "channels" not in p.parts
)
REFUSED = {  # files rattler_lock refuses: a one-line error, exit 2, from both commands
    "locks/rattler/lock_parse_fails/forward-compatible-lock.yml",
    *(
        f"locks/rattler/lock_parse_fails/v7/{n}"
        for n in (
            "duplicate_platform.yml",
            "duplicate_platform_definition.yml",
            "duplicate_platform_use.yml",
            "invalid_platform_name.yml",
            "invalid_platform_subdir.yml",
            "missing_platform.yml",
        )
    ),
}


def test_the_list_covers_the_data() -> None:
    assert len(EVERY_LOCK) > 80
    assert set(EVERY_LOCK) >= REFUSED


@pytest.mark.parametrize("name", EVERY_LOCK)
def test_export_and_diff_never_crash(name: str) -> None:
    path = DATA / name
    if name in REFUSED:
        with pytest.raises(UserError):
            read_snapshot(path)
        return
    snapshot = read_snapshot(path)
    assert diff_files(path, path).changed is False
    if "environments" not in path.read_text(encoding="utf-8", errors="replace"):
        return  # an export (conda-lock.yml): read and diffed above; exports are made from pixi.lock
    results = list(lock_exports(path).values())
    if any(isinstance(r, UserError) and "PyPI" in r.message for r in results):
        results += lock_exports(path, ignore_pypi=True).values()  # left out, as asked: then it works
    for rendered in results:
        if isinstance(rendered, UserError):
            assert "\n" not in rendered.one_line()
        else:
            assert rendered["conda-lock.yml"].startswith("# Derived from pixi.lock")
    assert snapshot.packages is not None


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_audit_diff_refuses_what_rattler_refuses_in_one_line(name: str) -> None:
    path = DATA / name
    result = run_cli("audit", "diff", path, path, cwd=REPO_ROOT)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_audit_diff_between_format_6_and_7_keeps_conda_sources_and_pypi(tmp_path: Path) -> None:
    """A v6 lock and the v7 pixi writes from it: same packages, so no false removals."""
    old = DATA / "locks" / "pixi-pypi-example.v6.pixi.lock"
    new = tmp_path / "v7.lock"
    new.write_bytes(read_lock_data(old).render())
    diff = diff_files(old, new)
    assert not diff.changed
    sources = read_snapshot(DATA / "locks" / "pixi-build-recursive.v7.pixi.lock")
    labels = {p.label for platforms in sources.packages.values() for pkgs in platforms.values() for p in pkgs.values()}
    assert any(label.endswith("(source)") for label in labels)
    variants = read_snapshot(DATA / "locks" / "rattler" / "v7" / "multiple-source-packages-with-variants-lock.yml")
    (packages,) = variants.packages["default"].values()
    assert sorted(k[1] for k in packages) == ["my-package[2a17d7b3]", "my-package[bfd2b14c]"]
    relative = read_snapshot(DATA / "locks" / "rattler" / "v7" / "pypi_relative_url.yml")
    pypi = {p.name: p for platforms in relative.packages.values() for pkgs in platforms.values() for p in pkgs.values()}
    assert pypi["pixi-repro"].version == "dynamic" and pypi["pixi-repro"].url == "./"
