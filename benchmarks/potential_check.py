"""Would you run MD with this potential? Six checks for any catal ``model.pt``.

    python benchmarks/potential_check.py runs/demo-.../model.pt \\
        --reference benchmarks/data/ethanol_500k_test_hf_sto3g.extxyz [--method hf --basis sto-3g]
    python benchmarks/potential_check.py runs/demo-.../model.pt --hessian runs/demo-.../harmonic/seed_000.npz

Without ``--reference`` (a molecule with no ab-initio MD frames at hand) checks 1-2 are left
out and the others start from the campaign's stored DFT minimum (``--hessian``).

1. force MAE (eV/Å) on the reference frames (ab-initio MD at the temperature of use), next to
   what predicting zero forces gives;
2. energy MAE (eV) on them, no offset removed (the mean signed error is printed too);
3. harmonic frequencies at the potential's own minimum against PySCF's at the DFT minimum
   (same method/basis; the DFT minimum + Hessian is computed once and cached beside the
   reference, or read from ``--hessian``, e.g. a campaign's ``harmonic/seed_000.npz``):
   MAE over modes (cm^-1) and the number of imaginary modes;
4. Langevin NVT (``fixcm=False``) at ``--temperature`` for ``--md-ps`` ps, 0.5 fs steps: every
   bond intact (topology from covalent radii x 1.2) and the mean kinetic temperature over the
   second half, against the target;
5. distortion scans from the DFT minimum (``workers.model.scans``): each pair of terminal atoms
   on one centre pinched to 40°, each bond to a terminal atom stretched to 1.6x, against the same
   DFT (computed once, cached beside the minimum): no hole, i.e. nowhere does the model's energy
   turn over while DFT's keeps rising (where longer or hotter MD falls in);
6. bends from the DFT minimum, the same way: each terminal hydrogen turned onto its centre's
   other heavy neighbours down to 50° (the way an H moves between atoms: an OH hydrogen onto
   the carbon, a CH hydrogen onto the O or the next C), against DFT: no hole.

Targets (issue #11): force MAE <= 0.100 eV/Å, energy MAE <= 0.050 eV, frequency MAE <= 50 cm^-1
with no imaginary mode, bonds intact and temperature within 10%; no hole in the scans (the
bends: added with ``selection.probe_paths``, which probes along them).

``--labels <run>/labels.extxyz`` adds where the reference frames sit against what the potential
was trained on: each rotatable bond's dihedral (``workers.torsions``) on the frames and on the
training labels (the hold-out left out), each frame's torsion gap to its nearest label, and the
errors on the frames within and beyond ``GAP_DEG`` of every label (a conformer no label covers).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from workers.dft import DFTConfig, Status
from workers.harmonic import harmonic_reference, load_reference, save_reference
from workers.labeller import label_energy
from workers.model import CatalCalculator
from workers.model.checks import accuracy, frequencies_vs_reference, langevin_stability
from workers.model.scans import PROBE_KINDS, cached_reference, holes_text, scans
from workers.structures import read_frames
from workers.torsions import torsion_angles, torsion_gaps, torsion_quads

GAP_DEG = 30.0  # a frame whose torsions are all within this of some label's sits in a known conformer


def minimum_path(args) -> Path:
    """The DFT minimum + Hessian's file: --hessian, or the cache beside the reference."""
    return args.hessian or args.reference.with_name(f"{args.reference.stem}.{dft_level(args)}.minimum.npz")


def dft_reference(args, start):
    """DFT minimum + Hessian: from --hessian, from the cache beside the reference, or computed
    from ``start`` (None: no reference frame to start from)."""
    path = minimum_path(args)
    if path.exists():
        return load_reference(path), f"read from {path}"
    if start is None:
        raise SystemExit(f"potential_check: --hessian {path} not found, and no --reference frame to relax")
    ref = harmonic_reference(start, dft_config(args))
    if ref.status is not Status.OK:
        raise SystemExit(f"potential_check: DFT minimum/Hessian failed: {ref.reason}")
    save_reference(path, ref)
    return ref, f"computed in {ref.wall_s:.0f} s, cached in {path}"


def dft_level(args) -> str:
    """The DFT level in a cache's name: ``hf_sto-3g``, ``b3lyp_def2-svp_df`` (density fitting)."""
    return f"{args.method}_{args.basis}".lower() + ("_df" if args.density_fit else "")


def dft_config(args) -> DFTConfig:
    """The DFT level the minimum (when computed here) and the scans use."""
    return DFTConfig(method=args.method, basis=args.basis, density_fit=args.density_fit, threads=args.threads)


def scan_cache(args) -> Path:
    """The scans' DFT cache beside the minimum, one file per level of theory: RHF/STO-3G without
    density fitting keeps the plain name (``seed_000.scans.json``), any other level names itself
    (``seed_000.scans.b3lyp_def2-svp_df.json``), so a cache is never read at another level."""
    minimum_file = minimum_path(args)
    tag = "" if dft_level(args) == "hf_sto-3g" else f".{dft_level(args)}"
    return minimum_file.with_name(f"{minimum_file.stem}.scans{tag}.json")


def scan_reference(args, minimum) -> tuple[dict, str]:
    """DFT along the distortion scans of ``minimum``: from the cache beside the minimum, or computed."""
    path = scan_cache(args)
    how = f"read from {path}" if path.exists() else f"computed, cached in {path}"
    cfg = dft_config(args)
    return cached_reference(minimum, lambda a: label_energy(a, cfg), path, kinds=PROBE_KINDS), how


def circular_mean_deg(angles) -> float:
    """The mean direction of angles (degrees, 0-360)."""
    rad = np.radians(angles)
    return float(np.degrees(np.arctan2(np.sin(rad).mean(), np.cos(rad).mean())) % 360.0)


def torsion_coverage(calc, frames: list, labels_path: Path) -> None:
    """Print the reference frames' torsions against the training labels' (see the docstring)."""
    labels = [a for a in read_frames(labels_path) if a.info.get("origin") != "holdout"]
    quads = torsion_quads(frames[0])
    if not quads:
        print("\ntorsions: no rotatable bond with a visible turn")
        return
    names = ["-".join(f"{frames[0][k].symbol}{k}" for k in q) for q in quads]
    ref, lab = torsion_angles(frames, quads), torsion_angles(labels, quads)
    print(f"\ntorsions against the {len(labels)} training labels of {labels_path} (degrees; mean direction):")
    for b, name in enumerate(names):
        near = torsion_gaps(ref[:, b : b + 1], lab[:, b : b + 1])  # this bond alone
        print(f"  {name}: frames {circular_mean_deg(ref[:, b]):.0f}, labels {circular_mean_deg(lab[:, b]):.0f}; "
              f"nearest label's angle {np.median(near):.0f} median, {near.max():.0f} max")  # fmt: skip
    gaps, own = torsion_gaps(ref, lab), torsion_gaps(lab, None)
    far = gaps > GAP_DEG
    print(f"  gap to the nearest label (largest bond difference): {np.median(gaps):.0f} median, {gaps.max():.0f} max; "
          f"{int(far.sum())} of {len(frames)} frames beyond {GAP_DEG:g} (a label to its nearest other label: "
          f"{np.median(own):.0f} median, {np.quantile(own, 0.9):.0f} at the 90th percentile)")  # fmt: skip
    for name, part in (("within", ~far), ("beyond", far)):
        if part.any():
            acc = accuracy(calc, [a for a, keep in zip(frames, part, strict=True) if keep])
            print(f"  frames {name} {GAP_DEG:g}: force MAE {acc['force_mae']:.4f} eV/Å, energy mean signed error "
                  f"{acc['energy_mean_error']:+.4f} eV")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("--reference", type=Path, default=None, help="ab-initio MD frames (extxyz) to judge on")
    p.add_argument("--method", default="hf")
    p.add_argument("--basis", default="sto-3g")
    p.add_argument("--density-fit", action="store_true",
                   help="density fitting for the DFT here (scans, a minimum computed here): as a campaign "
                        "with dft.density_fit labels; its own scan cache")  # fmt: skip
    p.add_argument("--hessian", type=Path, default=None, help="a stored DFT minimum + Hessian (.npz)")
    p.add_argument("--temperature", type=float, default=500.0, help="K, for the MD check")
    p.add_argument("--md-ps", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--labels", type=Path, default=None, help="a campaign's labels.extxyz: torsion coverage")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if not args.model.is_file():
        raise SystemExit(f"potential_check: model not found: {args.model}")
    if args.reference is None and args.hessian is None:
        raise SystemExit("potential_check: give --reference (ab-initio MD frames) or --hessian (a DFT minimum + "
                         "Hessian, e.g. <run>/harmonic/seed_000.npz), or both")  # fmt: skip
    try:
        frames = read_frames(args.reference) if args.reference else []
    except (FileNotFoundError, ValueError) as err:  # one line: missing, unreadable or empty
        raise SystemExit(f"potential_check: reference: {err}") from None
    calc = CatalCalculator.from_checkpoint(args.model, device="cpu", uncertainty=False)  # reads no error bar
    where = f"{args.reference} ({len(frames)} frames)" if frames else "none (checks 1-2 left out)"
    print(f"model: {args.model}\nreference: {where}")

    ref, how = dft_reference(args, frames[0] if frames else None)
    print(f"DFT minimum + Hessian ({args.method}/{args.basis}): {how}")
    if frames and frames[0].get_chemical_formula() != ref.atoms.get_chemical_formula():
        raise SystemExit(f"potential_check: the reference frames are {frames[0].get_chemical_formula()}, "
                         f"the DFT minimum {ref.atoms.get_chemical_formula()}: not one molecule")  # fmt: skip
    t0 = time.perf_counter()
    freq = frequencies_vs_reference(calc, ref.atoms, ref.hessian_ev_a2)
    t_freq = time.perf_counter() - t0
    t0 = time.perf_counter()
    md = langevin_stability(calc, ref.atoms, args.temperature, args.md_ps)
    t_md = time.perf_counter() - t0

    scan_ref, scan_how = scan_reference(args, ref.atoms)
    found = scans(calc.get_potential_energy, ref.atoms, scan_ref)
    n_holes, holes = holes_text(found)
    bends = scans(calc.get_potential_energy, ref.atoms, scan_ref, kinds=("bend",))
    n_bend_holes, bend_holes = holes_text(bends)

    t_ratio = md.mean_temperature_k / args.temperature
    rows = []
    if frames:
        acc = accuracy(calc, frames)
        rows += [
            ("force MAE (eV/Å)", f"{acc['force_mae']:.4f}", "<= 0.100", acc["force_mae"] <= 0.1,
             f"zero forces give {acc['zero_force_mae']:.3f}"),
            ("energy MAE (eV, no offset removed)", f"{acc['energy_mae']:.4f}", "<= 0.050", acc["energy_mae"] <= 0.05,
             f"mean signed error {acc['energy_mean_error']:+.4f}"),
        ]  # fmt: skip
    rows += [
        ("harmonic frequency MAE (cm^-1)", f"{freq['freq_mae_cm']:.1f}", "<= 50, no imaginary",
         freq["freq_mae_cm"] <= 50 and freq["n_imaginary"] == 0,
         f"max {freq['freq_max_error_cm']:.0f}; {freq['n_imaginary']} imaginary; {t_freq:.0f} s"),
        (f"{args.md_ps:g} ps Langevin at {args.temperature:g} K", "bonds intact" if md.bonds_intact else
         f"bond change at {md.first_break_fs:.0f} fs", "intact, T within 10%",
         md.bonds_intact and abs(t_ratio - 1) <= 0.1,
         f"mean T {md.mean_temperature_k:.0f} K after 1 ps ({t_ratio:.2f}x); {t_md:.0f} s"),
        ("distortion scans against DFT", f"{n_holes} of {len(found)} with a hole", "no hole", n_holes == 0,
         f"DFT {scan_how}"),
        ("bends against DFT (H onto neighbour)", f"{n_bend_holes} of {len(bends)} with a hole", "no hole",
         n_bend_holes == 0, "the same DFT cache"),
    ]  # fmt: skip
    print(f"\n{'check':<36} {'value':>18} {'target':>22}  pass  detail")
    for name, value, target, ok, detail in rows:
        print(f"{name:<36} {value:>18} {target:>22}  {'yes' if ok else 'NO ':<4}  {detail}")
    print("\nfrequencies (cm^-1), model vs DFT:")
    print("  " + " ".join(f"{m:.0f}/{d:.0f}" for m, d in zip(freq["model_cm"], freq["dft_cm"], strict=True)))
    print(f"\n{holes}\nbends: {bend_holes}")
    if args.labels and frames:
        torsion_coverage(calc, frames, args.labels)
    left_out = "" if frames else " (force and energy MAE left out: no --reference)"
    print(f"{sum(r[3] for r in rows)}/{len(rows)} checks pass{left_out}")


if __name__ == "__main__":
    main()
