"""Where the prompts of a collection come from: a text file, or the bundled shapes world.

A prompt set fixes the prompt, the noise seed and (for the shapes world) the exact object masks
and attributes of every sample, by its position in the full list, so any process (a resumed
run, rank r of a sharded one) can rebuild exactly its part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from explorer.errors import UserError

# global index → (object masks (objects, H, W) bool, object attributes)
Annotations = Callable[[int], tuple[np.ndarray, list[dict]]]


@dataclass(frozen=True)
class PromptSet:
    """Prompts, seeds and optional annotations; `index` is each one's place in the full list."""

    prompts: list[str]
    seeds: list[int]
    source: str  # provenance: "file:prompts.txt", "shapes:train", "list"
    index: list[int] | None = None
    annotations: Annotations | None = None
    mask_shape: tuple[int, int, int] | None = None  # (max objects, H, W) when annotated

    def __post_init__(self):
        if len(self.prompts) != len(self.seeds):
            raise UserError(f"{len(self.prompts)} prompts but {len(self.seeds)} seeds")

    def __len__(self) -> int:
        return len(self.prompts)

    def positions(self) -> list[int]:
        return list(range(len(self))) if self.index is None else list(self.index)

    def part(self, start: int, stop: int) -> PromptSet:
        """Samples [start, stop) of this set, keeping their global index (a shard's share)."""
        return PromptSet(
            self.prompts[start:stop],
            self.seeds[start:stop],
            self.source,
            self.positions()[start:stop],
            self.annotations,
            self.mask_shape,
        )


def from_file(path: str | Path, first_seed: int = 0, limit: int | None = None) -> PromptSet:
    """One prompt per line (blank lines skipped); prompt i gets seed first_seed + i."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"prompt file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read prompt file {path}: {e}") from None
    prompts = [line.strip() for line in lines if line.strip()]
    if limit is not None:
        prompts = prompts[:limit]
    if not prompts:
        raise UserError(f"prompt file {path} holds no prompts")
    seeds = [first_seed + i for i in range(len(prompts))]
    return PromptSet(prompts, seeds, f"file:{path.name}")


def shapes_world(n: int, split: str = "train", first_seed: int = 0,
                 placeless: bool = False) -> PromptSet:
    """Scenes first_seed … first_seed + n − 1 of the shapes world; noise seed = scene seed.

    placeless: prompts without their places (the paper's prompts name none, so the model
    chooses the layout). Their objects carry no "place" attribute and their masks are left
    empty: where the objects end up is read from the generated image by the checker.
    """
    from explorer.shapes.world import RESOLUTION, SPLITS, Scene

    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if n <= 0:
        raise UserError(f"--num-prompts must be positive, got {n}")
    seeds = [first_seed + i for i in range(n)]
    prompts = [Scene.from_seed(s, split).caption(places=not placeless) for s in seeds]

    def annotate(i: int) -> tuple[np.ndarray, list[dict]]:
        scene = Scene.from_seed(first_seed + i, split)
        if placeless:
            attrs = [{k: v for k, v in a.items() if k != "place"} for a in scene.attributes()]
            return np.zeros_like(scene.masks()), attrs
        return scene.masks(), scene.attributes()

    source = f"shapes:{split}" + (":placeless" if placeless else "")
    # Scene.from_seed draws at most 3 objects (its max_objects default).
    return PromptSet(prompts, seeds, source, None, annotate, (3, RESOLUTION, RESOLUTION))
