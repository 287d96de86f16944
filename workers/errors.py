"""catal's small error hierarchy (after ASE's CalculatorError -> CalculationFailed -> SCFError).

Expected failures (an SCF that will not converge, a structure PySCF rejects) are *data*:
``LabelResult.status`` with a reason. These exceptions are for the unexpected.
"""

from ase.calculators import calculator as ase_calc


def first_line(err: BaseException, limit: int = 160) -> str:
    """An exception's message in one line of at most ``limit`` characters (its type if empty)."""
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


class CatalError(Exception):
    """Base of every catal error."""


class ConfigError(CatalError, ValueError):
    """A configuration that cannot work (raised at load time, before anything is written)."""


class DamagedFile(ConfigError):
    """A file catal wrote that no longer reads back (truncated, overwritten, a failing disk;
    catal itself writes every file whole or not at all): which, why, and what to do."""

    def __init__(self, path, reason: str, fix: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path} is damaged ({reason}); {fix}")


class CampaignFailed(CatalError):
    """A campaign cannot go on (e.g. round 0 gave too few usable labels); its runs are FAILED."""


class OutOfSpace(CampaignFailed):
    """A write that failed for want of disk space (a full disk or a quota): ``path`` and the
    bytes it needed (None when unknown, e.g. inside SQLite)."""

    def __init__(self, path, need_bytes: int | None = None):
        self.path, self.need_bytes = path, need_bytes
        need = f"; it needed {need_bytes / 1e6:.2f} MB" if need_bytes is not None else ""
        super().__init__(f"no space left on the disk writing {path}{need}")


class ClusterTooSmall(CampaignFailed):
    """A resource the campaign needs that the cluster cannot give (no node holds it, or it
    was not placed within ``ray.placement_timeout_s``)."""


class CalculatorError(CatalError, ase_calc.CalculatorError):
    """A calculator could not be set up or used (also an ASE ``CalculatorError``)."""


class CalculationFailed(CalculatorError, ase_calc.CalculationFailed):
    """A calculation ran and failed (also an ASE ``CalculationFailed``)."""


class SCFError(CalculationFailed):
    """The SCF did not converge (``label`` reports this as ``Status.FAILED`` instead)."""
