"""`audit sbom` (CycloneDX, schema-validated) and `audit licenses` (the inventory, grouped)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cyclonedx.exception import MissingOptionalDependencyException
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from cli.audit.licenses import COPYLEFT, OTHER, PERMISSIVE, PROPRIETARY, UNKNOWN, WEAK_COPYLEFT, licence_kind
from cli.audit.readers import LockedPackage
from cli.audit.sbom import channel_of, package_url
from cli.lockengine.lockfile import locked_records
from cli.lockengine.manifest import load_workspace
from tests.audit.conftest import run_audit, run_cli


def sbom(capsys: pytest.CaptureFixture[str], workspace: Path, flavor: str = "pytorch") -> str:
    outcome = run_audit(capsys, "sbom", flavor, "--manifest-path", workspace)
    assert outcome.code == 0, outcome.stderr
    return outcome.stdout


def test_sbom_validates_against_the_cyclonedx_schema(
    capsys: pytest.CaptureFixture[str], audited_workspace: Path
) -> None:
    for flavor in ("pytorch", "tensorflow"):
        text = sbom(capsys, audited_workspace, flavor)
        try:
            errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text, all_errors=True)
        except MissingOptionalDependencyException:
            pytest.fail("the schema validator needs `cyclonedx-python-lib[json-validation]` (a dev dependency)")
        assert errors is None, "\n".join(str(e) for e in errors or [])
        assert json.loads(text)["specVersion"] == "1.6"


def test_sbom_components_carry_purl_hashes_and_licences(
    capsys: pytest.CaptureFixture[str], audited_workspace: Path, gpu_channel: Path
) -> None:
    bom = json.loads(sbom(capsys, audited_workspace))
    components = {c["name"]: c for c in bom["components"]}
    records = {r.name.normalized: r for r in locked_records(load_workspace(audited_workspace), "pytorch")}
    assert set(components) == set(records)
    pytorch = components["pytorch"]
    channel = gpu_channel.as_uri()
    assert pytorch["purl"] == (
        f"pkg:conda/pytorch@2.5.0?build=cuda124_py312_h2_300&channel={channel}&subdir=linux-64&type=conda"
    )
    assert pytorch["bom-ref"] == pytorch["purl"]
    hashes = {h["alg"]: h["content"] for h in pytorch["hashes"]}
    assert hashes["SHA-256"] == records["pytorch"].sha256.hex()
    assert hashes["MD5"] == records["pytorch"].md5.hex()
    assert pytorch["licenses"] == [{"license": {"id": "BSD-3-Clause"}}]
    assert components["uv"]["licenses"] == [{"expression": "Apache-2.0 OR MIT"}]
    assert components["cudnn"]["licenses"] == [{"license": {"name": "LicenseRef-cuDNN-Software-License-Agreement"}}]
    assert "subdir=noarch" in components["cuda-version"]["purl"]
    assert pytorch["externalReferences"][0]["type"] == "distribution"


def test_sbom_describes_the_flavor_and_its_dependency_graph(
    capsys: pytest.CaptureFixture[str], audited_workspace: Path
) -> None:
    bom = json.loads(sbom(capsys, audited_workspace))
    root = bom["metadata"]["component"]
    assert (root["name"], root["version"], root["type"]) == ("pytorch", "1.0.0", "application")
    graph = {d["ref"]: d.get("dependsOn", []) for d in bom["dependencies"]}
    requested = {ref.split("@")[0] for ref in graph[root["bom-ref"]]}
    assert requested == {f"pkg:conda/{name}" for name in ("pytorch", "torchvision", "cuda-version", "python", "uv")}
    pytorch_ref = next(c["bom-ref"] for c in bom["components"] if c["name"] == "pytorch")
    assert {ref.split("@")[0] for ref in graph[pytorch_ref]} == {
        "pkg:conda/python",
        "pkg:conda/numpy",
        "pkg:conda/cuda-version",
        "pkg:conda/cudnn",
    }


def test_sbom_is_reproducible(audited_workspace: Path, tmp_path: Path) -> None:
    env = {"SOURCE_DATE_EPOCH": "1735689600"}
    first = run_cli("audit", "sbom", "pytorch", "--output", tmp_path / "a.json", cwd=audited_workspace, env=env)
    second = run_cli("audit", "sbom", "pytorch", "--output", tmp_path / "b.json", cwd=audited_workspace, env=env)
    assert first.code == second.code == 0, first.stderr
    assert "CycloneDX 1.6" in first.stdout
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert json.loads((tmp_path / "a.json").read_text())["metadata"]["timestamp"].startswith("2025-01-01T00:00:00")


def test_purl_of_a_conda_forge_package() -> None:
    package = LockedPackage(
        "conda",
        "cudnn",
        "9.13.0.50",
        "hbcb9cd8_0",
        url="https://conda.anaconda.org/conda-forge/linux-64/cudnn-9.13.0.50-hbcb9cd8_0.conda",
        subdir="linux-64",
    )
    assert channel_of(package) == "conda-forge"
    assert package_url(package).to_string() == (
        "pkg:conda/cudnn@9.13.0.50?build=hbcb9cd8_0&channel=conda-forge&subdir=linux-64&type=conda"
    )
    old = LockedPackage(
        "conda",
        "bzip2",
        "1.0.8",
        "h7f98852_4",
        url="https://conda.anaconda.org/conda-forge/linux-64/bzip2-1.0.8-h7f98852_4.tar.bz2",
        subdir="linux-64",
    )
    assert package_url(old).qualifiers["type"] == "tar.bz2"


# --- licences ---------------------------------------------------------------------------------


def test_licence_inventory_is_grouped(capsys: pytest.CaptureFixture[str], audited_workspace: Path) -> None:
    outcome = run_audit(capsys, "licenses", "pytorch", "--manifest-path", audited_workspace, "--json")
    assert outcome.code == 0, outcome.stdout
    result = json.loads(outcome.stdout)
    groups = {g["licence"]: (g["kind"], [p["name"] for p in g["packages"]]) for g in result["licences"]}
    assert groups["BSD-3-Clause"] == (PERMISSIVE, ["numpy", "pytorch", "torchvision"])
    assert groups["Apache-2.0 OR MIT"] == (PERMISSIVE, ["uv"])
    assert groups["LicenseRef-cuDNN-Software-License-Agreement"] == (PROPRIETARY, ["cudnn"])
    assert result["kinds"][PERMISSIVE] == 6
    assert result["kinds"][PROPRIETARY] == 1
    human = run_cli("audit", "licenses", "pytorch", cwd=audited_workspace)
    assert human.code == 0
    assert "LicenseRef-cuDNN-Software-License-Agreement" in human.stdout


def test_denied_licences_are_findings(capsys: pytest.CaptureFixture[str], audited_workspace: Path) -> None:
    outcome = run_audit(
        capsys, "licenses", "pytorch", "--manifest-path", audited_workspace, "--deny", "proprietary", "--json"
    )
    assert outcome.code == 1
    assert [(f["check"], f["subject"]) for f in json.loads(outcome.stdout)["findings"]] == [("licence-denied", "cudnn")]
    outcome = run_audit(capsys, "licenses", "pytorch", "--manifest-path", audited_workspace, "--deny", "bsd-*")
    assert outcome.code == 1
    for name in ("numpy", "pytorch", "torchvision"):
        assert name in outcome.stdout


@pytest.mark.parametrize(
    ("expression", "kind"),
    [
        ("MIT", PERMISSIVE),
        ("Apache-2.0 OR MIT", PERMISSIVE),
        ("X11 AND BSD-3-Clause", PERMISSIVE),
        ("GPL-3.0-only WITH GCC-exception-3.1", WEAK_COPYLEFT),
        ("GPL-2.0-or-later OR LGPL-3.0-or-later", WEAK_COPYLEFT),
        ("LGPL-2.1-only", WEAK_COPYLEFT),
        ("GPL-3.0-only", COPYLEFT),
        ("(MIT) AND (GPL-2.0-only)", COPYLEFT),
        ("CC-BY-SA-4.0", COPYLEFT),
        ("LicenseRef-NVIDIA-End-User-License-Agreement", PROPRIETARY),
        ("BSD", OTHER),
        ("None", UNKNOWN),
        (None, UNKNOWN),
    ],
)
def test_licence_kinds(expression: str | None, kind: str) -> None:
    assert licence_kind(expression) == kind
