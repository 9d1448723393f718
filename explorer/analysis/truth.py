"""Ground truth for the analyses: which labelled objects the *final image* of a sample shows, where.

Three sources, one shape (`SampleTruth`):

* `ShapesTruth` — the bundled shapes world. The store knows each sample's prompted objects
  (shape, colour, size, place) and the exact masks of the rendered scene; but a generated image
  can deviate from its prompt (an object drawn a little off its place, a wrong shape, a missing
  one). The paper labels concepts against the generated images, so by default each prompted
  object is looked up in the generated image with the checker (`explorer.shapes.checker`):
  its mask is the region of its colour the checker assigns to it, its labels are what the
  checker reads there (shape, place, size) plus the colour, and the background style is what the
  checker reads from the pixels. Objects the checker cannot find are counted as missing and
  left out. With `use_checker=False` the scene's exact masks and prompted labels are used.
* `MaskFolderTruth` — user-supplied masks for real models, in a PNG folder or an HDF5 file
  (format in docs/analysis.md and below).
* `PseudoMaskTruth` — no masks at all: each content word of each prompt is an object whose mask
  is DAAM's reading of its cross-attention over the final steps (pseudo_masks.py builds the
  file, in the user-mask HDF5 format, from the store's model).
* anything else with `sample(i) -> SampleTruth | None`.

User masks, PNG folder:
    M/<sample>/<label>.png   one file per object; <sample> is the store's sample index (any zero
                             padding), non-zero pixels are the mask. Several labels for one
                             object are joined by "__" ("red__car.png"); text after "#" is
                             ignored, for two objects with one label ("dog#2.png").
User masks, HDF5:
    /samples/<sample>/<label>  (H, W) bool/uint8 dataset per object; the same "__" and "#"
                               rules apply to <label>; an optional attribute "kind" names the
                               label's kind (default "object").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from explorer.analysis.errors import AnalysisError
from explorer.errors import UserError

OBJECT_KINDS = ("shape", "colour", "place", "size")
_BACKGROUND_RE = re.compile(r"\bon an? ([\w-]+) background\b")


@dataclass
class ObjectTruth:
    """One object of a final image: its (kind, label) pairs and its (H, W) mask."""

    labels: list[tuple[str, str]]
    mask: np.ndarray
    prompted: list[tuple[str, str]] = field(default_factory=list)
    """What the prompt asked for (shapes world); `labels` is what the image shows."""
    position: int | None = None
    """Cross-attention pseudo-masks: the index of the object's word in its prompt's words."""

    @property
    def query_words(self) -> set[str]:
        """Labels naming this object in its prompt (what composition matches features against).

        Size is left out: "small"/"large" name no object apart from its neighbours.
        """
        return {label for kind, label in (self.prompted or self.labels) if kind != "size"}


@dataclass
class SampleTruth:
    objects: list[ObjectTruth]
    background: str | None = None
    missing: int = 0
    """Prompted objects the final image does not show (not scored)."""
    shape: tuple[int, int] | None = None

    def background_mask(self) -> np.ndarray | None:
        if self.background is None or self.shape is None:
            return None
        mask = np.ones(self.shape, bool)
        for obj in self.objects:
            mask &= ~obj.mask
        return mask

    def labelled_masks(self) -> list[tuple[list[tuple[str, str]], np.ndarray]]:
        """(labels, mask) of every object, then the background (kind "background") if known."""
        out = [(o.labels, o.mask) for o in self.objects]
        bg = self.background_mask()
        if bg is not None:
            out.append(([("background", self.background)], bg))
        return out


def background_from_prompt(prompt: str) -> str | None:
    m = _BACKGROUND_RE.search(prompt)
    return m.group(1) if m else None


class ShapesTruth:
    """Ground truth of a shapes-world store (see the module docstring)."""

    def __init__(self, store, use_checker: bool = True, cache_size: int = 4096):
        self.store = store
        self.use_checker = use_checker
        # Several indexes and the composition score read the same samples: the checker runs
        # once per image. Bounded (oldest first out) so a huge store cannot fill the memory.
        self.cache_size = cache_size
        self._cache: dict[int, SampleTruth | None] = {}

    @staticmethod
    def available(store) -> bool:
        """Whether the store carries the shapes world's per-sample attributes."""
        if not getattr(store, "has_masks", True) or store.n_samples == 0:
            return False
        try:
            return bool(store.attributes(0))
        except (UserError, AttributeError, KeyError, IndexError, TypeError, ValueError, OSError):
            return False

    def sample(self, i: int) -> SampleTruth | None:
        if i not in self._cache:
            if len(self._cache) >= self.cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[i] = self._read(i)
        return self._cache[i]

    def _read(self, i: int) -> SampleTruth | None:
        attrs = self.store.attributes(i)
        if not attrs:
            return None
        attrs = [dict(a) for a in attrs]
        prompt = self.store.prompts[i]
        background = _attribute_background(self.store, i) or background_from_prompt(prompt)
        if self.use_checker:
            image = self.store.image(i)
            return checked_truth(image, attrs, background)
        if any("place" not in a for a in attrs):
            raise AnalysisError(
                f"sample {i}: its prompt names no places, so the scene's masks say nothing about "
                "the generated image; read the truth with the checker (use_checker=True)"
            )
        masks = np.asarray(self.store.masks(i), bool)
        objects = [
            ObjectTruth(_prompted(a), m, prompted=_prompted(a))
            for a, m in zip(attrs, masks, strict=True)
        ]
        return SampleTruth(objects, background, 0, tuple(masks.shape[-2:]))


def _prompted(attrs: dict) -> list[tuple[str, str]]:
    return [(k, str(attrs[k])) for k in OBJECT_KINDS if attrs.get(k)]


def _attribute_background(store, i: int) -> str | None:
    for name in ("metadata", "meta", "sample_metadata"):
        fn = getattr(store, name, None)
        if callable(fn):
            try:
                meta = fn(i)
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            if isinstance(meta, dict) and meta.get("background"):
                return str(meta["background"])
    return None


def checked_truth(image: np.ndarray, attrs: Sequence[dict], background: str | None) -> SampleTruth:
    """Truth of one generated shapes-world image, read by the checker (see module docstring)."""
    from explorer.shapes.checker import check_image, classify_background, find_object
    from explorer.shapes.world import Scene, SceneObject

    # A placeless prompt names no place; the checker only uses places to tell same-coloured
    # regions apart, and the centre favours none of them.
    scene = Scene(
        objects=tuple(
            SceneObject(a["shape"], a["colour"], a.get("size", "large"), a.get("place", "centre"))
            for a in attrs
        ),
        background=background or "white",
    )
    verdict = check_image(image, scene)
    regions = {c: find_object(image, c) for c in {a["colour"] for a in attrs}}
    objects, missing = [], 0
    for a, v in zip(attrs, verdict.objects, strict=True):
        if v.centroid is None:
            missing += 1
            continue
        mask = _region_at(regions[a["colour"]], v.centroid)
        if mask is None:
            missing += 1
            continue
        labels = [("shape", v.predicted_shape or a["shape"]), ("colour", a["colour"])]
        if v.predicted_place or a.get("place"):
            labels.append(("place", v.predicted_place or a["place"]))
        if v.predicted_size or a.get("size"):
            labels.append(("size", v.predicted_size or a["size"]))
        objects.append(ObjectTruth(labels, mask, prompted=_prompted(a)))
    seen_background = classify_background(image) if background is not None else None
    return SampleTruth(objects, seen_background, missing, tuple(image.shape[:2]))


def _region_at(components, centroid) -> np.ndarray | None:
    """The region whose centre of mass the checker reported, else the one holding that point
    (the checker may have split a region of two touching same-coloured objects)."""
    if not components:
        return None
    cy, cx = centroid
    best = min(components, key=lambda c: (c.centroid[0] - cy) ** 2 + (c.centroid[1] - cx) ** 2)
    if np.hypot(best.centroid[0] - cy, best.centroid[1] - cx) < 0.5:
        return best.mask
    y, x = round(cy), round(cx)
    for comp in components:
        if comp.mask[min(max(y, 0), comp.mask.shape[0] - 1), min(max(x, 0), comp.mask.shape[1] - 1)]:
            return comp.mask
    return best.mask


# --- user-supplied masks ----------------------------------------------------------------------


def _labels_from_name(name: str, kind: str = "object") -> list[tuple[str, str]]:
    name = name.split("#", 1)[0].strip()
    return [(kind, p.strip()) for p in name.split("__") if p.strip()]


class MaskFolderTruth:
    """User masks from a PNG folder or an HDF5 file (formats in the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise AnalysisError(f"mask source {self.path} does not exist")
        self._h5 = None
        self._dirs: dict[int, Path] = {}
        if self.path.is_dir():
            for sub in self.path.iterdir():
                if sub.is_dir() and sub.name.isdigit():
                    self._dirs[int(sub.name)] = sub
            if not self._dirs:
                raise AnalysisError(
                    f"mask folder {self.path} has no per-sample subfolders (e.g. {self.path}/0/dog.png)"
                )
        else:
            import h5py

            try:
                self._h5 = h5py.File(self.path, "r")
            except OSError as e:
                raise AnalysisError(f"{self.path} is not a readable HDF5 mask file ({e})") from None
            if "samples" not in self._h5:
                raise AnalysisError(f"{self.path} has no /samples group (see docs/analysis.md)")

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def sample(self, i: int) -> SampleTruth | None:
        objects: list[ObjectTruth] = []
        if self._h5 is not None:
            group = self._h5["samples"].get(str(i))
            if group is None:
                return None
            for name, ds in group.items():
                labels = _labels_from_name(name, str(ds.attrs.get("kind", "object")))
                objects.append(ObjectTruth(labels, np.asarray(ds[()]) > 0))
        else:
            folder = self._dirs.get(i)
            if folder is None:
                return None
            from PIL import Image

            for png in sorted(folder.glob("*.png")):
                with Image.open(png) as im:
                    mask = np.asarray(im.convert("L")) > 0
                objects.append(ObjectTruth(_labels_from_name(png.stem), mask))
        objects = [o for o in objects if o.labels]
        if not objects:
            return None
        shape = objects[0].mask.shape
        if any(o.mask.shape != shape for o in objects):
            raise AnalysisError(f"masks of sample {i} in {self.path} differ in size")
        return SampleTruth(objects, None, 0, tuple(shape))


# What a report calls each source of ground truth (`truth_kind`).
EXACT, USER, PSEUDO = "exact masks", "user masks", "cross-attention pseudo-masks"


class PseudoMaskTruth(MaskFolderTruth):
    """Cross-attention pseudo-masks (pseudo_masks.py) of one store, read as user masks are.

    The file says which store and which weights it describes; another store's (a re-collected
    one) or another model's are refused with one line naming the file.
    """

    def __init__(self, path: str | Path, store=None):
        super().__init__(path)
        if self._h5 is None:
            raise AnalysisError(f"{self.path}: pseudo-masks are an HDF5 file, not a folder")
        attrs = self._h5.attrs
        if str(attrs.get("schema", "")) != PSEUDO_SCHEMA or not attrs.get("complete", False):
            self.close()
            raise AnalysisError(f"{self.path} is not a complete pseudo-mask file; delete it to "
                                "rebuild it")
        self.meta = {k: (v.item() if getattr(v, "ndim", 1) == 0 else v) for k, v in attrs.items()}
        if store is not None:
            problem = pseudo_mismatch(self.meta, store)
            if problem:
                self.close()
                raise AnalysisError(f"{self.path}: {problem}; delete it to rebuild it")

    def sample(self, i: int) -> SampleTruth | None:
        group = self._h5["samples"].get(str(i))
        if group is None:
            return None
        objects = []
        # In prompt order (the names sort as text: "10" before "2").
        for name, ds in sorted(group.items(), key=lambda kv: int(kv[1].attrs.get("position", 0))):
            labels = _labels_from_name(name, str(ds.attrs.get("kind", "word")))
            objects.append(ObjectTruth(labels, np.asarray(ds[()]) > 0,
                                       position=int(ds.attrs.get("position", -1))))
        shape = tuple(int(x) for x in group.attrs.get("shape", (0, 0)))
        return SampleTruth([o for o in objects if o.labels], None, 0, shape)


PSEUDO_SCHEMA = "concept-explorer/pseudo-masks"


def pseudo_mismatch(meta: dict, store) -> str | None:
    """Why pseudo-masks with attributes `meta` do not describe `store` (None when they do)."""
    want = str(store.meta.get("model_hash") or "")
    have = str(meta.get("model_fingerprint", ""))
    if want and have != want:
        return (f"made with other weights (fingerprint {have[:16]}) than collected {store.path} "
                f"({want[:16]})")
    if str(meta.get("store_fingerprint", "")) != str(getattr(store, "fingerprint", "")):
        return f"made for another store than {store.path} (its prompts, seeds or samples differ)"
    return None


def truth_kind(truth) -> str | None:
    """Which kind of ground truth `truth` is: EXACT, USER or PSEUDO (None without truth)."""
    if truth is None:
        return None
    if isinstance(truth, PseudoMaskTruth):
        return PSEUDO
    if isinstance(truth, ShapesTruth):
        return EXACT
    return USER


def open_truth(store, masks: str | Path | None = None, use_checker: bool = True):
    """The ground truth for a store: user masks when given, else the shapes world's, else None."""
    if masks is not None:
        return MaskFolderTruth(masks)
    if ShapesTruth.available(store):
        return ShapesTruth(store, use_checker=use_checker)
    return None
