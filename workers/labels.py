"""What a DFT label is: ``Status`` and ``LabelResult`` (eV, eV/Å), without importing PySCF.

The driver, the label store and light workers (the dispatch benchmark's no-op workers) read
and make labels; only ``workers.dft`` computes them, so only it imports PySCF.
"""

from __future__ import annotations

import enum
import socket
from dataclasses import dataclass, field
from importlib import metadata

import numpy as np
from ase.calculators.calculator import all_changes

from workers.errors import CalculationFailed, SCFError


class Status(str, enum.Enum):
    OK = "ok"
    FAILED = "failed"  # SCF never converged (DFT time was spent)
    REJECTED = "rejected"  # the labeller refused the structure (spin/charge, element, pbc)


def _pyscf_version() -> str:
    try:
        return metadata.version("pyscf")
    except metadata.PackageNotFoundError:
        return "-"


@dataclass
class LabelResult:
    status: Status
    reason: str = ""
    energy_ev: float | None = None
    forces_ev_a: np.ndarray | None = None  # [n_atoms, 3]
    stress_ev_a3: np.ndarray | None = None  # [6] ASE's Voigt order xx yy zz yz xz xy; periodic cells only
    energy_ha: float | None = None
    wall_s: float = 0.0
    scf_cycles: int = 0
    rung: str = ""  # which ladder rung converged ("plain" when no remedy was needed)
    threads: int = 1
    backend: str = "cpu"
    pyscf_version: str = field(default_factory=_pyscf_version)
    host: str = field(default_factory=socket.gethostname)  # the machine that computed it (provenance)
    extra: dict = field(default_factory=dict)
    code: str = "pyscf"  # which labeller computed it: pyscf, xtb (tblite) or ase:<module:Class>

    def calculator(self, atoms):
        """The label as ASE's ``SinglePointCalculator`` on ``atoms`` (None unless OK)."""
        if self.status is not Status.OK:
            return None
        from ase.calculators.singlepoint import SinglePointCalculator

        extra = {} if self.stress_ev_a3 is None else {"stress": self.stress_ev_a3}
        return SinglePointCalculator(atoms, energy=self.energy_ev, forces=self.forces_ev_a, **extra)

    @property
    def cost_s(self) -> float:
        """CPU-seconds charged to the budget: wall seconds x threads."""
        return self.wall_s * self.threads


class LabelCalculatorBase:
    """ASE calculator over a labeller's ``label(atoms, cfg) -> LabelResult`` (subclasses set
    ``_label``): unlike ``label``, which returns failures as data, a calculator has to raise:
    a failed calculation raises ``SCFError``, a refused structure ``CalculationFailed``.
    ``last_result`` keeps the full ``LabelResult`` (wall time, cycles, rung)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, cfg, **kwargs):
        super().__init__(**kwargs)
        self.cfg = cfg
        self.last_result: LabelResult | None = None

    def _label(self, atoms) -> LabelResult:
        raise NotImplementedError

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        super().calculate(atoms, properties, all_changes if system_changes is None else system_changes)
        r = self._label(self.atoms)
        self.last_result = r
        if r.status is Status.FAILED:
            raise SCFError(r.reason)
        if r.status is Status.REJECTED:
            raise CalculationFailed(r.reason)
        self.results = {"energy": r.energy_ev, "free_energy": r.energy_ev, "forces": r.forces_ev_a}
        if r.stress_ev_a3 is not None:
            self.results["stress"] = r.stress_ev_a3
