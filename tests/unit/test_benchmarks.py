"""The evidence benchmarks run end to end (--quick) and print their tables."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_uncertainty_benchmark_quick():
    data = "tests/data/ethanol_hf_sto3g.extxyz"
    cmd = [sys.executable, "benchmarks/uncertainty.py", "--quick", "--data", data]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for signal in ("entropy", "excess entropy", "histogram std", "committee x2"):
        assert signal in proc.stdout
    assert "AUROC@10%" in proc.stdout
