"""TopK sparse autoencoders on UNet activations: model, config, folders, training, metrics.

Names are imported on first use (explorer/lazy.py), so the `explorer` command's parser does not
import torch.
"""

from explorer.lazy import lazy_exports

_MODULES = {
    "config": ["SAEConfig"],
    "io": ["SAELoadError", "load_sae", "save_sae"],
    "metrics": ["SAEMetrics", "evaluate_sae"],
    "model": ["Codes", "EncoderOutput", "ForwardOutput", "TopKSAE", "geometric_median"],
    "train": ["TrainerConfig", "TrainResult", "train_sae"],
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _MODULES)
