"""Campaign config: validation once at load, one-line errors (exit 2), nothing written."""

from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.config import apply_overrides, flatten, load_config

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "demo.yaml"


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")))
def test_shipped_configs_validate(path):
    cfg = load_config(path)
    assert cfg.name and cfg.budget.max_labels > cfg.system.initial_labels


def test_overrides_are_typed_and_dotted():
    cfg = load_config(DEMO, ["budget.max_labels=40", "dft.basis=6-31g", "model.backbone.features=32"])
    assert cfg.budget.max_labels == 40 and cfg.dft.basis == "6-31g" and cfg.model.backbone.features == 32
    assert apply_overrides({}, ["a.b=1.5"]) == {"a": {"b": 1.5}}
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}}) == {"a.b": 1, "a.c.d": "x"}


def test_system_charge_and_spin_flow_into_dft():
    cfg = load_config(DEMO, ["system.charge=1", "system.spin=1"])
    assert (cfg.dft_config().charge, cfg.dft_config().spin) == (1, 1)


def test_config_is_frozen():
    cfg = load_config(DEMO)
    with pytest.raises(Exception, match="frozen"):
        cfg.budget.max_labels = 3  # type: ignore[misc]


def _write(tmp_path, mutate) -> Path:
    raw = yaml.safe_load(DEMO.read_text())
    raw["out_dir"] = str(tmp_path / "out")
    mutate(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# case -> (section, updates to it, --set overrides, text the error line must contain)
BAD = {
    "typo'd key": ("budget", {"max_lables": 40}, [], "budget.max_lables: unknown field"),
    "wrong type": (
        "budget",
        {},
        ["budget.max_labels=lots"],
        "budget.max_labels: Input should be a valid integer",
    ),
    "impossible budget": ("budget", {"max_labels": 20}, [], "budget.max_labels (20) leaves nothing"),
    "per-round above total": (
        "budget",
        {"max_labels_per_round": 999},
        [],
        "max_labels_per_round (999) exceeds",
    ),
    "unknown molecule": ("system", {"structures": "Unobtainium"}, [], "system.structures: unknown molecule"),
    # methylamine is H3CNH2 in ASE's g2 set: the near names are offered, and SMILES for any molecule
    "misspelt molecule": (
        "system",
        {"structures": "CH3NH2"},
        [],
        "(did you mean CH3CONH2, H3CNH2, CH3NO2?); any molecule by SMILES: system.structures: {smiles: CN}",
    ),
    "missing file": ("system", {"structures": "nope/seeds.xyz"}, [], "system.structures: structure file not"),
    "unknown DFT method": ("dft", {"method": "b3lyb"}, [], "dft.method: unknown DFT method"),
    "negative temperature": ("sampling", {"temperature_k": -5}, [], "sampling.temperature_k"),
    "per-replica temperatures and a ramp": (
        "sampling",
        {"temperatures_k": [300, 900], "temperature_end_k": 1000},
        [],
        "temperatures_k (one per replica) and temperature_end_k (a ramp) exclude each other",
    ),
    "charge in the wrong section": ("dft", {"charge": 1}, [], "set charge under system"),
    "bad --set": ("budget", {}, ["budget.max_labels"], "expected key=value"),
    "async with a committee": (
        "campaign",
        {"mode": "async"},
        ["selection.strategy=committee", "model.head=scalar"],
        "selection.strategy: committee needs rounds",
    ),
    "forces_std without a spread": (
        "model",
        {"heads": 1, "llpr_samples": 0},
        ["selection.strategy=forces_std"],
        "selection.strategy: forces_std needs the last-layer posterior",
    ),
    "latent_distance without a latent index": (
        "model",
        {"latent_neighbours": 0},
        ["selection.strategy=latent_distance"],
        "selection.strategy: latent_distance needs model.latent_neighbours > 0",
    ),
    "biased MD without a latent index": (
        "model",
        {"latent_neighbours": 0},
        ["selection.strategy=random", "sampling.bias_ev=0.03"],
        "sampling.bias_ev needs model.latent_neighbours > 0",
    ),
    "unknown xTB method": ("dft", {"kind": "xtb", "method": "b3lyp"}, [], "dft.method: unknown xTB method"),
    "ase labeller without a calculator": ("dft", {"kind": "ase"}, [], "kind: ase needs calculator"),
    "ase calculator that is not there": (
        "dft",
        {"kind": "ase", "calculator": "ase.calculators.emt:NoSuchCalculator"},
        [],
        "dft.calculator: cannot load 'ase.calculators.emt:NoSuchCalculator'",
    ),
    "a cell for a molecular code": (
        "system",
        {"structures": "configs/data/water32_300k_gfn1xtb.extxyz", "initial": "rattle"},
        [],
        "molecular DFT only (dft.kind: xtb or ase takes cells)",
    ),
    "a cell with normal modes": (
        "dft",
        {"kind": "xtb", "method": "gfn1-xtb"},
        ["system.structures=configs/data/water32_300k_gfn1xtb.extxyz"],
        "set system.initial: rattle",
    ),
    "unknown probe path": (
        "selection",
        {},
        ["selection.probe_paths=[pinch, twist]"],
        "selection.probe_paths[1]: Input should be 'pinch', 'stretch' or 'bend'",
    ),
    "unknown campaign mode": ("campaign", {"mode": "asynchronous"}, [], "campaign.mode: Input should be"),
    "convergence with a quantile window": (
        "stop",
        {"converged_candidate_fraction": 0.05},
        [],
        "needs selection.window_mode: absolute",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("command", ["run", "validate"])
def test_bad_config_exits_2_with_one_line_naming_the_field(case, command, tmp_path, capsys):
    section, updates, sets, expected = BAD[case]
    path = _write(tmp_path, lambda raw: raw[section].update(updates))
    args = [command, str(path)] + [x for s in sets for x in ("--set", s)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert expected in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written


def test_missing_config_and_not_a_campaign_dir(tmp_path, capsys):
    assert main(["run", str(tmp_path / "absent.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main(["resume", str(tmp_path)]) == 2
    assert "not a catal campaign directory" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    assert main(["validate", str(tmp_path / "bad.yaml")]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_validate_prints_a_summary(capsys):
    assert main(["validate", str(DEMO)]) == 0
    assert "ok: demo" in capsys.readouterr().out
