"""Exhaustive retrieval scoring equals METER's per-pair cross-encoder; pre-ranking with the bi-encoder; resume."""

from __future__ import annotations

import pytest
import torch
from vqa_fixtures import write_f30k_karpathy

from common.engine import distributed
from vqa_2d.data import f30k
from vqa_2d.data.inputs import image_transform, load_tokenizer
from vqa_2d.model import METER, METERConfig
from vqa_2d.scoring import score_matrix

CFG = dict(vit_width=32, vit_layers=3, vit_heads=2, vit_patch=16, vit_ffn=64, image_size=32, text_width=32,
           text_layers=1, text_heads=2, text_ffn=64, hidden_size=32, num_heads=2, num_top_layer=1, head="irtr")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tokenizer_dir):
    root = write_f30k_karpathy(tmp_path_factory.mktemp("f30k"), n_train=1, n_test=3)
    images, _ = f30k.read_karpathy(root, ["test"])
    tok = load_tokenizer(tokenizer_dir)
    rset = f30k.RetrievalSet(f30k.ImageSet(images, image_transform(32, False)), f30k.TextSet(images, tok, 12))
    torch.manual_seed(0)
    model = METER(METERConfig(**CFG, text_vocab=len(tok), text_pad_id=tok.pad_token_id,
                              text_max_positions=12 + tok.pad_token_id + 1)).eval()
    distributed.init_distributed("cpu")
    return model, rset


def test_exhaustive_scores_equal_per_pair_forward(setup, tmp_path):
    model, rset = setup
    scores, unreadable, candidates = score_matrix(model, rset, torch.device("cpu"), text_batch=4, progress=False)
    assert scores.shape == (3, 6) and unreadable == 0 and candidates is None
    with torch.no_grad():
        for i in range(3):
            pixels = rset.images[i]["pixels"].unsqueeze(0)
            for t in range(6):
                text = rset.texts[t]
                feats = model(pixels, text["text_ids"][None], text["text_masks"][None])
                assert scores[i, t].item() == pytest.approx(model.rank_scores(feats).item(), abs=1e-5)


def test_prerank_keeps_topk_pairs_and_full_k_is_exhaustive(setup):
    model, rset = setup
    full, _, _ = score_matrix(model, rset, torch.device("cpu"), progress=False)
    same, _, cand = score_matrix(model, rset, torch.device("cpu"), progress=False, prerank_k=6)
    assert cand.all() and torch.allclose(same, full)
    part, _, cand = score_matrix(model, rset, torch.device("cpu"), progress=False, prerank_k=1)
    assert (cand.sum(dim=1) >= 1).all() and (cand.sum(dim=0) >= 1).all() and not cand.all()
    assert torch.isinf(part[~cand]).all() and torch.allclose(part[cand], full[cand])


def test_cache_resumes_and_refuses_another_key(setup, tmp_path):
    model, rset = setup
    first, _, _ = score_matrix(model, rset, torch.device("cpu"), progress=False, cache_dir=tmp_path, cache_key="a",
                               save_every=1)
    saved = torch.load(tmp_path / "scores_rank0of1.pt", weights_only=True)
    saved["rows"][1] = torch.arange(6.0)
    torch.save(saved, tmp_path / "scores_rank0of1.pt")
    resumed, _, _ = score_matrix(model, rset, torch.device("cpu"), progress=False, cache_dir=tmp_path, cache_key="a")
    assert resumed[1].tolist() == list(range(6)) and torch.equal(resumed[0], first[0])
    fresh, _, _ = score_matrix(model, rset, torch.device("cpu"), progress=False, cache_dir=tmp_path, cache_key="b")
    assert torch.allclose(fresh, first)
