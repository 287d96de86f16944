"""Every path under a campaign's ``out_dir``, in one place (the layout README documents).

```
out_dir/
  config.yaml   state.json   labels.db   labels.extxyz   model.pt   learning_curve.png   mlflow.db
  tracking_outbox.db (MLflow records waiting for the tracking server)
  labels_spool.db (labels waiting for a PostgreSQL store that stopped answering)
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
    def label_spool(self) -> Path:
        """Labels a database server did not take in time (a PostgreSQL store only)."""
        return self.root / "labels_spool.db"

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
    def tracking_outbox(self) -> Path:
        """MLflow records not yet taken by the tracking server (``outputs.outbox``)."""
        return self.root / "tracking_outbox.db"

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

    @property
    def state_backup(self) -> Path:
        return self.root / "state.json.bak"

    def has_state(self) -> bool:
        """Whether a campaign's state is here (its ``state.json``, or the one saved before)."""
        return self.state.is_file() or self.state_backup.is_file()

    def set_aside(self, path: Path) -> Path:
        """A damaged file moved out of the way (``<name>.damaged``) to be rebuilt."""
        aside = path.with_name(path.name + ".damaged")
        path.replace(aside)
        return aside

    def make(self) -> None:
        """The folders a campaign writes into."""
        (self.root / "checkpoints").mkdir(parents=True, exist_ok=True)
        (self.root / "rounds").mkdir(exist_ok=True)
