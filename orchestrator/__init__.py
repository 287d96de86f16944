"""catal orchestrator: the driver side of an active-learning campaign."""

__version__ = "0.1.0"
