"""The evidence benchmarks run end to end (--quick) and print their tables."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_uncertainty_benchmark_quick():
    """Every signal scored on every out-of-distribution family, in numbers that parse and are in range."""
    import re

    proc = subprocess.run([sys.executable, "benchmarks/uncertainty.py", "--quick"], cwd=REPO, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    novelty = out.split("2. novelty")[1].split("3. ranking")[0]
    families = re.findall(r"^-- (.+?) \(\d+ frames\)", novelty, flags=re.M)
    assert families == ["hot", "dimethyl ether", "acetic acid", "stretched"], novelty
    rows = re.findall(r"^   (.+?)\s+AUROC\s+([\d.]+)±([\d.]+)\s+ratio\s+([\d.]+)±", novelty, flags=re.M)
    assert len(rows) == 4 * 10, novelty  # 10 signals per family
    assert all(0.0 <= float(au) <= 1.0 and float(ratio) > 0 for _, au, _, ratio in rows)
    table = out.split("4. calibration")[1].split("5. per atom")[0]
    sets = "id|hot|dimethyl ether|acetic acid|stretched"
    coverage_rows = re.findall(rf"^   (default|one head|committee).+?({sets})\s+(.+)$", table, flags=re.M)
    assert len(coverage_rows) == 3 * 5
    for *_, cols in coverage_rows:
        cov = [float(c.split("±")[0]) for c in cols.split()[:4]]
        assert all(0.0 <= c <= 1.0 for c in cov), cols
    cost = re.search(r"training ([\d.]+)x .*inference energy\+forces ([\d.]+)x, with forces_std ([\d.]+)x", out)
    assert cost and all(float(x) > 0 for x in cost.groups()), out


@pytest.mark.slow
def test_heads_benchmark_quick():
    cmd = [sys.executable, "benchmarks/heads.py", "--quick", "--data", "tests/data/ethanol_hf_sto3g.extxyz"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "F ratio" in out and "excess" in out and "log(bins)" in out
    table = out.split("F ratio")[1].split("\n\n")[0].splitlines()[1:]  # the accuracy table's rows
    rows = {line.split()[0]: line.split() for line in table}
    assert set(rows) == {"scalar", "categorical", "cat-absolute"}, out
    assert rows["scalar"][-4:-2] == ["1.00x", "1.00x"]  # the ratio's reference


@pytest.mark.slow
def test_heads_benchmark_compares_backbones_at_equal_cpu_time():
    data = "tests/data/ethanol_hf_sto3g.extxyz"
    cmd = [sys.executable, "benchmarks/heads.py", "--quick", "--data", data, "--backbone", "painn,mace"]
    cmd += ["--minutes", "0.1", "--variants", "scalar,categorical", "--also", data]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = proc.stdout.split("F ratio")[1].split("\n\n")[0].splitlines()[1:]
    rows = {line.split()[0]: line.split() for line in table}
    assert set(rows) >= {"painn/scalar", "painn/categorical", "mace/scalar", "mace/categorical"}, proc.stdout
    epochs = {k: int(v[-7]) for k, v in rows.items()}  # columns: ... struct/s, epochs, E ± sd, F ± sd
    assert epochs["painn/scalar"] > epochs["mace/scalar"] >= 2  # same 6 s each: PaiNN runs more epochs
    assert "0.1 min of training each" in proc.stdout


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


@pytest.mark.slow
@pytest.mark.integration
def test_active_learning_benchmark_quick_runs_every_strategy(tmp_path):
    """Committee and random strategies end to end: real campaigns, one MLflow experiment."""
    cmd = [sys.executable, "benchmarks/active_learning.py", "--quick", "--out", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for strategy in ("forces-std", "entropy", "committee", "random", "energy-std", "random-scalar"):
        assert f"{strategy}-s0" in proc.stdout
    # every model (2 rounds + final) is scored on the hold-out and on the AIMD test split
    assert "campaign hold-out: force MAE" in proc.stdout and "test split of ethanol_aimd" in proc.stdout
    assert "training labels to reach 0.3 eV/Å" in proc.stdout
    assert (tmp_path / "learning_curves.png").exists() and (tmp_path / "learning_curves_holdout.png").exists()
    assert (tmp_path / "committee-s0" / "checkpoints" / "round_001_m1.pt").exists()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("active-learning")
    parents = client.search_runs([exp.experiment_id], filter_string="tags.`catal.kind` = 'campaign'")
    names = sorted(r.info.run_name for r in parents)
    assert names == ["committee-s0", "energy-std-s0", "entropy-s0", "forces-std-s0", "random-s0", "random-scalar-s0"]
    for r in parents:
        assert "score_spearman" in r.data.metrics


def test_learning_curve_plot_with_seed_bands_and_gaps(tmp_path):
    from orchestrator.plots import learning_curve

    curves = {"entropy": ([16, 24, 32], [1.2, float("nan"), 0.9]), "random": ([16, 24, 32], [1.1, 1.0, 0.95])}
    bands = {"entropy": ([1.0, float("nan"), 0.8], [1.4, float("nan"), 1.0])}
    path = learning_curve(tmp_path / "lc.png", curves, "force MAE", "t", bands, xlabel="labels trained on")
    assert path.stat().st_size > 5000 and path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_dispatch_benchmark_quick():
    """No-op workers through pool, ledger and store: every row measured, the store row the lowest."""
    cmd = [sys.executable, "benchmarks/dispatch.py", "--quick"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=_no_ray_address())
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.split() and line.split()[0] in ("1", "8")]
    assert [r[0] for r in rows] == ["1", "8"], proc.stdout
    for r in rows:
        pool, ledger, store = (float(x) for x in r[1:4])
        assert min(pool, ledger, store) > 0 and store <= 1.2 * pool
    assert proc.stdout.strip().splitlines()[-1].startswith("dispatch: ")


def _no_ray_address() -> dict:
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
