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


@pytest.mark.slow
def test_heads_benchmark_quick():
    cmd = [sys.executable, "benchmarks/heads.py", "--quick", "--data", "tests/data/ethanol_hf_sto3g.extxyz"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "scalar" in proc.stdout and "cat 32 bins" in proc.stdout and "F ratio" in proc.stdout


def test_split_by_info():
    from ase.build import molecule

    from workers.structures import split_by_info

    frames = [molecule("H2O") for _ in range(10)]
    pool, test = split_by_info(frames)
    assert len(pool) == 8 and len(test) == 2
    for k, f in enumerate(frames):
        f.info["split"] = ["train", "val", "test"][k % 3]
    pool, test = split_by_info(frames)
    assert len(test) == 3 and len(pool) == 7
