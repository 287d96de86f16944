"""Holes a potential has off its data: distortion scans against the reference method (pure, no Ray).

MD at a temperature only visits what the Boltzmann weight allows; a potential trained on such
frames can turn over just past them (the energy falling where the reference's keeps rising), and
longer or hotter MD then falls in. Three kinds of path per molecule find that without running MD:

* **pinch**: two terminal atoms on one centre (the hydrogens of a CH2 or CH3) brought together
  in their plane, the angle from its value at the minimum down to ``PINCH_DEG``, bond lengths
  kept;
* **stretch**: a bond to a terminal atom lengthened to ``STRETCH_FACTORS`` x its length, the
  terminal atom moved along it;
* **bend**: a terminal hydrogen turned in its plane toward another bonded heavy neighbour of its
  centre (a hydroxyl H toward the carbon, a methyl H toward the next carbon), the angle down to
  ``BEND_DEG``, its bond length kept: the way a hydrogen moves between neighbours, which neither
  scan follows. ``SCAN_KINDS`` (the default of every function here) leaves it out, so figures
  judged on pinches and stretches stand; probes follow it where ``selection.probe_paths`` names
  it, and the potential check and the AL benchmark judge it apart.

A scan has a **hole** where the model's energy falls more than ``tol_ev`` below its own running
maximum while the reference's stands above its value there: the model's barrier is that maximum
(eV over the minimum), at the scanned distance ``turn_a`` (Å).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from workers.files import write_atomic
from workers.model.checks import bonds
from workers.sampling import CARRIED_INFO

PINCH_DEG = (100.0, 90.0, 80.0, 70.0, 60.0, 50.0, 40.0)  # angles below the minimum's (degrees)
STRETCH_FACTORS = (1.1, 1.2, 1.3, 1.4, 1.5, 1.6)  # x the bond's length at the minimum
# angles below the minimum's (degrees); at 50 degrees a C-H or O-H hydrogen sits 1.0-1.2x the
# covalent radii's sum from the neighbour it is turned toward, still bonded to its centre
BEND_DEG = (90.0, 80.0, 70.0, 60.0, 50.0)
SCAN_KINDS = ("pinch", "stretch")  # the judges' distortion scans (reference energies cached per molecule)
PROBE_KINDS = ("pinch", "stretch", "bend")  # the paths probes follow (no reference needed)
HOLE_TOL_EV = 0.1  # a fall smaller than this is noise, not a hole
# a pair closer than this x the sum of the covalent radii: no bond is that short (triple bonds sit
# at 0.77-0.79x the single-bond radii's sum, DFT's 500-800 K MD at >= 0.83x), so a frame with one
# has fallen into a hole of its model already
COLLAPSED = 0.7


@dataclass(frozen=True)
class Scan:
    """One distortion path from the minimum: energies relative to its first point (the minimum)."""

    kind: str  # "pinch" (centre, i, j), "stretch" (centre, terminal) or "bend" (centre, terminal, toward)
    atoms_idx: tuple[int, ...]
    name: str  # e.g. "H4-C1-H5" or "C1-H4"
    distance_a: np.ndarray  # [n_points] i-j (pinch), centre-terminal (stretch), terminal-toward (bend), Å
    model_ev: np.ndarray  # [n_points] the model's energy over the first point's, eV
    reference_ev: np.ndarray  # [n_points] the reference's, eV (nan where it failed)


def neighbours(atoms: Atoms) -> list[list[int]]:
    """Each atom's bonded neighbours, by the bond criterion the MD checks use (``checks.bonds``)."""
    out: list[list[int]] = [[] for _ in range(len(atoms))]
    for a, b in bonds(atoms):
        out[a].append(b)
        out[b].append(a)
    return [sorted(n) for n in out]


def pinch_triples(atoms: Atoms) -> list[tuple[int, int, int]]:
    """``(centre, i, j)``: every pair of terminal atoms (one bond each) on the same centre."""
    nb = neighbours(atoms)
    out = []
    for c, around in enumerate(nb):
        ends = [k for k in around if len(nb[k]) == 1]
        out += [(c, i, j) for n, i in enumerate(ends) for j in ends[n + 1 :]]
    return out


def stretch_pairs(atoms: Atoms) -> list[tuple[int, int]]:
    """``(centre, terminal)``: every bond to a terminal atom."""
    nb = neighbours(atoms)
    return [(around[0], k) for k, around in enumerate(nb) if len(around) == 1]


def bend_triples(atoms: Atoms) -> list[tuple[int, int, int]]:
    """``(centre, hydrogen, toward)``: every terminal hydrogen with each other neighbour of its
    centre that is no terminal atom itself (two terminal atoms on one centre: ``pinch_triples``).
    Hydrogens only: a heavy terminal atom bent so far (a carbonyl O to 50 degrees over the next
    carbon) lies tens of eV up, no label MD needs."""
    nb = neighbours(atoms)
    hydrogens = [k for k, around in enumerate(nb) if len(around) == 1 and atoms.numbers[k] == 1]
    return [(c, k, n) for k in hydrogens for c in nb[k] for n in nb[c] if n != k and len(nb[n]) > 1]


def pinched(atoms: Atoms, centre: int, i: int, j: int, angle_deg: float) -> Atoms:
    """``atoms`` with ``i`` and ``j`` turned symmetrically in their plane about ``centre`` to the
    angle ``angle_deg``, their distances to ``centre`` kept."""
    pos = atoms.positions
    u = [pos[k] - pos[centre] for k in (i, j)]
    r = [float(np.linalg.norm(v)) for v in u]
    bisector = u[0] / r[0] + u[1] / r[1]
    bisector /= np.linalg.norm(bisector)
    out = atoms.copy()
    out.calc = None
    half = np.radians(angle_deg) / 2.0
    for k, v, length in zip((i, j), u, r, strict=True):
        side = v / length - bisector * float(v @ bisector) / length
        side /= np.linalg.norm(side)
        out.positions[k] = pos[centre] + length * (np.cos(half) * bisector + np.sin(half) * side)
    return out


def bent(atoms: Atoms, centre: int, terminal: int, toward: int, angle_deg: float) -> Atoms:
    """``atoms`` with ``terminal`` turned about ``centre`` in the plane of ``terminal``, ``centre``
    and ``toward`` to the angle ``angle_deg`` (terminal-centre-toward), its distance to ``centre``
    kept; every other atom stays."""
    pos = atoms.positions
    u, v = pos[terminal] - pos[centre], pos[toward] - pos[centre]
    length = float(np.linalg.norm(u))
    axis = v / np.linalg.norm(v)
    side = u - axis * float(u @ axis)
    side /= np.linalg.norm(side)
    out = atoms.copy()
    out.calc = None
    a = np.radians(angle_deg)
    out.positions[terminal] = pos[centre] + length * (np.cos(a) * axis + np.sin(a) * side)
    return out


def stretched(atoms: Atoms, centre: int, terminal: int, factor: float) -> Atoms:
    """``atoms`` with ``terminal`` moved along its bond to ``centre`` to ``factor`` x its length."""
    out = atoms.copy()
    out.calc = None
    out.positions[terminal] = atoms.positions[centre] + factor * (atoms.positions[terminal] - atoms.positions[centre])
    return out


def path_name(atoms: Atoms, kind: str, idx: tuple[int, ...]) -> str:
    """``"H4-C1-H5"`` (pinch, bend: centre in the middle) or ``"C1-H4"`` (stretch)."""
    sym = atoms.get_chemical_symbols()
    ordered = idx if kind == "stretch" else (idx[1], idx[0], idx[2])
    return "-".join(f"{sym[k]}{k}" for k in ordered)


ScanPath = tuple[str, tuple[int, ...], list[Atoms], list[float]]  # (kind, atoms_idx, structures, distances_a)


def scan_paths(minimum: Atoms, kinds: tuple[str, ...] = SCAN_KINDS) -> list[ScanPath]:
    """Every path of ``kinds`` from ``minimum``: ``(kind, atoms_idx, structures, distances_a)``,
    the minimum itself first in each; the distance is the pair the path brings together or apart
    (pinch: the two terminal atoms, stretch: the bond, bend: the terminal atom and the neighbour)."""
    paths = []
    if "pinch" in kinds:
        for c, i, j in pinch_triples(minimum):
            start = minimum.get_angle(i, c, j)
            structures = [minimum.copy(), *(pinched(minimum, c, i, j, a) for a in PINCH_DEG if a < start - 1.0)]
            paths.append(("pinch", (c, i, j), structures, [float(s.get_distance(i, j)) for s in structures]))
    if "stretch" in kinds:
        for c, k in stretch_pairs(minimum):
            structures = [minimum.copy(), *(stretched(minimum, c, k, f) for f in STRETCH_FACTORS)]
            paths.append(("stretch", (c, k), structures, [float(s.get_distance(c, k)) for s in structures]))
    if "bend" in kinds:
        for c, k, n in bend_triples(minimum):
            start = minimum.get_angle(k, c, n)
            structures = [minimum.copy(), *(bent(minimum, c, k, n, a) for a in BEND_DEG if a < start - 1.0)]
            paths.append(("bend", (c, k, n), structures, [float(s.get_distance(k, n)) for s in structures]))
    return paths


def reference_energies(
    minimum: Atoms, energy: Callable[[Atoms], float | None], kinds: tuple[str, ...] = SCAN_KINDS
) -> dict:
    """The reference method's energies (eV, ``None`` where it failed) along every path of
    ``kinds`` from ``minimum``: ``{atoms_idx: [n_points]}``. Computed once per molecule; any
    model is then scanned against them (``scans``). A pinch's and a bend's atoms never coincide
    (a bend turns a terminal atom toward a non-terminal one), so one dict holds every kind."""
    return {idx: [energy(s) for s in structures] for _, idx, structures, _ in scan_paths(minimum, kinds)}


def cached_reference(
    minimum: Atoms, energy: Callable[[Atoms], float | None], path: Path, kinds: tuple[str, ...] = SCAN_KINDS
) -> dict:
    """``reference_energies`` kept in ``path`` (json, keyed by the scanned atoms): computed once
    per molecule and method, read back after; paths of ``kinds`` the file lacks are computed and
    added to it."""
    ref = {tuple(json.loads(k)): v for k, v in json.loads(path.read_text()).items()} if path.exists() else {}
    missing = [(idx, structures) for _, idx, structures, _ in scan_paths(minimum, kinds) if idx not in ref]
    if missing or not path.exists():
        ref |= {idx: [energy(s) for s in structures] for idx, structures in missing}
        write_atomic(path, json.dumps({json.dumps(list(k)): v for k, v in ref.items()}))
    return ref


def scans(
    model_energy: Callable[[Atoms], float], minimum: Atoms, reference: dict, kinds: tuple[str, ...] = SCAN_KINDS
) -> list[Scan]:
    """Every path of ``kinds`` from ``minimum`` through the model (``model_energy``: eV of one
    structure) beside ``reference`` (``reference_energies``)."""
    out = []
    for kind, idx, structures, distances in scan_paths(minimum, kinds):
        model = np.array([model_energy(s) for s in structures], dtype=float)
        ref = np.array([np.nan if e is None else e for e in reference[idx]], dtype=float)
        out.append(Scan(kind, idx, path_name(minimum, kind, idx), np.array(distances),
                        model - model[0], ref - ref[0]))  # fmt: skip
    return out


def first_fall(
    model_ev: np.ndarray, tol_ev: float, reference_ev: np.ndarray | None = None, climb_ev: float | None = None
) -> tuple[int, int] | None:
    """``(top, k)``: the first point ``k`` where the model's energy lies more than ``tol_ev``
    below its running maximum (at ``top``), where the reference (if given) stands above its own
    value at ``top``; ``None`` if there is none. ``climb_ev``: the path must first climb more
    than this above its lowest point so far (a strained start relaxing along the path, as an MD
    frame's compressed bond does when stretched, falls on a physical surface too)."""
    top = low = 0
    for k in range(1, len(model_ev)):
        if model_ev[k] > model_ev[top]:
            top = k
        elif climb_ev is not None and model_ev[top] - model_ev[low] <= climb_ev:
            if model_ev[k] < model_ev[low]:  # still on the way down to the path's lowest point
                low = top = k
        elif model_ev[k] < model_ev[top] - tol_ev and (reference_ev is None or reference_ev[k] > reference_ev[top]):
            return top, k
    return None


def hole(scan: Scan, tol_ev: float = HOLE_TOL_EV) -> dict | None:
    """Where ``scan``'s model energy first falls more than ``tol_ev`` below its running maximum
    while the reference stands above its own value at that maximum: ``{"turn_a": distance of
    the maximum (Å), "model_barrier_ev": the model's energy there, "reference_ev": the
    reference's there, "reference_at_fall_ev": the reference's where the model has fallen}``;
    ``None`` if the model follows the reference up."""
    fall = first_fall(scan.model_ev, tol_ev, scan.reference_ev)
    if fall is None:
        return None
    top, k = fall
    return {
        "turn_a": float(scan.distance_a[top]),
        "model_barrier_ev": float(scan.model_ev[top]),
        "reference_ev": float(scan.reference_ev[top]),
        "reference_at_fall_ev": float(scan.reference_ev[k]),
    }


def collapsed(atoms: Atoms) -> bool:
    """Whether two atoms of ``atoms`` lie closer than ``COLLAPSED`` x their covalent radii's sum."""
    return bool(bonds(atoms, COLLAPSED))


def probes(
    energies: Callable[[list[Atoms]], np.ndarray],
    starts: list[Atoms],
    tol_ev: float = HOLE_TOL_EV,
    kinds: tuple[str, ...] = PROBE_KINDS,
) -> list[Atoms]:
    """Where a model turns over along the distortion paths of each of ``starts`` (MD frames, say):
    the first structure of each path of ``kinds`` whose energy (``energies``: eV of many
    structures, one model call for all) lies ``tol_ev`` below the path's running maximum, once
    the path has climbed more than ``tol_ev`` above its lowest point. No reference is needed: past
    their lowest point, pinching two terminal atoms together, stretching a bond to 1.6x and
    turning a terminal atom onto its centre's other neighbour only climb on a physical surface
    (before it, a strained start relaxes), so a fall there is the model's hole, and a reference
    label there is what fills it.
    Periodic starts are skipped, and ``collapsed`` ones: every path from a frame whose MD has
    fallen into a hole already starts at the hole's bottom, and the reference there lies tens of
    eV up (one such label, an O-H at 0.64 Å, 12 eV and 66 eV/Å, costs a training more accuracy
    than the probes buy). Each keeps its start's ``CARRIED_INFO`` and names its path in ``info["probe"]`` (e.g.
    ``"H4-C1-H5 pinch"``)."""
    molecules = [a for a in starts if not a.pbc.any() and not collapsed(a)]  # a molecule's paths (no images)
    paths = [(start, kind, idx, structures) for start in molecules
             for kind, idx, structures, _ in scan_paths(start, kinds)]  # fmt: skip
    flat = [s for *_, structures in paths for s in structures]
    if not flat:
        return []
    e = np.asarray(energies(flat), dtype=float)
    out, at = [], 0
    for start, kind, idx, structures in paths:
        fall = first_fall(e[at : at + len(structures)], tol_ev, climb_ev=tol_ev)
        at += len(structures)
        if fall is not None:
            bent = structures[fall[1]]
            probe = Atoms(numbers=bent.numbers, positions=bent.positions, cell=bent.cell, pbc=bent.pbc)
            carried = {k: start.info[k] for k in CARRIED_INFO if k in start.info}
            probe.info = {**carried, "probe": f"{path_name(start, kind, idx)} {kind}"}
            out.append(probe)
    return out


def holes_text(found: list[Scan], reference_name: str = "DFT") -> tuple[int, str]:
    """``(scans with a hole, the holes in words)`` for a list of scans."""
    rows = [(s, h) for s in found if (h := hole(s))]
    if not rows:
        return 0, f"no hole in {len(found)} distortion scans"
    words = "; ".join(f"{s.name} {s.kind} turns at {h['turn_a']:.2f} Å (model {h['model_barrier_ev']:.2f} eV, "
                      f"{reference_name} {h['reference_ev']:.2f} there, {h['reference_at_fall_ev']:.2f} where the "
                      f"model has fallen)" for s, h in rows)  # fmt: skip
    return len(rows), f"holes in {len(rows)} of {len(found)} distortion scans: {words}"
