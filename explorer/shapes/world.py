"""The shapes world: deterministic scenes with exact ground truth.

A scene is 1–3 coloured shapes at named places on a background whose *style* is either a plain
colour or a texture. Everything the explorer measures against (object masks, colours, shapes,
places, the background style) comes from here, so the renderer is exact: hard edges, fixed
palette, no anti-aliasing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

RESOLUTION = 64

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 225),
    "yellow": (240, 215, 40),
    "purple": (150, 60, 195),
    "orange": (245, 135, 25),
}
SHAPES = ("circle", "square", "triangle", "cross")
# Half-extent in pixels. Anchors are 20 px apart, so two large objects at neighbouring places
# (9 + 9 + 2 px of jitter) never overlap and every mask stays whole.
SIZES: dict[str, int] = {"small": 6, "large": 9}
JITTER = 1
_GRID = (12, 32, 52)
PLACES: dict[str, tuple[int, int]] = {  # name -> (y, x) anchor
    "top left": (_GRID[0], _GRID[0]),
    "top": (_GRID[0], _GRID[1]),
    "top right": (_GRID[0], _GRID[2]),
    "left": (_GRID[1], _GRID[0]),
    "centre": (_GRID[1], _GRID[1]),
    "right": (_GRID[1], _GRID[2]),
    "bottom left": (_GRID[2], _GRID[0]),
    "bottom": (_GRID[2], _GRID[1]),
    "bottom right": (_GRID[2], _GRID[2]),
}
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")
PLAIN_BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (235, 235, 235),
    "gray": (128, 128, 128),
    "black": (25, 25, 25),
}
TEXTURED_BACKGROUNDS = ("striped", "dotted")
BACKGROUNDS = (*PLAIN_BACKGROUNDS, *TEXTURED_BACKGROUNDS)
_STRIPE_COLOURS = ((200, 200, 200), (90, 90, 90))
_DOT_COLOURS = ((225, 225, 225), (70, 70, 70))
STRIPE_PERIOD = 8
DOT_PERIOD = 8

# Colour–shape pairs never seen in training: the held-out split tests composition.
HELD_OUT_PAIRS = frozenset(
    {("green", "triangle"), ("purple", "circle"), ("orange", "square"), ("yellow", "cross")}
)
SPLITS = ("train", "held_out")


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    place: str
    dy: int = 0
    dx: int = 0

    @property
    def centre(self) -> tuple[int, int]:
        y, x = PLACES[self.place]
        return y + self.dy, x + self.dx

    @property
    def phrase(self) -> str:
        return f"{self.placeless_phrase} at the {self.place}"

    @property
    def placeless_phrase(self) -> str:
        """The phrase without "at the …": the paper's prompts name no places, so their layout is
        the model's to choose (and a spatial edit's to change)."""
        return f"a {self.size} {self.colour} {self.shape}"

    @property
    def words(self) -> tuple[str, ...]:
        return (self.shape, self.colour, self.size, *self.place.split())

    @property
    def held_out(self) -> bool:
        return (self.colour, self.shape) in HELD_OUT_PAIRS


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    background: str
    seed: int = -1
    _cache: dict = field(default_factory=dict, compare=False, repr=False, hash=False)

    @property
    def prompt(self) -> str:
        return self.caption()

    @property
    def placeless_prompt(self) -> str:
        """The prompt with every place left out (see `SceneObject.placeless_phrase`)."""
        return self.caption(places=False)

    def caption(self, places: bool = True, background: bool = True) -> str:
        """The prompt, optionally without its places and/or its background ("… on a striped
        background"): left out, the model chooses them, as SD does for the paper's prompts."""
        body = " and ".join(o.phrase if places else o.placeless_phrase for o in self.objects)
        return f"{body} on a {self.background} background" if background else body

    @property
    def held_out(self) -> bool:
        return any(o.held_out for o in self.objects)

    @property
    def split(self) -> str:
        return "held_out" if self.held_out else "train"

    def masks(self) -> np.ndarray:
        """(objects, H, W) bool, one exact mask per object (objects never overlap)."""
        if "masks" not in self._cache:
            self._cache["masks"] = np.stack([object_mask(o) for o in self.objects])
        return self._cache["masks"]

    def render(self) -> np.ndarray:
        """(H, W, 3) uint8."""
        img = background_image(self.background)
        for obj, mask in zip(self.objects, self.masks(), strict=True):
            img[mask] = COLOURS[obj.colour]
        return img

    def attributes(self) -> list[dict[str, str]]:
        return [
            {"shape": o.shape, "colour": o.colour, "size": o.size, "place": o.place}
            for o in self.objects
        ]

    @classmethod
    def from_seed(cls, seed: int, split: str = "train", max_objects: int = 3) -> Scene:
        """The scene of `seed` in `split`; deterministic across machines."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        rng = np.random.default_rng([seed, SPLITS.index(split)])
        while True:
            scene = _sample_scene(rng, seed, max_objects)
            if scene.split == split:
                return scene


def _sample_scene(rng: np.random.Generator, seed: int, max_objects: int) -> Scene:
    n = int(rng.choice(np.arange(1, max_objects + 1)))
    places = rng.choice(len(PLACES), size=n, replace=False)
    names = list(PLACES)
    objects = tuple(
        SceneObject(
            shape=SHAPES[int(rng.integers(len(SHAPES)))],
            colour=list(COLOURS)[int(rng.integers(len(COLOURS)))],
            size=list(SIZES)[int(rng.integers(len(SIZES)))],
            place=names[int(p)],
            dy=int(rng.integers(-JITTER, JITTER + 1)),
            dx=int(rng.integers(-JITTER, JITTER + 1)),
        )
        for p in places
    )
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    scene = Scene(objects=objects, background=background, seed=seed)
    if len(objects) > 1 and scene.masks().sum(0).max() > 1:
        # Two large objects at neighbouring places, jittered towards each other, can share a
        # boundary pixel (~0.3% of scenes). Without jitter they are 20 px apart and never touch.
        objects = tuple(replace(o, dy=0, dx=0) for o in objects)
        scene = Scene(objects=objects, background=background, seed=seed)
    return scene


_YY, _XX = np.mgrid[0:RESOLUTION, 0:RESOLUTION]


def shape_mask(shape: str, cy: float, cx: float, r: float) -> np.ndarray:
    """(H, W) bool mask of `shape` centred at (cy, cx) with half-extent r."""
    dy = _YY - cy
    dx = _XX - cx
    if shape == "circle":
        return dy**2 + dx**2 <= r**2
    if shape == "square":
        s = 0.85 * r
        return (np.abs(dy) <= s) & (np.abs(dx) <= s)
    if shape == "triangle":
        # Apex up, base at +0.8 r; the half-width grows linearly from apex to base.
        return (dy >= -r) & (dy <= 0.8 * r) & (np.abs(dx) <= (dy + r) / 1.8)
    if shape == "cross":
        arm = 0.35 * r
        return ((np.abs(dx) <= r) & (np.abs(dy) <= arm)) | ((np.abs(dy) <= r) & (np.abs(dx) <= arm))
    raise ValueError(f"unknown shape {shape!r}")


def object_mask(obj: SceneObject) -> np.ndarray:
    cy, cx = obj.centre
    return shape_mask(obj.shape, cy, cx, SIZES[obj.size])


def background_image(style: str) -> np.ndarray:
    img = np.empty((RESOLUTION, RESOLUTION, 3), np.uint8)
    if style in PLAIN_BACKGROUNDS:
        img[:] = PLAIN_BACKGROUNDS[style]
    elif style == "striped":
        dark = ((_YY + _XX) % STRIPE_PERIOD) >= STRIPE_PERIOD // 2
        img[:] = _STRIPE_COLOURS[0]
        img[dark] = _STRIPE_COLOURS[1]
    elif style == "dotted":
        c = DOT_PERIOD // 2
        dot = ((_YY % DOT_PERIOD - c) ** 2 + (_XX % DOT_PERIOD - c) ** 2) <= 2
        img[:] = _DOT_COLOURS[0]
        img[dot] = _DOT_COLOURS[1]
    else:
        raise ValueError(f"unknown background {style!r}")
    return img


def vocabulary() -> list[str]:
    """Every word a prompt of this world can contain, in a fixed order."""
    words = ["a", "at", "the", "and", "on", "background"]
    words += list(SIZES) + list(COLOURS) + list(SHAPES)
    for place in PLACES:
        words += [w for w in place.split() if w not in words]
    words += list(BACKGROUNDS)
    return list(dict.fromkeys(words))


def scenes(n: int, split: str = "train", start: int = 0) -> list[Scene]:
    return [Scene.from_seed(start + i, split) for i in range(n)]
