"""Rotatable bonds and random turns about them, on real molecules (ase.build)."""

import numpy as np
import pytest
from ase.build import molecule

from workers.torsions import bond_graph, rotatable_bonds, torsion_angles, torsion_gaps, torsion_quads, turn_torsions


def _named(a, bonds):
    sym = a.get_chemical_symbols()
    return sorted("".join(sorted(sym[k] for k in moving)) for _, _, moving in bonds)


@pytest.mark.parametrize(
    ("name", "sides"),
    [
        ("CH3CH2OH", ["CHHH", "HO"]),  # the methyl and the hydroxyl rotors
        ("CH3COOH", ["CHHH"]),  # the acid C-OH is conjugated with C=O: not turned
        ("CH3CONH2", ["CHHH"]),  # the amide C-N likewise
        ("HCOOCH3", ["CHHH"]),  # the ester's methyl; its C(=O)-O is conjugated
        ("C6H6", []),  # ring bonds never turn
        ("H2O", []),  # no dihedral
    ],
)
def test_rotatable_bonds_are_the_free_rotors(name, sides):
    a = molecule(name)
    assert _named(a, rotatable_bonds(a)) == sides


def test_turns_keep_every_bond_and_move_the_rotors():
    a = molecule("CH3CH2OH")
    bonds = rotatable_bonds(a)
    b = turn_torsions(a, bonds, np.random.default_rng(3))
    graph = bond_graph(a)
    da, db = a.get_all_distances(), b.get_all_distances()
    for i, nbrs in enumerate(graph):
        for j in nbrs:
            assert db[i, j] == pytest.approx(da[i, j], abs=1e-9)  # bond lengths
            for k in graph[j] - {i}:
                assert b.get_angle(i, j, k) == pytest.approx(a.get_angle(i, j, k), abs=1e-6)  # bond angles
    sym = a.get_chemical_symbols()
    h_o = next(h for h in graph[sym.index("O")] if sym[h] == "H")
    turned = [abs(b.get_dihedral(h_o, 2, 1, 0) - a.get_dihedral(h_o, 2, 1, 0)) for b in
              (turn_torsions(a, bonds, np.random.default_rng(s)) for s in range(20))]  # fmt: skip
    assert max(turned) > 90  # the OH reaches the other conformers
    again = turn_torsions(a, bonds, np.random.default_rng(3))
    assert np.array_equal(again.positions, b.positions)  # reproducible from the rng


def test_a_turn_that_would_clash_is_redrawn_or_left_out():
    """Every turned ethyl methyl ether keeps its non-bonded atoms apart."""
    a = molecule("CH3CH2OCH3")
    bonds = rotatable_bonds(a)
    assert len(bonds) >= 2
    from ase.data import covalent_radii

    r = covalent_radii[a.numbers]
    graph = bond_graph(a)
    for seed in range(30):
        b = turn_torsions(a, bonds, np.random.default_rng(seed))
        d = b.get_all_distances()
        for i in range(len(a)):
            for j in range(i + 1, len(a)):
                if j not in graph[i]:
                    assert d[i, j] >= 0.75 * (r[i] + r[j]) - 1e-9


@pytest.mark.parametrize(("name", "quads"), [("CH3CH2OH", ["CCOH"]), ("CH3COOH", []), ("C4H10", ["CCCC"])])
def test_torsion_quads_skip_symmetric_rotors(name, quads):
    """One dihedral per rotatable bond whose turn shows: ethanol's C-C-O-H (its methyl's
    three H repeat every 120 degrees: left out); butane's C-C-C-C."""
    a = molecule(name if name != "C4H10" else "trans-butane")
    sym = a.get_chemical_symbols()
    assert ["".join(sym[k] for k in q) for q in torsion_quads(a)] == quads


def test_torsion_gaps_are_circular_differences_to_the_nearest_structure():
    """Set ethanol's C-C-O-H dihedral to known angles: the angles read back to 1e-6 degrees and
    the gap is the circular difference to the nearest known structure (across 0/360 too)."""
    a = molecule("CH3CH2OH")
    (q,) = torsion_quads(a)
    moving = [q[3]]  # the hydroxyl H turns about C-O

    def at(angle):
        b = a.copy()
        b.set_dihedral(*q, angle, indices=moving)
        return b

    frames = torsion_angles([at(10.0), at(350.0), at(180.0), at(100.0)], [q])
    np.testing.assert_allclose(frames[:, 0], [10.0, 350.0, 180.0, 100.0], atol=1e-6)
    np.testing.assert_allclose(
        torsion_gaps(frames, torsion_angles([at(0.0)], [q])), [10.0, 10.0, 180.0, 100.0], atol=1e-6
    )
    known = torsion_angles([at(0.0), at(170.0)], [q])
    np.testing.assert_allclose(torsion_gaps(frames, known), [10.0, 10.0, 10.0, 70.0], atol=1e-6)
    assert torsion_gaps(frames, np.zeros((0, 1))).tolist() == [180.0] * 4  # nothing known: as far as can be
    np.testing.assert_allclose(torsion_gaps(frames, None), [20.0, 20.0, 80.0, 80.0], atol=1e-6)  # each vs the rest
    assert torsion_gaps(frames[:1], None).tolist() == [180.0]  # one frame: no other to be near
