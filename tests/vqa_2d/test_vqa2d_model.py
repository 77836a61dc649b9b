"""METER's parts against reference computations: the CLIP tower (layers − 1 blocks, post-LN on every token)
through the OpenAI and HF key maps, the co-attention layer against BERT's formula, text padding, the graft; METER's
Lightning ``.ckpt`` read weights_only (PL 1.3's pickled classes written by a temporary stand-in package)."""

import importlib
import sys
import zipfile

import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

from common.engine.errors import CheckpointError
from common.frozen_lm import LLMSpec
from vqa_2d.checkpoints import load_clip, load_meter
from vqa_2d.clip_weights import CLIPWeightsError, load_clip_tower, resize_positions
from vqa_2d.model import METER, BertCrossLayer, METERConfig, additive_mask

TINY = dict(vit_width=32, vit_layers=3, vit_heads=2, vit_patch=8, vit_ffn=64, image_size=32, text_vocab=60,
            text_width=32, text_layers=1, text_heads=2, text_ffn=64, text_max_positions=20, text_pad_id=1,
            hidden_size=32, num_heads=2, num_top_layer=2, num_answers=7)


def full_clip(image_size: int = 16) -> CLIPVisionModel:
    """A 3-block CLIP tower as a release would hold it (pretraining resolution ``image_size``)."""
    torch.manual_seed(1)
    model = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                             num_attention_heads=2, image_size=image_size, patch_size=8,
                                             hidden_act="quick_gelu", layer_norm_eps=1e-5))
    for p in model.parameters():  # non-trivial LayerNorms and biases
        p.data.add_(0.05 * torch.randn_like(p))
    return model.eval()


def to_openai(model: CLIPVisionModel) -> dict[str, torch.Tensor]:
    """The same weights under OpenAI CLIP's names (``nn.MultiheadAttention`` in_proj = [q; k; v]) plus the text
    tower's keys a CLIP release carries."""
    sd = model.state_dict()
    out = {"visual.conv1.weight": sd["embeddings.patch_embedding.weight"],
           "visual.class_embedding": sd["embeddings.class_embedding"],
           "visual.positional_embedding": sd["embeddings.position_embedding.weight"],
           "visual.ln_pre.weight": sd["pre_layrnorm.weight"], "visual.ln_pre.bias": sd["pre_layrnorm.bias"],
           "visual.ln_post.weight": sd["post_layernorm.weight"], "visual.ln_post.bias": sd["post_layernorm.bias"],
           "visual.proj": torch.randn(32, 16), "text_projection": torch.randn(32, 16), "logit_scale": torch.ones(()),
           "positional_embedding": torch.randn(77, 32), "token_embedding.weight": torch.randn(100, 32),
           "ln_final.weight": torch.ones(32), "ln_final.bias": torch.zeros(32),
           "transformer.resblocks.0.ln_1.weight": torch.ones(32)}
    for i in range(3):
        p, q = f"encoder.layers.{i}.", f"visual.transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[q + f"attn.in_proj_{kind}"] = torch.cat([sd[p + f"self_attn.{n}_proj.{kind}"] for n in "qkv"])
            out[q + f"attn.out_proj.{kind}"] = sd[p + f"self_attn.out_proj.{kind}"]
            out[q + f"ln_1.{kind}"] = sd[p + f"layer_norm1.{kind}"]
            out[q + f"ln_2.{kind}"] = sd[p + f"layer_norm2.{kind}"]
            out[q + f"mlp.c_fc.{kind}"] = sd[p + f"mlp.fc1.{kind}"]
            out[q + f"mlp.c_proj.{kind}"] = sd[p + f"mlp.fc2.{kind}"]
    return out


def reference_tokens(model: CLIPVisionModel, pixels: torch.Tensor) -> torch.Tensor:
    """METER's tower output: the hidden states after block L-1 of the full model, ``ln_post`` on every token."""
    hidden = model(pixel_values=pixels, output_hidden_states=True).hidden_states
    return model.post_layernorm(hidden[-2])


def tiny_meter(**kw) -> METER:
    torch.manual_seed(0)
    return METER(METERConfig(**{**TINY, "image_size": 16, **kw})).eval()


@pytest.mark.parametrize("fmt", ["openai", "hf"])
def test_clip_tower_matches_meter_definition(tmp_path, fmt):
    clip = full_clip()
    if fmt == "openai":
        path = tmp_path / "ViT-tiny.pt"
        torch.save(to_openai(clip), path)
    else:
        path = tmp_path / "clip_hf"
        clip.save_pretrained(path)
    model = tiny_meter()
    load_clip(model, str(path))
    pixels = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        tower = model.vit_model
        got = tower.post_layernorm(tower.encoder(inputs_embeds=tower.pre_layrnorm(tower.embeddings(pixels)))[0])
        ref = reference_tokens(clip, pixels)
    assert len(tower.encoder.layers) == 2
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_openai_torchscript_archive(tmp_path):
    # a TorchScript archive whose state dict has the OpenAI names (as the released ViT-B-32.pt)
    clip = full_clip()
    state = to_openai(clip)
    module = torch.nn.Module()
    for key, value in state.items():
        parent = module
        *path, leaf = key.split(".")
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, torch.nn.Module())
            parent = getattr(parent, part)
        parent.register_buffer(leaf, value)
    with pytest.warns(FutureWarning):
        torch.jit.script(module).save(str(tmp_path / "clip.pt"))
    tower, dims = load_clip_tower(tmp_path / "clip.pt", grid=2)
    assert dims.layers == 3 and dims.width == 32 and dims.patch == 8 and dims.image_size == 16
    assert "encoder.layers.2.mlp.fc1.weight" not in tower  # the last block is dropped


def test_clip_map_is_strict(tmp_path):
    state = to_openai(full_clip())
    state["visual.extra.weight"] = torch.ones(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CLIPWeightsError, match="visual.extra.weight"):
        load_clip_tower(tmp_path / "bad.pt", grid=2)
    state = to_openai(full_clip())
    state["visual.ln_pre.weight"] = torch.ones(16)
    torch.save(state, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="pre_layrnorm.weight"):
        load_clip(tiny_meter(), str(tmp_path / "shape.pt"))


def test_positions_are_resized_bicubically_keeping_cls():
    pos = torch.randn(5, 8)  # 2x2 grid + cls
    out = resize_positions(pos, 4)
    assert out.shape == (17, 8)
    torch.testing.assert_close(out[0], pos[0])
    ref = torch.nn.functional.interpolate(pos[1:].reshape(2, 2, 8).permute(2, 0, 1)[None], size=(4, 4),
                                          mode="bicubic")[0].permute(1, 2, 0).reshape(16, 8)
    torch.testing.assert_close(out[1:], ref)


def bert_reference(layer: BertCrossLayer, x, y, x_mask, y_mask):
    """transformers-4.6 BertLayer math: softmax(QK^T/sqrt(d) + (1-mask)*-10000) V, post-LN (eval mode)."""
    def attend(att, h, ctx, mask):
        s = att.self
        b, n, d = h.shape
        hd = d // s.heads
        q = s.query(h).view(b, n, s.heads, hd).transpose(1, 2)
        k = s.key(ctx).view(b, -1, s.heads, hd).transpose(1, 2)
        v = s.value(ctx).view(b, -1, s.heads, hd).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / hd ** 0.5 + (1.0 - mask[:, None, None, :]) * -10000.0
        ctx_out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)
        return att.output.LayerNorm(att.output.dense(ctx_out) + h)

    h = attend(layer.attention, x, x, x_mask)
    h = attend(layer.crossattention, h, y, y_mask)
    return layer.output.LayerNorm(layer.output.dense(torch.nn.functional.gelu(layer.intermediate.dense(h))) + h)


def test_co_attention_layer_matches_bert_formula():
    torch.manual_seed(0)
    layer = BertCrossLayer(32, 4, 64, 0.1).eval()
    x, y = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    x_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).float()
    y_mask = torch.ones(2, 7)
    with torch.no_grad():
        got = layer(x, y, additive_mask(x_mask, x.dtype), None)
        ref = bert_reference(layer, x, y, x_mask, y_mask)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert layer.attention.output.LayerNorm.eps == 1e-12


def test_image_cross_attention_ignores_padded_text():
    model = tiny_meter()
    pixels = torch.randn(1, 3, 16, 16)
    ids = torch.tensor([[0, 5, 6, 7, 1, 1]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    other = ids.clone()
    other[0, 4:] = 9  # garbage under the padding
    with torch.no_grad():
        a, b = model(pixels, ids, mask), model(pixels, other, mask)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_token_type_and_shapes():
    model = tiny_meter()
    with torch.no_grad():
        img = model.encode_image(torch.randn(2, 3, 16, 16))
        logits = model(torch.randn(2, 3, 16, 16), torch.randint(2, 60, (2, 6)), torch.ones(2, 6, dtype=torch.long),
                       head="vqa")
    assert img.shape == (2, model.num_image_tokens, 32) and logits.shape == (2, 7)


def test_llm_block_sits_on_the_image_stream(tiny_llama_dir):
    model = tiny_meter(head="irtr")
    torch.manual_seed(0)
    grafted = METER(METERConfig(**{**TINY, "image_size": 16, "head": "irtr"}),
                    LLMSpec(variant="frozen", path=str(tiny_llama_dir))).eval()
    seen = []
    grafted.llm.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    pixels, ids, mask = torch.randn(2, 3, 16, 16), torch.randint(2, 60, (2, 3, 6)), torch.ones(2, 3, 6).long()
    with torch.no_grad():
        scores, itm = grafted(pixels, ids, mask, head="irtr")
    assert seen == [(6, model.num_image_tokens, 32)] and scores.shape == (2, 3) and itm.shape == (2, 2)
    frozen = [n for n, p in grafted.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("llm.lm.", "itm_score.")) for n in frozen)  # METER freezes itm_score
    assert {"itm_score.fc.weight", "itm_score.fc.bias"} <= set(frozen)


def test_meter_ckpt_round_trip(tmp_path):
    """A METER-keyed state dict (CLIP in OpenAI layout, 11-of-12 blocks stored, text leftovers, an MLM head the
    VQA run does not build) loads strictly and reproduces the model."""
    src = tiny_meter()
    state = {k: v for k, v in src.state_dict().items() if not k.startswith("vit_model.")}
    clip = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=2, image_size=16, patch_size=8))
    clip.load_state_dict(src.vit_model.state_dict())
    openai = to_openai_two_blocks(clip)
    state.update({f"vit_model.{k}": v for k, v in openai.items()})
    state.update({"vit_model.positional_embedding": torch.randn(77, 32), "vit_model.ln_final.weight": torch.ones(32),
                  "mlm_score.bias": torch.zeros(60), "text_transformer.pooler.dense.weight": torch.zeros(32, 32),
                  "text_transformer.embeddings.position_ids": torch.arange(20)[None]})
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "meter.ckpt")
    dst = tiny_meter()
    for p in dst.parameters():
        p.data.zero_()
    load_meter(dst, str(tmp_path / "meter.ckpt"))
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    state.pop("vqa_classifier.3.bias")
    torch.save({"state_dict": state}, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match="vqa_classifier.3.bias"):  # a head present in part is an error
        load_meter(dst, str(tmp_path / "bad.ckpt"))
    # a pretraining checkpoint (no task head, an ITM head): VQA keeps its head init; IR/TR starts from ITM row 1
    pretrain = {k: v for k, v in state.items() if not k.startswith("vqa_classifier.")}
    pretrain.update({"itm_score.fc.weight": torch.randn(2, 64), "itm_score.fc.bias": torch.randn(2)})
    torch.save({"state_dict": pretrain}, tmp_path / "pretrain.ckpt")
    vqa = tiny_meter()
    head = vqa.vqa_classifier[3].weight.clone()
    load_meter(vqa, str(tmp_path / "pretrain.ckpt"))
    assert torch.equal(vqa.vqa_classifier[3].weight, head)
    irtr = tiny_meter(head="irtr")
    load_meter(irtr, str(tmp_path / "pretrain.ckpt"))
    torch.testing.assert_close(irtr.rank_output.weight, pretrain["itm_score.fc.weight"][1:])


def to_openai_two_blocks(clip: CLIPVisionModel) -> dict[str, torch.Tensor]:
    sd = clip.state_dict()
    out = {"visual.conv1.weight": sd["embeddings.patch_embedding.weight"],
           "visual.class_embedding": sd["embeddings.class_embedding"],
           "visual.positional_embedding": sd["embeddings.position_embedding.weight"],
           "visual.ln_pre.weight": sd["pre_layrnorm.weight"], "visual.ln_pre.bias": sd["pre_layrnorm.bias"],
           "visual.ln_post.weight": sd["post_layernorm.weight"], "visual.ln_post.bias": sd["post_layernorm.bias"]}
    for i in range(2):
        p, q = f"encoder.layers.{i}.", f"visual.transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[q + f"attn.in_proj_{kind}"] = torch.cat([sd[p + f"self_attn.{n}_proj.{kind}"] for n in "qkv"])
            out[q + f"attn.out_proj.{kind}"] = sd[p + f"self_attn.out_proj.{kind}"]
            for a, b in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"),
                         ("mlp.c_proj", "mlp.fc2")):
                out[q + f"{a}.{kind}"] = sd[p + f"{b}.{kind}"]
    return out


@pytest.mark.parametrize("dataset", ["vqav2", "f30k"])
def test_optimizer_groups_are_meters(dataset, tiny_llama_dir):
    from common.engine import config
    from vqa_2d.task import TASK, meter_config

    args = config.parse_args(TASK.build_parser(), [
        "--dataset", dataset, "--llm-variant", "frozen", "--llm-path", str(tiny_llama_dir), "--lr", "1e-5",
        "--lr-mult-head", "50", "--lr-mult-cross-modal", "5", "--adapter-lr-mult", "10",
        *[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items() if k != "num_answers"]])
    model = METER(meter_config(args), LLMSpec.from_config(args))
    optimizer = TASK.build_optimizer(args, model)
    scale = {name: g["lr_scale"] for g in optimizer.param_groups for name in g["param_names"]}
    head = 50 if dataset == "vqav2" else 1  # rank_output keeps the base LR in METER; itm_score is frozen
    expected = {"vit_model.encoder.layers.0.mlp.fc1.weight": 1,
                "text_transformer.encoder.layer.0.output.dense.weight": 1, "token_type_embeddings.weight": 1,
                "cross_modal_image_layers.0.attention.self.query.weight": 5,
                "cross_modal_text_pooler.dense.weight": 5, "cross_modal_image_transform.weight": 5,
                "llm.in_proj.weight": 10, "llm.out_proj.weight": 10,
                ("vqa_classifier.0.weight" if dataset == "vqav2" else "rank_output.weight"): head}
    for name, factor in expected.items():
        assert scale[name] == factor, name
    assert not any(n.startswith(("itm_score.", "llm.lm.")) for n in scale)


def test_hf_clipmodel_directory(tmp_path):
    """A full ``CLIPModel`` directory (as openai/clip-vit-base-patch32): text tower and projections ignored."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(2)
    clip = CLIPModel(CLIPConfig(
        text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=50, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                           image_size=16, patch_size=8, hidden_act="quick_gelu"), projection_dim=8)).eval()
    clip.save_pretrained(tmp_path / "clip")
    model = tiny_meter()
    load_clip(model, str(tmp_path / "clip"))
    pixels = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        tower = model.vit_model
        got = tower.post_layernorm(tower.encoder(inputs_embeds=tower.pre_layrnorm(tower.embeddings(pixels)))[0])
        hidden = clip.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states
        ref = clip.vision_model.post_layernorm(hidden[-2])
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_roberta_directory_masked_lm_files(tmp_path):
    """roberta-base as released (``RobertaForMaskedLM``: ``roberta.`` prefix, LM head): strict text-encoder load."""
    from transformers import RobertaConfig, RobertaForMaskedLM

    from vqa_2d.checkpoints import load_roberta

    torch.manual_seed(3)
    mlm = RobertaForMaskedLM(RobertaConfig(vocab_size=60, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                           intermediate_size=64, max_position_embeddings=20, pad_token_id=1,
                                           type_vocab_size=1, layer_norm_eps=1e-5)).eval()
    mlm.save_pretrained(tmp_path / "roberta")
    model = tiny_meter()
    load_roberta(model, str(tmp_path / "roberta"))
    ids, mask = torch.tensor([[0, 5, 6, 2, 1, 1]]), torch.tensor([[1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        got = model.text_transformer(input_ids=ids, attention_mask=mask).last_hidden_state
        ref = mlm.roberta(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got[:, :4], ref[:, :4])
    bigger = tiny_meter(text_width=48, text_heads=2, hidden_size=32)
    with pytest.raises(CheckpointError, match="mis-shaped"):
        load_roberta(bigger, str(tmp_path / "roberta"))


PL_MODULES = {
    "pytorch_lightning/__init__.py": "",
    "pytorch_lightning/utilities/__init__.py": "",
    "pytorch_lightning/utilities/parsing.py": "class AttributeDict(dict):\n    pass\n",
    "pytorch_lightning/callbacks/__init__.py": "",
    "pytorch_lightning/callbacks/model_checkpoint.py": "class ModelCheckpoint:\n    pass\n",
    "foreign_payload.py": "class Payload:\n    pass\n",
}


def save_with_fake_packages(tmp_path, monkeypatch, make_ckpt, name: str):
    """``torch.save(make_ckpt(modules))`` with the temporary packages importable; they are gone afterwards."""
    root = tmp_path / "pkgs"
    for rel, text in PL_MODULES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    with monkeypatch.context() as m:
        m.syspath_prepend(str(root))
        from foreign_payload import Payload
        from pytorch_lightning.callbacks.model_checkpoint import ModelCheckpoint
        from pytorch_lightning.utilities.parsing import AttributeDict

        torch.save(make_ckpt(AttributeDict, ModelCheckpoint, Payload), tmp_path / name)
        for mod in [k for k in sys.modules if k.split(".")[0] in ("pytorch_lightning", "foreign_payload")]:
            del sys.modules[mod]
        importlib.invalidate_caches()
    return tmp_path / name


def lightning_ckpt(state):
    """The layout PL 1.3's ``dump_checkpoint`` writes for METER (callbacks keyed by the callback class)."""
    def make(attribute_dict, model_checkpoint, _payload):
        return {"epoch": 9, "global_step": 1000, "pytorch-lightning_version": "1.3.2", "state_dict": state,
                "callbacks": {model_checkpoint: {"monitor": "val/the_metric", "best_model_score": torch.tensor(0.7),
                                                 "best_model_path": "/ckpt/last.ckpt"}},
                "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-5, "params": [0]}]}],
                "lr_schedulers": [{"base_lrs": [1e-5], "last_epoch": 1000, "lr_lambdas": [None]}],
                "hparams_name": "config",
                "hyper_parameters": attribute_dict(loss_names={"vqa": 1}, max_text_len=40, tokenizer="roberta-base")}
    return make


def test_meter_lightning_ckpt_loads_without_pytorch_lightning(tmp_path, monkeypatch):
    src = tiny_meter()
    state = {k: v for k, v in src.state_dict().items() if not k.startswith("vit_model.")}
    clip = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=2, image_size=16, patch_size=8))
    clip.load_state_dict(src.vit_model.state_dict())
    state.update({f"vit_model.{k}": v for k, v in to_openai_two_blocks(clip).items()})
    path = save_with_fake_packages(tmp_path, monkeypatch, lightning_ckpt(state), "meter.ckpt")
    assert _pickle_mentions(path, "pytorch_lightning.utilities.parsing")
    with pytest.raises(ModuleNotFoundError):
        import pytorch_lightning  # noqa: F401 -- the writer's package is gone: the reader must not need it
    dst = tiny_meter()
    for p in dst.parameters():
        p.data.zero_()
    load_meter(dst, str(path))
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)


def test_a_foreign_class_in_a_lightning_ckpt_is_refused_in_one_line(tmp_path, monkeypatch):
    def make(attribute_dict, _model_checkpoint, payload):
        return {"state_dict": {}, "hyper_parameters": attribute_dict(x=1), "extra": payload()}

    path = save_with_fake_packages(tmp_path, monkeypatch, make, "evil.ckpt")
    with pytest.raises(CheckpointError) as err:
        load_meter(tiny_meter(), str(path))
    message = str(err.value)
    assert "\n" not in message and "--meter-ckpt" in message and str(path) in message
    assert "foreign_payload.Payload" in message


def _pickle_mentions(path, name: str) -> bool:
    with zipfile.ZipFile(path) as z:
        return any(name.encode() in z.read(n) for n in z.namelist() if n.endswith("data.pkl"))
