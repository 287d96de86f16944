"""The campaign config's driver-side sections: the system, stop rules, the schedule (rounds or
asynchronous), the label store, MLflow tracking and Ray (``orchestrator.config`` composes them
with the workers' sections)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from workers.schema import Section


class SystemEntry(Section):
    """One system of a campaign that trains one potential for several (``system.structures``
    as a list): its seeds, charge and spin, and its share of the labels, replicas and picks."""

    # what metrics, plots and the store call it (holdout_force_mae/<name>); None = its
    # structures or smiles
    name: str | None = None
    # an ase.build.molecule name or an ASE-readable file of seed structures ...
    structures: str | None = None
    # ... or a SMILES string: conformers by RDKit's ETKDG (hydrogens added), MMFF-relaxed;
    # initial: normal_modes relaxes them again at the campaign's DFT level
    smiles: str | None = None
    # SMILES: conformers embedded (the distinct ones, at most this many, become seeds)
    conformers: int = Field(1, ge=1, le=32)
    # total charge and 2S; None = system.charge / system.spin
    charge: int | None = None
    spin: int | None = Field(None, ge=0)
    # its share, against the other entries' weights, of the initial labels, the hold-out,
    # the MD replicas and (half of) each round's picks
    weight: float = Field(1.0, gt=0.0)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.structures is None) == (self.smiles is None):
            raise ValueError("a system entry needs one of structures (a name or file) or smiles")
        return self

    @property
    def label(self) -> str:
        return self.name or self.structures or self.smiles


class SystemConfig(Section):
    # an ase.build.molecule name (CH3CH2OH) or an ASE-readable file of seed structures; or
    # {smiles: CC(=O)N}; or a list of such entries (names, or mappings with name, structures
    # or smiles, conformers, charge, spin, weight): one potential for all of them
    structures: str | SystemEntry | list[str | SystemEntry] = "CH3CH2OH"
    # total charge and 2S of the system (of every entry that gives none); the DFT section
    # inherits them
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
        entries = self.entries()
        names = [e.label for e in entries]
        if len(set(names)) < len(names):
            raise ValueError(f"system entries need distinct names, got {names}")
        if len(entries) > 1 and (self.initial == "file" or self.holdout_file):
            raise ValueError("several systems draw their own initial sets and hold-outs: initial: file and "
                             "holdout_file take one system")  # fmt: skip
        if len(entries) > self.initial_labels:
            raise ValueError(f"initial_labels ({self.initial_labels}) must be at least one per system ({len(entries)})")
        return self

    def entries(self) -> list[SystemEntry]:
        """Every system, as entries with their charge and spin resolved."""
        raw = self.structures if isinstance(self.structures, list) else [self.structures]
        out = []
        for e in raw:
            e = SystemEntry(structures=e) if isinstance(e, str) else e
            out.append(e.model_copy(update={"charge": self.charge if e.charge is None else e.charge,
                                            "spin": self.spin if e.spin is None else e.spin}))  # fmt: skip
        return out


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
    # either mode: the final model (model.pt, on every label) trained from scratch for this
    # many epochs instead of warm-started from the last round's (None): labels picked far off
    # the data can leave warm-started rounds worse than one training on the same labels (600
    # with selection.probes_per_round 2: the default's error with probes' stability, one pool)
    final_scratch_epochs: int | None = Field(None, ge=1)
    # with final_scratch_epochs: trainings from scratch tried (each on the next training seed)
    # until one has, at each seed's DFT minimum, no imaginary mode DFT lacks and frequencies at
    # most 2x as far off as the last round's model's; when none does, the final model is
    # warm-started as without the option
    final_scratch_tries: int = Field(3, ge=1)
    # with final_scratch_epochs: runs of final_check_md_ps Langevin MD at the hottest sampling
    # temperature from each seed's DFT minimum that a training from scratch must also keep every
    # bond in (seeds no stability check uses); a minimum's frequencies miss holes MD falls in. A
    # filter, not a proof: on the skewed pool it rejected 2 of 5 trainings, and the kept ones
    # still broke bonds in 4 of 12 later runs at 600 K (docs/results.md, change N); 0: no MD check
    final_scratch_md_runs: int = Field(2, ge=0)


class StoreConfig(Section):
    # where labels are written as they arrive: None = <out_dir>/labels.db (SQLite); or an
    # ase.db URL such as postgresql://user:password@host:5432/db (rows tagged with the campaign
    # name, so campaigns can share a server; needs `pip install catal[postgres]`)
    url: str | None = None
    # a database server that stops answering (restart, network blip) is reconnected to for
    # this long; labels computed meanwhile wait in memory, then in <out_dir>/labels_spool.db,
    # and are written when it answers (by `catal resume` if it stays away): never recomputed
    reconnect_s: float = Field(120.0, ge=0)


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
