"""bench/install.py still runs (on a tiny channel: the real figures come from running it by hand)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_install_benchmark_runs_on_a_tiny_channel(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = importlib.util.spec_from_file_location("bench_install", REPO_ROOT / "bench" / "install.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    args = ["--packages", "8", "--megabytes", "4", "--repeat", "1", "--work", str(tmp_path), "--json"]
    assert module.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["packages"] == 9  # and the environment's meta package
    labels = [f["label"] for f in result["figures"]]
    assert labels[1].startswith("cold install") and "cp -r of the installed prefix" in labels
    assert all(f["seconds"] > 0 for f in result["figures"])
