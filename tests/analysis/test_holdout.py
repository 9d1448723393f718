"""One hold-out split: each SAE's cfg.json records the rule it was trained with; the index and
evaluation read it from there, refuse another, and say so when a store is too small for it."""

from __future__ import annotations

import pytest

from explorer.analysis.errors import AnalysisError
from explorer.analysis.index import has_holdout, sae_holdout, split_samples
from explorer.analysis.report import _held_out_line, samples_phrase
from explorer.sae.config import SAEConfig
from explorer.sae.from_store import HOLDOUT_EVERY, held_out_samples, train_samples


def test_training_and_the_index_split_the_same_samples():
    for n in (3, 4, 8, 13):
        assert train_samples(n) == split_samples(n, HOLDOUT_EVERY)[0]
        held = held_out_samples(n)
        assert not set(held) & set(train_samples(n)) or not has_holdout(n, HOLDOUT_EVERY)
    assert held_out_samples(8) == [3, 7]


def test_fewer_samples_than_the_rule_have_no_held_out_set():
    assert not has_holdout(3, 4) and not has_holdout(8, 0) and not has_holdout(8, 1)
    assert has_holdout(4, 4) and has_holdout(8, 4)
    report = {"held_out_samples": 0, "holdout_every": 4, "store": {"n_samples": 3}}
    line = _held_out_line(report)
    assert line.startswith("No held-out samples") and "trained on" in line
    assert "held-out" not in samples_phrase(report, 3)
    assert samples_phrase({"held_out_samples": 2}, 2) == "2 held-out samples"


def test_the_rule_comes_from_cfg_json_and_another_is_refused(tmp_path):
    trained = SAEConfig(d_in=4, d_sae=8, k=2, store_hash="abc", holdout_every=4)
    assert sae_holdout(trained, tmp_path, None) == 4
    assert sae_holdout(trained, tmp_path, 4) == 4
    with pytest.raises(AnalysisError, match=r"hold-out every 5 does not match SAE .*every 4th"):
        sae_holdout(trained, tmp_path, 5)
    # An SAE built by hand or imported records no rule: the one asked for, else 4.
    loose = SAEConfig(d_in=4, d_sae=8, k=2)
    assert loose.holdout_every is None
    assert sae_holdout(loose, tmp_path, 0) == 0 and sae_holdout(loose, tmp_path, None) == 4


def test_cfg_json_from_before_the_field_reads_as_four():
    old = SAEConfig(d_in=4, d_sae=8, k=2, store_hash="abc", holdout_every=4).to_dict()
    del old["holdout_every"]
    assert SAEConfig.from_dict(old).holdout_every == 4
    assert SAEConfig.from_dict({**old, "holdout_every": 6}).holdout_every == 6
    with pytest.raises(ValueError, match="holdout_every"):
        SAEConfig(d_in=4, d_sae=8, k=2, holdout_every=-1)
