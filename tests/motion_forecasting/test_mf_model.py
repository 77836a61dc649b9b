"""Models: padded tokens change nothing (through the subgraphs, the attention layers and the LLM block), every
LLM variant and mmTransformer placement builds and runs, the winner-take-all loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.frozen_lm import LLMSpec
from motion_forecasting.data import av1
from motion_forecasting.data.dataset import collate
from motion_forecasting.data.vectorize import VectorConfig, vectorize
from motion_forecasting.models import MMTransformer, VectorNet
from motion_forecasting.models.heads import best_mode, wta_loss
from motion_forecasting.models.mmtransformer import PLACEMENTS


@pytest.fixture(scope="module")
def samples(av1_root):
    maps = av1.MapStore(av1_root / "map_files")
    out = []
    for i in (1, 2):
        s = vectorize(av1.read_sequence(av1_root / "train" / "data" / f"{i}.csv", maps, 65.0), VectorConfig())
        s["index"] = np.int64(i)
        out.append(s)
    return out


def padded_with_garbage(batch: dict, extra_agents: int = 3, extra_lanes: int = 4) -> dict:
    """``batch`` with more agent and lane slots, filled with random values but masked out."""
    out = dict(batch)
    for key, extra in (("agent_vec", extra_agents), ("agent_vec_mask", extra_agents), ("agent_pos", extra_agents),
                       ("lane_vec", extra_lanes), ("lane_vec_mask", extra_lanes)):
        t = batch[key]
        pad = torch.zeros(t.shape[0], extra, *t.shape[2:], dtype=t.dtype)
        if t.dtype != torch.bool:
            pad = torch.randn_like(pad) * 50
        out[key] = torch.cat([t, pad], 1)
    out["agent_mask"] = out["agent_vec_mask"].any(-1)
    out["lane_mask"] = out["lane_vec_mask"].any(-1)
    return out


def make(model_name: str, llm, **kw):
    torch.manual_seed(0)
    if model_name == "vectornet":
        return VectorNet(6, 7, 30, 6, subgraph_hidden=16, global_width=32, decoder_hidden=32, llm=llm, **kw).eval()
    return MMTransformer(7, 30, 6, d_model=32, d_ff=64, layers=1, llm=llm, **kw).eval()


CASES = [("vectornet", {})] + [("mmtransformer", {"llm_placement": p}) for p in PLACEMENTS]


@pytest.mark.parametrize("model_name,kw", CASES, ids=[c[0] + "-" + c[1].get("llm_placement", "") for c in CASES])
def test_padded_tokens_change_nothing(samples, tiny_llama_dir, model_name, kw):
    model = make(model_name, LLMSpec(variant="frozen", path=str(tiny_llama_dir)), **kw)
    assert model.llm is not None and not any(p.requires_grad for p in model.llm.lm.parameters())
    alone = collate(samples[:1])
    with torch.no_grad():
        ref = model(alone)
        padded = model(padded_with_garbage(alone))
        batched = model(collate(samples))  # the second scene has a different number of agents / lanes
    for key in ("traj", "logits"):
        torch.testing.assert_close(padded[key], ref[key], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(batched[key][:1], ref[key], rtol=1e-4, atol=1e-4)


def test_the_mask_is_what_protects(samples, tiny_llama_dir):
    """Control: the same garbage slots marked as real do change the prediction."""
    model = make("vectornet", LLMSpec(variant="frozen", path=str(tiny_llama_dir)))
    batch = padded_with_garbage(collate(samples[:1]))
    with torch.no_grad():
        ref = model(batch)["traj"]
        batch["lane_vec_mask"] = torch.ones_like(batch["lane_vec_mask"])
        batch["lane_mask"] = batch["lane_vec_mask"].any(-1)
        assert not torch.allclose(model(batch)["traj"], ref, atol=1e-3)


@pytest.mark.parametrize("variant", ["none", "frozen", "finetune", "random_frozen", "random_trainable", "mlp"])
def test_every_llm_variant_trains_a_step(samples, tiny_llama_dir, variant):
    spec = LLMSpec(variant=variant, path=None if variant == "none" else str(tiny_llama_dir))
    for name in ("vectornet", "mmtransformer"):
        model = make(name, spec).train()
        batch = collate(samples)
        losses = wta_loss(model(batch), batch["future"], batch["future_mask"])
        losses["loss"].backward()
        trainable = [p for p in model.parameters() if p.requires_grad]
        assert all(p.grad is not None for p in trainable if p.dim() > 1)
        if variant in ("frozen", "random_frozen"):
            assert all(p.grad is None for p in model.llm.lm.parameters())
        if variant == "finetune":
            assert any(p.grad is not None for p in model.llm.lm.parameters())


def test_single_mode_and_node_completion(samples):
    model = VectorNet(6, 7, 30, 1, subgraph_hidden=16, global_width=32, decoder_hidden=32, node_completion=1.0)
    batch = collate(samples)
    out = model.train()(batch)
    assert out["traj"].shape == (2, 1, 30, 2) and out["completion"].ndim == 0
    losses = wta_loss(out, batch["future"], batch["future_mask"])
    assert set(losses) == {"reg", "loss"}  # K = 1: no mode classification
    assert "completion" not in model.eval()(batch)


def test_winner_take_all_picks_the_min_fde_mode():
    future = torch.tensor([[[1.0, 0.0], [2.0, 0.0]]])
    traj = torch.stack([torch.tensor([[1.0, 3.0], [2.0, 0.5]]), torch.tensor([[1.0, 0.0], [2.0, 1.0]])])[None]
    mask = torch.ones(1, 2, dtype=torch.bool)
    assert best_mode(traj, future, mask).tolist() == [0]  # FDE 0.5 beats 1.0 although its ADE is larger
    losses = wta_loss({"traj": traj, "logits": torch.tensor([[0.0, 0.0]])}, future, mask)
    expected_reg = torch.nn.functional.smooth_l1_loss(traj[0, 0], future[0])
    torch.testing.assert_close(losses["reg"], expected_reg)
    torch.testing.assert_close(losses["cls"], torch.tensor(float(np.log(2))))


def test_region_based_training_picks_the_best_proposal_of_the_gt_region():
    from motion_forecasting.models.heads import kmeans_centres, rts_best

    centres = torch.tensor([[10.0, 0.0], [0.0, 10.0]])  # region 0 ahead, region 1 to the left
    future = torch.tensor([[[5.0, 0.0], [9.0, 1.0]]])  # endpoint in region 0
    mask = torch.ones(1, 2, dtype=torch.bool)
    ends = torch.tensor([[9.5, 5.0], [0.0, 0.0], [9.0, 1.2], [0.0, 9.0]])  # proposals 0-1: group 0, 2-3: group 1
    traj = torch.stack([torch.zeros_like(ends), ends], 1)[None]  # (1, K=4, T=2, 2)
    assert rts_best(traj, future, mask, centres).tolist() == [0]  # proposal 2 is closer but belongs to region 1
    assert best_mode(traj, future, mask).tolist() == [2]
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.normal((30, 0), 1, (50, 2)), rng.normal((0, 20), 1, (50, 2))])
    c = kmeans_centres(pts, 2)
    np.testing.assert_allclose(c, [[30, 0], [0, 20]], atol=0.5)  # sorted by angle: ahead first
    np.testing.assert_array_equal(c, kmeans_centres(pts, 2))


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_analysis_draws_the_tokens_the_adapter_sees(samples, tiny_llama_dir, placement, tmp_path):
    """tools.analyze on mmTransformer: the lane memory where the adapter runs on it (its first call), else the
    social tokens, each at its polylines' centres; ``header`` (agent x mode pairs) is refused by name."""
    from common.task import AnalysisSample, AnalysisUnavailable, get_task
    from tools.analyze import analyze_inputs, write_outputs

    task = get_task("motion_forecasting")
    model = make("mmtransformer", LLMSpec(variant="frozen", path=str(tiny_llama_dir)), llm_placement=placement)
    batch = collate(samples)
    if placement == "header":
        with pytest.raises(AnalysisUnavailable, match="header"):
            task.analysis_spec(model, batch)
        return
    tokens = batch["lane_vec"].shape[1] if "lanes" in placement else batch["agent_vec"].shape[1]
    spec = task.analysis_spec(model, batch)
    assert spec.stages["encoder"] is (model.lane_enc if "lanes" in placement else model.social_enc)
    points = [np.zeros((5, 3), np.float32)] * 2
    inputs = [AnalysisSample(f"s{i}", {k: v[i: i + 1] for k, v in batch.items()}, points[i]) for i in range(2)]
    analysis = analyze_inputs(task, model, inputs, ("magnitude",), batch_size=2)
    assert {name: maps.shape for name, maps in analysis.maps["magnitude"].items()} == {
        name: (2, tokens) for name in spec.names()}
    assert analysis.positions.shape == (2, tokens, 3)
    written = write_outputs(analysis, inputs, [tmp_path] * 2, None, tmp_path, grid=2)
    assert [p.name for p in written] == ["overlays_magnitude.png"]
