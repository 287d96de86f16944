"""Base class of every config section: frozen, typo-proof pydantic v2 models.

Workers define their own sections (model, training, sampling, DFT); the orchestrator's
campaign config composes them, so each worker receives only its own validated section.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # extra="forbid": a typo is an error; allow_inf_nan=False: a NaN or inf setting is one too
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, d: dict):
        return cls.model_validate(d)
