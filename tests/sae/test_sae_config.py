"""SAEConfig: validation and the JSON round trip."""

from __future__ import annotations

import json

import pytest

from explorer.sae import SAEConfig


def test_json_round_trip():
    cfg = SAEConfig(
        d_in=128,
        d_sae=512,
        k=8,
        batch_topk=True,
        normalisation="mean_norm",
        input_scale=0.37,
        block="mid_block.attentions.0",
        branch="uncond",
        steps=[0, 25, 49],
        t=[1.0, 0.5, 0.0],
        store_hash="abc123",
        model="shapes-mini-sd",
        stats={"tokens": 1000, "fvu": 0.25},
    )
    again = SAEConfig.from_json(cfg.to_json())
    assert again == cfg
    assert again.num_latents == 512
    assert json.loads(cfg.to_json())["aux_coef"] == 1 / 32


def test_from_dict_ignores_unknown_keys():
    cfg = SAEConfig.from_dict({"d_in": 4, "d_sae": 8, "k": 2, "architecture": "topk"})
    assert (cfg.d_in, cfg.d_sae, cfg.k, cfg.k_aux_effective) == (4, 8, 2, 4)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(k=9), "exceeds"),
        (dict(k=0), "k must"),
        (dict(d_in=True), "d_in must"),
        (dict(d_sae=8.0), "d_sae must"),
        (dict(k_aux=-1), "k_aux"),
        (dict(normalisation="layer_norm"), "normalisation"),
        (dict(input_scale=2.0), "input_scale must be 1.0"),
        (dict(normalisation="mean_norm", input_scale=float("nan")), "input_scale"),
        (dict(branch="both"), "branch"),
        (dict(t=[1.5]), "t must"),
        (dict(steps=[0, 1], t=[1.0]), "differ in length"),
    ],
)
def test_validation(kw, message):
    with pytest.raises(ValueError, match=message):
        SAEConfig(**{"d_in": 4, "d_sae": 8, "k": 2, **kw})
