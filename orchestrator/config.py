"""One typed campaign config, validated once at load (pydantic v2, frozen, extra="forbid").

Each worker section (model, training, sampling, selection, dft, budget) is defined next to
the code that uses it and receives only its own section. A bad config raises
``ConfigError`` with one line naming the field and the problem; nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from orchestrator.budget import BudgetLimits
from orchestrator.selection import SelectionConfig
from workers.dft import DFTConfig
from workers.errors import ConfigError
from workers.model.potential import ModelConfig
from workers.model.training import TrainConfig
from workers.sampling import MDConfig
from workers.schema import Section
from workers.structures import load_seed_structures, read_frames


class SystemConfig(Section):
    # an ase.build.molecule name (CH3CH2OH) or an ASE-readable file of seed structures
    structures: str = "CH3CH2OH"
    # total charge and 2S of the system; the DFT section inherits them
    charge: int = 0
    spin: int = Field(0, ge=0)
    # how round 0's initial set and the hold-out are drawn. normal_modes: relax each seed at
    # the campaign's DFT level, compute its Hessian once (PySCF, stored, charged to the DFT
    # hours) and displace along the normal modes with Boltzmann amplitudes (what MD at that
    # temperature visits); rattle: Gaussian displacements (rattle_a); file: initial_file
    initial: Literal["normal_modes", "rattle", "file"] = "normal_modes"
    # round 0 labels the seeds (their minima, for normal_modes) plus copies, up to this many
    initial_labels: int = Field(16, ge=1)
    # K, normal-mode temperature of the initial set; None = sampling.temperature_k
    initial_temperature_k: float | None = Field(None, gt=0.0, le=5000.0)
    # K, normal-mode temperature of the hold-out; None = sampling.temperature_k (where the
    # campaign's model will run)
    holdout_temperature_k: float | None = Field(None, gt=0.0, le=5000.0)
    # initial: file: ASE-readable frames for the initial set (the first initial_labels)
    initial_file: str | None = None
    # ASE-readable frames for the hold-out (the first budget.holdout_labels), any initial mode
    holdout_file: str | None = None
    # Gaussian displacement stdev range (Å) for initial: rattle
    rattle_a: tuple[float, float] = (0.02, 0.1)
    # initial: normal_modes: share of the normal-mode draws (initial set, hold-out, async
    # fillers) whose rotatable bonds (single, outside rings, between non-terminal atoms: OH,
    # CH3, ...) are also turned to random angles, so the first model has seen the other
    # conformers (normal modes at the minimum never leave its own; 0 = off)
    torsions: float = Field(0.5, ge=0.0, le=1.0)
    # seeds the initial and hold-out draws, apart from the campaign seed: campaigns that
    # differ only in seed or strategy start from the same labels and share one hold-out
    seed: int = 0

    @model_validator(mode="after")
    def _rattle(self):
        lo, hi = self.rattle_a
        if not 0.0 <= lo <= hi:
            raise ValueError(f"rattle_a must be 0 <= low <= high, got {self.rattle_a}")
        if self.initial == "file" and not self.initial_file:
            raise ValueError("initial: file needs system.initial_file")
        return self


class StopConfig(Section):
    # active-learning rounds after the initial labelling
    max_rounds: int = Field(5, ge=1)
    # stop once the hold-out force MAE (eV/Å) is at or below this
    target_force_mae: float | None = Field(None, gt=0.0)
    # DP-GEN's convergence signal: stop once at most this fraction of MD frames are candidates
    # (inside the trust window); needs an absolute window (quantile windows fix the fraction)
    converged_candidate_fraction: float | None = Field(None, ge=0.0, lt=1.0)


class ScheduleConfig(Section):
    # rounds: train -> MD -> select -> label, one phase at a time (reproducible; what the
    # benchmarks use). async: DFT workers pull from a priority queue that samplers keep
    # filling with the newest model, the trainer retrains as labels arrive, and each new model
    # (a "generation", an MLflow child run) re-scores the queue; stop.max_rounds counts
    # generations, budget.max_labels_per_round does not apply
    mode: Literal["rounds", "async"] = "rounds"
    # async: retrain (warm start) once this many new labels have arrived
    retrain_every: int = Field(12, ge=1)
    # async: model-ranked candidates kept queued (the best by the newest model); 0 = 4 per DFT worker
    queue_size: int = Field(0, ge=0)
    # async: MD started while a generation trains runs on that training's model as of its
    # last epoch (fresher than the last finished generation); false = the last generation
    md_on_running_model: bool = True
    # async: share of MD replicas that continue their own trajectory (the last frame of their
    # previous run, unless a stop rule ended it) with each new model, so exploration moves on
    # between generations (slow motions such as torsions); the rest start from the MD picks
    # the model trained on
    persistent_replicas: float = Field(0.5, ge=0.0, le=1.0)
    # async: before the first model exists, at most this many structures drawn like the
    # initial set keep DFT busy once the hold-out is labelled; each is a label no model
    # chose (None = system.initial_labels; 0: DFT waits for the first model)
    pre_model_fillers: int | None = Field(None, ge=0)
    # async: a warm generation ends early (after its current epoch) once retrain_every new
    # labels have arrived since it started and it has run this share of its epochs, so the
    # next generation starts on them: where training is slow against labelling, a model that
    # keeps up with the labels picks better than one trained longer on fewer (1 = never cut)
    min_epoch_share: float = Field(0.5, gt=0.0, le=1.0)


class StoreConfig(Section):
    # where labels are written as they arrive: None = <out_dir>/labels.db (SQLite); or an
    # ase.db URL such as postgresql://user:password@host:5432/db (rows tagged with the campaign
    # name, so campaigns can share a server; needs `pip install catal[postgres]`)
    url: str | None = None


class TrackingConfig(Section):
    # MLflow tracking URI; None = sqlite:///<out_dir>/mlflow.db with artifacts beside it
    uri: str | None = None
    # MLflow experiment; None = the campaign name
    experiment: str | None = None


class RayConfig(Section):
    # None = start a local Ray; "auto" = join the running cluster; or "ray://host:port".
    # On a cluster the counts below are upper bounds: each phase holds its actors only while
    # it runs, capped to what one node holds; the DFT pool is sized to the free CPUs
    address: str | None = None
    # DFT actors (each reserves dft.threads CPUs)
    dft_workers: int = Field(2, ge=1)
    # MD sampler actors; replicas are split among them
    samplers: int = Field(1, ge=1)
    # CPUs (= torch threads) reserved by the trainer and by each sampler
    trainer_cpus: int = Field(1, ge=1)
    sampler_cpus: int = Field(1, ge=1)
    # GPUs for trainer and samplers: "auto" uses one when the cluster has any
    gpus: Literal["auto", "never"] = "auto"
    # on a cluster, seconds a phase waits for its actors to be placed (free resources, or a
    # node an autoscaler adds) before the campaign fails; the wait is reported every 30 s
    placement_timeout_s: float = Field(900.0, gt=0.0)


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
        if self.selection.strategy == "committee" and self.model.head != "scalar":
            raise ValueError("selection.strategy: committee trains scalar-head members; set model.head: scalar")
        if self.campaign.mode == "async" and self.selection.strategy == "committee":
            raise ValueError(
                "campaign.mode: async trains one model per generation; selection.strategy: committee needs rounds"
            )
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
        from orchestrator.store import LabelStore

        if self.store.url is None:
            return LabelStore(self.output_dir / "labels.db")
        return LabelStore(self.store.url, campaign=self.name)

    def tracking_uri(self) -> str:
        return self.tracking.uri or f"sqlite:///{self.output_dir.resolve() / 'mlflow.db'}"


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


def format_validation_error(err: ValidationError) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"])
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
    """Every seed and file structure read, and built as a PySCF molecule with the campaign's
    basis, charge and spin (no SCF: milliseconds each): broken geometry, unknown element,
    basis missing for an element, electrons inconsistent with spin. One line per problem.
    Returns the seed structures."""
    from workers.dft import build_molecule

    sources = {"system.structures": cfg.system.structures}
    sources.update({f"system.{f}": getattr(cfg.system, f) for f in ("initial_file", "holdout_file")})
    dft, problems, seeds = cfg.dft_config(), [], []
    for field, spec in sources.items():
        if spec is None:
            continue
        try:
            frames = load_seed_structures(spec) if field == "system.structures" else read_frames(spec)
        except (FileNotFoundError, ValueError) as err:
            problems.append(f"{field}: {err}")
            continue
        if field == "system.structures":
            seeds = frames
        for k, atoms in enumerate(frames):
            try:
                build_molecule(atoms, dft)
            except ValueError as err:
                where = f"{spec} structure {k}" if len(frames) > 1 or Path(spec).suffix else spec
                problems.append(f"{field}: {where} ({atoms.get_chemical_formula()}): {err}")
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
