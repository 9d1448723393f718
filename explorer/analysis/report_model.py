"""The evaluation report as types: what `evaluate` builds, report.json holds, and the Markdown
report and the app's Evaluation page read.

Every curve of a block (the paper's composition curve, the concept vote, the cross-attention
curve, the linear probe, any added later) is one `Curve` in `BlockReport.curves`, keyed by its
name; report.json keeps each under that name in the block. Numbers a single curve has beside
the common ones (a threshold, the SAE used at each step) ride in `Curve.extra` as they are.

`Report.from_json` reads every report.json written so far (the concept vote nested in the
composition entry, fields missing from older files); keys it does not know are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REPORT_SCHEMA = "concept-explorer/report"
REPORT_VERSION = 1

# The paper's curve (each step read through the SAE trained nearest to it).
COMPOSITION = "composition"
# Written nested in the composition entry (vote_miou, ...) by every report so far.
CONCEPT_VOTE = "concept_vote"
_VOTE_KEYS = {"vote_miou": "miou", "vote_baseline_miou": "baseline", "vote_threshold": "threshold"}


@dataclass
class Curve:
    """One mIoU-by-step curve of a block, scored against the final objects' masks."""

    t: list[float]
    miou: list[float]
    baseline: list[float] | None = None  # the same reading of a random other sample
    n_objects: int | None = None
    n_samples: int | None = None
    ground_truth: str | None = None  # the kind of ground truth it was scored against
    extra: dict[str, Any] = field(default_factory=dict)  # this curve's own numbers

    def to_json(self) -> dict:
        out: dict[str, Any] = {"t": list(self.t), "miou": list(self.miou)}
        if self.baseline is not None:
            out["baseline_miou"] = list(self.baseline)
        for key in ("n_objects", "n_samples", "ground_truth"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, d: dict) -> Curve:
        known = {"t", "miou", "baseline_miou", "n_objects", "n_samples", "ground_truth"}
        return cls(t=list(d.get("t", [])), miou=list(d.get("miou", [])),
                   baseline=d.get("baseline_miou"), n_objects=d.get("n_objects"),
                   n_samples=d.get("n_samples"), ground_truth=d.get("ground_truth"),
                   extra={k: v for k, v in d.items() if k not in known})


def is_curve_json(value) -> bool:
    """Whether a block's entry is a curve (any name: new curves need no change here)."""
    return isinstance(value, dict) and isinstance(value.get("t"), list) and "miou" in value


@dataclass
class SaeReport:
    """One SAE of a block: its metrics at every step, its dictionary, its curve alone."""

    t: list[float] = field(default_factory=list)
    k: int | None = None
    d_sae: int | None = None
    metrics_by_step: list[dict] = field(default_factory=list)
    dictionary: dict = field(default_factory=lambda: {"available": False})
    composition: Curve | None = None  # the composition curve with this SAE's dictionary fixed
    word_dictionary: dict | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # metrics_samples, evolution, ...

    def to_json(self) -> dict:
        out: dict[str, Any] = {"t": self.t}
        if self.k is not None:
            out["k"] = self.k
        if self.d_sae is not None:
            out["d_sae"] = self.d_sae
        out.update(metrics_by_step=self.metrics_by_step, dictionary=self.dictionary)
        if self.composition is not None:
            out["composition"] = self.composition.to_json()
        if self.word_dictionary is not None:
            out["word_dictionary"] = self.word_dictionary
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, d: dict) -> SaeReport:
        known = {"t", "k", "d_sae", "metrics_by_step", "dictionary", "composition", "word_dictionary"}
        comp = d.get("composition")
        return cls(t=list(d.get("t", [])), k=d.get("k"), d_sae=d.get("d_sae"),
                   metrics_by_step=list(d.get("metrics_by_step", [])),
                   dictionary=d.get("dictionary") or {"available": False},
                   composition=Curve.from_json(comp) if comp else None,
                   word_dictionary=d.get("word_dictionary"),
                   extra={k: v for k, v in d.items() if k not in known})


@dataclass
class BlockReport:
    """Everything evaluated on one block."""

    saes: dict[str, SaeReport] = field(default_factory=dict)
    curves: dict[str, Curve] = field(default_factory=dict)  # name → curve (COMPOSITION first)
    matching: list[dict] = field(default_factory=list)
    chains: list[list[dict]] | None = None
    validation: dict | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def composition(self) -> Curve | None:
        return self.curves.get(COMPOSITION)

    def on_curve(self, sid: str) -> bool:
        """Whether SAE `sid` is one the composition curve switches between, or a shared one:
        the SAEs whose curves alone the bars and the figure show (the table shows all)."""
        s = self.saes.get(sid)
        steps = self.composition.extra.get("sae_at_step", []) if self.composition else []
        return sid in steps or (s is not None and len(s.t) > 1)

    def to_json(self) -> dict:
        out: dict[str, Any] = {"saes": {sid: s.to_json() for sid, s in self.saes.items()},
                               "matching": self.matching}
        if self.chains is not None:
            out["chains"] = self.chains
        comp = self.composition
        if comp is not None:
            out[COMPOSITION] = composition_json(self.curves)
            # Kept at the block's top level since the first reports (older readers use them).
            out["composition_miou"] = comp.miou
            out["baseline_miou"] = comp.baseline
        for name, curve in self.curves.items():
            if name not in (COMPOSITION, CONCEPT_VOTE):
                out[name] = curve.to_json()
        if self.validation is not None:
            out["validation"] = self.validation
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, d: dict) -> BlockReport:
        known = {"saes", "matching", "chains", "validation", "composition_miou", "baseline_miou"}
        curves: dict[str, Curve] = {}
        extra = {}
        for key, value in d.items():
            if key == COMPOSITION and is_curve_json(value):
                curves.update(_composition_from_json(value))
            elif key not in known and is_curve_json(value):
                curves[key] = Curve.from_json(value)
            elif key not in known:
                extra[key] = value
        return cls(saes={sid: SaeReport.from_json(s) for sid, s in (d.get("saes") or {}).items()},
                   curves=curves, matching=list(d.get("matching") or []), chains=d.get("chains"),
                   validation=d.get("validation"), extra=extra)


def composition_json(curves: dict[str, Curve]) -> dict:
    """The composition entry of report.json: the paper's curve with the concept vote nested
    in it, as every report so far has it."""
    out = curves[COMPOSITION].to_json()
    vote = curves.get(CONCEPT_VOTE)
    if vote is not None:
        out.update(vote_miou=vote.miou, vote_baseline_miou=vote.baseline,
                   vote_threshold=vote.extra.get("threshold"))
    return out


def _composition_from_json(value: dict) -> dict[str, Curve]:
    """The composition entry: the paper's curve, and the concept vote nested in it."""
    plain = {k: v for k, v in value.items() if k not in _VOTE_KEYS}
    out = {COMPOSITION: Curve.from_json(plain)}
    if value.get("vote_miou"):
        extra = {"threshold": value["vote_threshold"]} if "vote_threshold" in value else {}
        out[CONCEPT_VOTE] = Curve(value["t"], value["vote_miou"], value.get("vote_baseline_miou"),
                                  value.get("n_objects"), value.get("n_samples"),
                                  value.get("ground_truth"), extra)
    return out


@dataclass
class StoreSummary:
    """The store a report was computed on."""

    path: str = ""
    n_samples: int = 0
    n_steps: int = 0
    t: list[float] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)
    fingerprint: str = ""
    model: str = ""

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, d: dict) -> StoreSummary:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Report:
    """One evaluation of a workspace (report.json)."""

    blocks: dict[str, BlockReport]
    workspace: str = ""
    created: str = ""
    store: StoreSummary = field(default_factory=StoreSummary)
    ground_truth: str | None = None  # one line: its kind, then where it came from
    ground_truth_kind: str | None = None
    held_out_samples: int | None = None  # None: a report from before it was recorded
    holdout_every: int | None = None
    bars: dict = field(default_factory=dict)  # evaluate.shapes_bars, on the bundled world
    seconds: float | None = None
    figures: dict[str, list[str]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # pseudo_masks, cross_attention_note, ...

    def to_json(self) -> dict:
        out: dict[str, Any] = {"schema": REPORT_SCHEMA, "version": REPORT_VERSION,
                               "created": self.created, "workspace": self.workspace,
                               "store": self.store.to_json()}
        for key in ("ground_truth", "ground_truth_kind", "held_out_samples", "holdout_every"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out["blocks"] = {b: rep.to_json() for b, rep in self.blocks.items()}
        out.update(self.extra)
        if self.bars:
            out["bars"] = self.bars
        if self.seconds is not None:
            out["seconds"] = self.seconds
        if self.figures is not None:
            out["figures"] = self.figures
        return out

    @classmethod
    def from_json(cls, d: dict) -> Report:
        known = {"schema", "version", "created", "workspace", "store", "ground_truth",
                 "ground_truth_kind", "held_out_samples", "holdout_every", "blocks", "bars",
                 "seconds", "figures"}
        return cls(blocks={b: BlockReport.from_json(rep) for b, rep in (d.get("blocks") or {}).items()},
                   workspace=d.get("workspace", ""), created=d.get("created", ""),
                   store=StoreSummary.from_json(d.get("store") or {}),
                   ground_truth=d.get("ground_truth"), ground_truth_kind=d.get("ground_truth_kind"),
                   held_out_samples=d.get("held_out_samples"), holdout_every=d.get("holdout_every"),
                   bars=d.get("bars") or {}, seconds=d.get("seconds"), figures=d.get("figures"),
                   extra={k: v for k, v in d.items() if k not in known})

    @classmethod
    def coerce(cls, report: Report | dict) -> Report:
        """A Report, or one read from the dict shape of report.json."""
        return report if isinstance(report, Report) else cls.from_json(report)

    @property
    def has_held_out(self) -> bool:
        """Whether the curves were read on held-out samples (older reports: they were)."""
        return self.held_out_samples is None or bool(self.held_out_samples)
