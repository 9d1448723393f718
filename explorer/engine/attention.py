"""Cross-attention maps, DAAM's raw material: at each step, how strongly each position of a block
attends to each prompt token.

Forward hooks on the cross-attention layers (`attn2`) of a block's transformer layers recompute
the softmax attention from the layer's own query and key projections (diffusers' processors use
a fused attention kernel that never materialises it). The hooks return nothing, so the image is
the one plain generation makes. A position's attention over the T text tokens is averaged over
heads and over the block's transformer layers, like DAAM's aggregation but kept per block and
per step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


def attention_probs(attn, hidden_states: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """(B, N, T) softmax attention of a diffusers `Attention` layer, averaged over its heads.

    The same projections and normalisations as its processor (AttnProcessor2_0) applies before
    the attention kernel, at the layer's own scale.
    """
    b = hidden_states.shape[0]
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    if attn.norm_cross:
        context = attn.norm_encoder_hidden_states(context)
    query, key = attn.to_q(hidden_states), attn.to_k(context)
    head_dim = key.shape[-1] // attn.heads
    query = query.view(b, -1, attn.heads, head_dim).transpose(1, 2)
    key = key.view(b, -1, attn.heads, head_dim).transpose(1, 2)
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * attn.scale
    return scores.softmax(dim=-1).mean(dim=1)


class CrossAttentionMaps:
    """Context manager recording the cross-attention maps of named `Transformer2DModel` blocks.

    geometry: block → (h, w) of its token grid. After each UNet forward, `pop()` gives
    block → (B, h, w, T) float32 on the CPU for the whole UNet batch (split it by guidance
    branch with `hooks.split_branches`).
    """

    def __init__(self, unet: torch.nn.Module, blocks: Sequence[str], geometry: Mapping[str, tuple[int, int]]):
        self.unet = unet
        self.blocks = list(dict.fromkeys(blocks))
        self.geometry = {b: tuple(geometry[b][:2]) for b in self.blocks}
        self._handles: list = []
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def __enter__(self) -> CrossAttentionMaps:
        for name in self.blocks:
            layers = [m for m in self.unet.get_submodule(name).modules()
                      if getattr(m, "is_cross_attention", False)]
            if not layers:
                raise ValueError(f"block {name} has no cross-attention layer")
            for layer in layers:
                self._handles.append(layer.register_forward_hook(self._make_hook(name), with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def pop(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, total in self._sums.items():
            h, w = self.geometry[name]
            mean = total / self._counts[name]
            out[name] = mean.reshape(mean.shape[0], h, w, mean.shape[-1]).cpu()
        self._sums, self._counts = {}, {}
        return out

    def _make_hook(self, name: str):
        def hook(module, args, kwargs, output):
            hidden = args[0] if args else kwargs["hidden_states"]
            context = kwargs.get("encoder_hidden_states")
            if context is None and len(args) > 1:
                context = args[1]
            if context is None:
                return None
            with torch.no_grad():
                probs = attention_probs(module, hidden, context)
            self._sums[name] = self._sums[name] + probs if name in self._sums else probs
            self._counts[name] = self._counts.get(name, 0) + 1
            return None

        return hook


def prompt_tokens(tokenizer, prompt: str) -> list[tuple[str, list[int]]]:
    """Each whitespace-separated word of `prompt` with the positions of its tokens in the text
    encoder's input (position 0 is the start token).

    CLIP's tokenizer splits text into words before BPE, so a word's tokens are the same alone as
    in the prompt; a prompt for which that does not hold raises ValueError.
    """
    full = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    out, pos = [], 1
    for word in prompt.split():
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if full[pos - 1 : pos - 1 + len(ids)] != ids:
            raise ValueError(f"cannot place the tokens of {word!r} in {prompt!r}")
        out.append((word, list(range(pos, pos + len(ids)))))
        pos += len(ids)
    limit = tokenizer.model_max_length - 1  # the end token takes the last slot
    return [(w, p) for w, p in out if p and p[-1] < limit]
