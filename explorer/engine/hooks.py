"""Capture and edit Δ = block(x) − x of named UNet blocks, per denoising step and guidance branch.

The hooks are plain `register_forward_hook`s on diffusers' `Transformer2DModel`s. A hook that has
nothing to edit returns None, so the UNet's output is the very tensor it would have computed
without hooks: steering with zero strength is bit-identical to plain generation.

Layout conventions used everywhere in the explorer:
- a captured Δ is (batch, h, w, d), channels last, one row per spatial position;
- under classifier-free guidance the UNet batch is [uncond; cond] (diffusers' order), and a
  branch is one of those halves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

BRANCHES = ("cond", "uncond")


@dataclass(frozen=True)
class StepContext:
    """What an edit needs to know about the step it runs in."""

    step: int  # index into the sampling schedule, 0 = first (t = 1.0)
    n_steps: int
    t: float  # the paper's t ∈ [0, 1]: 1.0 at the first step, 0.0 at the last
    branches: tuple[str, ...]  # the order of the halves of the UNet batch, e.g. ("uncond", "cond")


# An edit maps a block's Δ (N, C, h, w) for the whole UNet batch to a new Δ, or returns None to
# leave it untouched. The steering package builds these.
Edit = Callable[[torch.Tensor, StepContext], "torch.Tensor | None"]


def step_t(step: int, n_steps: int) -> float:
    """The paper's t for a step index: 1.0 at the first step, 0.0 at the last."""
    return 1.0 if n_steps <= 1 else 1.0 - step / (n_steps - 1)


def split_branches(delta: torch.Tensor, branches: Sequence[str]) -> dict[str, torch.Tensor]:
    """Split a (N, ...) UNet batch into its guidance branches."""
    return dict(zip(branches, delta.chunk(len(branches)), strict=True))


class BlockHooks:
    """Context manager that hooks named blocks of a UNet.

    capture: keep each step's Δ (channels last, `capture_dtype`, on the CPU) until `pop()`.
    edits: block name → Edit applied to Δ before it is added back to the residual stream.
    """

    def __init__(
        self,
        unet: torch.nn.Module,
        blocks: Sequence[str],
        *,
        capture: bool = True,
        edits: Mapping[str, Sequence[Edit]] | None = None,
        capture_dtype: torch.dtype = torch.float16,
    ):
        self.unet = unet
        self.blocks = list(dict.fromkeys([*blocks, *(edits or {})]))
        self.capture_blocks = set(blocks) if capture else set()
        self.edits = {b: list(e) for b, e in (edits or {}).items() if e}
        self.capture_dtype = capture_dtype
        self.context: StepContext | None = None
        self._handles: list = []
        self._captured: dict[str, torch.Tensor] = {}
        self._async_copies = False

    def __enter__(self) -> BlockHooks:
        for name in self.blocks:
            module = self.unet.get_submodule(name)
            self._handles.append(
                module.register_forward_hook(self._make_hook(name), with_kwargs=True)
            )
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def begin_step(self, context: StepContext) -> None:
        self.context = context
        self._captured.clear()

    def pop(self) -> dict[str, dict[str, torch.Tensor]]:
        """This step's captures: block → branch → (B, h, w, d) tensor on the CPU."""
        assert self.context is not None
        if self._async_copies:
            # Device→host copies were issued non-blocking so they overlap the rest of the
            # step; wait once for all of them before anyone reads the host tensors.
            torch.cuda.synchronize()
            self._async_copies = False
        out = {
            block: split_branches(delta, self.context.branches)
            for block, delta in self._captured.items()
        }
        self._captured = {}
        return out

    def _make_hook(self, name: str):
        capture = name in self.capture_blocks
        edits = self.edits.get(name, ())

        def hook(module, args, kwargs, output):
            x = args[0] if args else kwargs["hidden_states"]
            is_tuple = isinstance(output, tuple)
            y = output[0] if is_tuple else output.sample
            delta = None
            if capture:
                delta = y - x
                # Channels last and half precision on the device, then one copy to the host.
                on_gpu = delta.is_cuda
                self._captured[name] = (
                    delta.detach().permute(0, 2, 3, 1).to(self.capture_dtype).to("cpu", non_blocking=on_gpu)
                )
                self._async_copies |= on_gpu
            if not edits or self.context is None:
                return None
            new = None
            for edit in edits:
                base = new if new is not None else (delta if delta is not None else y - x)
                out = edit(base, self.context)
                if out is not None:
                    new = out
            if new is None:
                return None
            y_new = x + new.to(x.dtype)
            if is_tuple:
                return (y_new, *output[1:])
            output.sample = y_new
            return output

        return hook
