"""A distance in feature space to the training atoms (pure torch): how unfamiliar an atom is.

Each atom's last-layer features (the location heads' hidden layer, ``[n_atoms, D]``), standardised
over the training atoms, are compared with the training atoms of the same element: the distance
to the ``k``-th nearest is the atom's ``latent_distance`` (a k-nearest-neighbour density
estimate on the features, after Zhu et al. 2023, "Fast uncertainty estimates in deep learning
interatomic potentials"). It is dimensionless (training-feature stds) and grows with how far
an atom's environment lies from anything training saw: on the development families of
docs/results.md section 1 it tracked the force error's growth out of distribution (4-20x where
errors grew 4-27x) where the posterior's force spread grew less.

``LatentIndex`` holds the training atoms' standardised features and elements (a capped, seeded
subsample per element for large training sets); ``distance`` is the per-atom k-th neighbour
distance. An element with fewer than ``k`` training atoms is compared with every training atom.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from ase import Atoms

from workers.model.graph import collate

MAX_ATOMS_PER_ELEMENT = 4096  # training atoms kept per element (a seeded subsample beyond)


@dataclass(frozen=True)
class LatentIndex:
    """Training atoms' features ``ref [N, D]`` (standardised by ``mean``, ``scale`` ``[D]``)
    and their atomic numbers ``z [N]``."""

    ref: torch.Tensor
    z: torch.Tensor
    mean: torch.Tensor
    scale: torch.Tensor

    def buffers(self) -> dict[str, torch.Tensor]:
        """As a model's buffers: ``latent_ref``, ``latent_z``, ``latent_mean``, ``latent_scale``."""
        return {f"latent_{k}": v for k, v in vars(self).items()}


def empty_index(d: int) -> dict[str, torch.Tensor]:
    """An unfitted index's buffers for ``d`` features (no training atoms)."""
    return LatentIndex(torch.zeros(0, d), torch.zeros(0, dtype=torch.long), torch.zeros(d), torch.ones(d)).buffers()


def build_index(features: torch.Tensor, numbers: torch.Tensor, seed: int = 0) -> LatentIndex:
    """The index of training atoms' features ``[n_atoms, D]`` with atomic numbers ``[n_atoms]``:
    standardised per feature (std floored at 1e-6 of the largest), at most
    ``MAX_ATOMS_PER_ELEMENT`` atoms per element kept (a seeded uniform subsample)."""
    x = features.detach().double()
    mean = x.mean(0)
    std = x.std(0, unbiased=False)
    scale = std.clamp_min(1e-6 * float(std.max().clamp_min(1e-30)))
    gen = torch.Generator().manual_seed(seed)
    keep = []
    for element in torch.unique(numbers):
        idx = torch.nonzero(numbers == element)[:, 0]
        if len(idx) > MAX_ATOMS_PER_ELEMENT:
            idx = idx[torch.randperm(len(idx), generator=gen)[:MAX_ATOMS_PER_ELEMENT]].sort().values
        keep.append(idx)
    idx = torch.cat(keep)
    return LatentIndex(((x[idx] - mean) / scale).float(), numbers[idx].long(), mean.float(), scale.float())


def distance(index: LatentIndex, features: torch.Tensor, numbers: torch.Tensor, k: int) -> torch.Tensor:
    """Each atom's distance ``[n_atoms]`` (standardised units) to its ``k``-th nearest training
    atom of the same element (of any element where training had fewer than ``k`` of it)."""
    ref = index.ref.to(features.device, features.dtype)
    x = (features - index.mean.to(ref)) / index.scale.to(ref)  # in the graph if features are (MD's bias)
    ref_z = index.z.to(numbers.device)
    out = x.new_empty(len(x))
    for element in torch.unique(numbers):
        here = numbers == element
        known = ref[ref_z == element]
        if len(known) < k:
            known = ref
        kk = min(k, len(known))
        d = torch.cdist(x[here].double(), known.double())  # float64: no cancellation near 0
        out[here] = d.kthvalue(kk, dim=1).values.to(out.dtype)
    return out


def index_of(model) -> LatentIndex:
    """The training atoms' features a fitted model keeps (its ``latent_*`` buffers, ``fit``)."""
    return LatentIndex(model.latent_ref, model.latent_z, model.latent_mean, model.latent_scale)


def typical_distance(index: LatentIndex, k: int, per_element: int = 512) -> torch.Tensor:
    """``[119]`` per atomic number: the median over (up to ``per_element``, evenly spaced)
    training atoms of their own ``k``-th nearest other training atom of the same element, the
    distance a familiar atom has (1.0 for an element the index lacks)."""
    out = torch.ones(119, dtype=index.ref.dtype)
    for element in torch.unique(index.z):
        known = index.ref[index.z == element].double()
        probe = known[torch.linspace(0, len(known) - 1, min(per_element, len(known))).long()]
        kk = min(k + 1, len(known))  # + 1: the probe itself, at distance 0
        if kk >= 2:
            out[element] = torch.cdist(probe, known).kthvalue(kk, dim=1).values.median().to(out.dtype)
    return out


def bias_energy(
    index: LatentIndex, features: torch.Tensor, numbers: torch.Tensor, typical: torch.Tensor, k: int, strength_ev: float
) -> torch.Tensor:
    """Per atom ``[n_atoms]`` (eV, in the graph): ``-strength_ev * (1 - exp(-u^2 / 2))`` with
    ``u`` the atom's latent distance over its element's ``typical`` one. Lower where atoms are
    unfamiliar, so MD on energy + bias drifts toward what the model does not know (hyperactive
    learning, van der Oord et al. 2023), bounded by ``strength_ev`` per atom; its pull is
    strongest at ``u = 1``, the edge of the training data, and fades far beyond it."""
    u = distance(index, features, numbers, k) / typical.to(features)[numbers]
    return -strength_ev * (1.0 - torch.exp(-0.5 * u**2))


def fit(model, structures: list[Atoms], batch_size: int = 64) -> LatentIndex:
    """The index of ``structures``' atoms' last-layer features under ``model`` (its training set)."""
    param = next(model.parameters())
    feats, numbers = [], []
    with torch.no_grad():
        for start in range(0, len(structures), batch_size):
            batch = collate(structures[start : start + batch_size]).to(param.device, param.dtype)
            feats.append(model(batch, forces=False, bare=True)["last_layer"].cpu())
            numbers.append(batch.numbers.cpu())
    return build_index(torch.cat(feats), torch.cat(numbers))
