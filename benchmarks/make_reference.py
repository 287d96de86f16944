"""Reference datasets from ab-initio MD: ethanol at 300-800 K, or any molecule at any temperatures.

    python benchmarks/make_reference.py [--frames 40] [--out benchmarks/data/ethanol_aimd_hf_sto3g.extxyz]
    # the potential check's independent set: 500 K, 3 trajectories, frames 10 fs apart
    python benchmarks/make_reference.py --temperatures 500 --trajectories 3 --frames 20 --stride 20 \
        --equilibrate 200 --out benchmarks/data/ethanol_500k_hf_sto3g.extxyz
    python benchmarks/make_reference.py --molecule CH3COOH --temperatures 500 ...   # another molecule
    python benchmarks/make_reference.py --smiles "CC(=O)NC(C)C(=O)NC" --name alanine_dipeptide \
        --density-fit ...                     # any molecule from SMILES (RDKit conformer, seed 0)

Provenance: ASE Langevin MD (dt 0.5 fs, friction 0.02 / fs, fixcm=False) driven by PySCF
RHF/STO-3G forces (``workers.dft.PySCFCalculator``, conv_tol 1e-9), one trajectory per
temperature in 300, 400, 500, 600, 700, 800 K, each from ``ase.build.molecule("CH3CH2OH")`` (or
the lowest-MMFF ETKDG conformer of ``--smiles``; ``--density-fit``: RHF/STO-3G with density fitting)
with Maxwell-Boltzmann velocities (seed = temperature + 1000 x trajectory); 20 equilibration steps, then every
8th step kept. Each frame's ``info`` holds ``temperature_k``, ``step`` and ``split``
(train / val / test, a seeded random 70 / 10 / 20 split). Energies eV, forces eV/Å.
"""

from __future__ import annotations

import argparse
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from ase.md.langevin import Langevin

from workers.dft import DFTConfig, PySCFCalculator
from workers.structures import thermalize

TEMPERATURES_K = (300, 400, 500, 600, 700, 800)
OUT = Path(__file__).parent / "data" / "ethanol_aimd_hf_sto3g.extxyz"


def start(name: str, smiles: str | None) -> Atoms:
    """The trajectory's first geometry: an ``ase.build`` molecule, or a SMILES conformer."""
    if smiles is None:
        return molecule(name)
    from workers.conformers import smiles_conformers

    return smiles_conformers(smiles, 1, seed=0)[0]


def trajectory(args: tuple) -> list:
    name, smiles, density_fit, temperature, frames, equilibrate, stride, replica = args
    atoms = start(name, smiles)
    rng = np.random.default_rng(temperature + 1000 * replica)
    thermalize(atoms, temperature, rng)
    atoms.calc = PySCFCalculator(DFTConfig(method="hf", basis="sto-3g", density_fit=density_fit, threads=1))
    dyn = Langevin(
        atoms,
        timestep=0.5 * units.fs,
        temperature_K=temperature,
        friction=0.02 / units.fs,
        fixcm=False,
        rng=rng,
    )
    dyn.run(equilibrate)
    out = []
    for k in range(frames):
        dyn.run(stride)
        frame = atoms.copy()
        frame.calc = SinglePointCalculator(frame, energy=atoms.get_potential_energy(), forces=atoms.get_forces())
        frame.info.update(
            {
                "temperature_k": temperature,
                "step": equilibrate + (k + 1) * stride,
                "trajectory": replica,
                "velocity_seed": temperature + 1000 * replica,
                "molecule": name,
                **({"smiles": smiles} if smiles else {}),
            }
        )
        out.append(frame)
    print(f"{name} {temperature} K #{replica}: {len(out)} frames", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--molecule", default="CH3CH2OH", help="an ase.build.molecule name")
    p.add_argument("--smiles", default=None, help="a SMILES instead (RDKit's ETKDG conformer, seed 0)")
    p.add_argument("--name", default=None, help="the molecule's name in info (with --smiles)")
    p.add_argument("--density-fit", action="store_true", help="RHF/STO-3G with density fitting (large molecules)")
    p.add_argument("--temperatures", default=",".join(map(str, TEMPERATURES_K)), help="K, comma-separated")
    p.add_argument("--trajectories", type=int, default=1, help="independent trajectories per temperature")
    p.add_argument(
        "--first-trajectory",
        type=int,
        default=0,
        help="index of the first trajectory (velocity seed = temperature + 1000 x index): new sets take "
        "indices no other set used, so no two sets share a trajectory (benchmarks/data/README.md)",
    )
    p.add_argument("--frames", type=int, default=40, help="frames kept per trajectory")
    p.add_argument("--stride", type=int, default=8)
    p.add_argument("--equilibrate", type=int, default=20, help="MD steps before the first frame")
    p.add_argument(
        "--split",
        default=None,
        help="every frame's info['split'] (e.g. test); default: the seeded random 70/10/20 split of the "
        "first reference set (frames of one trajectory on both sides: not for new sets)",
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    from ase.collections import g2

    name = args.name or args.smiles or args.molecule
    if args.smiles is None and args.molecule not in g2.names:
        p.error(f"--molecule {args.molecule!r} is not an ase.build.molecule name")
    temps = [int(t) for t in args.temperatures.split(",")]
    first = args.first_trajectory
    runs = [(t, r) for t in temps for r in range(first, first + args.trajectories)]
    jobs = [(name, args.smiles, args.density_fit, t, args.frames, args.equilibrate, args.stride, r) for t, r in runs]
    with Pool(args.workers) as pool:
        frames = [f for traj in pool.map(trajectory, jobs) for f in traj]
    order = np.random.default_rng(2026).permutation(len(frames))
    n_train, n_val = int(0.7 * len(frames)), int(0.1 * len(frames))
    for rank, idx in enumerate(order):
        random_split = "train" if rank < n_train else ("val" if rank < n_train + n_val else "test")
        frames[idx].info["split"] = args.split or random_split
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write(args.out, frames, format="extxyz")
    print(f"wrote {len(frames)} frames to {args.out}")


if __name__ == "__main__":
    main()
