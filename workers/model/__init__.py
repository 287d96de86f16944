"""The categorical (HL-Gauss) interatomic potential: transform, backbone, training, calculator."""

from workers.model.calculator import CatalCalculator, predict
from workers.model.checkpoint import load_checkpoint, save_checkpoint
from workers.model.config import ModelConfig
from workers.model.potential import Potential
from workers.model.training import TrainConfig, evaluate, train

__all__ = [
    "CatalCalculator",
    "ModelConfig",
    "Potential",
    "TrainConfig",
    "evaluate",
    "load_checkpoint",
    "predict",
    "save_checkpoint",
    "train",
]
