"""What the views read: one object over a workspace's store and one SAE's feature index.

Thin on purpose: every number comes from `explorer.store` or `explorer.analysis`; this class only
picks the calls and keeps the open files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from explorer.workspace import SAEEntry, Workspace


class WorkspaceSource:
    """A workspace's store plus (optionally) one SAE's index, opened lazily and read per chunk."""

    def __init__(self, workspace: Workspace, entry: SAEEntry | None = None):
        self.workspace = workspace
        self.entry = entry
        self.store = workspace.store()
        self.index = None
        self.index_error: str | None = None
        # The current block's linear probe: (block, file mtime) → ProbeWeights or None.
        self._probe: tuple[tuple[str, int], object] | None = None
        self.probe_error: str | None = None
        # The store's linear latent → RGB map (explorer.store.preview), fitted on first use.
        self._linear_preview = None
        self.preview_error: str | None = None
        if entry is not None:
            self.set_sae(entry)
        self._prompts = self.store.prompts

    def set_sae(self, entry: SAEEntry | None) -> None:
        from explorer.analysis.reader import FeatureIndex
        from explorer.errors import UserError

        self.entry = entry
        self.index = None
        self.index_error = None
        if entry is None:
            return
        if not Path(entry.index_path).exists():
            self.index_error = f"{entry.id} has no index yet (run `explorer index`)"
            return
        try:
            self.index = FeatureIndex.open(entry.index_path)
        except UserError as e:
            self.index_error = str(e)

    def close(self) -> None:
        for obj in (self.index, self.store):
            close = getattr(obj, "close", None)
            if close is not None:
                close()

    # --- store ------------------------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        return self.store.n_samples

    @property
    def n_steps(self) -> int:
        return self.store.n_steps

    @property
    def t(self) -> list[float]:
        return self.store.t

    @property
    def has_previews(self) -> bool:
        return bool(self.store.has_previews)

    def prompt(self, i: int) -> str:
        return self._prompts[i] if 0 <= i < len(self._prompts) else ""

    def image(self, i: int) -> np.ndarray:
        return self.store.image(i)

    def generation(self, i: int) -> dict:
        """What regenerates sample i exactly: prompt, seed, sampling steps, guidance, and the
        positions of the stored steps in the schedule."""
        return {"prompt": self.prompt(i), "seed": int(self.store.seeds[i]),
                **self.store.regeneration()}

    @property
    def block(self) -> str:
        """The block whose maps the views show: the SAE's, else the store's first."""
        return self.entry.block if self.entry is not None else self.store.blocks[0]

    @property
    def preview_kind(self) -> str:
        """What `preview` returns: "stored" (VAE-decoded at collection) or "linear" (the
        store's pred_x0 through a fitted latent → RGB map)."""
        return "stored" if self.has_previews else "linear"

    def preview(self, i: int, step: int) -> np.ndarray | None:
        """Sample i's predicted x₀ at `step` as pixels: the stored VAE decode when the store has
        previews, else the linear preview of the stored latents (None if it cannot be fitted)."""
        if self.has_previews:
            return self.store.preview(i, step)
        decoder = self.linear_preview()
        return None if decoder is None else decoder.decode(self.store.pred_x0(i, step))

    def linear_preview(self):
        """The store's fitted latent → RGB map, cached in the workspace (refitted for another
        store); None with `preview_error` saying why when it cannot be fitted."""
        from explorer.errors import UserError
        from explorer.store.preview import PREVIEW_FILE, preview_for

        if self._linear_preview is None and self.preview_error is None:
            try:
                self._linear_preview = preview_for(self.store, self.workspace.root / PREVIEW_FILE)
            except UserError as e:
                self.preview_error = str(e)
        return self._linear_preview

    # --- index ------------------------------------------------------------------------------
    @property
    def has_index(self) -> bool:
        return self.index is not None

    def feature_map(self, i: int, step: int, feature: int) -> np.ndarray:
        return self.index.feature_map(i, step, feature)

    def concept_map(self, i: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.concept_map(i, step)

    def active_at(self, i: int, step: int, y: int, x: int) -> list[tuple[int, float]]:
        """Features active at one position, strongest first."""
        idx, val = self.index.codes(i, step)
        pairs = [(int(f), float(v)) for f, v in zip(idx[y, x], val[y, x]) if v > 0]
        return sorted(pairs, key=lambda p: -p[1])

    # --- linear probe (saved by `explorer evaluate`) -----------------------------------------
    def probe(self):
        """The current block's fitted linear probe, or None with `probe_error` saying why.

        Read again when the file changes (the app's Evaluate refits it)."""
        from explorer.analysis.linear_probe import ProbeWeights
        from explorer.errors import UserError

        block = self.block
        path = self.workspace.probe_path(block)
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            stamp = -1
        if self._probe is not None and self._probe[0] == (block, stamp):
            return self._probe[1]
        probe = None
        self.probe_error = None
        try:
            probe = ProbeWeights.load(path, block=block, fingerprint=self.store.fingerprint,
                                      n_steps=self.n_steps)
        except UserError as e:
            self.probe_error = str(e)
        self._probe = ((block, stamp), probe)
        return probe

    def probe_scores(self, i: int, step: int) -> np.ndarray:
        """(h, w, V) word scores of sample i's Δ at `step`, through the block's probe."""
        probe = self.probe()
        return probe.scores(self.store.activation(self.block, probe.branch, i, step), step)
