import numpy as np

from explorer.analysis.composition import composition_scores, derangement, predict_mask


def _objects(n, rng, h=8, w=8):
    out = []
    for _ in range(n):
        y, x = rng.integers(0, h - 3, 2)
        m = np.zeros((h, w), bool)
        m[y : y + 3, x : x + 3] = True
        out.append([({"red", "circle"}, m)])
    return out


def test_perfect_maps_score_one_and_the_baseline_is_low():
    rng = np.random.default_rng(0)
    n, S = 20, 3
    objects = _objects(n, rng)
    top = np.full((n, S, 8, 8), -1, np.int32)
    for i, objs in enumerate(objects):
        top[i, :, objs[0][1]] = 5  # feature 5 marks the object at every step
    tables = {"red": np.zeros(11, bool)}
    tables["red"][5] = True
    miou, base, count, other = composition_scores(top, objects, [tables] * S, seed=0)
    assert count == n
    assert np.allclose(miou, 1.0)
    assert (base < 0.3).all() and other < 0.3


def test_unnamed_features_predict_nothing():
    top = np.zeros((1, 1, 4, 4), np.int32)
    assert not predict_mask(top[0, 0], {"red"}, {}).any()
    lut = np.zeros(3, bool)
    lut[0] = True
    m = predict_mask(np.array([[0, -1], [1, 0]]), {"red", "square"}, {"red": lut})
    assert m.tolist() == [[True, False], [False, True]]


def test_derangement_moves_everyone():
    for n in (2, 3, 10, 101):
        p = derangement(n, seed=n)
        assert sorted(p.tolist()) == list(range(n)) and (p != np.arange(n)).all()


def _step_curve(parts):
    """A curve made of flat runs: [(value, n_steps), ...]."""
    return [float(v) for v, n in parts for _ in range(n)]


def _block(per_stage, alone):
    t = list(np.linspace(1.0, 0.0, len(per_stage)))
    base = [0.03] * len(per_stage)
    saes = {sid: {"t": [ts], "dictionary": {"available": False}, "metrics_by_step": [],
                  "composition": {"t": t, "miou": m, "baseline_miou": base}}
            for sid, (ts, m) in alone.items()}
    return {
        "composition_miou": per_stage, "baseline_miou": base, "saes": saes,
        "composition": {"t": t, "miou": per_stage, "baseline_miou": base, "n_objects": 9,
                        "n_samples": 3, "sae_at_step": [min(alone, default="")] * len(per_stage),
                        "other_masks_baseline_miou": 0.05},
    }


def test_fixed_dictionary_bars_tell_a_dictionary_jump_from_a_late_layout():
    from explorer.analysis.evaluate import curve_bar, shapes_bars
    from explorer.analysis.report import markdown

    # The paper's curve: three SAEs, each flat over its own steps; the last one's dictionary is
    # better, so the curve still climbs after the middle (not saturated by this rule) ...
    per_stage = _step_curve([(0.16, 7), (0.29, 12), (0.36, 6)])
    # ... while the middle SAE alone is flat from the first step: the layout was there early.
    flat = _step_curve([(0.26, 1), (0.29, 24)])
    late = _step_curve([(0.02, 7), (0.2, 12), (0.26, 6)])  # a block whose layout comes late
    other = _step_curve([(0.1, 25)])  # an SAE the curve does not use: in the table only
    blocks = {"mid_block.attentions.0": _block(
        per_stage, {"b/t0.50": (0.5, flat), "b/t0.00": (0.0, late), "b/t0.50-k10": (0.5, other)})}
    blocks["mid_block.attentions.0"]["composition"]["sae_at_step"] = ["b/t0.50"] * 19 + ["b/t0.00"] * 6
    assert not curve_bar(per_stage, [0.03] * 25)["saturated_by_middle"]
    bars = shapes_bars(blocks)["mid_block.attentions.0"]
    assert bars["first_step_clearly_above_baseline"] and not bars["saturated_by_middle"]
    fixed = {f["sae"]: f for f in bars["fixed_dictionary"]}
    assert fixed["b/t0.50"]["saturated_by_middle"] and fixed["b/t0.50"]["first_step_clearly_above_baseline"]
    assert not fixed["b/t0.00"]["first_step_clearly_above_baseline"]
    assert not fixed["b/t0.00"]["saturated_by_middle"]  # 0.2 < 0.9 × 0.26
    report = {
        "workspace": "w", "store": {"n_samples": 3, "n_steps": 25, "blocks": list(blocks)},
        "ground_truth": "test", "held_out_samples": 3, "created": "now", "bars": {"mid_block.attentions.0": bars},
        "blocks": blocks,
    }
    md = markdown(report, {})
    assert "one dictionary at every step, `b/t0.50`: first-step mIoU 0.260" in md
    assert "(saturated by the middle)" in md.split("`b/t0.50`")[1].splitlines()[0]
    assert "`b/t0.00`: first-step mIoU 0.020" in md and "`b/t0.50-k10`" not in md
    assert "| b/t0.50-k10 | 0.100 |" in md
    # The table reads each SAE alone at t = 1, 0.75, 0.5, 0.25 and 0.
    row = next(line for line in md.splitlines() if line.startswith("| b/t0.00 |"))
    assert row == "| b/t0.00 | 0.020 | 0.020 | 0.200 | 0.200 | 0.260 | 0.030 |"


def test_a_block_without_per_sae_curves_has_no_fixed_dictionary_bars():
    from explorer.analysis.evaluate import shapes_bars

    rep = _block([0.2] * 5, {})
    assert "fixed_dictionary" not in shapes_bars({"b": rep})["b"]


def test_the_cross_attention_curve_is_drawn_and_tabulated_beside_the_sae_one():
    from explorer.analysis.report import composition_curves, markdown

    rep = _block([0.2, 0.3, 0.4], {})
    assert [c.kind for c in composition_curves(rep)] == ["nearest", "baseline"]
    rep["cross_attention"] = {"t": rep["composition"]["t"], "miou": [0.05, 0.25, 0.45],
                              "threshold": 0.4, "n_objects": 9, "n_samples": 3,
                              "images_reproduced": 3, "objects_without_token": 0}
    curves = composition_curves(rep)
    assert [c.kind for c in curves] == ["nearest", "baseline", "attention"]
    assert curves[2].miou == [0.05, 0.25, 0.45] and "threshold 0.4" in curves[2].label
    report = {"workspace": "w", "store": {"n_samples": 3, "n_steps": 3, "blocks": ["b"]},
              "ground_truth": "test", "held_out_samples": 3, "created": "now", "blocks": {"b": rep}}
    md = markdown(report, {})
    assert "| step | t | mIoU | baseline | cross-attention | SAE used |" in md
    assert "| 2 | 0.00 | 0.400 | 0.030 | 0.450 |" in md
    assert "(3 of 3 images identical to the store's)" in md
    # The linear probe: a curve, two columns and an indented verdict under the block's bar.
    from explorer.analysis.evaluate import shapes_bars

    rep["linear_probe"] = {"t": rep["composition"]["t"], "miou": [0.5, 0.6, 0.65],
                           "baseline_miou": [0.07, 0.06, 0.05], "threshold": 0.4, "n_train_samples": 12}
    assert [c.kind for c in composition_curves(rep)] == ["nearest", "baseline", "attention", "probe"]
    report["bars"] = shapes_bars({"b": rep})
    md = markdown(report, {})
    assert "| step | t | mIoU | baseline | cross-attention | linear probe | probe baseline | SAE used |" in md
    assert "| 2 | 0.00 | 0.400 | 0.030 | 0.450 | 0.650 | 0.050 |" in md
    assert "fitted on the 12 labelling samples" in md
    assert "  - linear probe of Δ (what the block holds): first-step mIoU 0.500 vs baseline 0.070 (clearly above)" in md
    # The concept vote: a curve after the baseline, two columns, its own verdict line.
    rep["composition"].update(vote_miou=[0.45, 0.5, 0.55], vote_baseline_miou=[0.05, 0.04, 0.04], vote_threshold=0.4)
    assert [c.kind for c in composition_curves(rep)] == ["nearest", "baseline", "vote", "attention", "probe"]
    report["bars"] = shapes_bars({"b": rep})
    md = markdown(report, {})
    assert ("| step | t | mIoU | baseline | concept vote | vote baseline | cross-attention | linear probe | "
            "probe baseline | SAE used |") in md
    assert "| 0 | 1.00 | 0.200 | 0.030 | 0.450 | 0.050 | 0.050 | 0.500 | 0.070 |" in md
    assert "  - concept vote (every active feature): first-step mIoU 0.450 vs baseline 0.050 (clearly above)" in md


class _Dictionary:
    """What word_tables reads: each feature's concept labels."""

    def __init__(self, n_features, named):
        self.n_features = n_features
        self.named = named  # feature → labels

    def concepts(self):
        return [self.named.get(f, []) for f in range(self.n_features)]


class _Index:
    """What block_composition reads of a FeatureIndex, from arrays: codes (n, S, h, w, k)."""

    def __init__(self, indices, values, dictionary, t):
        self.indices, self.values = indices, values
        self.n_steps, self.h, self.w = indices.shape[1:4]
        self.dictionary_table = dictionary
        self.t, self.sae_t, self.label_step, self.sae_id = t, [t[0]], 0, "b/t1.00"

    def sample_codes(self, i):
        return self.indices[i], self.values[i]


class _Truth:
    def __init__(self, objects):
        self.objects = objects  # per sample: [(words, (h, w) mask)]

    def sample(self, i):
        from explorer.analysis.truth import ObjectTruth, SampleTruth

        return SampleTruth([ObjectTruth([("colour", w) for w in sorted(ws)], m) for ws, m in self.objects[i]],
                           shape=(8, 8))


def test_the_concept_vote_reads_features_the_top_one_hides():
    from explorer.analysis.composition import block_composition

    rng = np.random.default_rng(3)
    n, S, k = 12, 2, 3
    objects = [[({"red"}, m)] for [(_, m)] in _objects(n, rng)]
    indices = np.zeros((n, S, 8, 8, k), np.int32)
    values = np.zeros((n, S, 8, 8, k), np.float32)
    indices[..., 0], values[..., 0] = 9, 3.0  # an unnamed feature on top everywhere
    for i, [(_, m)] in enumerate(objects):
        indices[i, :, m, 1], values[i, :, m, 1] = 5, 1.0  # "red", second, on the object only
    ix = _Index(indices, values, _Dictionary(10, {5: ["red"]}), [1.0, 0.0])
    curve = block_composition([ix], _Truth(objects), range(n))
    assert curve.miou == [0.0, 0.0]  # the top-1 reading sees only feature 9, which names nothing
    assert np.allclose(curve.vote, 1.0) and max(curve.vote_baseline) < 0.3
    assert curve.curves()["concept_vote"].extra["threshold"] == 0.4


def test_the_concept_vote_equals_a_direct_computation():
    from explorer.analysis.composition import block_composition, derangement

    rng = np.random.default_rng(4)
    n, S, k, F = 10, 3, 4, 12
    objects = [[({"red", "circle"}, m) for [(_, m)] in _objects(2, rng)] for _ in range(n)]
    objects[3] = []  # a sample whose objects the image lost: in the derangement, not scored
    indices = rng.integers(0, F, (n, S, 8, 8, k)).astype(np.int32)
    values = np.where(rng.random((n, S, 8, 8, k)) < 0.7, rng.gamma(2.0, 1.0, (n, S, 8, 8, k)), 0.0)
    named = {f: [rng.choice(["red", "circle", "blue", "left"])] for f in range(F) if f % 3}
    ix = _Index(indices, values.astype(np.float32), _Dictionary(F, named), [1.0, 0.5, 0.0])
    curve = block_composition([ix], _Truth(objects), range(n), seed=2)
    # The slow way: loops over positions and codes.
    perm = derangement(n, 2)
    own, base, count = np.zeros(S), np.zeros(S), 0
    for i in range(n):
        for words, gt in objects[i]:
            count += 1
            for s in range(S):
                for src, acc in ((i, own), (perm[i], base)):
                    score = np.zeros((8, 8))
                    for y in range(8):
                        for x in range(8):
                            for c in range(k):
                                f, v = indices[src, s, y, x, c], values[src, s, y, x, c]
                                if v > 0 and words & set(named.get(int(f), [])):
                                    score[y, x] += v
                    pred = (score - score.min()) / (score.max() - score.min()) >= 0.4 if score.max() > score.min() \
                        else np.zeros((8, 8), bool)
                    acc[s] += (pred & gt).sum() / max((pred | gt).sum(), 1)
    np.testing.assert_allclose(curve.vote, own / count, rtol=1e-5)
    np.testing.assert_allclose(curve.vote_baseline, base / count, rtol=1e-5)
