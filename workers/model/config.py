"""The potential's configuration (``model:`` in a campaign config): heads, histogram, posterior, backbone."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from workers.model.backbone import BackboneConfig
from workers.schema import Section


class ModelConfig(Section):
    # categorical predicts a histogram (entropy = uncertainty); scalar is the MSE baseline
    head: Literal["categorical", "scalar"] = "categorical"
    # "Stop Regressing": 128 bins match scalar accuracy
    num_bins: int = Field(128, ge=8, le=4096)
    # HL-Gauss sigma in bin widths (0.75 is the paper's default)
    sigma_ratio: float = Field(0.75, gt=0.0, le=10.0)
    # centred: a symmetric histogram of offsets from a regressed location, whose mean is that
    # location (scalar-level accuracy, sharp histograms); relative: the same, asymmetric;
    # absolute: bins fixed over the training range (the first design). docs/results.md
    histogram: Literal["centred", "relative", "absolute"] = "centred"
    # centred/relative: half-width of the offsets' support in units of the training set's
    # per-atom energy std (2.0 = ±0.4 eV for ethanol at 300-800 K; bins of 6 meV)
    relative_span: float = Field(2.0, gt=0.0, le=100.0)
    # absolute histogram: support padding beyond the training range, in sigmas ...
    pad_sigmas: float = Field(3.0, ge=0.0)
    # ... plus this fraction of the range: room for the higher energies AL explores
    pad_fraction: float = Field(0.25, ge=0.0, le=5.0)
    # location: per-atom contributions averaged (atomwise, the usual locality) or one MLP
    # on mean-pooled features (pooled)
    readout: Literal["atomwise", "pooled"] = "atomwise"
    # heads on the one backbone (a categorical shallow ensemble): their disagreement is the
    # epistemic part of energy_std and the per-atom energies_std / forces_std (eV/Å);
    # 1 = one head, whose histogram width alone is the spread (workers/model/ensemble.py)
    heads: int = Field(4, ge=1, le=32)
    # last-layer posterior (LLPR) on the heads' hidden features: draws of last-layer weights
    # whose forces give a distance-aware force spread (0 = off; atomwise readout only)
    llpr_samples: int = Field(8, ge=0, le=256)
    # which weight perturbations: the posterior's llpr_samples largest-variance directions
    # (default: deterministic, no draw-seed lottery; as good as as many random draws out of
    # distribution at the same cost, docs/results.md section 1) or random draws from it (LLPR's
    # sampling; the default before, which the forces_std campaigns were measured with)
    llpr_directions: Literal["random", "principal"] = "principal"
    # LLPR ridge, relative to the mean eigenvalue of the training features' Gram matrix
    llpr_reg: float = Field(1e-7, gt=0.0, le=10.0)
    # latent distance: each atom's distance (training-feature stds) from its last-layer
    # features to the k-th nearest training atom of its element (workers/model/latent.py); the
    # training atoms' features are kept in the model. 0 = off (atomwise readout only)
    latent_neighbours: int = Field(5, ge=0, le=64)
    # the recalibration lets force error bars grow with the atom's latent distance too
    # (scale * std**power * distance**c, c fitted on the hold-out; workers/model/calibration.py);
    # false: the posterior's std alone, as the forces_std campaigns were measured
    error_bar_distance: bool = True
    backbone: BackboneConfig = BackboneConfig()

    @property
    def has_last_layer(self) -> bool:
        """Per-atom location heads (atomwise readout, not the absolute histogram): the
        last-layer features the posterior and the latent distance are on."""
        absolute = self.head == "categorical" and self.histogram == "absolute"
        return self.readout == "atomwise" and not absolute

    @property
    def has_posterior(self) -> bool:
        """A last-layer posterior (``llpr_samples`` > 0 on per-atom location heads)."""
        return self.llpr_samples > 0 and self.has_last_layer

    @property
    def has_latent(self) -> bool:
        """A latent distance (``latent_neighbours`` > 0 on per-atom location heads)."""
        return self.latent_neighbours > 0 and self.has_last_layer
