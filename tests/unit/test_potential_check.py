"""benchmarks/potential_check.py on a molecule with no ab-initio MD frames (the DFT minimum only),
and its one-line refusals: nothing to judge against, frames of another molecule."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ase.build import molecule

from tests.unit.helpers import rattled_molecules
from workers.dft import DFTConfig, Status
from workers.harmonic import harmonic_reference, save_reference
from workers.model import ModelConfig, Potential, save_checkpoint
from workers.model.backbone import BackboneConfig

REPO = Path(__file__).resolve().parents[2]
ETHANOL = REPO / "tests/data/ethanol_hf_sto3g.extxyz"


@pytest.fixture(scope="module")
def water(tmp_path_factory):
    """A small model on H/O and water's HF/STO-3G minimum + Hessian, as a campaign stores them."""
    root = tmp_path_factory.mktemp("check")
    frames = rattled_molecules("H2O", 4, -2039.0)
    torch.manual_seed(0)
    model = Potential.fit(ModelConfig(num_bins=32, backbone=BackboneConfig(features=8, layers=1)), frames)
    save_checkpoint(root / "model.pt", model, {"epoch": 1})
    ref = harmonic_reference(molecule("H2O"), DFTConfig(method="hf", basis="sto-3g", threads=1))
    assert ref.status is Status.OK, ref.reason
    save_reference(root / "seed_000.npz", ref)
    return root


def _check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmarks/potential_check.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_without_reference_frames_the_checks_from_the_minimum_run(water):
    proc = _check(str(water / "model.pt"), "--hessian", str(water / "seed_000.npz"), "--md-ps", "0.02",
                  "--threads", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout.splitlines()
    table = out[out.index(next(x for x in out if x.startswith("check "))) + 1 :]
    checks = [line[:36].strip() for line in table[: table.index("")]]
    assert checks == ["harmonic frequency MAE (cm^-1)", "0.02 ps Langevin at 500 K", "distortion scans against DFT",
                      "bends against DFT (H onto neighbour)"]  # fmt: skip
    assert out[-1].endswith("/4 checks pass (force and energy MAE left out: no --reference)"), out[-1]
    # water: its H pair pinched and both O-H stretched; no bend (O has no heavy neighbour)
    assert " 3 with a hole" in table[2] and " 0 with a hole" in table[3]
    assert (water / "seed_000.scans.json").is_file()  # DFT along the scans, cached beside the minimum


def test_the_scans_at_another_dft_level_are_cached_apart(water):
    """Density-fitted scans get their own cache: the plain one (RHF/STO-3G exact) is never read for them."""
    plain = water / "seed_000.scans.json"
    if not plain.exists():  # the test above writes it; alone, this one writes it first
        assert _check(str(water / "model.pt"), "--hessian", str(water / "seed_000.npz"), "--md-ps", "0.02",
                      "--threads", "1").returncode == 0  # fmt: skip
    before = plain.read_text()
    proc = _check(str(water / "model.pt"), "--hessian", str(water / "seed_000.npz"), "--md-ps", "0.02",
                  "--threads", "1", "--density-fit")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    fitted = water / "seed_000.scans.hf_sto-3g_df.json"
    assert f"computed, cached in {fitted}" in proc.stdout, proc.stdout
    assert plain.read_text() == before
    exact, df = (json.loads(f.read_text()) for f in (plain, fitted))
    assert exact.keys() == df.keys()
    diffs = [abs(a - b) for k in exact for a, b in zip(exact[k], df[k], strict=True)]
    assert 0 < max(diffs) < 0.01, max(diffs)  # eV: density fitting moves each energy a little, not at all or much


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "potential_check: give --reference (ab-initio MD frames) or --hessian"),
        (["--reference", str(ETHANOL)], "potential_check: the reference frames are C2H6O, the DFT minimum H2O"),
        (["--reference", "nope.extxyz"], "potential_check: reference: file not found: nope.extxyz"),
    ],
)
def test_nothing_to_judge_against_is_one_line(water, args, message):
    hessian = ["--hessian", str(water / "seed_000.npz")] if str(ETHANOL) in args else []
    proc = _check(str(water / "model.pt"), *args, *hessian)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith(message), proc.stderr[-2000:]


def test_an_unreadable_reference_is_one_line(water, tmp_path):
    bad = tmp_path / "frames.xyz"
    bad.write_text("3\nnot a comment line an xyz reader takes\nO 0 0\n")
    proc = _check(str(water / "model.pt"), "--reference", str(bad))
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith(f"potential_check: reference: {bad}: cannot read it with ASE"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
