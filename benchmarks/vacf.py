"""How far apart MD frames must be to be different samples: the velocity autocorrelation.

    python benchmarks/vacf.py [--data benchmarks/data/ethanol_aimd_hf_sto3g.extxyz]

Prints, per temperature of an AIMD set (frames with ``momenta``, ``info["step"]``), the
mass-weighted velocity autocorrelation ``C(t) = <sum_i m_i v_i(0).v_i(t)> / <sum_i m_i v_i^2>``
at the set's frame spacing, and its first zero crossing: candidate frames closer than that
are the same sample twice (``sampling.stride`` in configs/demo.yaml keeps them apart).
"""

from __future__ import annotations

import argparse

import numpy as np
from ase.io import read

DT_FS = 0.5  # the reference sets' MD timestep (benchmarks/data/README.md)


def vacf(frames: list, max_lag: int) -> np.ndarray:
    """``C(k)`` for lags ``k = 0..max_lag`` frames of one trajectory ``frames`` (time-ordered)."""
    v = np.array([f.get_velocities() for f in frames])  # [t, n_atoms, 3]
    m = frames[0].get_masses()[None, :, None]
    c = np.array([np.mean(np.sum(m * v[: len(v) - k] * v[k:], axis=(1, 2))) for k in range(max_lag + 1)])
    return c / c[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="benchmarks/data/ethanol_aimd_hf_sto3g.extxyz")
    p.add_argument("--max-lag", type=int, default=7, help="frames")
    args = p.parse_args()
    frames = read(args.data, index=":")
    for t in sorted({f.info["temperature_k"] for f in frames}):
        traj = sorted((f for f in frames if f.info["temperature_k"] == t), key=lambda a: a.info["step"])
        spacing_fs = DT_FS * (traj[1].info["step"] - traj[0].info["step"])
        c = vacf(traj, args.max_lag)
        zero = next((k for k in range(1, len(c)) if c[k] <= 0), None)
        first = f"{spacing_fs * zero:.0f} fs" if zero else f"> {spacing_fs * args.max_lag:.0f} fs"
        cells = " ".join(f"{spacing_fs * k:.0f}:{x:+.2f}" for k, x in enumerate(c))
        print(f"{t:5.0f} K  C(t) at t (fs) {cells}  first zero {first}")


if __name__ == "__main__":
    main()
