"""Seed structures from SMILES: conformers by RDKit's ETKDG, MMFF-relaxed (pure, RDKit + ASE).

What chemists use for flexible molecules: hydrogens added, several ETKDG embeddings (each
with a random seed of its own), each relaxed with MMFF94 (UFF where MMFF has no
parameters), near-duplicates (heavy-atom RMSD after the best alignment below ``rmsd_a``)
dropped, lowest force-field energy first. Stereocentres the SMILES leaves open are fixed to
the first stereoisomer RDKit enumerates (write them in the SMILES to choose). A campaign's
``initial: normal_modes`` relaxes each again at its DFT level before sampling.
"""

from __future__ import annotations

from ase import Atoms


def smiles_conformers(smiles: str, n: int = 1, seed: int = 0, rmsd_a: float = 0.3) -> list[Atoms]:
    """At most ``n`` distinct conformers of ``smiles`` as ``Atoms`` (Å), lowest MMFF energy
    first; ``info["smiles"]`` keeps the string. A string RDKit cannot parse or embed is one
    ``ValueError`` line."""
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import AllChem, rdMolAlign
        from rdkit.Chem.EnumerateStereoisomers import EnumerateStereoisomers, StereoEnumerationOptions
    except ImportError:
        raise ValueError("SMILES structures need RDKit: pip install 'catal[smiles]'") from None
    RDLogger.DisableLog("rdApp.*")  # its parser's complaints become the one line below
    parsed = Chem.MolFromSmiles(smiles)
    if parsed is None:
        raise ValueError(f"SMILES {smiles!r}: RDKit cannot parse it")
    # stereocentres the SMILES leaves open: one stereoisomer for every conformer (else ETKDG
    # draws them at random, and mirror images pass for distinct conformers)
    options = StereoEnumerationOptions(onlyUnassigned=True, unique=True)
    parsed = Chem.AddHs(next(iter(EnumerateStereoisomers(parsed, options=options)), parsed))
    found = []  # (force-field energy, molecule with one conformer)
    for k in range(max(3 * n, 4)):
        mol = Chem.Mol(parsed)
        params = AllChem.ETKDGv3()
        params.randomSeed = int(seed) * 1009 + k  # one embedding per seed: EmbedMultipleConfs repeats one
        if AllChem.EmbedMolecule(mol, params) != 0:
            continue
        if AllChem.MMFFHasAllMoleculeParams(mol):
            props = AllChem.MMFFGetMoleculeProperties(mol)
            ff = AllChem.MMFFGetMoleculeForceField(mol, props)
        else:
            ff = AllChem.UFFGetMoleculeForceField(mol)
        ff.Minimize(maxIts=2000)
        found.append((ff.CalcEnergy(), mol))
    if not found:
        raise ValueError(f"SMILES {smiles!r}: ETKDG found no 3D embedding")
    heavies, out = [], []
    for _, mol in sorted(found, key=lambda em: em[0]):
        heavy = Chem.RemoveHs(mol)
        if any(rdMolAlign.GetBestRMS(heavy, other) < rmsd_a for other in heavies):
            continue
        heavies.append(heavy)
        atoms = Atoms(numbers=[a.GetAtomicNum() for a in mol.GetAtoms()], positions=mol.GetConformer().GetPositions())
        atoms.info["smiles"] = smiles
        out.append(atoms)
        if len(out) >= n:
            break
    return out
