"""The released mmTransformer checkpoint format: upstream key names (read from decisionforce/mmTransformer
lib/models/{mmTransformer,TF_version/stacked_transformer,TF_utils}.py) load strictly, with or without the LLM
adapter; anything that does not fit is a one-line error naming the tensors."""

from __future__ import annotations

import pytest
import torch

from common.engine.errors import CheckpointError
from common.frozen_lm import LLMSpec
from motion_forecasting.models import MMTransformer
from motion_forecasting.models.checkpoints import load_released_mmtransformer

# keys of mmTrans(STF, demo config).state_dict(), by reading the upstream code
UPSTREAM_KEYS = [
    "subgraph.layer_seq.lmlp_0.mlp.0.weight",
    "subgraph.layer_seq.lmlp_1.mlp.1.bias",
    "stacked_transformer.hist_tf.src_embed.0.lut.weight",
    "stacked_transformer.hist_tf.src_embed.1.pe",
    "stacked_transformer.hist_tf.encoder.layers.1.self_attn.linears.3.weight",
    "stacked_transformer.hist_tf.encoder.layers.0.sublayer.1.norm.bias",
    "stacked_transformer.hist_tf.decoder.layers.1.src_attn.linears.0.bias",
    "stacked_transformer.hist_tf.decoder.layers.0.sublayer.2.norm.weight",
    "stacked_transformer.hist_tf.decoder.norm.weight",
    "stacked_transformer.lane_enc.layers.1.feed_forward.w_2.weight",
    "stacked_transformer.lane_dec.norm.bias",
    "stacked_transformer.lane_emb.lut.weight",
    "stacked_transformer.pos_emb.3.weight",
    "stacked_transformer.dist_emb.1.bias",
    "stacked_transformer.fusion1.0.weight",
    "stacked_transformer.fusion2.3.bias",
    "stacked_transformer.social_enc.layers.0.self_attn.linears.2.weight",
    "stacked_transformer.prediction_header.reg_mlp.4.weight",
    "stacked_transformer.prediction_header.cls_FFN.w_1.weight",
    "stacked_transformer.prediction_header.classification_layer.1.bias",
    "stacked_transformer.query_embed.weight",
]
UNUSED = ["stacked_transformer.social_dec.layers.0.src_attn.linears.0.weight",
          "stacked_transformer.prediction_header.dis_emb.weight"]


def upstream_checkpoint(model: MMTransformer, path, drop: str | None = None):
    """The model's weights saved as upstream's save_checkpoint does, under upstream's key names."""
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("llm."):
            continue
        state[key if key.startswith("subgraph.") else f"stacked_transformer.{key}"] = value.clone()
    state[UNUSED[0]] = torch.zeros(128, 128)
    state[UNUSED[1]] = torch.zeros(128, 2)
    if drop:
        del state[drop]
    torch.save({"state_dict": state, "optimizer": {}, "BestMissRate": 0.1}, path)
    return state


def batch():
    torch.manual_seed(1)
    return {"agent_vec": torch.randn(2, 3, 19, 6), "agent_vec_mask": torch.ones(2, 3, 19, dtype=torch.bool),
            "agent_pos": torch.randn(2, 3, 2), "agent_mask": torch.ones(2, 3, dtype=torch.bool),
            "lane_vec": torch.randn(2, 4, 9, 7), "lane_vec_mask": torch.ones(2, 4, 9, dtype=torch.bool),
            "lane_mask": torch.ones(2, 4, dtype=torch.bool)}


def test_upstream_key_names(tmp_path):
    state = upstream_checkpoint(MMTransformer(7, 30), tmp_path / "demo.pt")
    assert set(UPSTREAM_KEYS) <= set(state)
    assert state["stacked_transformer.hist_tf.src_embed.1.pe"].shape == (5000, 128)


def test_released_weights_load_with_and_without_the_adapter(tmp_path, tiny_llama_dir):
    torch.manual_seed(0)
    source = MMTransformer(7, 30).eval()
    upstream_checkpoint(source, tmp_path / "demo.pt")
    target = MMTransformer(7, 30).eval()
    load_released_mmtransformer(target, tmp_path / "demo.pt")
    with torch.no_grad():
        torch.testing.assert_close(target(batch())["traj"], source(batch())["traj"])
    with_llm = MMTransformer(7, 30, llm=LLMSpec(variant="frozen", path=str(tiny_llama_dir)))
    load_released_mmtransformer(with_llm, tmp_path / "demo.pt")
    torch.testing.assert_close(with_llm.lane_emb.lut.weight, source.lane_emb.lut.weight)


def test_a_checkpoint_that_does_not_fit_names_the_tensors(tmp_path):
    model = MMTransformer(7, 30)
    upstream_checkpoint(model, tmp_path / "a.pt", drop="stacked_transformer.fusion1.0.weight")
    with pytest.raises(CheckpointError, match=r"missing: fusion1\.0\.weight"):
        load_released_mmtransformer(MMTransformer(7, 30), tmp_path / "a.pt")
    upstream_checkpoint(MMTransformer(7, 30, d_model=64, d_ff=128), tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="shape"):
        load_released_mmtransformer(model, tmp_path / "b.pt")
    (tmp_path / "c.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_released_mmtransformer(model, tmp_path / "c.pt")
