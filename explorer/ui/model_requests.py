"""The Sample view's requests to the model thread: a VAE decode that refines a linear preview
(stores collected without --previews) and a regeneration that records a block's cross-attention
maps for the word overlay.

The GenerationService's signals reach every connected object with a request id, and a newer
request (of any view) replaces the running one; each kind here keeps the id it last submitted and
drops everything else.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject

from explorer.session import Session
from explorer.ui.jobs import attention_job, decode_job
from explorer.ui.sample_view import SampleView
from explorer.ui.service import GenerationService


class ModelRequests(QObject):
    """Follows the sample view's `decode_wanted` and `attention_wanted` through the service and
    hands the results back to the view; `show_message(text, timeout_ms)` is the window's status
    bar. A QObject in the UI thread, so the service's signals (emitted in the model thread)
    arrive here queued."""

    def __init__(self, service: GenerationService, session: Session, sample_view: SampleView,
                 show_message: Callable[[str, int], None], parent: QObject | None = None):
        super().__init__(parent)
        self.service = service
        self.session = session
        self.sample_view = sample_view
        self._show = show_message
        self.attention_request: tuple[int, int, str] | None = None  # (request id, sample, block)
        self.decode_request: tuple[int, object] | None = None  # (request id, source)
        sample_view.attention_wanted.connect(self.want_attention)
        service.progressed.connect(self.attention_progressed)
        service.returned.connect(self._attention_returned)
        service.errored.connect(self._attention_errored)
        service.cancelled.connect(self._attention_cancelled)
        sample_view.decode_wanted.connect(self.want_decode)
        service.returned.connect(self._decode_returned)
        service.errored.connect(self._decode_errored)
        service.idle.connect(sample_view.refine_current)

    # --- VAE refinement of the sample view's linear preview -----------------------------------
    def want_decode(self, sample: int, step: int) -> None:
        # Only while the model thread is idle: a decode must never cancel a steering, generation
        # or attention run (the service cancels the running request for a new one).
        source = self.session.source
        if source is None or self.service.busy:
            return
        latents = source.store.pred_x0(sample, step)
        rid = self.service.submit(decode_job, self.session.models, source.store, sample, step,
                                  latents, kind="decode")
        self.decode_request = (rid, source)

    def _decode_returned(self, rid: int, value) -> None:
        if self.decode_request is not None and rid == self.decode_request[0]:
            source, self.decode_request = self.decode_request[1], None
            if source is self.session.source:  # not a decode of the workspace shown before
                self.sample_view.set_decoded(value["sample"], value["step"], value["image"])

    def _decode_errored(self, rid: int, message: str) -> None:
        if self.decode_request is not None and rid == self.decode_request[0]:
            source, self.decode_request = self.decode_request[1], None
            if source is self.session.source:
                self.sample_view.decode_failed(message)

    # --- cross-attention maps for the sample view's word overlay -----------------------------
    def want_attention(self, sample: int, block: str) -> None:
        source = self.session.source
        if source is None:
            return
        rid = self.service.submit(attention_job, self.session.models, source.store, block=block,
                                  kind="attention", **source.generation(sample))
        self.attention_request = (rid, sample, block)
        self._show(f"regenerating sample {sample} to record {block}'s cross-attention…", 0)

    def attention_progressed(self, rid: int, update) -> None:
        # On a real model on a CPU the regeneration takes a while: say how far it is.
        if self.attention_request is not None and rid == self.attention_request[0]:
            _, sample, block = self.attention_request
            if update.get("stage") == "loading":
                self._show("loading the model for the cross-attention maps…", 0)
            elif update.get("stage") == "step":
                self._show(f"regenerating sample {sample} to record {block}'s cross-attention: "
                           f"step {update['step'] + 1}/{update['n_steps']}", 0)

    def _attention_returned(self, rid: int, value) -> None:
        if self.attention_request is not None and rid == self.attention_request[0]:
            _, sample, block = self.attention_request
            self.attention_request = None
            self.sample_view.set_attention(sample, block, value)
            self._show(f"cross-attention maps of sample {sample} ready", 5_000)

    def _attention_errored(self, rid: int, message: str) -> None:
        if self.attention_request is not None and rid == self.attention_request[0]:
            self.attention_request = None
            self.sample_view.attention_failed(message)
            self._show(message, 10_000)

    def _attention_cancelled(self, rid: int) -> None:
        if self.attention_request is not None and rid == self.attention_request[0]:
            self.attention_request = None
            self.sample_view.attention_failed("another generation replaced the request")
