"""``catal status``'s table: one row per round, from the label store and ``state.json`` (the
rounds' logged metrics are kept there too, so it needs no tracking server)."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from orchestrator.records.state import CampaignState
from orchestrator.records.store import StoredLabel

TABLE_NOTE = (
    "E / F: energy MAE (eV) / force MAE (eV/Å) of each round's model; audit = the round's random MD "
    "frames, scored before any model trained on them; Spearman: selection score vs error; cand.: "
    "candidate fraction; F <system> / picks <system>: each system's hold-out force MAE and picks"
)


def round_table(name: str, out_dir: Path, state: CampaignState, rows: list[StoredLabel]) -> Table:
    table = Table(title=f"{name} ({out_dir})")
    # several systems: each one's hold-out force MAE and picks beside the totals
    systems = list(dict.fromkeys(k.split("/", 1)[1] for h in state.history for k in h if k.startswith("picks/")))
    per_system = [(f"F {n}", f"holdout_force_mae/{n}", ".3f") for n in systems]
    per_system += [(f"picks {n}", f"picks/{n}", ".0f") for n in systems]
    for col in (
        "round",
        "labels",
        "failed",
        "DFT s",
        "hold-out E",
        "hold-out F",
        "audit E",
        "audit F",
        "Spearman",
        "cand.",
        *(c for c, _, _ in per_system),
    ):
        table.add_column(col, justify="right")
    metrics = {int(h["round"]): h for h in state.history if "round" in h}
    for rnd in sorted({s.round for s in rows} | set(metrics)):
        in_round = [s for s in rows if s.round == rnd]
        m = metrics.get(rnd, {})
        table.add_row(
            str(rnd),
            str(sum(s.charged for s in in_round)),
            str(sum(s.status.value != "ok" for s in in_round)),
            f"{sum(s.wall_s for s in in_round):.1f}",
            *(
                f"{m[k]:.4f}" if k in m else "-"
                for k in ("holdout_energy_mae", "holdout_force_mae", "audit_energy_mae", "audit_force_mae")
            ),
            *(f"{m[k]:.2f}" if k in m else "-" for k in ("score_spearman", "frac_candidate")),
            *(format(m[k], spec) if k in m else "-" for _, k, spec in per_system),
        )
    return table
