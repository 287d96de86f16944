"""catal's small error hierarchy (after ASE's CalculatorError -> CalculationFailed -> SCFError).

Expected failures (an SCF that will not converge, a structure PySCF rejects) are *data*:
``LabelResult.status`` with a reason. These exceptions are for the unexpected.
"""


class CatalError(Exception):
    """Base of every catal error."""


class ConfigError(CatalError, ValueError):
    """A configuration that cannot work (raised at load time, before anything is written)."""


class CalculatorError(CatalError, RuntimeError):
    """A calculator could not be set up or used."""


class CalculationFailed(CalculatorError):
    """A calculation ran and failed."""


class SCFError(CalculationFailed):
    """The SCF did not converge (``label`` reports this as ``Status.FAILED`` instead)."""
