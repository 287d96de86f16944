"""The interatomic potential: a backbone (PaiNN or MACE) + categorical (HL-Gauss) or scalar head.

Target per structure: the per-atom referenced energy ``y = (E - sum_i ref[Z_i]) / n_atoms``
(eV/atom), normalised as ``(y - y_mean) / y_std``. References are fitted by least squares
on the training set (fairchem's convention). Energy is ``n_atoms * y + sum_i ref[Z_i]``;
forces are ``-dE/dr`` by autograd (conservative).

Heads (``ModelConfig.head`` x ``ModelConfig.histogram``):

* ``scalar``: a location ``mu`` regressed from per-atom contributions (``readout``).
* ``categorical`` + ``centred`` (default): the same location ``mu`` plus a histogram over
  *offsets* ``delta_k`` from it, symmetric about 0 (logits averaged with their mirror
  image), so the predicted distribution of ``y`` (mass ``p_k`` at ``mu + delta_k``) has
  expected value exactly ``mu``: the energy is the histogram's mean, and forces take the
  scalar head's smooth path. The cross-entropy against the HL-Gauss histogram of the
  label's offset from ``mu`` (detached) shapes the histogram and, through the shared
  backbone, the features. The offsets' support: ``[-relative_span, relative_span]`` x y_std.
* ``categorical`` + ``relative``: as centred but asymmetric, so the energy is
  ``mu + sum_k p_k delta_k``; the offset's mean adds noise to energies (ablation only).
* ``categorical`` + ``absolute``: the first design, bins fixed over the training range and
  logits from mean-pooled features; its mean saturates at the support's edges and it
  trailed the scalar head on earlier builds, kept for the ablation (benchmarks/heads.py).

Uncertainty (``ModelConfig.heads``, ``llpr_samples``; workers/model/ensemble.py): ``heads``
location + histogram heads share the backbone (their mean is the prediction; entropy of the
mean histogram = mean entropy + mutual information). After training, ``fit_llpr`` puts a
Gaussian posterior on the heads' last layer from the training energies and forces (LLPR,
Bigi et al. 2024): ``energy_std`` / ``energies_std`` (eV) are its exact predictive stds and
``forces_std`` (eV/Å per atom) the spread of the forces of ``llpr_samples`` weight
perturbations (draws from the posterior, or its principal directions: ``llpr_directions``). A
campaign rescales them on its hold-out labels (``calculator.recalibrate``): they are error
bars, 68% / 95% intervals as ``Calibration`` says (docs/results.md section 1).
``fit_latent`` keeps the training atoms' last-layer features: ``latent_distance`` (per atom,
dimensionless) is how far an atom's features lie from them (``latent_neighbours``-th nearest).
"""

from __future__ import annotations

import torch
from ase import Atoms
from torch import nn

from workers.model import ensemble, hlgauss, latent, posterior
from workers.model.backbone import backbone_from_metadata, build_backbone
from workers.model.calibration import Calibration
from workers.model.config import ModelConfig
from workers.model.graph import Batch, batch_edges, stress_from_strain, zero_strain
from workers.model.references import fit_element_refs, per_atom_targets


class Potential(nn.Module):
    """Energy, forces, and (categorical head) entropy for batches of molecules."""

    def __init__(
        self,
        cfg: ModelConfig,
        element_refs: torch.Tensor,
        y_mean: float,
        y_std: float,
        support: hlgauss.Support | None,
        backbone: nn.Module,
        calibration: Calibration | None = None,
    ):
        super().__init__()
        if cfg.head == "categorical" and support is None:
            raise ValueError("the categorical head needs an HL-Gauss support")
        self.cfg = cfg
        self.support = support
        self.y_mean, self.y_std = float(y_mean), float(y_std)
        self.calibration = calibration or Calibration()  # scales raw stds (workers/model/calibration.py)
        self.register_buffer("element_refs", element_refs.clone().double())
        self.backbone = backbone  # per-atom features [n_atoms, F] (workers/model/backbone.py)
        f = backbone.out_features
        self.absolute = cfg.head == "categorical" and cfg.histogram == "absolute"
        m = cfg.heads
        if not self.absolute:  # each head's regressed location [n_structures, heads]
            self.location = ensemble.EnsembleMLP(f, f, 1, m)
        self.llpr = cfg.has_posterior
        if self.llpr:  # fitted after training (fit_llpr); zeros until then
            self.register_buffer("llpr_root", torch.zeros(m * f, m * f))  # covariance = root @ root.T
            self.register_buffer("llpr_draws", torch.zeros(cfg.llpr_samples, m * f))
        if cfg.has_latent:  # the training atoms' features (fit_latent; latent_ref, _z, _mean, _scale)
            for name, value in latent.empty_index(m * f).items():
                self.register_buffer(name, value)
        if cfg.head == "categorical":  # each head's logits over the bins
            self.head = ensemble.EnsembleMLP(f, f, cfg.num_bins, m)

    @classmethod
    def fit(cls, cfg: ModelConfig, structures: list[Atoms]) -> Potential:
        """A fresh model whose references, normalisation and support come from ``structures``."""
        if len(structures) < 2:
            raise ValueError(f"need at least 2 labelled structures to fit a model, got {len(structures)}")
        refs = fit_element_refs(structures)
        y = per_atom_targets(structures, refs)
        y_mean, y_std = float(y.mean()), max(float(y.std()), 1e-4)
        support = None
        if cfg.head == "categorical" and cfg.histogram != "absolute":
            support = hlgauss.Support(-cfg.relative_span, cfg.relative_span, cfg.num_bins, cfg.sigma_ratio)
        elif cfg.head == "categorical":
            support = hlgauss.fit_support(
                torch.from_numpy((y - y_mean) / y_std),
                cfg.num_bins,
                cfg.sigma_ratio,
                cfg.pad_sigmas,
                cfg.pad_fraction,
            )
        return cls(cfg, torch.from_numpy(refs), y_mean, y_std, support, build_backbone(cfg.backbone, structures))

    def normalised_targets(self, batch: Batch) -> torch.Tensor:
        """Labels as normalised per-atom referenced energies ``[n_structures]``."""
        ref = self._ref_sum(batch, torch.float64)
        y = (batch.energy_ev.double() - ref) / batch.n_atoms.double()
        return ((y - self.y_mean) / self.y_std).to(batch.positions.dtype)

    def histogram_targets(self, batch: Batch, out: dict) -> tuple[torch.Tensor, int]:
        """HL-Gauss target histograms ``[n_structures, heads, num_bins]`` and how many
        structures had a target clamped (for any head).

        Relative histogram: the label's offset from each head's (detached) location, so the
        cross-entropy shapes the histogram and leaves the location to the regression.
        """
        y = self.normalised_targets(batch)[:, None].expand(-1, self.cfg.heads)
        if not self.absolute:
            y = y - out["location_members"].detach()
        hist, _ = hlgauss.to_histogram(y.reshape(-1), self.support)
        outside = (y < self.support.v_min) | (y > self.support.v_max)  # [n_structures, heads]
        return hist.reshape(*y.shape, -1), int(outside.any(-1).sum())  # structures with a clamped target

    @staticmethod
    def _mean(batch: Batch, per_atom: torch.Tensor) -> torch.Tensor:
        """Per-structure mean ``[n_structures, k]`` of per-atom rows ``[n_atoms, k]``."""
        total = per_atom.new_zeros(batch.n_structures, per_atom.shape[1]).index_add(0, batch.structure, per_atom)
        return total / batch.n_atoms.to(per_atom.dtype)[:, None]

    @staticmethod
    def _max(batch: Batch, per_atom: torch.Tensor) -> torch.Tensor:
        """Per-structure maximum ``[n_structures]`` of a per-atom quantity ``[n_atoms]``."""
        return per_atom.new_zeros(batch.n_structures).scatter_reduce(
            0, batch.structure, per_atom, reduce="amax", include_self=False
        )

    def _ref_sum(self, batch: Batch, dtype) -> torch.Tensor:
        per_atom = self.element_refs[batch.numbers].to(dtype)
        return torch.zeros(batch.n_structures, dtype=dtype, device=per_atom.device).index_add(
            0, batch.structure, per_atom
        )

    def forward(
        self,
        batch: Batch,
        forces: bool = True,
        create_graph: bool = False,
        uncertainty: bool = False,
        member_forces: bool = False,
        heads_spread: bool = False,
        stress: bool = False,
        bare: bool = False,
    ) -> dict:
        """Predictions for a batch.

        Returns ``energy`` [n_structures] eV (the heads' mean), ``forces`` [n_atoms, 3] eV/Å
        (if asked), ``y_norm`` [n_structures] normalised target, ``y_members`` [n_structures,
        heads], ``embedding`` [n_structures, F] (pooled features, detached), ``location``
        [n_structures] (the heads' mean regressed location, normalised; absent for the
        absolute histogram) and, detached, the uncertainty (calibrated by
        ``self.calibration``):

        * ``energy_std`` [n_structures] eV and ``energies_std`` [n_atoms] eV (each atom's
          energy contribution): the last-layer posterior's (LLPR, ``fit_llpr``; exact), or
          before it is fitted the heads'; ``energy_std_per_atom`` (eV/atom);
        * ``energy_std_heads`` (raw eV): ``sqrt(aleatoric^2 + epistemic^2)``, the
          histograms' width beyond the HL-Gauss smoothing and the heads' disagreement;
        * with ``uncertainty`` (needs ``forces``): ``forces_std`` [n_atoms] eV/Å per
          Cartesian component, from the forces of the posterior's weight perturbations (or the
          heads' spread before a fit), and ``forces_std_max`` [n_structures];
          ``heads_spread`` adds ``forces_std_heads`` (raw, the heads' force spread);
        * with ``uncertainty``: ``latent_distance`` [n_atoms] (training-feature stds) and
          ``latent_distance_max`` [n_structures], each atom's distance to the training atoms
          in feature space (``fit_latent``; workers/model/latent.py);
        * categorical: ``logits`` [n_structures, heads, num_bins], ``energy_entropy`` (of
          the heads' mean histogram, nats) = ``energy_aleatoric_entropy`` +
          ``energy_mutual_information``, and ``energy_excess_entropy`` (the heads' mean
          entropy minus the HL-Gauss target's own).

        ``member_forces`` (training) adds ``forces_members`` [heads, n_atoms, 3], in the graph.
        ``stress`` adds ``stress`` [n_structures, 3, 3] eV/Å^3 for cells (``graph.stress_from_strain``).
        ``bare``: ``energy``, ``forces``, ``y_norm``, ``embedding`` and the locations only, no
        uncertainty of any kind and no histogram the energy does not need (MD's unrecorded steps).
        """
        if bare and (uncertainty or member_forces or heads_spread):
            raise ValueError("bare asks for no uncertainty: uncertainty, member_forces and heads_spread must be off")
        pos = batch.positions
        if forces and not pos.requires_grad:
            pos = pos.detach().requires_grad_(True)
        strain = zero_strain(batch, pos) if stress and forces else None  # None: no cell in the batch
        i, j, vec = batch_edges(batch, pos, self.backbone.cutoff, strain)
        feats = self.backbone(batch.numbers, i, j, vec)  # [n_atoms, F]
        n = batch.n_atoms.to(feats.dtype)
        pooled = self._mean(batch, feats)
        out: dict = {"embedding": pooled.detach()}
        heads = self.cfg.heads
        contrib = None  # [n_atoms, heads] per-atom contributions (atomwise readout)
        if not self.absolute:
            if self.cfg.readout == "atomwise":  # per-atom contributions, averaged
                contrib, hidden = self.location(feats, hidden=True)
                contrib = contrib[..., 0]
                out["last_layer"] = hidden.reshape(hidden.shape[0], -1) / heads  # [n_atoms, heads * F]
                loc = self._mean(batch, contrib)
            else:
                loc = self.location(pooled)[..., 0]
            out["location_members"] = loc
            out["location"] = loc.mean(-1)
            y_members = loc
        hist_var = None
        needs_histogram = self.absolute or self.cfg.histogram == "relative"  # the energy reads it
        if self.cfg.head == "categorical" and (needs_histogram or not bare):
            logits = self.head(pooled)  # [n_structures, heads, num_bins]
            if self.cfg.histogram == "centred":  # symmetric about 0: the mean is the location
                logits = 0.5 * (logits + logits.flip(-1))
            out["logits"] = logits
            offset = hlgauss.expected_value(logits, self.support)  # absolute: the value itself
            if self.absolute:
                y_members = offset
            elif self.cfg.histogram == "relative":
                y_members = y_members + offset
            if not bare:
                hist_var = hlgauss.std(logits, self.support).detach() ** 2
                self._entropies(out, logits, offset.detach(), None if self.absolute else loc.detach())
        out["y_members"] = y_members
        y_norm = y_members.mean(-1)
        out["y_norm"] = y_norm
        # summed in float64: a molecule's total energy (~1e3-1e5 eV) would lose meV in float32
        ref = self._ref_sum(batch, torch.float64)
        energy_members = n.double()[:, None] * (self.y_mean + self.y_std * y_members).double() + ref[:, None]
        out["energy"] = energy_members.mean(-1)
        fitted = self.posterior_fitted
        draw_energy = None if bare else self._energy_uncertainty(out, batch, n, y_members.detach(), hist_var, contrib)
        if uncertainty and self.latent_fitted:  # not in training's and evaluation's calls
            self._latent_distance(out, batch)
        if strain is not None:
            out["stress"] = stress_from_strain(out["energy"], strain, batch, create_graph)
        if forces:
            want_heads = member_forces or (uncertainty and heads > 1 and (heads_spread or not fitted))
            columns = [energy_members if want_heads else out["energy"][:, None]]
            if uncertainty and draw_energy is not None:
                columns.append(draw_energy.double())
            if len(columns) == 1 and not want_heads:
                (grad,) = torch.autograd.grad(
                    out["energy"].sum(), pos, create_graph=create_graph, retain_graph=create_graph
                )
                out["forces"] = -grad
            else:  # one batched backward pass: the heads' (or the mean's) and the draws' forces
                both = ensemble.member_forces(torch.cat(columns, -1), pos, create_graph=create_graph)
                k = columns[0].shape[-1]
                f_members, f_draws = both[:k], both[k:]
                out["forces"] = f_members.mean(0)
                if member_forces:
                    out["forces_members"] = f_members
                if want_heads and uncertainty:
                    out["forces_std_heads"] = ensemble.forces_spread(f_members.detach())
                if uncertainty:
                    raw = f_draws.detach().pow(2).mean(dim=(0, 2)).sqrt() if fitted else out.get("forces_std_heads")
                    if raw is None:  # one head, no posterior: no force spread at all
                        raw = torch.zeros_like(out["forces"][:, 0]).detach()
                    self._forces_spread(out, batch, raw)
            if uncertainty and "forces_std" not in out:  # one head, no posterior
                self._forces_spread(out, batch, torch.zeros_like(out["forces"][:, 0]).detach())
        return out

    def _energy_uncertainty(self, out, batch, n, y_members, hist_var, contrib) -> torch.Tensor | None:
        """``energy_std_heads``, the calibrated ``energy_std`` (+ per atom, ``energies_std``) into
        ``out``; returns the posterior's weight-draw energies [n_structures, draws] (None unfitted)."""
        heads_std, heads_atoms = self._heads_energy_spread(n, y_members, hist_var, contrib)
        out["energy_std_heads"] = heads_std
        raw_std, raw_atoms, draw_energy = heads_std, heads_atoms, None
        if self.posterior_fitted:
            raw_std, raw_atoms, draw_energy = self._llpr(batch, out["last_layer"])
        out["energy_std"] = self.calibration.energy(raw_std)
        out["energy_std_per_atom"] = out["energy_std"] / n
        if raw_atoms is not None:  # each atom's share of its structure's calibrated std
            out["energies_std"] = self.calibration.energies(raw_atoms, raw_std[batch.structure])
        return draw_energy

    @property
    def posterior_fitted(self) -> bool:
        """Whether ``fit_llpr`` has given the last layer a posterior (else the heads' spread serves)."""
        return self.llpr and bool(self.llpr_draws.any())

    def _llpr(self, batch: Batch, phi: torch.Tensor) -> tuple:
        """The posterior's raw stds and weight-draw energies (``posterior.predictive``)."""
        return posterior.predictive(batch, self.y_std * phi, self.llpr_root, self.llpr_draws)

    @property
    def latent_fitted(self) -> bool:
        """Whether ``fit_latent`` has stored training atoms' features to measure distances to."""
        return self.cfg.has_latent and len(self.latent_ref) > 0

    def _latent_distance(self, out: dict, batch: Batch) -> None:
        """``latent_distance`` [n_atoms] (training-feature stds; ``latent.distance``) and its
        per-structure maximum ``latent_distance_max`` [n_structures] into ``out``."""
        d = latent.distance(
            latent.index_of(self), out["last_layer"].detach(), batch.numbers, self.cfg.latent_neighbours
        )
        out["latent_distance"] = d
        out["latent_distance_max"] = self._max(batch, d)

    def fit_uncertainty(self, structures: list[Atoms]) -> None:
        """After training, on its labelled ``structures``: the last-layer posterior
        (``fit_llpr``) and the training atoms' features for the latent distance (``fit_latent``)."""
        self.fit_llpr(structures)
        self.fit_latent(structures)

    def fit_latent(self, structures: list[Atoms]) -> None:
        """Keep ``structures``' atoms' last-layer features (standardised; ``latent.fit``)."""
        if self.cfg.has_latent and structures:
            for name, value in latent.fit(self, structures).buffers().items():
                setattr(self, name, value.to(self.latent_mean.device))

    def fit_llpr(self, structures: list[Atoms]) -> None:
        """The last-layer posterior from labelled ``structures`` (the training set; ``posterior.fit``)."""
        if not self.llpr or not structures:
            return
        cov = posterior.fit(self, structures)
        root = posterior.covariance_root(cov)
        self.llpr_root.copy_(root.to(self.llpr_root))
        k = self.cfg.llpr_samples
        if self.cfg.llpr_directions == "principal":
            draws = posterior.principal_directions(root, k)
        else:
            draws = posterior.weight_draws(root, k)
        self.llpr_draws.copy_(draws.to(self.llpr_draws))

    def _entropies(self, out: dict, logits: torch.Tensor, offset: torch.Tensor, loc: torch.Tensor | None) -> None:
        """The heads' histograms on one grid (each at its location): entropy = aleatoric + MI."""
        w = self.support.bin_width
        shift = torch.zeros_like(offset) if loc is None else loc / w  # [n_structures, heads] in bins
        probs = torch.softmax(logits.detach(), dim=-1)
        parts = ensemble.mixture_entropy(probs, shift)
        out["energy_entropy"] = parts["entropy"]
        out["energy_aleatoric_entropy"] = parts["aleatoric"]
        out["energy_mutual_information"] = parts["mutual_information"]
        member_h = hlgauss.entropy(logits.detach())
        floor = hlgauss.target_entropy(offset.reshape(-1), self.support).reshape(offset.shape)
        out["energy_excess_entropy"] = (member_h - floor).mean(-1)

    def _heads_energy_spread(self, n, y_members, hist_var, contrib) -> tuple:
        """The heads' own spread (raw, eV): ``[n_structures]`` from their disagreement and
        the histograms' width beyond the smoothing; per atom ``[n_atoms]`` (atomwise, heads > 1)."""
        var = ensemble.member_spread(y_members) ** 2  # epistemic, normalised per-atom units
        if hist_var is not None:  # aleatoric: the histograms' width beyond the smoothing
            var = var + ensemble.excess_variance(hist_var, self.support.sigma).mean(-1)
        per_atom = None
        if contrib is not None and self.cfg.heads > 1:
            per_atom = self.y_std * ensemble.member_spread(contrib.detach())
        return n * self.y_std * var.sqrt(), per_atom

    def _forces_spread(self, out, batch, raw: torch.Tensor) -> None:
        """``forces_std`` [n_atoms] (eV/Å: ``raw`` calibrated, with ``latent_distance``), its per-structure
        maximum and ``forces_std_atom`` [n_structures]: which atom (index within its structure) has it."""
        f_std = self.calibration.forces(raw, out.get("latent_distance"))
        out["forces_std"] = f_std
        out["forces_std_max"] = self._max(batch, f_std)
        first = torch.cumsum(batch.n_atoms, 0) - batch.n_atoms  # [n_structures] first atom's index
        local = (torch.arange(len(f_std), device=f_std.device) - first[batch.structure]).to(f_std.dtype)
        at_max = torch.where(f_std.detach() >= out["forces_std_max"].detach()[batch.structure], local, float("inf"))
        out["forces_std_atom"] = f_std.new_full((batch.n_structures,), float("inf")).scatter_reduce(
            0, batch.structure, at_max, reduce="amin"
        )

    # -- checkpoints (weights_only-safe: tensors, numbers, strings, dicts, lists) --------
    def metadata(self) -> dict:
        return {
            "model_config": self.cfg.to_dict(),
            "y_mean": self.y_mean,
            "y_std": self.y_std,
            "support": self.support.to_dict() if self.support else None,
            "backbone": self.backbone.metadata(),
            "calibration": self.calibration.to_dict(),
        }

    @classmethod
    def from_metadata(cls, meta: dict, state_dict: dict) -> Potential:
        support = hlgauss.Support.from_dict(meta["support"]) if meta["support"] else None
        cfg = ModelConfig.from_dict(meta["model_config"])
        model = cls(
            cfg,
            state_dict["element_refs"],
            meta["y_mean"],
            meta["y_std"],
            support,
            backbone_from_metadata(cfg.backbone, meta["backbone"]),
            Calibration.from_dict(meta.get("calibration")),
        )
        if cfg.has_latent:  # sized by the training set; absent (unfitted) in checkpoints before it
            empty = latent.empty_index(model.latent_mean.shape[0])
            state_dict = {**empty, **state_dict}
            for name in empty:
                setattr(model, name, torch.empty_like(state_dict[name]))
        model.load_state_dict(state_dict)
        return model
