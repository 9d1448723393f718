"""Prompt adherence for shapes-world images: does a picture show what its scene prompted?

The checker sees only pixels plus the prompted attributes, because it must score images made by a
trained diffusion model, which are soft, noisy, slightly off-colour versions of the exact renders
in `world`. The design follows from what such degradations do and do not change:

* Colour is read from chroma, the pixel minus its own grey level. Every background is neutral
  grey, so blurring an object into any background (or a texture) scales its chroma vector without
  turning it: the direction names the palette colour, the length relative to the palette entry is
  how much of the pixel the object covers (alpha). Both are linear in the image, so the direction
  can be read after smoothing, which averages noise away without mixing in other hues. The median
  chroma (background, hence neutral by construction) is subtracted first, which cancels a global
  colour cast.
* An object is a connected region of one colour, thresholded at half coverage, which is where a
  hard edge sits after any symmetric blur. The threshold is taken relative to the region's own
  saturation so that a washed-out object keeps its true outline.
* Shape and size come from the template that best explains the region's soft coverage map (the
  four shapes drawn with `world.shape_mask` over a range of half-extents, shifts and blurs), so
  the checker and the renderer cannot disagree about what a "triangle" is, and a blurred small
  cross is compared with a blurred cross rather than, once thresholded, with a circle.
* Place is the anchor nearest the centre of mass; anchors are 20 px apart while jitter plus the
  triangle's off-centre centroid move it by under 3 px.
* Background style is read from the power spectrum of the grey pixels, which ignores the phase of
  a texture: stripes put their energy on one diagonal of the period-8 lattice, dots on the axes
  and both diagonals, plain backgrounds on neither (noise spreads evenly). Plain styles are then
  told apart by brightness alone.

When several prompted objects share a colour, regions are matched to them by distance to their
prompted anchors (Hungarian), so one misplaced object cannot steal another's verdict; if there
are fewer regions than such objects, regions are split where two touching objects meet, but only
when the pieces fit shape templates better than the whole does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from explorer.shapes.world import (
    COLOURS,
    PLACES,
    PLAIN_BACKGROUNDS,
    RESOLUTION,
    SHAPES,
    SIZES,
    STRIPE_PERIOD,
    Scene,
    shape_mask,
)

_COLOUR_NAMES = tuple(COLOURS)
# Chroma vectors of the palette: what is left of each colour once its grey level is removed.
_PALETTE = np.array([COLOURS[c] for c in _COLOUR_NAMES], np.float64)
_PALETTE_CHROMA = _PALETTE - _PALETTE.mean(axis=1, keepdims=True)
_PALETTE_NORM2 = (_PALETTE_CHROMA**2).sum(axis=1)
_PALETTE_UNIT = _PALETTE_CHROMA / np.sqrt(_PALETTE_NORM2)[:, None]

# The closest palette pair (orange/yellow) is 23° apart in chroma direction; hues further than
# this from every entry (cyan, pink, ...) are "unknown" rather than forced onto a palette colour.
_MAX_HUE_ANGLE_DEG = 30.0
_MIN_COS = float(np.cos(np.radians(_MAX_HUE_ANGLE_DEG)))
# Smoothing for reading hue only: sigma 1 cuts per-pixel noise about 3.5x.
_HUE_SIGMA = 1.0
# A pixel seeds an object region from this much coverage (after smoothing); loose on purpose,
# the outline itself is cut at half of the region's own saturation below.
_SEED_ALPHA = 0.3
_EDGE_FRACTION = 0.5
# Clamp on a region's reference saturation: never trust an outline cut below 0.3 coverage.
_MIN_REFERENCE_ALPHA = 0.6
# The smallest object (small triangle) has 63 px; a third of it survives any sane degradation,
# while noise specks and blurred seams stay far below.
_MIN_AREA = 20
# A region smaller than this fraction of the largest region of its colour is a stray blob, not a
# rival for an object (the smallest/largest real object area ratio is 63/253 = 0.25).
_MIN_RELATIVE_AREA = 0.1
_EIGHT = np.ones((3, 3), bool)
# Splitting merged regions: a blurred 1-2 px gap between two objects dips to about 0.6-0.75 of
# full coverage, and a seam where they touch is at most a few pixels thick.
_SPLIT_LEVELS = (0.6, 0.7, 0.8)
_MAX_SPLIT_EROSION = 3
_MIN_CORE_AREA = 6
_KMEANS_STEPS = 10

# Template search. Windows are (2 * _HALF + 1)^2 around a candidate centre.
_HALF = 14
_RADII = np.arange(4.0, 11.01, 0.5)
_TEMPLATE_BLURS = (0.0, 0.75, 1.25, 1.75)
_SHIFT = 3
# Coverage is read this far around a region's outline, where blur has spread it.
_COVERAGE_MARGIN = 3
# Equal-ratio boundary between the two sizes: sqrt(6 * 9).
_SIZE_BOUNDARY = float(np.sqrt(np.prod(list(SIZES.values()))))

# Background. Chromatic pixels (and the blur halo around them) are not background evidence.
_CHROMA_BACKGROUND_MAX = 20.0
_OBJECT_HALO = 2
# Plain backgrounds put about 2% of their (noise) power near the period-8 peaks, true renders of
# textures 60-80%, textures blurred with sigma 1.5 under heavy noise still 8% or more.
_MIN_PERIODIC_FRACTION = 0.05
# A texture must also be *visible*: the world's stripes and dots have an RMS amplitude of about
# 50 grey levels. Without a floor, the faint period-8 ghosts a model leaves on a plain background
# carry most of the (tiny) energy of an otherwise flat image and read as a texture.
_MIN_TEXTURE_RMS = 15.0
# Measured on renders: stripes >= 0.7, dots <= 0.1, also under heavy blur and noise.
_MIN_STRIPE_ASYMMETRY = 0.4


class Component(NamedTuple):
    centroid: tuple[float, float]  # (y, x), centre of mass of `mask`
    area: int
    mask: np.ndarray  # (H, W) bool


@dataclass(frozen=True)
class ObjectVerdict:
    colour_ok: bool
    shape_ok: bool
    place_ok: bool
    size_ok: bool
    centroid: tuple[float, float] | None
    predicted_shape: str | None
    predicted_place: str | None
    # Last and defaulted, so code that builds verdicts from the seven original fields still works.
    predicted_size: str | None = None

    @property
    def all_ok(self) -> bool:
        """Colour, shape and place right: what "the object is there as prompted" means here."""
        return self.colour_ok and self.shape_ok and self.place_ok


@dataclass(frozen=True)
class SceneVerdict:
    objects: tuple[ObjectVerdict, ...]
    background_ok: bool
    predicted_background: str


_MISSING = ObjectVerdict(False, False, False, False, None, None, None, None)


def _as_float_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.shape != (RESOLUTION, RESOLUTION, 3):
        raise ValueError(f"expected a ({RESOLUTION}, {RESOLUTION}, 3) image, got {image.shape}")
    if np.issubdtype(image.dtype, np.floating) and image.max() <= 1.5:
        # Model outputs often come as floats in [0, 1]; the palette is in 0..255.
        return image.astype(np.float64) * 255.0
    return image.astype(np.float64)


def _chroma(rgb: np.ndarray) -> np.ndarray:
    chroma = rgb - rgb.mean(axis=-1, keepdims=True)
    # White balance: objects cover under a fifth of any scene, so the median pixel is background,
    # which is neutral by construction; whatever chroma it has is a global colour cast.
    return chroma - np.median(chroma.reshape(-1, 3), axis=0)


class _ColourFields(NamedTuple):
    label: np.ndarray  # (H, W) palette index of the smoothed hue; -1 where none fits or too faint
    raw_alpha: np.ndarray  # (H, W, 6) coverage by each palette colour
    smooth_alpha: np.ndarray  # (H, W, 6) the same after smoothing
    smooth_chroma_norm: np.ndarray  # (H, W)


def _colour_fields(rgb: np.ndarray) -> _ColourFields:
    chroma = _chroma(rgb)
    raw_alpha = chroma @ _PALETTE_CHROMA.T / _PALETTE_NORM2
    smooth = ndimage.gaussian_filter(chroma, sigma=(_HUE_SIGMA, _HUE_SIGMA, 0))
    smooth_alpha = smooth @ _PALETTE_CHROMA.T / _PALETTE_NORM2
    norm = np.linalg.norm(smooth, axis=-1)
    cos = smooth @ _PALETTE_UNIT.T / np.maximum(norm, 1e-9)[..., None]
    best = cos.argmax(axis=-1)[..., None]
    fits = np.take_along_axis(cos, best, -1)[..., 0] >= _MIN_COS
    strong = np.take_along_axis(smooth_alpha, best, -1)[..., 0] >= _SEED_ALPHA
    label = np.where(fits & strong, best[..., 0], -1)
    return _ColourFields(label, raw_alpha, smooth_alpha, norm)


def _component(mask: np.ndarray) -> Component:
    ys, xs = np.nonzero(mask)
    return Component((float(ys.mean()), float(xs.mean())), int(mask.sum()), mask)


def _reference(alpha: np.ndarray, where: np.ndarray) -> float:
    """A region's own full coverage: near 1 for a true render, lower for a washed-out object."""
    return float(np.clip(np.percentile(alpha[where], 90), _MIN_REFERENCE_ALPHA, 1.0))


def _components(fields: _ColourFields, colour: str) -> list[Component]:
    index = _COLOUR_NAMES.index(colour)
    seeds, n = ndimage.label(fields.label == index, structure=_EIGHT)
    alpha = fields.raw_alpha[..., index]
    found = []
    for k in range(1, n + 1):
        seed = seeds == k
        region = ndimage.binary_dilation(seed)
        edge = _EDGE_FRACTION * _reference(alpha, seed)
        mask = ndimage.binary_fill_holes(region & (alpha >= edge))
        if mask.sum() >= _MIN_AREA:
            found.append(_component(mask))
    found.sort(key=lambda c: -c.area)
    return found


def _partitions(mask: np.ndarray, smooth_alpha: np.ndarray) -> Iterator[np.ndarray]:
    """Candidate ways to cut `mask` into objects, as (H, W) integer owner maps."""
    reference = _reference(smooth_alpha, mask)
    levels = [mask & (smooth_alpha >= f * reference) for f in _SPLIT_LEVELS]
    levels += [ndimage.binary_erosion(mask, iterations=i) for i in range(1, _MAX_SPLIT_EROSION + 1)]
    for core in levels:
        cores, n = ndimage.label(core, structure=_EIGHT)
        sizes = ndimage.sum(core, cores, range(1, n + 1))
        kept = [k + 1 for k in range(n) if sizes[k] >= _MIN_CORE_AREA]
        if len(kept) >= 2:
            markers = np.where(np.isin(cores, kept), cores, 0)
            _, (iy, ix) = ndimage.distance_transform_edt(markers == 0, return_indices=True)
            yield markers[iy, ix]
    # Last resort for a broad seam (two crosses meeting arm to arm): two clusters of pixel
    # positions, started either side of the centre along the region's long axis.
    points = np.argwhere(mask).astype(np.float64)
    centre = points.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(points.T))
    step = np.sqrt(values[-1]) * vectors[:, -1]
    means = np.stack([centre - step, centre + step])
    for _ in range(_KMEANS_STEPS):
        nearest = ((points[:, None] - means[None]) ** 2).sum(-1).argmin(axis=1)
        if nearest.min() == nearest.max():
            return
        means = np.stack([points[nearest == k].mean(axis=0) for k in (0, 1)])
    owner = np.zeros(mask.shape, int)
    owner[mask] = nearest + 1
    yield owner


def _split(component: Component, fields: _ColourFields, colour: str) -> list[Component]:
    """Pieces of a region that is several touching objects, or [component] if it is one.

    Neighbouring anchors leave objects 0-2 px apart, so two objects of one colour can meet in a
    seam, or blur can bridge the gap. Cores are found by raising the coverage threshold (a blurred
    shape is one plateau, a blurred gap a dip below it) or by eroding the mask (every shape is
    thickest at its centre, a seam between two shapes is thin), and each pixel goes to its
    nearest core. Noise can carve one plateau into cores too, and the fallback clustering always
    cuts, so a cut is kept only if every piece fits a shape template better than the whole does.
    """
    mask = component.mask
    whole = _fit_shape(_coverage(fields, colour, component, []), component.centroid)[2]
    for owner in _partitions(mask, fields.smooth_alpha[..., _COLOUR_NAMES.index(colour)]):
        pieces = [_component(mask & (owner == k)) for k in np.unique(owner[mask])]
        pieces = [p for p in pieces if p.area >= _MIN_AREA]
        if len(pieces) < 2:
            continue
        fits = [_fit_shape(_coverage(fields, colour, p, pieces), p.centroid)[2] for p in pieces]
        if min(fits) > whole:
            return pieces
    return [component]


def find_object(image: np.ndarray, colour: str) -> list[Component]:
    """Regions of `colour` in `image`, largest first, each with its centre of mass (y, x).

    Regions below `_MIN_AREA` pixels are dropped; stray blobs above it are kept (callers that
    want "the" object take the first, or match by place as `check_image` does).
    """
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}; expected one of {_COLOUR_NAMES}")
    return _components(_colour_fields(_as_float_rgb(image)), colour)


def _make_templates() -> tuple[np.ndarray, list[tuple[str, float]], np.ndarray]:
    """Soft templates (every shape, half-extent and blur), unit-normalised, flattened windows."""
    c = RESOLUTION // 2
    window = (slice(c - _HALF, c + _HALF + 1),) * 2
    templates, keys, offsets = [], [], []
    for shape in SHAPES:
        for r in _RADII:
            hard = shape_mask(shape, c, c, float(r)).astype(np.float64)
            ys = np.nonzero(hard)[0]
            for sigma in _TEMPLATE_BLURS:
                soft = ndimage.gaussian_filter(hard, sigma) if sigma else hard
                t = soft[window].ravel()
                templates.append(t / np.linalg.norm(t))
                keys.append((shape, float(r)))
                # Centre of mass minus drawing centre: about 0.2 r down for the triangle.
                offsets.append(ys.mean() - c)
    return np.array(templates, np.float32), keys, np.array(offsets)


_TEMPLATES, _TEMPLATE_KEYS, _TEMPLATE_Y_OFFSETS = _make_templates()


def _fit_shape(coverage: np.ndarray, centroid: tuple[float, float]) -> tuple[str, float, float]:
    """(shape, half-extent, score) of the template best matching a coverage map.

    The score is the cosine between the map and a template, i.e. the least-squares fit with a
    free gain, so a washed-out object is judged by its outline, not by its saturation. Matching
    soft coverage against blurred templates, rather than a thresholded mask against hard ones,
    keeps a blurred small cross from looking like a circle: thresholding rounds its corners,
    while the blurred template predicts exactly that rounding.
    """
    pad = _HALF + _SHIFT + 4
    padded = np.pad(coverage, pad)
    cy, cx = centroid
    # Candidate drawing centres: the centroid minus any template's centroid offset, plus slack.
    y0 = int(np.floor(cy - _TEMPLATE_Y_OFFSETS.max())) - _SHIFT
    y1 = int(np.ceil(cy - _TEMPLATE_Y_OFFSETS.min())) + _SHIFT
    x0, x1 = round(cx) - _SHIFT, round(cx) + _SHIFT
    side = 2 * _HALF + 1
    crops = np.stack(
        [
            padded[
                y + pad - _HALF : y + pad - _HALF + side, x + pad - _HALF : x + pad - _HALF + side
            ]
            for y in range(y0, y1 + 1)
            for x in range(x0, x1 + 1)
        ]
    ).reshape(-1, side * side)
    # Normalising by the whole map, not the crop, so coverage a window misses counts against it.
    scores = _TEMPLATES @ crops.T.astype(np.float32) / max(float(np.linalg.norm(coverage)), 1e-9)
    t, _ = np.unravel_index(int(scores.argmax()), scores.shape)
    shape, r = _TEMPLATE_KEYS[t]
    return shape, r, float(scores.max())


def _nearest_place(y: float, x: float) -> str:
    return min(PLACES, key=lambda p: (PLACES[p][0] - y) ** 2 + (PLACES[p][1] - x) ** 2)


def _background_pixels(fields: _ColourFields) -> np.ndarray:
    chromatic = ndimage.binary_dilation(
        fields.smooth_chroma_norm >= _CHROMA_BACKGROUND_MAX, iterations=_OBJECT_HALO
    )
    if (~chromatic).sum() < RESOLUTION * RESOLUTION // 10:
        # Nearly all colour: judge the background from everything rather than from a handful.
        return np.ones(chromatic.shape, bool)
    return ~chromatic


def _classify_background(rgb: np.ndarray, fields: _ColourFields) -> str:
    grey = rgb.mean(axis=-1)
    keep = _background_pixels(fields)
    values = grey[keep]
    mean = float(values.mean())
    # Object holes are filled with the mean so that they add no periodic energy of their own.
    power = np.abs(np.fft.fft2(np.where(keep, grey, mean) - mean)) ** 2
    total = float(power.sum())
    if total > 0:
        # Per-bin noise floor. A texture or shading fills only a few bins, so the median bin is
        # noise, whose power per bin is exponentially distributed (median = ln 2 * mean).
        floor = float(np.median(power)) / np.log(2.0)
        k = RESOLUTION // STRIPE_PERIOD

        def peak(*bins: tuple[int, int]) -> float:
            # +-1 bin tolerates periods of about 7-9 px; the expected noise share is removed.
            energy = 0.0
            for ky, kx in bins:
                rows = [(ky + d) % RESOLUTION for d in (-1, 0, 1)]
                cols = [(kx + d) % RESOLUTION for d in (-1, 0, 1)]
                energy += float(power[np.ix_(rows, cols)].sum()) - 9 * floor
            return max(energy, 0.0)

        axis = peak((k, 0), (-k, 0), (0, k), (0, -k))
        diagonal = peak((k, k), (-k, -k))
        anti = peak((k, -k), (-k, k))
        periodic = axis + diagonal + anti
        # Parseval for numpy's unnormalised FFT: the periodic part's RMS in grey levels.
        rms = np.sqrt(periodic) / grey.size
        if periodic / total >= _MIN_PERIODIC_FRACTION and rms >= _MIN_TEXTURE_RMS:
            # Stripes (in either orientation) load one diagonal only; a dot lattice is symmetric.
            asymmetry = abs(diagonal - anti) / periodic
            return "striped" if asymmetry >= _MIN_STRIPE_ASYMMETRY else "dotted"
    level = float(np.median(values))
    return min(PLAIN_BACKGROUNDS, key=lambda s: abs(PLAIN_BACKGROUNDS[s][0] - level))


def classify_background(image: np.ndarray) -> str:
    """The background style of `image`: one of `world.BACKGROUNDS`."""
    rgb = _as_float_rgb(image)
    return _classify_background(rgb, _colour_fields(rgb))


def _candidates(components: list[Component]) -> list[Component]:
    if not components:
        return []
    floor = _MIN_RELATIVE_AREA * components[0].area
    return [c for c in components if c.area >= floor]


def _coverage(
    fields: _ColourFields, colour: str, component: Component, rivals: list[Component]
) -> np.ndarray:
    """The component's soft coverage map, with same-coloured neighbours cut out."""
    support = ndimage.binary_dilation(component.mask, iterations=_COVERAGE_MARGIN)
    for rival in rivals:
        if rival is not component:
            support &= ~rival.mask
    alpha = fields.raw_alpha[..., _COLOUR_NAMES.index(colour)]
    return np.where(support, np.clip(alpha, -0.5, 1.5), 0.0)


def _judge(
    obj_shape: str, obj_size: str, obj_place: str, component: Component, coverage: np.ndarray
) -> ObjectVerdict:
    shape, r, _ = _fit_shape(coverage, component.centroid)
    size = "small" if r < _SIZE_BOUNDARY else "large"
    place = _nearest_place(*component.centroid)
    return ObjectVerdict(
        colour_ok=True,
        shape_ok=shape == obj_shape,
        place_ok=place == obj_place,
        size_ok=size == obj_size,
        centroid=component.centroid,
        predicted_shape=shape,
        predicted_place=place,
        predicted_size=size,
    )


def check_image(image: np.ndarray, scene: Scene) -> SceneVerdict:
    """Judge each prompted object of `scene` and its background style against `image` alone."""
    rgb = _as_float_rgb(image)
    fields = _colour_fields(rgb)
    verdicts: list[ObjectVerdict] = [_MISSING] * len(scene.objects)
    for colour in dict.fromkeys(o.colour for o in scene.objects):
        wanted = [i for i, o in enumerate(scene.objects) if o.colour == colour]
        found = _candidates(_components(fields, colour))
        if len(found) < len(wanted):
            # Fewer regions than prompted objects of this colour: some may be touching objects.
            pieces = [p for c in found for p in _split(c, fields, colour)]
            found = _candidates(sorted(pieces, key=lambda c: -c.area))
        if not found:
            continue
        cost = np.array(
            [
                [np.hypot(*np.subtract(c.centroid, PLACES[scene.objects[i].place])) for c in found]
                for i in wanted
            ]
        )
        for row, col in zip(*linear_sum_assignment(cost)):
            obj = scene.objects[wanted[row]]
            coverage = _coverage(fields, colour, found[col], found)
            verdicts[wanted[row]] = _judge(obj.shape, obj.size, obj.place, found[col], coverage)
    background = _classify_background(rgb, fields)
    return SceneVerdict(tuple(verdicts), background == scene.background, background)


def summarise(verdicts: Sequence[SceneVerdict]) -> dict[str, float]:
    """Per-attribute accuracy over all objects (background over scenes), plus counts."""
    objects = [o for v in verdicts for o in v.objects]

    def rate(values: list[bool]) -> float:
        return float(np.mean(values)) if values else float("nan")

    return {
        "colour": rate([o.colour_ok for o in objects]),
        "shape": rate([o.shape_ok for o in objects]),
        "place": rate([o.place_ok for o in objects]),
        "size": rate([o.size_ok for o in objects]),
        "background": rate([v.background_ok for v in verdicts]),
        "all_objects": rate([o.all_ok for o in objects]),
        "n_objects": float(len(objects)),
        "n_scenes": float(len(verdicts)),
    }
