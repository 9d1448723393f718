"""Background jobs the UI runs through `Worker`: thin adapters over the science packages."""

from __future__ import annotations

import threading
from pathlib import Path

from explorer.engine import Model, generate, load_model


class ModelHolder:
    """Loads a model once, on first use, in whichever worker needs it first."""

    def __init__(self, path: str | Path = "bundled", device: str | None = None):
        self.path = path
        self.device = device
        self._model: Model | None = None
        self._lock = threading.Lock()

    def get(self) -> Model:
        with self._lock:
            if self._model is None:
                self._model = load_model(self.path, device=self.device)
            return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None


def generate_job(models: ModelHolder, prompt: str, seed: int, steps: int, guidance: float,
                 *, cancel, progress):
    """One image, with a decoded preview of the predicted clean image after every step."""
    if not models.loaded:
        progress({"stage": "loading"})
    model = models.get()

    def on_step(info):
        progress(
            {"stage": "step", "step": info.step, "n_steps": info.n_steps, "t": info.t,
             "preview": info.preview(model)[0]}
        )

    res = generate(model, [prompt], [seed], steps, guidance, on_step=on_step, cancel=cancel)
    return res.images[0]
