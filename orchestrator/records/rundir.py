"""Every path under a campaign's ``out_dir``, in one place (the layout README documents).

```
out_dir/
  config.yaml   state.json   labels.db   labels.extxyz   model.pt   learning_curve.png   mlflow.db
  checkpoints/round_001.pt (committee members: round_001_m1.pt ...)
  rounds/round_001/picks.extxyz  audit.extxyz  parity_holdout.png  entropy_vs_error.png
  harmonic/seed_000.npz (normal-mode sampling: each seed's DFT minimum + Hessian)
  mlartifacts/ (beside the default SQLite tracking store)
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunDir:
    root: Path  # the campaign's out_dir

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def label_db(self) -> Path:
        return self.root / "labels.db"

    @property
    def labels_extxyz(self) -> Path:
        return self.root / "labels.extxyz"

    @property
    def final_model(self) -> Path:
        return self.root / "model.pt"

    @property
    def learning_curve(self) -> Path:
        return self.root / "learning_curve.png"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def mlartifacts(self) -> Path:
        return self.root / "mlartifacts"

    def checkpoint(self, rnd: int, member: int = 0) -> Path:
        """Round ``rnd``'s model; committee members beyond the first get a suffix."""
        suffix = f"_m{member}" if member else ""
        return self.root / "checkpoints" / f"round_{rnd:03d}{suffix}.pt"

    def round_dir(self, rnd: int) -> Path:
        return self.root / "rounds" / f"round_{rnd:03d}"

    def picks(self, rnd: int) -> Path:
        return self.round_dir(rnd) / "picks.extxyz"

    def audit(self, rnd: int) -> Path:
        return self.round_dir(rnd) / "audit.extxyz"

    @property
    def harmonic_dir(self) -> Path:
        return self.root / "harmonic"

    def harmonic(self, seed_index: int) -> Path:
        return self.harmonic_dir / f"seed_{seed_index:03d}.npz"

    def make(self) -> None:
        """The folders a campaign writes into."""
        (self.root / "checkpoints").mkdir(parents=True, exist_ok=True)
        (self.root / "rounds").mkdir(exist_ok=True)
