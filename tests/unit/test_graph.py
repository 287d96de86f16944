"""The radius graph (workers.model.graph) against ASE's neighbour list."""

import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import neighbor_list

from workers.model.graph import collate, edges_within_cutoff


def _random_molecule(rng, n: int) -> Atoms:
    """``n`` atoms of H, C, N, O in a box sized for a molecule's density, none closer than 0.8 Å."""
    side = 1.6 * n ** (1 / 3)
    positions = []
    while len(positions) < n:
        x = rng.uniform(0, side, 3)
        if all(np.linalg.norm(x - y) > 0.8 for y in positions):
            positions.append(x)
    return Atoms(numbers=rng.choice([1, 6, 7, 8], n), positions=positions)


@pytest.mark.parametrize("cutoff", [2.0, 3.5, 5.0])
def test_edges_equal_ase_neighbor_list_on_random_molecules(cutoff):
    rng = np.random.default_rng(7)
    molecules = [_random_molecule(rng, n) for n in (2, 9, 25, 60)]
    batch = collate(molecules)
    i, j, vec = edges_within_cutoff(batch.positions, batch.pair_i, batch.pair_j, cutoff)
    first = np.concatenate([[0], np.cumsum([len(m) for m in molecules])])
    got = set(zip(i.tolist(), j.tolist(), strict=True))
    want = set()
    for k, mol in enumerate(molecules):
        ai, aj, d_ase = neighbor_list("ijd", mol, cutoff)
        want |= {(int(a) + first[k], int(b) + first[k]) for a, b in zip(ai, aj, strict=True)}
        assert d_ase.max(initial=0) < cutoff
    assert got == want and len(got) > 0
    # the edge vectors are r_j - r_i, in Å
    assert np.allclose(vec.numpy(), (batch.positions[j] - batch.positions[i]).numpy())
    # no edge crosses from one molecule to another
    assert bool((batch.structure[i] == batch.structure[j]).all())
