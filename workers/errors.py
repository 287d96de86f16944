"""catal's small error hierarchy (after ASE's CalculatorError -> CalculationFailed -> SCFError).

Expected failures (an SCF that will not converge, a structure PySCF rejects) are *data*:
``LabelResult.status`` with a reason. These exceptions are for the unexpected.
"""

from ase.calculators import calculator as ase_calc


class CatalError(Exception):
    """Base of every catal error."""


class ConfigError(CatalError, ValueError):
    """A configuration that cannot work (raised at load time, before anything is written)."""


class CampaignFailed(CatalError):
    """A campaign cannot go on (e.g. round 0 gave too few usable labels); its runs are FAILED."""


class ClusterTooSmall(CampaignFailed):
    """A resource the campaign needs that the cluster cannot give (no node holds it, or it
    was not placed within ``ray.placement_timeout_s``)."""


class CalculatorError(CatalError, ase_calc.CalculatorError):
    """A calculator could not be set up or used (also an ASE ``CalculatorError``)."""


class CalculationFailed(CalculatorError, ase_calc.CalculationFailed):
    """A calculation ran and failed (also an ASE ``CalculationFailed``)."""


class SCFError(CalculationFailed):
    """The SCF did not converge (``label`` reports this as ``Status.FAILED`` instead)."""
