"""TopK sparse autoencoders on UNet activations: model, config, folders, training, metrics."""

from explorer.sae.config import SAEConfig
from explorer.sae.io import SAELoadError, load_sae, save_sae
from explorer.sae.metrics import SAEMetrics, evaluate_sae
from explorer.sae.model import (
    Codes,
    EncoderOutput,
    ForwardOutput,
    TopKSAE,
    geometric_median,
)
from explorer.sae.train import TrainerConfig, TrainResult, train_sae

__all__ = [
    "Codes",
    "EncoderOutput",
    "ForwardOutput",
    "SAEConfig",
    "SAELoadError",
    "SAEMetrics",
    "TopKSAE",
    "TrainResult",
    "TrainerConfig",
    "evaluate_sae",
    "geometric_median",
    "load_sae",
    "save_sae",
    "train_sae",
]
