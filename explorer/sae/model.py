"""The k-sparse autoencoder of the paper (Gao et al.'s TopK SAE).

    z = TopK(ReLU(W_encᵀ(s·x − b_pre) + b_enc)),   x̂ = (W_decᵀ z + b_pre) / s

with s = cfg.input_scale (1 unless the SAE was trained on mean-norm-normalised activations:
the factor lives in the SAE so callers always pass raw activations and get raw ones back).
Weights follow SAELens's names and shapes: W_enc (d_in, d_sae), W_dec (d_sae, d_in),
b_enc (d_sae,), b_dec (d_in,) which is b_pre.

Imported SAEs may use SAELens's other inference activations instead of TopK (cfg.activation):
"relu", z = ReLU(pre), and "jumprelu", z = ReLU(pre)·[pre > θ] with a per-latent threshold θ
(the `threshold` buffer). `activations` gives their exact dense codes; `encode` keeps each
token's cfg.k largest, so every consumer still sees (…, k) codes. Only TopK goes through the
fused kernels (kernels.py) and only TopK trains (`forward`).

BatchTopK (cfg.batch_topk) only changes training: the k·B largest activations of a batch are
kept, so a token may use more or fewer than k latents. At inference (eval mode, `encode`,
`dense_codes`) every token uses plain per-token TopK with the same k: downstream code (heat
maps, top-feature maps, steering) can rely on exactly k codes per position. The trainer records
the BatchTopK threshold it saw in cfg.stats for reference.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from explorer.sae.config import SAEConfig
from explorer.sae.kernels import fused_encoder, gather_encoder, sparse_decode, subset_encoder

# AuxK switches to dense matmuls (over the dead latents only) when k_aux ≥ num_dead /
# AUX_DENSE_FRACTION; measured on CPU, a gather-based product costs about as much as a dense
# one at ~1/10 density.
AUX_DENSE_FRACTION = 16
# Likewise the main path: with k ≥ d_sae / MAIN_DENSE_FRACTION (e.g. the demo's 8 of 128) the
# sparse encoder backward and embedding-bag decoder cost more than dense matmuls.
MAIN_DENSE_FRACTION = 16


class EncoderOutput(NamedTuple):
    top_acts: Tensor
    """(N, k) activations of the selected latents (0 where ReLU or BatchTopK dropped one)."""
    top_indices: Tensor
    """(N, k) latent indices, int64."""
    pre_acts: Tensor
    """(N, d_sae) ReLU pre-activations; not differentiable."""


class Codes(NamedTuple):
    values: Tensor
    """(..., k) activations, sorted in decreasing order."""
    indices: Tensor
    """(..., k) latent indices."""


class ForwardOutput(NamedTuple):
    sae_out: Tensor
    """(N, d_in) reconstruction in input units."""
    latent_acts: Tensor
    """(N, k') activations of the selected latents."""
    latent_indices: Tensor
    """(N, k') their indices."""
    fvu: Tensor
    """Fraction of variance unexplained: Σ‖x − x̂‖² / Σ‖x − mean x‖² over the batch."""
    auxk_loss: Tensor
    """AuxK term (same denominator as fvu); 0 when no latent is dead."""
    loss: Tensor
    """fvu + aux_coef · auxk_loss."""


def geometric_median(x: Tensor, *, max_iter: int = 100, tol: float = 1e-6) -> Tensor:
    """Geometric median of the rows of x (Weiszfeld iterations, float64 internally)."""
    pts = x.reshape(-1, x.shape[-1]).double()
    y = pts.mean(0)
    for _ in range(max_iter):
        # Clamping the distance keeps a point that coincides with the estimate from
        # producing an infinite weight; the estimate then simply settles on it.
        w = 1.0 / (pts - y).norm(dim=1).clamp_min(1e-12)
        y_new = (w[:, None] * pts).sum(0) / w.sum()
        shift = float((y_new - y).norm())
        y = y_new
        if shift <= tol * (1.0 + float(y.norm())):
            break
    return y.to(x.dtype)


class TopKSAE(nn.Module):
    """TopK sparse autoencoder with a fused sparse encoder and an embedding-bag decoder (or an
    imported ReLU / JumpReLU one, read through the same (…, k) codes)."""

    def __init__(
        self,
        cfg: SAEConfig,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        kw = dict(device=device, dtype=dtype)
        # Latent-major storage behind SAELens's (d_in, d_sae) shape: W_enc.t() is contiguous,
        # which the sparse backward reads one latent row at a time.
        self.W_enc = nn.Parameter(torch.empty(cfg.d_sae, cfg.d_in, **kw).t())
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, **kw))
        self.W_dec = nn.Parameter(torch.empty(cfg.d_sae, cfg.d_in, **kw))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, **kw))
        if cfg.activation == "jumprelu":
            # Only JumpReLU SAEs hold it, so TopK state dicts (and checkpoints) are unchanged.
            self.register_buffer("threshold", torch.zeros(cfg.d_sae, **kw))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Unit-norm random decoder rows, encoder = decoder transpose, zero biases."""
        nn.init.kaiming_uniform_(self.W_dec)
        self.set_decoder_norm_to_unit_norm()
        self.W_enc.copy_(self.W_dec.t())
        self.b_enc.zero_()
        self.b_dec.zero_()

    @property
    def device(self) -> torch.device:
        return self.W_dec.device

    @property
    def dtype(self) -> torch.dtype:
        return self.W_dec.dtype

    # --- maintenance used by the trainer -------------------------------------------------

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self) -> None:
        eps = torch.finfo(self.W_dec.dtype).eps
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True) + eps

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self) -> None:
        """Project out of W_dec.grad the part that would only change row norms.

        Rows are renormalised after each step anyway; without this, Adam would spend its
        step size on a direction that the renormalisation undoes.
        """
        if self.W_dec.grad is None:
            return
        parallel = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True)
        self.W_dec.grad -= parallel * self.W_dec

    @torch.no_grad()
    def initialize_b_dec(self, sample: Tensor) -> None:
        """Set b_dec (b_pre) to the geometric median of a sample given in input units."""
        sample = sample.reshape(-1, self.cfg.d_in).to(self.device, self.dtype)
        self.b_dec.copy_(geometric_median(sample * self.cfg.input_scale))

    # --- encode / decode -----------------------------------------------------------------

    def _scaled(self, x: Tensor) -> Tensor:
        x = x.reshape(-1, self.cfg.d_in).to(self.dtype)
        return x * self.cfg.input_scale if self.cfg.input_scale != 1.0 else x

    def encode_with_pre_acts(self, x: Tensor, *, batch_topk: bool = False) -> EncoderOutput:
        """Encoder output for x of shape (..., d_in), flattened to (N, ·)."""
        if self.cfg.activation != "topk":
            acts, pre = self._dense_activations(x)
            values, indices = acts.topk(self.cfg.k, dim=-1, sorted=False)
            return EncoderOutput(values, indices, pre.relu())
        values, indices, pre = fused_encoder(
            self._scaled(x), self.W_enc, self.b_enc, self.b_dec, self.cfg.k, batch_topk
        )
        return EncoderOutput(values, indices, pre)

    def _dense_activations(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(every latent's activation, pre-activations), both (N, d_sae); plain matmuls."""
        pre = torch.addmm(self.b_enc, self._scaled(x) - self.b_dec, self.W_enc)
        if self.cfg.activation == "topk":
            acts = pre.relu()
            top = acts.topk(self.cfg.k, dim=-1, sorted=False)
            acts = torch.zeros_like(acts).scatter_(-1, top.indices, top.values)
        elif self.cfg.activation == "jumprelu":
            acts = pre.relu() * (pre > self.threshold).to(pre.dtype)
        else:
            acts = pre.relu()
        return acts, pre

    def activations(self, x: Tensor) -> Tensor:
        """The SAE's own dense codes (..., d_sae): what SAELens's `encode` returns, never cut
        to cfg.k (for TopK the same as `dense_codes`)."""
        return self._dense_activations(x)[0].reshape(*x.shape[:-1], self.cfg.d_sae)

    def encode(self, x: Tensor) -> Codes:
        """Per-token TopK codes of x (..., d_in): values and indices (..., k), largest first."""
        lead = x.shape[:-1]
        values, indices, _ = self.encode_with_pre_acts(x)
        values, order = values.sort(dim=-1, descending=True)
        indices = indices.gather(-1, order)
        return Codes(values.reshape(*lead, -1), indices.reshape(*lead, -1))

    def decode(self, values: Tensor, indices: Tensor) -> Tensor:
        """Reconstruction (..., d_in) in input units from codes (..., k)."""
        lead = values.shape[:-1]
        width = values.shape[-1]
        out = sparse_decode(values.reshape(-1, width), indices.reshape(-1, width), self.W_dec)
        out = out + self.b_dec
        if self.cfg.input_scale != 1.0:
            out = out / self.cfg.input_scale
        return out.reshape(*lead, self.cfg.d_in)

    def dense_codes(self, x: Tensor) -> Tensor:
        """Codes as a dense (..., d_sae) tensor, for analysis."""
        values, indices = self.encode(x)
        dense = values.new_zeros(*values.shape[:-1], self.cfg.d_sae)
        return dense.scatter_(-1, indices, values)

    def decoder_vectors(self) -> Tensor:
        """Decoder rows in input units (d_sae, d_in): what one unit of a latent adds to x̂."""
        return self.W_dec / self.cfg.input_scale

    # --- training forward ------------------------------------------------------------------

    def forward(self, x: Tensor, dead_mask: Tensor | None = None) -> ForwardOutput:
        """Reconstruct x (N, d_in) and compute FVU and AuxK.

        dead_mask (d_sae,) bool marks latents that have not fired for cfg.dead_tokens tokens;
        the top cfg.k_aux of their pre-activations are asked to reconstruct the residual
        x − x̂ (Gao et al.), which gives dead latents a gradient again.
        """
        cfg = self.cfg
        if cfg.activation != "topk":
            raise ValueError(f"only TopK SAEs train here, not {cfg.activation!r} ones")
        xs = self._scaled(x)
        dense = cfg.k * MAIN_DENSE_FRACTION >= cfg.d_sae
        values, indices, pre = fused_encoder(
            xs, self.W_enc, self.b_enc, self.b_dec, cfg.k, cfg.batch_topk and self.training, dense
        )
        if dense:
            z = torch.zeros_like(pre).scatter(1, indices, values)
            recon = torch.addmm(self.b_dec, z, self.W_dec)
        else:
            recon = sparse_decode(values, indices, self.W_dec) + self.b_dec
        residual = xs - recon
        # The variance denominator puts every layer and timestep on the same scale.
        total_variance = (xs - xs.mean(0)).pow(2).sum().clamp_min(torch.finfo(xs.dtype).tiny)
        fvu = residual.pow(2).sum() / total_variance

        auxk_loss = fvu.new_zeros(())
        k_aux = cfg.k_aux_effective
        if dead_mask is not None and k_aux > 0 and cfg.aux_coef > 0:
            dead = dead_mask.to(pre.device).nonzero().squeeze(1)
            if dead.numel() > 0:
                e_hat = self._auxk_reconstruction(xs, pre, dead, min(k_aux, dead.numel()))
                auxk_loss = (e_hat - residual.detach()).pow(2).sum() / total_variance

        sae_out = recon / cfg.input_scale if cfg.input_scale != 1.0 else recon
        loss = fvu + cfg.aux_coef * auxk_loss
        return ForwardOutput(sae_out, values, indices, fvu, auxk_loss, loss)

    def _auxk_reconstruction(self, xs: Tensor, pre: Tensor, dead: Tensor, k_aux: int) -> Tensor:
        """ê = Σ over each token's top-k_aux dead latents of pre-activation × decoder row.

        Only the dead latents are visited, so the cost scales with their number, not with
        d_sae: the top-k_aux is taken over pre_acts restricted to them, and the dense path's
        matmuls (ê, and the gradients of W_dec's and W_enc's dead rows) are (N × num_dead)
        ones. Same loss and gradients as the dense formula over all latents with the live
        ones masked to −inf (tests/sae/test_sae_kernels.py).
        """
        num_dead = dead.numel()
        everyone = num_dead == self.cfg.d_sae
        if k_aux * AUX_DENSE_FRACTION >= num_dead:
            # k_aux is a sizeable fraction of the candidates (e.g. all of them when fewer are
            # dead than k_aux): dense matmuls over the dead latents beat gathers.
            z_aux = subset_encoder(xs, self.W_enc, self.b_enc, self.b_dec, pre, dead, k_aux)
            w_dec = self.W_dec if everyone else self.W_dec.index_select(0, dead)
            return z_aux @ w_dec
        candidates = pre if everyone else pre.index_select(1, dead)
        picks = candidates.topk(k_aux, dim=1, sorted=False).indices
        aux_indices = picks if everyone else dead[picks]
        aux_values = gather_encoder(xs, self.W_enc, self.b_enc, self.b_dec, pre, aux_indices)
        return sparse_decode(aux_values, aux_indices, self.W_dec)
