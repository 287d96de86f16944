"""Regenerate tests/data/ethanol_hf_sto3g.extxyz: 60 rattled ethanol geometries labelled
with PySCF RHF/STO-3G (energies eV, forces eV/Å).

    python tests/data/make_ethanol_hf.py

Geometry: ase.build.molecule("CH3CH2OH"), Gaussian displacements with stdev drawn
uniformly in [0.02, 0.12] Å, seed 2026. About 30 s on 2 cores.
"""

from pathlib import Path

from ase.io import write

from workers.dft import DFTConfig, Status, label, labelled_atoms
from workers.structures import load_seed_structures, rattled_copies

OUT = Path(__file__).with_name("ethanol_hf_sto3g.extxyz")

if __name__ == "__main__":
    cfg = DFTConfig(method="hf", basis="sto-3g", threads=2)
    seed = load_seed_structures("CH3CH2OH")[0]
    frames = []
    for a in rattled_copies(seed, 60, stdev_a=(0.02, 0.12), seed=2026):
        r = label(a, cfg)
        assert r.status is Status.OK, r.reason
        frames.append(labelled_atoms(a, r))
    write(OUT, frames, format="extxyz")
    print(f"wrote {len(frames)} frames to {OUT}")
