"""Every exit status a job in the image can end with is documented where users look for it.

The statuses come from three places: the runner (runner/errors.py), the entrypoint before
it (common/entrypoint_lib.sh) and, in the image, root's supervisor around it. runner/README.md's
table has a row for each, naming where it comes from; the project README sums them up.
"""

from __future__ import annotations

import re

from runner import errors
from tests.runner.conftest import REPO

RUNNER_STATUSES = {name: value for name, value in vars(errors).items() if name.startswith("EXIT_")}


def exit_table() -> dict[str, str]:
    """runner/README.md's exit-status table: the status (first cell) -> the rest of its row."""
    text = (REPO / "runner" / "README.md").read_text()
    section = text.split("## Exit status\n", 1)[1].split("\n\n", 1)[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): " ".join(cells[1:]) for cells in rows[1:]}


def entrypoint_statuses() -> dict[str, int]:
    library = (REPO / "common" / "entrypoint_lib.sh").read_text()
    return {name: int(value) for name, value in re.findall(r"^(EP_EXIT_\w+)=(\d+)$", library, flags=re.MULTILINE)}


def test_every_status_of_the_runner_and_the_entrypoint_has_a_row_saying_where_it_comes_from() -> None:
    table = exit_table()
    for name, status in RUNNER_STATUSES.items():
        assert str(status) in table, f"{name}={status} has no row in runner/README.md"
    statuses = entrypoint_statuses()
    assert statuses, "common/entrypoint_lib.sh names its statuses EP_EXIT_*"
    for name, status in statuses.items():
        assert "entrypoint" in table.get(str(status), ""), f"{name}={status}: the row does not name the entrypoint"
    # root's supervisor: mounts of a builder's UID (an overlay error) and an unusable job user (an internal one)
    assert "supervisor" in table[str(errors.EXIT_OVERLAY)] and "builder" in table[str(errors.EXIT_OVERLAY)]
    assert "supervisor" in table[str(errors.EXIT_INTERNAL)]


def test_the_project_readme_sums_up_every_status() -> None:
    readme = (REPO / "README.md").read_text()
    summary = readme.split("**How exit codes read in oSPARC.**", 1)[1].split("\n\n", 1)[0]
    for status in {*RUNNER_STATUSES.values(), *entrypoint_statuses().values()}:
        assert re.search(rf"\b{status}\b", summary), f"status {status} is missing from the README's summary"
