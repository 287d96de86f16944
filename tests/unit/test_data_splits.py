"""The benchmarks' sets are split by whole trajectories (benchmarks/data/README.md)."""

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import uncertainty  # noqa: E402

DT_FS = 0.5  # the reference MD's time step
FIT = ("train", "calibration")  # what a model or its error bars are fitted on
DEV = tuple(uncertainty.DEV_FAMILIES)  # development families: 600 K and 700/800 K MD, calibration frames stretched


# sets made before frames carried info["molecule"]
NAMES = {"C2H6O": "CH3CH2OH", "C2H4O2": "CH3COOH", "C2H5NO": "CH3CONH2", "H64O32": "water32"}


def trajectory_key(atoms) -> tuple[str, int]:
    """(molecule, velocity seed) of the MD a frame comes from (stretched: its source)."""
    info = atoms.info
    molecule = str(info["molecule"] if "molecule" in info else NAMES[atoms.get_chemical_formula(mode="hill")])
    traj = int(info.get("source_trajectory", info.get("trajectory", 0)))
    seed = int(info.get("velocity_seed", int(info["temperature_k"]) + 1000 * traj))
    return molecule, seed


def test_no_test_frame_shares_a_trajectory_with_a_fitted_frame():
    sets = uncertainty.load_sets(quick=False)
    fitted: dict[tuple, list[float]] = {}
    for name in FIT:
        for a in sets[name]:
            fitted.setdefault(trajectory_key(a), []).append(DT_FS * int(a.info["step"]))
    tested = 0
    for name, frames in sets.items():
        if name in FIT + DEV:
            continue
        for a in frames:
            key = trajectory_key(a)
            step = int(a.info["source_step"] if "source_step" in a.info else a.info["step"])
            times = np.array(fitted.get(key, []))
            # same seed would mean the same MD: then at least 100 fs from every fitted frame
            assert not times.size or np.abs(times - DT_FS * step).min() >= 100.0, (name, key, step)
            assert key not in fitted, (name, key)  # and in fact no shared trajectory at all
            tested += 1
    assert tested == sum(len(v) for k, v in sets.items() if k not in FIT + DEV) > 200


def test_development_families_share_no_trajectory_with_a_final_test_set():
    """Designs are chosen on the development families: none of their frames comes from an MD
    the final families (ID, hot, other molecules, stretched) report on."""
    sets = uncertainty.load_sets(quick=False)
    final = {trajectory_key(a) for name, v in sets.items() if name not in FIT + DEV for a in v}
    for name in DEV:
        keys = {trajectory_key(a) for a in sets[name]}
        assert keys and not keys & final, (name, keys & final)
    assert {trajectory_key(a) for a in sets["dev: 600 K"]} == {("CH3CH2OH", 600)}
    assert {trajectory_key(a) for a in sets["dev: hot"]} == {("CH3CH2OH", 3700), ("CH3CH2OH", 3800)}
    hot = {("CH3CH2OH", seed) for seed in (4700, 5700, 4800, 5800)}
    assert {trajectory_key(a) for a in sets["hot, equilibrated"]} == hot
    # thermalised: no frame before 200 fs (400 steps) of MD, unlike hot's, which start at 10 fs
    assert min(int(a.info["step"]) for a in sets["hot, equilibrated"]) >= 400
    assert min(int(a.info["step"]) for a in sets["hot"]) < 400
    calibration = {trajectory_key(a) for a in sets["calibration"]}
    assert {trajectory_key(a) for a in sets["dev: stretched"]} <= calibration


def test_train_and_calibration_are_distinct_trajectories():
    sets = uncertainty.load_sets(quick=False)
    train = {trajectory_key(a) for a in sets["train"]}
    calibration = {trajectory_key(a) for a in sets["calibration"]}
    assert train == {("CH3CH2OH", 300), ("CH3CH2OH", 400), ("CH3CH2OH", 500)}
    assert not train & calibration and len(calibration) == 6


@pytest.mark.parametrize(
    ("name", "frames", "trajectories"),
    [("ethanol_500k_test_hf_sto3g.extxyz", 40, 2), ("ethanol_500k_test_wide_hf_sto3g.extxyz", 120, 6)],
)
def test_the_final_test_sets_share_no_trajectory_with_any_other_set(name, frames, trajectories):
    """The active-learning benchmark's final test sets (500 K ethanol) are reported only: no
    other set in benchmarks/data (training, development, calibration, the passive AIMD
    pool, the uncertainty sets, the other test set) comes from one of their trajectories."""
    from ase.io import read

    data = REPO / "benchmarks" / "data"
    test = read(data / name, index=":")
    test_keys = {trajectory_key(a) for a in test}
    assert len(test) == frames and len(test_keys) == trajectories
    assert all(a.info["temperature_k"] == 500 and a.info["split"] == "test" for a in test)
    others = [p for p in sorted(data.glob("*.extxyz")) if p.name != name]
    assert len(others) >= 8
    for path in others:
        for a in read(path, index=":"):
            assert trajectory_key(a) not in test_keys, (path.name, trajectory_key(a))
    # and the passive pool is at the test temperature, on trajectories of its own
    pool = {trajectory_key(a) for a in read(data / "ethanol_500k_aimd_pool_hf_sto3g.extxyz", index=":")}
    dev = {trajectory_key(a) for a in read(data / "ethanol_500k_hf_sto3g.extxyz", index=":")}
    assert len(pool) == 4 and not pool & dev


def test_the_water_test_trajectory_is_its_own():
    """benchmarks/water.py judges on trajectory 2 only; the campaign's seed box (trajectory 0)
    and the passive pool (trajectory 1) come from other boxes and velocity seeds."""
    from ase.io import read

    frames = read(REPO / "benchmarks" / "data" / "water32_300k_gfn1xtb.extxyz", index=":")
    splits = ("seed", "pool", "test")
    keys = {split: {trajectory_key(a) for a in frames if a.info["split"] == split} for split in splits}
    assert all(len(k) == 1 for k in keys.values()), keys
    assert len(set().union(*keys.values())) == 3, keys
    seed_box = read(REPO / "configs" / "data" / "water32_300k_gfn1xtb.extxyz")
    assert int(seed_box.info["trajectory"]) == 0
