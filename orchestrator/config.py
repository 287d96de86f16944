"""One typed campaign config, validated once at load (pydantic v2, frozen, extra="forbid").

Each worker section (model, training, sampling, selection, dft, budget) is defined next to
the code that uses it and receives only its own section. A bad config raises
``ConfigError`` with one line naming the field and the problem; nothing is written.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field, ValidationError, model_validator

from orchestrator.records.budget import BudgetLimits
from orchestrator.sections import RayConfig, ScheduleConfig, StopConfig, StoreConfig, SystemConfig, TrackingConfig
from orchestrator.selection import SelectionConfig
from workers.dft import DFTConfig
from workers.errors import ConfigError, DamagedFile
from workers.model.potential import ModelConfig
from workers.model.training import TrainConfig
from workers.sampling import MDConfig
from workers.schema import Section
from workers.structures import read_frames


class CampaignConfig(Section):
    # campaign name: MLflow parent run and default experiment
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    # everything the campaign writes: labels.db, checkpoints/, model.pt, mlflow.db
    out_dir: str = "runs/{name}"
    # seeds every random choice (rattles, MD, selection, and training's initialisation,
    # shuffling and validation split, added to training.seed)
    seed: int = 0
    system: SystemConfig = SystemConfig()
    model: ModelConfig = ModelConfig()
    training: TrainConfig = TrainConfig()
    # epochs when warm-starting from the previous round (None = training.epochs)
    warm_start_epochs: int | None = Field(None, ge=1)
    # ps of Langevin MD at the sampling temperature with the final model, logged with its
    # harmonic frequencies against the DFT Hessian (normal_modes only; 0 = skip the MD)
    final_check_md_ps: float = Field(2.0, ge=0.0, le=1000.0)
    sampling: MDConfig = MDConfig()
    selection: SelectionConfig = SelectionConfig()
    dft: DFTConfig = DFTConfig()
    budget: BudgetLimits = BudgetLimits()
    stop: StopConfig = StopConfig()
    campaign: ScheduleConfig = ScheduleConfig()
    store: StoreConfig = StoreConfig()
    tracking: TrackingConfig = TrackingConfig()
    ray: RayConfig = RayConfig()

    @model_validator(mode="after")
    def _consistent(self):
        for field in ("charge", "spin"):
            if field in self.dft.model_fields_set and getattr(self.dft, field) != getattr(self.system, field):
                raise ValueError(f"set {field} under system, not dft (dft.{field} is inherited)")
        if self.stop.converged_candidate_fraction is not None and self.selection.window_mode != "absolute":
            raise ValueError(
                "stop.converged_candidate_fraction needs selection.window_mode: absolute "
                "(a quantile window fixes the candidate fraction)"
            )
        strategy = self.selection.strategy
        if strategy in ("entropy", "mutual_information", "excess_entropy") and self.model.head != "categorical":
            raise ValueError(f"selection.strategy: {strategy} needs model.head: categorical")
        m = self.model
        if strategy == "mutual_information" and m.heads < 2:
            raise ValueError("selection.strategy: mutual_information needs model.heads >= 2 (the heads' disagreement)")
        if strategy in ("forces_std", "energy_std") and not m.has_posterior and m.heads < 2:
            raise ValueError(
                f"selection.strategy: {strategy} needs the last-layer posterior (model.llpr_samples > 0, "
                "readout atomwise) or model.heads >= 2"
            )
        if not m.has_latent and (strategy == "latent_distance" or self.sampling.bias_ev > 0):
            what = "selection.strategy: latent_distance" if strategy == "latent_distance" else "sampling.bias_ev"
            raise ValueError(f"{what} needs model.latent_neighbours > 0, readout atomwise")
        if strategy == "committee" and m.head != "scalar":
            raise ValueError("selection.strategy: committee trains scalar-head members; set model.head: scalar")
        if self.campaign.mode == "async" and strategy == "committee":
            raise ValueError("campaign.mode: async retrains per generation; selection.strategy: committee needs rounds")
        n_systems = len(self.system.entries())
        for what, n in (("budget.holdout_labels", self.budget.holdout_labels),
                        ("sampling.replicas", self.sampling.replicas)):  # fmt: skip
            if n_systems > 1 and n < n_systems:
                raise ValueError(f"{what} ({n}) must be at least one per system ({n_systems})")
        need = self.system.initial_labels + self.budget.holdout_labels
        if need >= self.budget.max_labels:
            raise ValueError(
                f"budget.max_labels ({self.budget.max_labels}) leaves nothing for active learning after "
                f"system.initial_labels + budget.holdout_labels ({need})"
            )
        return self

    @property
    def output_dir(self) -> Path:
        return Path(self.out_dir.format(name=self.name)).expanduser()

    def dft_config(self) -> DFTConfig:
        """The DFT section with the system's charge and spin."""
        return self.dft.model_copy(update={"charge": self.system.charge, "spin": self.system.spin})

    def label_store(self):
        """The campaign's ``LabelStore`` (its SQLite file, or its rows on a shared server)."""
        from orchestrator.records.rundir import RunDir
        from orchestrator.records.store import LabelStore

        if self.store.url is None:
            return LabelStore(RunDir(self.output_dir).label_db)
        run = RunDir(self.output_dir)
        return LabelStore(self.store.url, campaign=self.name, spool=run.label_spool, reconnect_s=self.store.reconnect_s)

    def tracking_uri(self) -> str:
        from orchestrator.records.rundir import RunDir

        return self.tracking.uri or f"sqlite:///{RunDir(self.output_dir.resolve()).mlflow_db}"


def _set_dotted(d: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        nxt = d.setdefault(k, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {dotted}: {k} is not a section")
        d = nxt
    d[keys[-1]] = value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """``["budget.max_labels=40", ...]``: values are parsed as YAML scalars (40 -> int)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({str(err).splitlines()[0]})") from None
        _set_dotted(raw, key.strip(), parsed)
    return raw


UNION_TAGS = {"str", "int", "float", "bool", "dict", "list", "none"}  # pydantic's names for a union's branches


def _loc(parts: tuple) -> str:
    """``("system", "structures", "list[...]", 0, "SystemEntry", "smiles")`` as
    ``system.structures[0].smiles``: the union branches pydantic names are left out."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif not (p in UNION_TAGS or "[" in p or p[:1].isupper()):
            out += f".{p}" if out else p
    return out


def format_validation_error(err: ValidationError) -> str:
    # a union that matched no branch: the branch that got deepest, and past the input's type,
    # is the one the user meant
    e = max(err.errors(), key=lambda x: (len(x["loc"]), not x["type"].endswith("_type")))
    loc = _loc(e["loc"])
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        msg = "unknown field (typo?)"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{loc}: {msg}{more}" if loc else f"{msg}{more}"


def parse_config(raw: dict) -> CampaignConfig:
    try:
        cfg = CampaignConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None
    seeds = check_structures(cfg)
    check_backbone(cfg, seeds)
    return cfg


def check_structures(cfg: CampaignConfig) -> list:
    """The labeller can be made here, and every seed and file structure is read and checked
    by it with its system's charge and spin (PySCF builds the molecule with the campaign's
    basis: no SCF, milliseconds each): broken geometry, unknown element, basis missing for an
    element, electrons inconsistent with spin, a periodic cell a molecular code cannot take.
    One line per problem. Returns the seed structures (tagged with their systems)."""
    from orchestrator.systems import entry_structures, make_systems, tag
    from workers.labeller import check_labeller, structure_problem
    from workers.model.graph import is_periodic

    dft, problems, per_entry = cfg.dft_config(), [], []
    if missing := check_labeller(dft):
        raise ConfigError(missing)
    entries = cfg.system.entries()
    fields = ["system.structures"] if len(entries) == 1 else [f"system.structures[{k}]" for k in range(len(entries))]
    for field, entry in zip(fields, entries, strict=True):
        try:
            per_entry.append(entry_structures(entry, cfg.system.seed))
        except (FileNotFoundError, ValueError) as err:
            problems.append(f"{field}: {err}")
            per_entry.append([])
    systems, seeds = make_systems(entries, per_entry)
    checks = [(f, e.structures or e.smiles, seeds[s.first : s.first + s.n_seeds])
              for f, e, s in zip(fields, entries, systems, strict=True)]  # fmt: skip
    for field in ("initial_file", "holdout_file"):
        spec = getattr(cfg.system, field)
        if spec is None:
            continue
        try:  # a file's frames belong to the campaign's one system
            checks.append((f"system.{field}", spec, [tag(a, systems[0]) for a in read_frames(spec)]))
        except (FileNotFoundError, ValueError) as err:
            problems.append(f"system.{field}: {err}")
    for field, spec, frames in checks:
        for k, atoms in enumerate(frames):
            problem = structure_problem(atoms, dft)
            if not problem and is_periodic(atoms) and cfg.system.initial == "normal_modes":
                problem = "a periodic cell has no normal modes here: set system.initial: rattle (or file)"
            if problem:
                at = f"{spec} structure {k}" if len(frames) > 1 or Path(spec).suffix else spec
                problems.append(f"{field}: {at} ({atoms.get_chemical_formula()}): {problem}")
    if problems:
        shown = problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else [])
        raise ConfigError("\n".join(shown))
    return seeds


def check_backbone(cfg: CampaignConfig, seeds: list) -> None:
    """mace needs mace-torch; a pretrained backbone must be a readable catal backbone file
    whose elements cover the seed structures'."""
    bb = cfg.model.backbone
    if bb.kind != "mace":
        return
    from workers.model import mace_backbone

    if not mace_backbone.mace_available():
        raise ConfigError("model.backbone.kind: mace needs mace-torch: pip install 'catal[mace]'")
    if bb.pretrained is None:
        return
    try:
        payload = mace_backbone.read_pretrained(bb.pretrained)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"model.backbone.pretrained: {err}") from None
    known = set(payload["arch"]["atomic_numbers"])
    missing = sorted({int(z) for a in seeds for z in a.numbers} - known)
    if missing:
        raise ConfigError(f"model.backbone.pretrained: {bb.pretrained} has no embedding for Z={missing}")


def load_config(path: str | Path, overrides: list[str] | None = None) -> CampaignConfig:
    """Read a campaign YAML (``yaml.safe_load``), apply ``--set`` overrides, validate."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (UTF-8) file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return parse_config(apply_overrides(raw, overrides or []))


# a campaign directory's config.yaml begins and ends with these lines: a file with the first
# and not the last was cut short (edits in between are the user's own and stay allowed)
CONFIG_HEAD = "# catal: this campaign's config as run, every field resolved (catal resume reads it)"
CONFIG_END = "# catal: end of config"


def campaign_config_text(cfg: CampaignConfig) -> str:
    """``cfg`` as a campaign directory's ``config.yaml``."""
    return f"{CONFIG_HEAD}\n{yaml.safe_dump(cfg.to_dict(), sort_keys=False)}{CONFIG_END}\n"


def load_campaign_config(path: Path, out_dir: Path) -> CampaignConfig:
    """A campaign directory's own ``config.yaml``, at ``out_dir``: one cut short or that does
    not parse is a ``DamagedFile``; a field that does not validate is a ``ConfigError``."""
    fix = "restore it from a copy (the MLflow campaign run keeps it as an artifact, its fields as params)"
    try:
        text = path.read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise DamagedFile(path, (str(err).splitlines() or ["unreadable"])[0][:160], fix) from None
    if text.startswith(CONFIG_HEAD) and CONFIG_END not in text.splitlines()[-3:]:
        raise DamagedFile(path, f"it does not end with {CONFIG_END!r}: cut short", fix)
    if not isinstance(raw, dict):
        raise DamagedFile(path, "not a mapping of sections", fix)
    return parse_config(apply_overrides(raw, [f"out_dir={out_dir.resolve()}"]))


def flatten(d: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}} -> {"a.b": 1}``: the resolved config as MLflow params."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
