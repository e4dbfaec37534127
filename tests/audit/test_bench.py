"""bench/audit.py still runs (on a small prefix: the real figures come from running it by hand)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.audit.conftest import REPO_ROOT


def test_audit_benchmark_runs_on_a_small_prefix(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("bench_audit", REPO_ROOT / "bench" / "audit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    assert module.main(["--files", "60", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "| audit prefix (1 thread) | 60 |" in out
    assert "| sha256sum (1 process) | 60 |" in out
