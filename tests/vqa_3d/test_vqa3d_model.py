"""The ScanQA model: upstream key names, PointNet++ layers against loops, MCAN's LayerNorm, the object mask
through the frozen block, released checkpoints through the strict named map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.engine.errors import CheckpointError
from common.frozen_lm import LLMSpec
from common.pointsets import ball_query, farthest_point_sample
from vqa_3d.checkpoints import UNUSED_PREFIXES, load_released
from vqa_3d.mcan import LayerNorm
from vqa_3d.model import ScanQA, SQAConfig
from vqa_3d.pointnet2 import FPModule, SAModuleVotes

TINY = dict(num_answers=5, lang_emb_size=8, hidden_size=32, num_proposals=8, proposal_size=16,
            sa_npoints=(64, 32, 16, 8), mcan_flat_mlp_size=16, mcan_flat_out_size=24, mcan_num_layers=1)
UPSTREAM_KEYS = [  # names in SQA3D's ScanQA state dicts (sqa_module.py and the modules it builds)
    "lang_net.lstm.weight_ih_l0", "lang_net.lstm.bias_hh_l0",
    "detection_backbone.sa1.mlp_module.layer0.conv.weight", "detection_backbone.sa1.mlp_module.layer0.bn.bn.weight",
    "detection_backbone.sa4.mlp_module.layer2.bn.bn.running_var", "detection_backbone.fp2.mlp.layer1.conv.weight",
    "detection_backbone.fp1.mlp.layer0.bn.bn.num_batches_tracked", "voting_net.conv3.bias", "voting_net.bn2.weight",
    "proposal_net.vote_aggregation.mlp_module.layer2.conv.weight", "proposal_net.proposal.0.weight",
    "proposal_net.proposal.1.running_mean", "proposal_net.proposal.4.weight", "proposal_net.proposal.6.bias",
    "lang_feat_linear.0.weight", "object_feat_linear.0.bias", "enc_list_s.0.mhatt.linear_v.weight",
    "enc_list_q.0.ffn.mlp.fc.linear.weight", "enc_list_q.0.ffn.mlp.linear.bias", "enc_list_s.0.norm1.a_2",
    "dec_list.0.mhatt2.linear_merge.weight", "dec_list_2.0.norm3.b_2", "attflat_visual.mlp.fc.linear.weight",
    "attflat_s.mlp.linear.bias", "attflat_q.linear_merge.weight", "aux_reg.0.weight", "aux_reg.3.bias",
    "answer_cls.0.weight", "answer_cls.3.bias"]


def tiny_batch(batch: int = 2, n: int = 300, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(batch, n, 3, generator=g) * torch.tensor([3.0, 3.0, 1.5]) + 0.2
    return {"point_clouds": torch.cat([xyz, torch.rand(batch, n, 4, generator=g) - 0.5], -1),
            "s_feat": torch.randn(batch, 6, 8, generator=g), "q_feat": torch.randn(batch, 5, 8, generator=g),
            "s_len": torch.tensor([6, 3][:batch]), "q_len": torch.tensor([2, 5][:batch])}


def test_state_dict_keeps_upstream_names_and_drops_the_unused_layers():
    keys = set(ScanQA(SQAConfig(**TINY)).state_dict())
    assert set(UPSTREAM_KEYS) <= keys
    assert not any(k.startswith(UNUSED_PREFIXES) or k.startswith("llm.") for k in keys)
    widths = ScanQA(SQAConfig(num_answers=7)).state_dict()
    assert widths["detection_backbone.sa1.mlp_module.layer0.conv.weight"].shape == (64, 3 + 4, 1, 1)
    assert widths["proposal_net.proposal.6.weight"].shape == (2 + 3 + 2 + 18 * 4 + 18, 128, 1)
    assert widths["aux_reg.0.weight"].shape == (256, 1024) and widths["answer_cls.0.weight"].shape == (256, 1536)
    assert widths["lang_net.lstm.weight_ih_l0"].shape == (4 * 256, 300)


def test_sa_module_is_the_max_over_each_ball_of_the_shared_mlp():
    torch.manual_seed(0)
    sa = SAModuleVotes([2, 8, 8], npoint=6, radius=0.5, nsample=4).eval()
    xyz = torch.rand(2, 40, 3)
    feats = torch.randn(2, 2, 40)
    new_xyz, new_feats, inds = sa(xyz, feats)
    assert torch.equal(inds, farthest_point_sample(xyz, 6))
    idx = ball_query(new_xyz, xyz, 0.5, 4)
    for b in range(2):
        for c in range(6):
            local = (xyz[b, idx[b, c]] - new_xyz[b, c]) / 0.5  # (4, 3)
            grouped = torch.cat([local.T, feats[b][:, idx[b, c]]], 0)[None, :, None, :]  # (1, 5, 1, 4)
            torch.testing.assert_close(new_feats[b, :, c], sa.mlp_module(grouped)[0, :, 0].max(-1).values)


def test_fp_module_interpolates_from_the_three_nearest_by_inverse_distance():
    torch.manual_seed(0)
    fp = FPModule([3 + 2, 4]).eval()
    unknown, known = torch.rand(1, 5, 3), torch.rand(1, 7, 3)
    unknown_feats, known_feats = torch.randn(1, 2, 5), torch.randn(1, 3, 7)
    out = fp(unknown, known, unknown_feats, known_feats)
    u, k = unknown[0].double().numpy(), known[0].double().numpy()
    for j in range(5):
        d = np.sqrt(((k - u[j]) ** 2).sum(1))
        near = np.argsort(d, kind="stable")[:3]
        w = 1 / (d[near] + 1e-8)
        interp = (known_feats[0, :, near].double().numpy() * (w / w.sum())).sum(1)
        x = torch.cat([torch.from_numpy(interp).float(), unknown_feats[0, :, j]])[None, :, None, None]
        torch.testing.assert_close(out[0, :, j], fp.mlp(x)[0, :, 0, 0], atol=1e-5, rtol=1e-5)


def test_mcan_layernorm_uses_the_unbiased_std_plus_eps():
    x = torch.randn(3, 4, 8)
    ln = LayerNorm(8)
    expected = (x - x.mean(-1, keepdim=True)) / (x.std(-1, unbiased=True, keepdim=True) + 1e-6)
    torch.testing.assert_close(ln(x), expected)
    assert not torch.allclose(ln(x), torch.nn.functional.layer_norm(x, (8,)), atol=1e-3)


def test_forward_shapes_and_padded_text_masks():
    model = ScanQA(SQAConfig(**TINY)).eval()
    out = model(tiny_batch())
    assert out["answer_scores"].shape == (2, 5) and out["aux_scores"].shape == (2, 7)
    assert out["aggregated_vote_features"].shape == (2, 8, 16) and out["seed_inds"].shape == (2, 32)
    assert out["satt"].shape == (2, 6, 1)
    assert torch.all(out["satt"][1, 3:] < 1e-6) and torch.all(out["qatt"][0, 2:] < 1e-6)  # padding gets no attention


def test_the_frozen_block_sees_the_fused_proposals_with_the_object_mask(tiny_llama_dir):
    spec = LLMSpec(variant="frozen", path=str(tiny_llama_dir))
    model = ScanQA(SQAConfig(**TINY), spec).eval()
    seen = {}
    model.llm.register_forward_hook(lambda mod, args, out: seen.update(tokens=args[0], mask=args[1], out=out))
    with torch.no_grad():
        out = model(tiny_batch())
    assert torch.equal(seen["mask"], ~out["bbox_mask"].bool())  # True = not an object = padding for the block
    assert torch.equal(seen["out"], out["fused_object_feat"])
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, 5:] = True
    tokens = seen["tokens"]
    changed = tokens.clone()
    changed[:, 5:] = torch.randn_like(changed[:, 5:]) * 10
    with torch.no_grad():
        a, b = model.llm(tokens, mask), model.llm(changed, mask)
        c = model.llm(changed, None)
    torch.testing.assert_close(a[:, :5], b[:, :5])  # masked proposals do not reach the others
    assert not torch.allclose(a[:, :5], c[:, :5], atol=1e-4)


def test_released_checkpoints_load_strictly_after_the_named_map(tmp_path):
    model = ScanQA(SQAConfig(**TINY))
    source = ScanQA(SQAConfig(**TINY))
    state = {("lang_cls." + k[len("aux_reg."):] if k.startswith("aux_reg.") else k): v
             for k, v in source.state_dict().items()}
    state.update({"s_feat_linear.0.weight": torch.zeros(32, 32), "attflat_lstm_q.linear_merge.bias": torch.zeros(24),
                  "object_cls.3.weight": torch.zeros(1, 32), "q_feat_linear.0.bias": torch.zeros(32)})
    torch.save(state, tmp_path / "model.pth")
    dropped = load_released(model, tmp_path / "model.pth")
    assert dropped == ["attflat_lstm_q.linear_merge.bias", "object_cls.3.weight", "q_feat_linear.0.bias",
                       "s_feat_linear.0.weight"]
    for k, v in source.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ddp.pth")
    assert load_released(model, tmp_path / "ddp.pth") == dropped  # a DataParallel save loads the same

    state["detection_backbone.sa5.mlp_module.layer0.conv.weight"] = torch.zeros(1)
    del state["voting_net.conv1.bias"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"missing: voting_net.conv1.bias; unexpected: detection_backbone.sa5"):
        load_released(model, tmp_path / "bad.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "model.pth").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_released(model, tmp_path / "cut.pth")
