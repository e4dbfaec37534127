"""pixi's own satisfiability fixtures: `lock --check` gives pixi's verdict on each, without solving or network.

`satisfiability/` holds workspaces pixi finds satisfied by their lock (exit 0 here),
`non-satisfiability/` those it finds stale (exit 1). The ones this CLI cannot judge are
listed in tests/data/pixi-fixtures/PROVENANCE.md and the README, and answer exit 2.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from tests.support.cli import REPO_ROOT, run_cli

FIXTURES = REPO_ROOT / "tests" / "data" / "pixi-fixtures"
OUT_OF_SCOPE = {
    "satisfiability/out-of-tree-source": "pixi-build",
    "satisfiability/out-of-tree-source-parent": "pixi-build",
    "satisfiability/source-dependency": "pixi-build",
    "non-satisfiability/binary-spec-source-record": "pixi-build",
    "non-satisfiability/mismatched-source-spec": "pixi-build",
    "non-satisfiability/source-extra-dependency-added": "pixi-build",
    "non-satisfiability/source-recursive-dependency": "pixi-build",
    "non-satisfiability/source-recursive-dependency-changed-dir": "pixi-build",
    "satisfiability/no-build-editable": "pyproject.toml manifest",
    "satisfiability/old_lock_file": "pyproject.toml manifest",
}
KINDS = ("satisfiability", "non-satisfiability")  # beside them, snapshots/: pixi's reasons
CASES = sorted(f"{kind}/{case.name}" for kind in KINDS for case in (FIXTURES / kind).iterdir())
# no network at all: any connection attempt goes to a closed local port
OFFLINE = {
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "all_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "",
}


def _copy(case: str, tmp_path: Path) -> Path:
    target = tmp_path / case.replace("/", "__")
    shutil.copytree(FIXTURES / case, target)
    return target


def test_every_pixi_fixture_is_here() -> None:
    assert len([c for c in CASES if c.startswith("satisfiability/")]) == 27
    assert len([c for c in CASES if c.startswith("non-satisfiability/")]) == 30
    assert set(OUT_OF_SCOPE) <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_lock_check_gives_pixis_verdict(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    workspace = _copy(case, tmp_path)
    before = (workspace / "pixi.lock").read_bytes()
    result = CliRunner().invoke(app, ["lock", "--check", "--manifest-path", str(workspace)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if case in OUT_OF_SCOPE:
        assert result.exit_code == 2, result.output
        assert result.output.startswith("cannot check: ") and OUT_OF_SCOPE[case] in result.output
        assert len(result.output.strip().splitlines()) == 1
    elif case.startswith("satisfiability/"):
        assert result.exit_code == 0, result.output
        assert "up to date" in result.output
    else:
        assert result.exit_code == 1, result.output
        assert "out of date" in result.output
    assert (workspace / "pixi.lock").read_bytes() == before  # a check writes nothing


SNAPSHOTS = FIXTURES / "snapshots"
SNAPSHOT = "pixi_core__lock_file__satisfiability__tests__failing_satisfiability@{}.snap"
STALE_IN_SCOPE = [c for c in CASES if c.startswith("non-satisfiability/") and c not in OUT_OF_SCOPE]
HEADLINE = re.compile(
    r"environment '(?P<env>[^']+)' (?:does not satisfy the requirements of the project"
    r"(?: for platform '(?P<platform>[^']+)')?|(?P<removed>is in the lock-file but no longer exists in the project))$"
)


def pixis_reason(case: str) -> str:
    """What pixi's insta snapshot says, in this CLI's form: `<environment> [<platform>]: <the cause>`.

    A snapshot is front matter between `---` lines, then pixi's diagnostic: a headline naming the
    environment (and the platform, when the cause is about one) and a `Caused by:` line.
    """
    text = (SNAPSHOTS / SNAPSHOT.format(case.split("/", 1)[1])).read_text()
    body = [line.strip() for line in text.split("---\n", 2)[2].splitlines() if line.strip()]
    match = HEADLINE.match(body[0])
    assert match is not None, body[0]
    if match["removed"]:
        return f"{match['env']}: {match['removed']}"
    (cause,) = [line.removeprefix("Caused by: ") for line in body if line.startswith("Caused by: ")]
    where = f"{match['env']} [{match['platform']}]" if match["platform"] else match["env"]
    return f"{where}: {cause}"


def test_every_stale_fixture_has_pixis_snapshot() -> None:
    stale = {c.split("/", 1)[1] for c in CASES if c.startswith("non-satisfiability/")}
    assert {SNAPSHOT.format(name) for name in stale} == {p.name for p in SNAPSHOTS.iterdir()}


@pytest.mark.parametrize("case", STALE_IN_SCOPE)
def test_the_reason_is_pixis(case: str, tmp_path: Path) -> None:
    """The first problem `lock --check` names is the one pixi's snapshot names, word for word."""
    result = CliRunner().invoke(app, ["lock", "--check", "--manifest-path", str(_copy(case, tmp_path))])
    assert result.exit_code == 1, result.output
    headline, first = result.output.splitlines()[:2]
    assert headline.endswith("pixi.lock: out of date")
    assert first.strip() == pixis_reason(case)


def test_the_real_command_offline(tmp_path: Path) -> None:
    """`python -m cli lock --check` in a subprocess with every connection refused: a PyPI fixture and a stale one."""
    fresh = run_cli("lock", "--check", cwd=_copy("satisfiability/pypi-extras", tmp_path), env=OFFLINE)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    stale = run_cli(
        "lock", "--check", "--json", cwd=_copy("non-satisfiability/solve-groups-pypi", tmp_path), env=OFFLINE
    )
    assert stale.returncode == 1
    assert '"verdict": "stale"' in stale.stdout
    cannot = run_cli("lock", "--check", cwd=_copy("satisfiability/old_lock_file", tmp_path), env=OFFLINE)
    assert cannot.returncode == 2
    assert cannot.stderr.startswith("cannot check: ") and "Traceback" not in cannot.stderr
