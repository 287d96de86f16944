"""Seeds from SMILES (workers.conformers): RDKit ETKDG conformers, MMFF-relaxed."""

import numpy as np
import pytest
from ase.data import covalent_radii
from ase.neighborlist import neighbor_list

from workers.conformers import smiles_conformers


def test_a_smiles_gives_the_molecule_with_its_hydrogens_and_sane_bonds():
    (acetamide,) = smiles_conformers("CC(=O)N", 1)
    assert acetamide.get_chemical_formula() == "C2H5NO" and acetamide.info["smiles"] == "CC(=O)N"
    i, j, d = neighbor_list("ijd", acetamide, 1.2 * 2 * covalent_radii.max())
    bonded = d < 1.2 * (covalent_radii[acetamide.numbers[i]] + covalent_radii[acetamide.numbers[j]])
    assert len(i[bonded]) // 2 == 8  # C-C, C=O, C-N, 3 C-H, 2 N-H
    assert d.min() > 0.95  # MMFF-relaxed: no clashes (X-H bonds are ~1.01-1.09 Å)


def test_several_conformers_are_distinct_and_reproducible():
    smiles = "CC(=O)NC(C)C(=O)NC"  # the alanine dipeptide, 22 atoms, two rotatable backbone bonds
    first = smiles_conformers(smiles, 3, seed=1)
    again = smiles_conformers(smiles, 3, seed=1)
    assert len(first) >= 2 and all(len(a) == 22 for a in first)
    assert all(np.allclose(a.positions, b.positions) for a, b in zip(first, again, strict=True))
    heavy = first[0].numbers > 1
    spread = [np.abs(a.get_all_distances()[heavy][:, heavy] - first[0].get_all_distances()[heavy][:, heavy]).max()
              for a in first[1:]]  # fmt: skip
    assert min(spread) > 0.2  # not one geometry twice


def test_an_unreadable_smiles_is_one_line():
    with pytest.raises(ValueError, match=r"^SMILES 'C\(C': RDKit cannot parse it$"):
        smiles_conformers("C(C")
