"""python -m tools.analyze end to end: an engine checkpoint of an image_cls ViT (+ a random frozen llama-shaped
block whose config is written by transformers), ImageNet-S-layout images and masks -> PNG grids and mIoU."""

import json

import numpy as np
import pytest
from PIL import Image

timm = pytest.importorskip("timm")
models = pytest.importorskip("image_cls.models")
checkpoint = pytest.importorskip("common.engine.checkpoint")
frozen_lm = pytest.importorskip("common.frozen_lm")

from tools import analyze  # noqa: E402


@pytest.fixture
def trained(tmp_path):
    from transformers import LlamaConfig

    llm_dir = tmp_path / "tiny-llama"
    LlamaConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
                num_hidden_layers=2).save_pretrained(llm_dir)
    config = {"model": "vit_demo_llm", "input_size": 28, "llm_variant": "random_frozen", "llm_path": str(llm_dir),
              "llm_layers": [-1], "llm_position": "tail", "epochs": 1}
    model = models.build_model(config, num_classes=10)
    path = checkpoint.save(tmp_path / "run" / "checkpoint.pth", checkpoint.build_state(model=model, epoch=0,
                                                                                    config=config))
    return path


@pytest.fixture
def imagenet_s(tmp_path):
    folder = tmp_path / "validation" / "n01443537"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(3):
        labels = np.zeros((28, 28), np.int64)
        labels[4 + index:20 + index, 8:24] = 1  # class 1 encoded as R=1, G=0
        pixels = (rng.uniform(0, 60, (28, 28)) + 150 * (labels > 0)).astype(np.uint8)
        Image.fromarray(pixels).convert("RGB").save(folder / f"img{index}.JPEG", quality=95)
        rgb = np.zeros((28, 28, 3), np.uint8)
        rgb[..., 0] = labels
        Image.fromarray(rgb).save(folder / f"img{index}.png")
    return tmp_path / "validation"


def test_cli_writes_grids_and_miou(trained, imagenet_s, tmp_path, capsys):
    out = tmp_path / "analysis"
    code = analyze.main(["--task", "image_cls", "--resume", str(trained), "--images", str(imagenet_s),
                         "--out", str(out), "--grid-images", "2", "--batch-size", "2"])
    assert code == 0, capsys.readouterr().err
    for measure in ("magnitude", "frequency"):
        png = out / f"overlays_{measure}.png"
        assert png.stat().st_size > 5000
        with Image.open(png) as image:
            assert image.size[0] > image.size[1]  # 2 rows, 8 columns
    results = json.loads((out / "miou.json").read_text())
    expected = {f"{stage}/{measure}" for stage in ("encoder", "in_proj", "llm_attn", "llm_ffn", "out_proj")
                for measure in ("magnitude", "frequency")} | {"cls_attn_encoder", "cls_attn_llm"}
    assert set(results) == expected
    for entry in results.values():
        assert entry["n_images"] == 3 and 0.0 < entry["miou"] <= 1.0
        assert all(img["threshold"] in analyze.THRESHOLDS for img in entry["images"])
        assert entry["miou"] == pytest.approx(np.mean([img["iou"] for img in entry["images"]]))
    table = (out / "miou.md").read_text()
    assert table.startswith("| stage | magnitude | frequency | attention |") and "over 3 image(s)" in table


def test_cli_errors(trained, imagenet_s, tmp_path, capsys):
    assert analyze.main(["--resume", str(tmp_path / "missing.pth"), "--images", str(imagenet_s)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert analyze.main(["--resume", str(trained), "--images", str(imagenet_s), "--ema"]) == 2
    assert "no 'ema' weights" in capsys.readouterr().err
    assert analyze.main(["--task", "vqa_3d", "--resume", str(trained), "--images", str(imagenet_s)]) == 2
    assert "no checkpoint loader for task 'vqa_3d'" in capsys.readouterr().err
    assert analyze.main(["--resume", str(trained), "--images", str(imagenet_s), "--measures", "energy"]) == 2


def test_cli_loads_an_official_vit_llama_checkpoint(imagenet_s, tmp_path, monkeypatch, capsys):
    """Released LM4VisualEncoding checkpoints (state dict under 'model', LLaMA block inside) load too; a tiny
    LLaMA config stands in for LLaMA-7B so the file stays small."""
    import functools

    import torch
    from timm.models.vision_transformer import VisionTransformer

    official = pytest.importorskip("image_cls.official")
    tiny = frozen_lm.LMConfig(family="llama", dim=32, n_layers=2, n_heads=4, n_kv_heads=4, head_dim=8,
                              ffn_hidden=64, norm_eps=1e-6)
    monkeypatch.setattr(official, "build_official_model",
                        functools.partial(official.build_official_model, lm_config=tiny))
    vit = VisionTransformer(img_size=64, patch_size=16, embed_dim=192, depth=1, num_heads=3, num_classes=4)
    state = dict(vit.state_dict())
    generator = torch.Generator().manual_seed(0)
    state["llama_dim_mapper1.weight"] = torch.randn(32, 192, generator=generator) * 0.02
    state["llama_dim_mapper2.weight"] = torch.randn(192, 32, generator=generator) * 0.02
    for name, shape in (("attention.wq", (32, 32)), ("attention.wk", (32, 32)), ("attention.wv", (32, 32)),
                        ("attention.wo", (32, 32)), ("feed_forward.w1", (64, 32)), ("feed_forward.w2", (32, 64)),
                        ("feed_forward.w3", (64, 32))):
        state[f"llama.layers.0.{name}.weight"] = torch.randn(*shape, generator=generator) * 0.1
    state["llama.layers.0.attention_norm.weight"] = torch.ones(32)
    state["llama.layers.0.ffn_norm.weight"] = torch.ones(32)
    state["llama.norm.weight"] = torch.ones(32)
    path = tmp_path / "vit_llama_official.pth"
    torch.save({"model": state, "epoch": 299}, path)

    out = tmp_path / "official"
    assert analyze.main(["--resume", str(path), "--images", str(imagenet_s), "--out", str(out),
                         "--measures", "magnitude"]) == 0, capsys.readouterr().err
    results = json.loads((out / "miou.json").read_text())
    assert {"llm_attn/magnitude", "out_proj/magnitude", "cls_attn_llm"} <= set(results)
    assert (out / "overlays_magnitude.png").stat().st_size > 5000
