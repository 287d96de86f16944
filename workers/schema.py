"""Base class of every config section: frozen, typo-proof pydantic v2 models.

Workers define their own sections (model, training, sampling, DFT); the orchestrator's
campaign config composes them, so each worker receives only its own validated section.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, d: dict):
        return cls.model_validate(d)
