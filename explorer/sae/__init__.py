"""TopK sparse autoencoders on UNet activations: model, config, folders, training, metrics.

Names are imported on first use (explorer/lazy.py), so the `explorer` command's parser does not
import torch.
"""

from explorer.lazy import lazy_exports

_EXPORTS = {
    "SAEConfig": "config",
    "SAELoadError": "io",
    "load_sae": "io",
    "save_sae": "io",
    "SAEMetrics": "metrics",
    "evaluate_sae": "metrics",
    "Codes": "model",
    "EncoderOutput": "model",
    "ForwardOutput": "model",
    "TopKSAE": "model",
    "geometric_median": "model",
    "TrainerConfig": "train",
    "TrainResult": "train",
    "train_sae": "train",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
