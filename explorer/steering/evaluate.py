"""Intervention evaluation with exact truth: the paper's Tables 4 and 5 on the shapes world.

Per stage (early / middle / final), the stage's own SAE edits held-in one-object scenes whose
prompts name no place: spatial edits must move the object to a target quadrant, global edits
must change the background style, both scored by the shapes checker against exact truth, at
the calibrated strength and multiples of it. The protocol and why each choice was made:
docs/steering.md, "Evaluation (Tables 4 and 5 analogues)".
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from explorer.errors import UserError
from explorer.steering.calibration import PAPER_BETA, PAPER_RESULTS, calibrated_beta
from explorer.steering.windows import PRESETS, STAGES

TEST_SEED_OFFSET = 3_000_000
LABEL_SEED_OFFSET = 4_000_000
# "Clearly above": the early spatial success must beat the other stages by this much.
CLEAR_MARGIN = 0.15
SPATIAL_BAR = 0.7
LPIPS_NOTE = (
    "not computed: LPIPS needs pretrained AlexNet/VGG weights that the `lpips` package fetches "
    "at run time (through torchvision); nothing offline here provides them"
)


def check_shapes_world(model_path) -> None:
    """Refuse, in one line and before a model loads, a model the protocol cannot score: the
    shapes checker reads objects, colours and backgrounds in the shapes world's 64-px images,
    and the test prompts are that world's captions. A model of the shapes world (the bundled
    one, one `explorer shapes train` made, or a random one of its architecture) makes images of
    that size and has a word-level tokenizer holding every word of the world; a real model
    (SD 1.x: CLIP's BPE vocabulary, 512 px) has neither."""
    from explorer.preflight import read_model
    from explorer.shapes.world import RESOLUTION, vocabulary

    plan = read_model(model_path)
    why = None
    if plan.resolution is not None and plan.resolution != RESOLUTION:
        why = f"makes {plan.resolution}-px images"
    else:
        vocab = _tokenizer_vocabulary(plan.folder / "tokenizer")
        missing = [w for w in vocabulary() if w not in vocab]
        if missing:
            why = f"has no word-level tokenizer holding the shapes world's words ({missing[0]!r})"
    if why:
        raise UserError(
            f"evaluate-interventions needs the bundled shapes model (or one `explorer shapes "
            f"train` made): the shapes checker scores its edits, and {plan.folder} {why}; "
            "steer this model with `explorer steer` or the app's Steer page"
        )


def _tokenizer_vocabulary(folder) -> dict:
    """A tokenizer folder's token → id map: tokenizer.json's `model.vocab`, else vocab.json's;
    {} when neither file reads as one."""
    import json

    for name, keys in (("tokenizer.json", ("model", "vocab")), ("vocab.json", ())):
        try:
            data = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        for key in keys:
            data = data.get(key) if isinstance(data, dict) else None
        if isinstance(data, dict):
            return data
    return {}


@dataclass(frozen=True)
class Case:
    scene: object  # explorer.shapes.world.Scene with one object
    target_quadrant: str
    target_background: str
    placed: bool = True  # the prompt names the object's place
    styled: bool = True  # the prompt names the background style

    @property
    def prompt(self) -> str:
        return self.scene.caption(places=self.placed, background=self.styled)


def make_cases(n: int, seed_offset: int = TEST_SEED_OFFSET, placed: bool = True,
               styled: bool = True) -> list[Case]:
    """`n` held-in one-object scenes at corner places, with their targets (for placeless or
    unstyled prompts the quadrant or style is provisional until `retarget` sees the unedited
    image)."""
    from explorer.shapes.world import BACKGROUNDS, QUADRANTS, Scene

    out: list[Case] = []
    seed = seed_offset
    while len(out) < n:
        scene = Scene.from_seed(seed, "train")
        seed += 1
        if len(scene.objects) != 1 or scene.objects[0].place not in QUADRANTS:
            continue
        rng = np.random.default_rng([scene.seed, 7])
        quadrant = str(rng.choice([q for q in QUADRANTS if q != scene.objects[0].place]))
        background = str(rng.choice([b for b in BACKGROUNDS if b != scene.background]))
        out.append(Case(scene, quadrant, background, placed, styled))
    return out


def retarget(cases: list[Case], own: list[str | None],
             styles: list[str | None] | None = None) -> list[Case]:
    """Placeless cases get a target quadrant other than the one their object took unedited
    (`own`, None where the checker found no object: then any quadrant), and unstyled ones a
    target style other than the one the unedited image shows (`styles`), so that no edit
    scores by leaving the image alone. Placed and styled cases keep theirs (already ≠ what
    their prompt names)."""
    from dataclasses import replace

    from explorer.shapes.world import BACKGROUNDS, QUADRANTS

    styles = styles if styles is not None else [None] * len(cases)
    out = []
    for c, q, style in zip(cases, own, styles, strict=True):
        if not c.placed:
            rng = np.random.default_rng([c.scene.seed, 11])
            c = replace(c, target_quadrant=str(rng.choice([x for x in QUADRANTS if x != q])))
        if not c.styled:
            rng = np.random.default_rng([c.scene.seed, 13])
            c = replace(c, target_background=str(rng.choice([b for b in BACKGROUNDS
                                                              if b != style])))
        out.append(c)
    return out


def quadrant_of(y: float, x: float, size: int) -> str:
    half = size / 2
    return f"{'top' if y < half else 'bottom'} {'left' if x < half else 'right'}"


def object_quadrant(image: np.ndarray, colour: str) -> str | None:
    """The quadrant of the centre of mass of every `colour` region the checker finds, or None."""
    from explorer.shapes.checker import find_object

    comps = find_object(image, colour)
    if not comps:
        return None
    area = np.array([c.area for c in comps], np.float64)
    cy = float(np.dot(area, [c.centroid[0] for c in comps]) / area.sum())
    cx = float(np.dot(area, [c.centroid[1] for c in comps]) / area.sum())
    return quadrant_of(cy, cx, image.shape[0])


@dataclass
class InterventionReport:
    model: str
    block: str
    steps: int
    guidance: float
    n: int
    n_label: int
    seconds: float
    stages: dict[str, dict] = field(default_factory=dict)  # SAE, β, features per stage
    spatial: dict[str, dict] = field(default_factory=dict)
    spatial_control: dict[str, dict] = field(default_factory=dict)
    global_: dict[str, dict] = field(default_factory=dict)
    # β multiple → {"spatial"|"global": stage → scores}; 1.0 is the same run as the tables above.
    sweep: dict[float, dict[str, dict[str, dict]]] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    json_path: Path | None = None
    md_path: Path | None = None
    placed: bool = False  # the test prompts name their object's place
    styled: bool = True  # the test prompts name their background style

    def bars(self, spatial: dict | None = None, global_: dict | None = None) -> dict[str, bool]:
        sp = {s: (spatial or self.spatial)[s]["success"] for s in STAGES}
        gl = {s: (global_ or self.global_)[s]["success"] for s in STAGES}
        return {
            "spatial_early_at_least_0.7": sp["early"] >= SPATIAL_BAR,
            "spatial_early_clearly_above_middle_and_final": sp["early"]
            >= max(sp["middle"], sp["final"]) + CLEAR_MARGIN,
            "global_highest_in_middle": gl["middle"] > max(gl["early"], gl["final"]),
        }

    def to_json(self) -> dict:
        return {
            "protocol": __doc__.strip().splitlines()[0],
            "prompts": "placed" if self.placed else "placeless",
            "background_in_prompts": self.styled,
            "model": self.model,
            "block": self.block,
            "steps": self.steps,
            "guidance": self.guidance,
            "n": self.n,
            "n_label": self.n_label,
            "seconds": round(self.seconds, 1),
            "stages": self.stages,
            "spatial": self.spatial,
            "spatial_control_equal_beta": self.spatial_control,
            "global": self.global_,
            "beta_sweep": {
                str(k): {**v, "bars": self.bars(v["spatial"], v["global"])}
                for k, v in self.sweep.items()
            },
            "baseline_unedited": self.baseline,
            "lpips": LPIPS_NOTE,
            "paper": {"beta_sd14": PAPER_BETA, "results_sd14": PAPER_RESULTS},
            "bars": self.bars(),
            "clear_margin": CLEAR_MARGIN,
            "notes": self.notes,
        }

    def markdown(self) -> str:
        lines = [self._md_title(), "", self._md_setting(), "", *self._md_tables()]
        if len(self.sweep) > 1:
            lines += self._md_sweep()
        lines += ["", self._md_unedited(), "", self._md_bars(), "", f"LPIPS: {LPIPS_NOTE}."]
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def _md_title(self) -> str:
        return (
            "## Interventions"
            + ("" if report_stem(self.block) == "interventions" else f" at `{self.block}`")
            + (", prompts naming their places" if self.placed else "")
            + ("" if self.styled else ", prompts naming no background")
        )

    def _md_setting(self) -> str:
        return (
            f"{self.model}, {self.block}, {self.steps} steps, guidance {self.guidance:g}; "
            f"{self.n} one-object test prompts (held-in), "
            + ("naming the object's place (the edit must overrule the text). "
               if self.placed else
               "without places, as the paper's (the model chooses the layout; the target is "
               "a quadrant other than the one the object took unedited). ")
            + ("" if self.styled else
               "The prompts name no background either; the target style is one the unedited "
               "image does not show. ")
            + "Ours, with the paper's SD 1.4 number in parentheses."
        )

    def _md_tables(self) -> list[str]:
        """The results per stage (the paper's in parentheses), then each stage's SAE and β."""
        lines = [
            "| result | early | middle | final |",
            "|---|---|---|---|",
            _md_row("spatial success (Table 4; chance 0.25)", self.spatial, "success", "spatial"),
            _md_row("spatial, early β in every stage (control)", self.spatial_control, "success"),
            _md_row("spatial pixel change", self.spatial, "pixel_distance", fmt=".3f"),
            _md_row("global success (Table 5; checker's style)", self.global_, "success",
                    "global"),
            _md_row("global pixel change", self.global_, "pixel_distance", fmt=".3f"),
            "| global LPIPS (paper: 0.653 / 0.385 / 0.114) | n/a | n/a | n/a |",
            "",
            "| stage | SAE | dictionary | β spatial | β global | mean features (spatial) | "
            "prompts without features (spatial / global) |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in STAGES:
            st = self.stages[s]
            lines.append(
                f"| {s} | {st['sae']} | {st['dictionary_source']} | {st['beta_spatial']:.3g} | "
                f"{st['beta_global']:.3g} | "
                f"{self.spatial[s]['mean_features']:.1f} | "
                f"{self.spatial[s]['no_features']} / {self.global_[s]['no_features']} |"
            )
        return lines

    def _md_sweep(self) -> list[str]:
        lines = [
            "",
            "Dose-response: success at multiples of the calibrated β (same multiple in every "
            "stage; pixel change in parentheses).",
            "",
            "| edit | β × | early | middle | final | pattern |",
            "|---|---|---|---|---|---|",
        ]
        for mode, key in (("spatial", "spatial_early_clearly_above_middle_and_final"),
                          ("global", "global_highest_in_middle")):
            for scale in sorted(self.sweep):
                sc = self.sweep[scale]
                cells = " | ".join(
                    f"{sc[mode][s]['success']:.2f} ({sc[mode][s]['pixel_distance']:.3f})"
                    for s in STAGES
                )
                ok = self.bars(sc["spatial"], sc["global"])[key]
                lines.append(f"| {mode} | {scale:g} | {cells} | "
                             f"{key.replace('_', ' ')}: {'yes' if ok else 'no'} |")
        return lines

    def _md_unedited(self) -> str:
        b = self.baseline
        if self.placed:
            where = f"in its prompted quadrant {b['object_in_own']:.2f}"
        else:
            where = (f"in the quadrant of the scene it was drawn from (not in the prompt; chance "
                     f"0.25) {b['object_in_own']:.2f}, quadrants taken "
                     + ", ".join(f"{q} {v:.2f}" for q, v in b["quadrant_share"].items()))
        return (
            f"Unedited: object found {b['object_found']:.2f}, already in the target quadrant "
            f"{b['object_in_target']:.2f}, {where}; background read "
            + ("as prompted" if self.styled else
               "as in the scene it was drawn from (not in the prompt; chance 0.2)")
            + f" {b['background_as_prompted']:.2f}, as the target "
            f"{b['background_is_target']:.2f}."
        )

    def _md_bars(self) -> str:
        return (
            "Bars: "
            + ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in self.bars().items())
            + f" (clearly = by ≥ {CLEAR_MARGIN})."
        )


def _md_row(name: str, table: dict, key: str, paper: str | None = None, fmt=".2f") -> str:
    """A table row of `key` per stage, with the paper's result for `paper` in parentheses."""
    cells = []
    for s in STAGES:
        ours = table[s][key]
        ref = PAPER_RESULTS[paper][s].get(key) if paper else None
        cells.append(f"{ours:{fmt}}" + (f" ({ref:.2f})" if ref is not None else ""))
    return f"| {name} | " + " | ".join(cells) + " |"


def _generate(model, cases, steps, guidance, block=None, edits=None, batch_size=16, base=None,
              trajectories=None, first=0):
    """Images of `cases`, with per-sample `edits` on `block`. A batch without any edit is the
    unedited batch bit for bit (idle hooks change nothing), so `base` is reused for it.

    trajectories: one `Trajectory` per batch; for the unedited run they are recorded, for an
    edited run whose edits act from step `first` on, the run starts there (bit-identical)."""
    from explorer.engine import generate, resumable

    images = []
    resume = trajectories is not None and resumable(model.pipe.scheduler)
    for b, i in enumerate(range(0, len(cases), batch_size)):
        chunk = cases[i : i + batch_size]
        hooks = _batch_hooks(block, edits, i, batch_size)
        if edits is not None and hooks is None and base is not None:
            images.append(base[i : i + batch_size])
            continue
        start = record = None
        if resume and hooks is None:
            record = trajectories[b]
        elif resume and first > 0:
            start = trajectories[b].start(first)
        res = generate(
            model,
            [c.prompt for c in chunk],
            [c.scene.seed for c in chunk],
            steps,
            guidance,
            edits=hooks,
            start=start,
            record=record,
        )
        images.append(res.images)
    return np.concatenate(images)


def _batch_hooks(block, edits, i: int, batch_size: int) -> dict | None:
    """The hooks of the batch from case `i` on: None where none of its cases is edited."""
    from explorer.steering.interventions import PerSample

    if edits is None:
        return None
    part = edits[i : i + batch_size]
    return {block: [PerSample(part)]} if any(e is not None for e in part) else None


def _score_spatial(images, base, cases, n_feats) -> dict:
    hits, found = [], []
    for img, c in zip(images, cases, strict=True):
        q = object_quadrant(img, c.scene.objects[0].colour)
        found.append(q is not None)
        hits.append(q == c.target_quadrant)
    return {
        "success": float(np.mean(hits)),
        "object_found": float(np.mean(found)),
        "pixel_distance": _pixel_distance(images, base),
        "mean_features": float(np.mean(n_feats)),
        "no_features": int(sum(k == 0 for k in n_feats)),
        "n": len(cases),
    }


def _score_global(images, base, cases, n_feats) -> dict:
    from explorer.shapes.checker import classify_background

    hits = [
        classify_background(img) == c.target_background
        for img, c in zip(images, cases, strict=True)
    ]
    return {
        "success": float(np.mean(hits)),
        "pixel_distance": _pixel_distance(images, base),
        "no_features": int(sum(k == 0 for k in n_feats)),
        "n": len(cases),
    }


def _pixel_distance(images: np.ndarray, base: np.ndarray) -> float:
    return float(np.abs(images.astype(np.float32) - base.astype(np.float32)).mean() / 255.0)


def evaluate_interventions(
    workspace,
    *,
    n: int = 48,
    n_label: int = 64,
    block: str = "mid_block.attentions.0",
    steps: int | None = None,
    guidance: float | None = None,
    device: str | None = None,
    batch_size: int = 16,
    model_path: str | None = None,
    beta_scales: tuple[float, ...] = (1.0,),
    placed: bool = False,
    styled: bool = True,
    write: bool = True,
    progress: Callable[[str], None] | None = None,
) -> InterventionReport:
    """Run the protocol of the module docstring on a workspace of the shapes world.

    Writes `interventions.json` and `interventions.md` into the workspace (when `write`).
    """
    from explorer.workspace import Workspace

    if n <= 0 or n_label <= 0:
        raise UserError("n and n_label must be positive")
    scales = sorted({1.0, *(float(x) for x in beta_scales)})
    if not all(np.isfinite(x) and x > 0 for x in scales):
        raise UserError(f"β scales must be positive and finite, got {list(beta_scales)}")
    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    check_shapes_world(model_path or ws.model)
    t0 = time.time()
    plan = _Plan.load(ws, model_path, device, steps=steps, guidance=guidance, block=block, n=n,
                      n_label=n_label, batch_size=batch_size, placed=placed, styled=styled,
                      say=progress or (lambda msg: None))
    notes: list[str] = []
    stage_saes = _stage_saes(plan, notes)
    labels = _stage_labels(plan, stage_saes, notes)
    unedited = _unedited(plan)
    report = InterventionReport(plan.model.name, block, plan.steps, plan.guidance, n, n_label, 0.0,
                                notes=notes, placed=placed, styled=styled)
    report.baseline = unedited.baseline
    stem = report_stem(block, placed, styled)  # the report's files and its example images
    for stage in STAGES:
        run = _StageRun(plan, stage, *stage_saes[stage], labels[stage], unedited)
        _evaluate_stage(run, report, scales, stem)
    report.seconds = time.time() - t0
    if write:
        _write_report(report, ws, stem)
    return report


@dataclass(frozen=True)
class _Plan:
    """What every generation of the protocol shares: the model and its settings."""

    ws: object  # explorer.workspace.Workspace
    model: object  # explorer.engine.Model
    block: str
    steps: int
    guidance: float
    n: int
    n_label: int
    batch_size: int
    placed: bool
    styled: bool
    say: Callable[[str], None]

    @classmethod
    def load(cls, ws, model_path: str | None, device: str | None, *, steps: int | None,
             guidance: float | None, **fields) -> _Plan:
        """Load the model (the workspace's unless `model_path`); steps and guidance default to
        the model's."""
        from explorer.engine import load_model

        model = load_model(model_path or ws.model, device=device)
        steps = int(model.defaults.get("steps", 25) if steps is None else steps)
        guidance = float(model.defaults.get("guidance", 7.5) if guidance is None else guidance)
        model.check_blocks([fields["block"]])
        return cls(ws, model, steps=steps, guidance=guidance, **fields)

    @property
    def tokens(self) -> int:
        """Positions of the block's map (h·w): the global β is per position."""
        h, w, _ = self.model.block_geometry(self.block)
        return h * w

    def generate(self, cases, **kw) -> np.ndarray:
        return _generate(self.model, cases, self.steps, self.guidance,
                         batch_size=self.batch_size, **kw)


def _stage_saes(plan: _Plan, notes: list[str]) -> dict[str, tuple]:
    """stage → (its SAE's workspace entry, the SAE), each SAE loaded once; a stage that borrows
    another's SAE adds a note."""
    from explorer.steering.saes import choose_sae, load_entry

    stage_saes, loaded = {}, {}
    for stage in STAGES:
        entry, note = choose_sae(plan.ws.saes(), plan.block, PRESETS[stage], plan.steps)
        if note:
            notes.append(note)
        if entry.id not in loaded:
            loaded[entry.id] = load_entry(entry, device=plan.model.device)
        stage_saes[stage] = (entry, loaded[entry.id])
    return stage_saes


def _stage_labels(plan: _Plan, stage_saes: dict[str, tuple], notes: list[str]) -> dict:
    """stage → its dictionary: the SAE's index's where it was made against masks, else built
    on the fly against the checker's exact masks. An index whose only dictionary is against
    cross-attention pseudo-masks (a store collected without masks) is passed over, with a
    note: the evaluation scores against exact truth, which the shapes world always has."""
    from explorer.analysis.truth import PSEUDO
    from explorer.shapes.world import Scene
    from explorer.steering.features import label_stages, labels_from_index

    labels = {}
    for stage, (entry, _) in stage_saes.items():
        found = labels_from_index(entry, stage)
        if found is not None and found.ground_truth == PSEUDO:
            notes.append(f"{stage}: the index of {entry.id} names features against {PSEUDO}; "
                         "its dictionary was built on the fly against exact masks instead")
        elif found is not None:
            labels[stage] = found
    missing = {s: v for s, v in stage_saes.items() if s not in labels}
    if missing:
        n_label = plan.n_label
        label_scenes = [Scene.from_seed(LABEL_SEED_OFFSET + i, "train") for i in range(n_label)]
        plan.say(
            f"no index with a dictionary for {', '.join(missing)}: building it on {n_label} "
            "labelling images"
        )
        labels.update(label_stages(plan.model, plan.block, missing, label_scenes, plan.steps,
                                   plan.guidance, plan.batch_size, plan.say))
    return labels


@dataclass(frozen=True)
class _Unedited:
    cases: list[Case]  # retargeted against what the unedited images show
    images: np.ndarray
    trajectories: list  # one engine.Trajectory per batch
    baseline: dict[str, float]


def _unedited(plan: _Plan) -> _Unedited:
    """The test cases' unedited images and trajectories, the cases retargeted against them."""
    from explorer.engine import Trajectory
    from explorer.shapes.checker import classify_background

    cases = make_cases(plan.n, placed=plan.placed, styled=plan.styled)
    plan.say(f"generating {plan.n} unedited test images")
    # The unedited runs' latents at every step: an edit in the middle or final stage starts from
    # them where its window opens instead of rerunning the steps before it.
    trajs = [Trajectory() for _ in range(0, len(cases), plan.batch_size)]
    base = plan.generate(cases, trajectories=trajs)
    own = [
        object_quadrant(img, c.scene.objects[0].colour) for img, c in zip(base, cases, strict=True)
    ]
    bgs = [classify_background(img) for img in base]
    cases = retarget(cases, own, bgs)
    return _Unedited(cases, base, trajs, _baseline(cases, own, bgs))


def _baseline(cases: list[Case], own: list[str | None], bgs: list[str | None]) -> dict:
    """Where the unedited objects went and which backgrounds the checker reads."""
    from explorer.shapes.world import QUADRANTS

    return {
        "object_found": float(np.mean([q is not None for q in own])),
        "object_in_target": float(
            np.mean([q == c.target_quadrant for q, c in zip(own, cases, strict=True)])
        ),
        "object_in_own": float(
            np.mean([q == c.scene.objects[0].place for q, c in zip(own, cases, strict=True)])
        ),
        "background_as_prompted": float(
            np.mean([b == c.scene.background for b, c in zip(bgs, cases, strict=True)])
        ),
        "background_is_target": float(
            np.mean([b == c.target_background for b, c in zip(bgs, cases, strict=True)])
        ),
        "quadrant_share": {q: float(np.mean([o == q for o in own])) for q in QUADRANTS},
    }


@dataclass(frozen=True)
class _StageRun:
    """One stage's SAE and dictionary, editing the test cases from their unedited runs."""

    plan: _Plan
    stage: str
    entry: object  # the SAE's workspace entry
    sae: object
    lab: object  # steering.features.StageLabels
    unedited: _Unedited

    def spatial_edits(self, beta: float) -> tuple[list, list[int]]:
        """Per case, its object's colour and shape features moved to the target quadrant."""
        from explorer.steering.interventions import FeatureEdit, Intervention, make_edit
        from explorer.steering.regions import QUADRANT_RECTS

        edits, counts = [], []
        for c in self.unedited.cases:
            obj = c.scene.objects[0]
            feats = self.lab.features_for_words([obj.colour, obj.shape])
            counts.append(len(feats))
            iv = Intervention(
                self.plan.block,
                tuple(FeatureEdit(f, beta) for f in feats),
                "spatial",
                QUADRANT_RECTS[c.target_quadrant],
                PRESETS[self.stage],
                "cond",
                self.entry.id,
            )
            edits.append(make_edit(iv, self.sae))
        return edits, counts

    def global_edits(self, beta: float) -> tuple[list, list[int]]:
        """Per case, the target background's feature added everywhere (none: no edit)."""
        from explorer.steering.interventions import FeatureEdit, Intervention, make_edit

        edits, counts = [], []
        for c in self.unedited.cases:
            f = self.lab.feature_for_label(c.target_background)
            counts.append(0 if f is None else 1)
            feats = () if f is None else (FeatureEdit(f, beta),)
            iv = Intervention(self.plan.block, feats, "global", None, PRESETS[self.stage], "cond",
                              self.entry.id)
            edits.append(make_edit(iv, self.sae))
        return edits, counts

    def run(self, edits_counts: tuple[list, list[int]], score) -> tuple[np.ndarray, dict]:
        """The edited images, from the unedited trajectories where the stage's window opens,
        and their scores."""
        edits, counts = edits_counts
        u, plan = self.unedited, self.plan
        first = (PRESETS[self.stage].steps(plan.steps) or [0])[0]
        imgs = plan.generate(u.cases, block=plan.block, edits=edits, base=u.images,
                             trajectories=u.trajectories, first=first)
        return imgs, score(imgs, u.images, u.cases, counts)


def _evaluate_stage(run: _StageRun, report: InterventionReport, scales: list[float],
                    stem: str) -> None:
    """The stage's row of every table: its edits at each β scale, and the equal-β control."""
    stage, lab = run.stage, run.lab
    beta_s = calibrated_beta("spatial", stage)
    beta_g = calibrated_beta("global", stage, run.plan.tokens, lab.mean_code_norm)
    report.stages[stage] = _stage_record(run, beta_s, beta_g)
    for scale in scales:
        _evaluate_scale(run, report, scale, beta_s, beta_g, stem)
    early_beta = calibrated_beta("spatial", "early")
    if stage == "early":
        report.spatial_control[stage] = dict(report.spatial[stage])
    else:
        run.plan.say(f"{stage}: spatial control (β {early_beta:.3g})")
        _, report.spatial_control[stage] = run.run(run.spatial_edits(early_beta), _score_spatial)
    report.spatial_control[stage]["beta"] = early_beta


def _stage_record(run: _StageRun, beta_s: float, beta_g: float) -> dict:
    from explorer.shapes.world import BACKGROUNDS, COLOURS, SHAPES

    entry, lab = run.entry, run.lab
    return {
        "sae": entry.id,
        "sae_t": entry.t,
        "dictionary_source": lab.describe(),
        "dictionary_truth": lab.ground_truth,
        "mean_code_norm": lab.mean_code_norm,
        "beta_spatial": beta_s,
        "beta_global": beta_g,
        "window": PRESETS[run.stage].describe(),
        "features_by_word": {
            word: lab.features_for_words([word]) for word in (*COLOURS, *SHAPES)
        }
        | {style: _as_list(lab.feature_for_label(style)) for style in BACKGROUNDS},
    }


def _evaluate_scale(run: _StageRun, report: InterventionReport, scale: float, beta_s: float,
                    beta_g: float, stem: str) -> None:
    stage = run.stage
    run.plan.say(f"{stage}: spatial (β {beta_s * scale:.3g}) and global (β {beta_g * scale:.3g})"
                 + ("" if scale == 1.0 else f", {scale:g}× the calibrated β"))
    row = report.sweep.setdefault(scale, {"spatial": {}, "global": {}})
    imgs_s, row["spatial"][stage] = run.run(run.spatial_edits(beta_s * scale), _score_spatial)
    imgs_g, row["global"][stage] = run.run(run.global_edits(beta_g * scale), _score_global)
    if scale != 1.0:
        return
    # Scale 1 is the calibrated β: the main tables and the example figures come from it.
    report.spatial[stage] = row["spatial"][stage]
    report.global_[stage] = row["global"][stage]
    base, cases = run.unedited.images, run.unedited.cases
    if stage == "early":
        _save_examples(run.plan.ws, f"{stem}_spatial", base, imgs_s, cases)
    if stage == "middle":
        _save_examples(run.plan.ws, f"{stem}_global", base, imgs_g, cases)


def _write_report(report: InterventionReport, ws, stem: str) -> None:
    from explorer.atomic import atomic_write_text

    report.json_path = ws.root / f"{stem}.json"
    report.md_path = ws.root / f"{stem}.md"
    atomic_write_text(report.json_path, json.dumps(report.to_json(), indent=1))
    atomic_write_text(report.md_path, report.markdown())


def report_stem(block: str, placed: bool = False, styled: bool = True,
                default: str = "mid_block.attentions.0") -> str:
    """File stem of a block's intervention report: the paper's protocol at the paper's block
    keeps the plain name that `explorer evaluate` gathers first; any other block, prompts that
    name their places and prompts that name no background get their own files beside it."""
    stem = "interventions" if block == default else f"interventions-{block}"
    return stem + ("-placed" if placed else "") + ("" if styled else "-unstyled")


def _as_list(feature: int | None) -> list[int]:
    return [] if feature is None else [feature]


def _save_examples(ws, name: str, base: np.ndarray, edited: np.ndarray, cases, k: int = 8) -> None:
    """A two-row figure (unedited above, edited below) of the first `k` test prompts."""
    from PIL import Image

    from explorer.atomic import atomic_path
    from explorer.shapes.evaluate import image_grid

    k = min(k, len(cases))
    grid = image_grid(np.concatenate([base[:k], edited[:k]]), cols=k)
    folder = ws.root / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / f"{name}.png") as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
