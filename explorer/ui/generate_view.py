"""Generate an image from a prompt in the background, with a preview at every step."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from explorer.ui.image_view import ImageCanvas
from explorer.ui.jobs import ModelHolder, generate_job
from explorer.ui.requests import RequestView
from explorer.ui.service import GenerationService

DEFAULT_PROMPT = "a large red circle at the top left and a small blue square at the right on a striped background"


class GenerateView(RequestView):
    """Prompt, seed, steps, guidance → an image, previewed at every denoising step."""

    def __init__(self, models: ModelHolder, service: GenerationService, parent=None):
        super().__init__(models, service, parent)
        self.last_image: np.ndarray | None = None

        self.prompt = QLineEdit(DEFAULT_PROMPT)
        self.prompt.setToolTip("The text prompt. The bundled model knows the shapes world's words.")
        self.seed = QSpinBox(maximum=2**31 - 1)
        self.seed.setToolTip("Same seed and settings ⇒ the same image")
        self.steps = QSpinBox(minimum=1, maximum=200, value=25)
        self.guidance = QDoubleSpinBox(minimum=0.0, maximum=30.0, value=4.0, singleStep=0.5)
        self.guidance.setToolTip("Classifier-free guidance scale")
        self.go = QPushButton("Generate")
        self.go.setDefault(True)
        self.progress.setTextVisible(True)
        self.canvas = ImageCanvas()
        self.caption = QLabel("")
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)

        form = QFormLayout()
        form.addRow("Prompt", self.prompt)
        row = QHBoxLayout()
        for label, w in (("Seed", self.seed), ("Steps", self.steps), ("Guidance", self.guidance)):
            row.addWidget(QLabel(label))
            row.addWidget(w)
        row.addStretch(1)
        row.addWidget(self.go)
        row.addWidget(self.cancel)
        form.addRow(row)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.caption)
        layout.addWidget(self.progress)

        self.go.clicked.connect(self.start)
        self.prompt.returnPressed.connect(self.start)

    def apply_defaults(self, steps: int, guidance: float) -> None:
        self.steps.setValue(int(steps))
        self.guidance.setValue(float(guidance))

    def start(self) -> int:
        self._submit(
            generate_job,
            self.models,
            self.prompt.text(),
            self.seed.value(),
            self.steps.value(),
            self.guidance.value(),
            n_steps=self.steps.value(),
        )
        self.status.emit("generating…")
        return self.request

    def _on_request_progress(self, update) -> None:
        if update.get("stage") == "loading":
            self.progress.setFormat("loading model…")
            return
        self.progress.setFormat(f"step {update['step'] + 1}/{update['n_steps']}")
        self.progress.setValue(update["step"] + 1)
        self.canvas.set_image(update["preview"])
        self.caption.setText(f"predicted x₀ at step {update['step'] + 1} (t = {update['t']:.2f})")

    def _on_request_done(self, image) -> None:
        self.last_image = image
        self.canvas.set_image(image)
        self.caption.setText(f"seed {self.seed.value()}, {self.steps.value()} steps")
        self._finish("done")
