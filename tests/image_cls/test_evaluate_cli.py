"""``python -m image_cls.evaluate``: engine checkpoints of ``image_cls.train`` (logits in dataset order, metrics
equal to the training log's), robustness sets (ImageNet-C mean accuracy and mCE, masked ImageNet-A/-R), released
ViT-LLaMA checkpoints (logits of the official forward), and one-line errors."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from image_fixtures import TINY_LLAMA_HIDDEN, TINY_LLAMA_PARAMS, WNIDS, meta_llama_state, write_jpeg
from PIL import Image
from timm.models.vision_transformer import VisionTransformer
from train_helpers import one_thread, train_argv  # noqa: F401  (autouse fixture)

from common.engine import checkpoint, config
from common.engine.logging import read_log
from common.frozen_lm import LMConfig
from image_cls import checkpoints, evaluate, train
from image_cls.data.imagenet import build_imagenet_dataset
from image_cls.data.robustness import IMAGENET_C_CORRUPTIONS, imagenet_1k_wnids, imagenet_subset_wnids
from image_cls.data.transforms import build_eval_transform, build_imagenet_c_transform
from image_cls.metrics import ALEXNET_CORRUPTION_ERROR
from image_cls.models import build_model
from image_cls.options import build_parser


@pytest.fixture(scope="module")
def trained_run(imagenet_folder, tiny_llama_dir, tmp_path_factory) -> Path:
    """A 1-epoch run with the tiny frozen LLaMA block and EMA on the folder fixture."""
    out = tmp_path_factory.mktemp("trained")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train.main(config.parse_args(build_parser(), train_argv(
            imagenet_folder, out, "--llm-variant", "frozen", "--llm-path", str(tiny_llama_dir), "--model-ema",
            "--model-ema-decay", "0.5", "--mixup", "0", "--cutmix", "0")))
    finally:
        torch.set_num_threads(threads)
    return out


def val_batch(root: Path, size: int = 48) -> torch.Tensor:
    """The val split of ``root`` through the eval transform, in dataset order."""
    dataset = build_imagenet_dataset(root, "val", build_eval_transform(size),
                                     class_to_idx={w: i for i, w in enumerate(WNIDS)})
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


@pytest.mark.parametrize("use_ema", [False, True])
def test_engine_checkpoint_logits_in_dataset_order(trained_run, imagenet_folder, tmp_path, use_ema, capsys):
    logits_file = tmp_path / "logits.npy"
    argv = ["--resume", str(trained_run / "checkpoint.pth"), "--data-path", str(imagenet_folder),
            "--num-workers", "0", "--batch-size", "4", "--device", "cpu", "--save-logits", str(logits_file),
            "--output-json", str(tmp_path / "results.json")] + (["--ema"] if use_ema else [])
    assert evaluate.main(argv) == 0, capsys.readouterr().err
    logits = np.load(logits_file)
    assert logits.shape == (6, 3) and logits.dtype == np.float32

    state = checkpoint.load(trained_run / "checkpoint.pth")
    model = build_model(state["config"], 3)
    model.load_state_dict(state["ema" if use_ema else "model"], strict=True)
    with torch.no_grad():
        expected = model.eval()(val_batch(imagenet_folder))
    np.testing.assert_allclose(logits, expected.numpy(), rtol=1e-5, atol=1e-5)

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["checkpoint_kind"] == "engine" and results["weights"] == ("ema" if use_ema else "model")
    metrics = results["results"]["imagenet"]
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    assert metrics["acc1"] == pytest.approx(100 * (expected.argmax(1) == targets).float().mean().item())
    assert metrics["loss"] == pytest.approx(F.cross_entropy(expected, targets).item(), rel=1e-5)
    logged = read_log(trained_run)[-1]  # the training run evaluated the same weights on the same images
    prefix = "test_ema_" if use_ema else "test_"
    assert metrics["acc1"] == pytest.approx(logged[prefix + "acc1"])
    assert metrics["loss"] == pytest.approx(logged[prefix + "loss"], rel=1e-5)
    assert "imagenet" in capsys.readouterr().out


@pytest.fixture(scope="module")
def robustness_root(tmp_path_factory) -> Path:
    """ImageNet-C (15 corruptions x 5 severities, 1 image each), -A and -R (2 classes of their 200), -Sketch."""
    root = tmp_path_factory.mktemp("robustness")
    in1k = imagenet_1k_wnids()
    for k, corruption in enumerate(IMAGENET_C_CORRUPTIONS):
        for severity in range(1, 6):
            write_jpeg(root / "c" / corruption / str(severity) / in1k[k] / "img.JPEG", 20 * severity, (48, 48), k)
    for name, key in (("imagenet-a", "a"), ("imagenet-r", "r")):
        for j, wnid in enumerate(imagenet_subset_wnids(name)[5:7]):
            for i in range(2):
                write_jpeg(root / key / wnid / f"{i}.JPEG", 60 + 90 * j, (50, 50), seed=i)
    for i, wnid in enumerate(in1k[:5]):
        write_jpeg(root / "sketch" / wnid / f"sketch_{i}.JPEG", 255 - 30 * i, (64, 56), seed=i)
    return root


@pytest.fixture(scope="module")
def in1k_checkpoint(tmp_path_factory) -> Path:
    """An engine checkpoint of an untrained 1000-class vit_demo_llm (RGB, 48 px)."""
    config_values = {"model": "vit_demo_llm", "input_size": 48, "dataset": "imagenet", "llm_variant": "none",
                     "seed": 0}
    torch.manual_seed(0)
    model = build_model(config_values, 1000)
    path = tmp_path_factory.mktemp("in1k") / "checkpoint.pth"
    checkpoint.save(path, checkpoint.build_state(model=model, epoch=0, config=config_values))
    return path


def test_robustness_sets(in1k_checkpoint, robustness_root, tmp_path, capsys):
    logits_file = tmp_path / "logits.npy"
    argv = ["--resume", str(in1k_checkpoint), "--eval-sets", "imagenet-c,imagenet-a,imagenet-r,imagenet-sketch",
            "--imagenet-c-path", str(robustness_root / "c"), "--imagenet-a-path", str(robustness_root / "a"),
            "--imagenet-r-path", str(robustness_root / "r"), "--imagenet-sketch-path", str(robustness_root / "sketch"),
            "--num-workers", "0", "--device", "cpu", "--save-logits", str(logits_file)]
    assert evaluate.main(argv) == 0, capsys.readouterr().err
    results = json.loads((in1k_checkpoint.parent / "eval_results.json").read_text())["results"]
    in1k = imagenet_1k_wnids()

    c = results["imagenet-c"]
    assert c["num_corruptions"] == 15 and len(c["per_set"]) == 75
    for k, corruption in enumerate(IMAGENET_C_CORRUPTIONS):
        accs = []
        for severity in range(1, 6):
            saved = np.load(tmp_path / f"logits_imagenet-c_{corruption}_{severity}.npy")
            accs.append(100.0 * float(saved[0].argmax() == k))
            assert c["per_set"][f"{corruption}/{severity}"]["acc1"] == accs[-1]
        assert c["per_corruption"][corruption]["acc1"] == pytest.approx(np.mean(accs))
    expected_mce = np.mean([(100 - c["per_corruption"][k]["acc1"]) / ALEXNET_CORRUPTION_ERROR[k]
                            for k in IMAGENET_C_CORRUPTIONS])
    assert c["mce"] == pytest.approx(expected_mce)
    assert c["acc1"] == pytest.approx(np.mean([v["acc1"] for v in c["per_corruption"].values()]))

    for name in ("imagenet-a", "imagenet-r"):
        saved = np.load(tmp_path / f"logits_{name}.npy")
        assert saved.shape == (4, 1000)  # full 1000-way logits are saved; the score is 200-way (official rule)
        columns = [i for i, w in enumerate(in1k) if w in imagenet_subset_wnids(name)]  # upstream's mask
        targets = [columns.index(in1k.index(w)) for w in sorted(imagenet_subset_wnids(name)[5:7]) for _ in range(2)]
        predicted = saved[:, columns].argmax(1)
        assert results[name]["acc1"] == pytest.approx(100 * np.mean(predicted == np.array(targets)))
    sketch = np.load(tmp_path / "logits_imagenet-sketch.npy")
    assert results["imagenet-sketch"]["acc1"] == pytest.approx(100 * np.mean(sketch.argmax(1) == np.arange(5)))
    assert "mCE" in capsys.readouterr().out


def test_imagenet_c_uses_centre_crop_only(in1k_checkpoint, robustness_root, tmp_path):
    """Upstream feeds ImageNet-C's 224 px images with a centre crop and no resize; here 48 px images, 48 crop."""
    assert evaluate.main(["--resume", str(in1k_checkpoint), "--eval-sets", "imagenet-c", "--imagenet-c-path",
                          str(robustness_root / "c"), "--num-workers", "0", "--device", "cpu", "--save-logits",
                          str(tmp_path / "c.npy"), "--output-json", str(tmp_path / "c.json")]) == 0
    model = checkpoints.load_trained_model(in1k_checkpoint).model
    with Image.open(robustness_root / "c" / "fog" / "3" / imagenet_1k_wnids()[9] / "img.JPEG") as raw:
        image = build_imagenet_c_transform(48)(raw.convert("RGB"))
    with torch.no_grad():
        expected = model(image[None])
    np.testing.assert_allclose(np.load(tmp_path / "c_imagenet-c_fog_3.npy"), expected.numpy(), rtol=1e-5, atol=1e-5)


def official_state(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A released-format ViT-LLaMA state dict: timm ViT keys + llama_dim_mapper1/2 + Meta-named llama.* keys."""
    vit = VisionTransformer(img_size=48, patch_size=16, embed_dim=192, depth=1, num_heads=3, num_classes=3)
    state = dict(vit.state_dict())
    dim = TINY_LLAMA_PARAMS["dim"]
    llama = meta_llama_state({**TINY_LLAMA_PARAMS, "n_layers": 1}, TINY_LLAMA_HIDDEN, seed=3)
    state.update({f"llama.{k}": v for k, v in llama.items() if k.startswith("layers.")})
    state["llama.norm.weight"] = torch.ones(dim)
    state["llama_dim_mapper1.weight"] = torch.randn(dim, 192, generator=generator) * 0.05
    state["llama_dim_mapper2.weight"] = torch.randn(192, dim, generator=generator) * 0.05
    return state


def test_official_checkpoint(imagenet_folder, tmp_path, monkeypatch, capsys):
    from test_official import llama_block, rms_norm  # the official forward, re-stated from upstream

    tiny = LMConfig(family="llama", dim=64, n_layers=2, n_heads=4, n_kv_heads=4, head_dim=16,
                    ffn_hidden=TINY_LLAMA_HIDDEN, norm_eps=TINY_LLAMA_PARAMS["norm_eps"])
    monkeypatch.setattr(checkpoints, "build_official_model",
                        functools.partial(checkpoints.build_official_model, lm_config=tiny))
    state = official_state(torch.Generator().manual_seed(0))
    path = tmp_path / "vit_llama_official.pth"
    torch.save({"model": state, "epoch": 299}, path)
    logits_file = tmp_path / "official.npy"
    assert evaluate.main(["--resume", str(path), "--data-path", str(imagenet_folder), "--num-workers", "0",
                          "--device", "cpu", "--save-logits", str(logits_file)]) == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "eval_results.json").read_text())
    assert results["checkpoint_kind"] == "official" and results["results"]["imagenet"]["n"] == 6

    vit = VisionTransformer(img_size=48, patch_size=16, embed_dim=192, depth=1, num_heads=3, num_classes=3).eval()
    vit.load_state_dict({k: v for k, v in state.items() if not k.startswith("llama")}, strict=True)
    with torch.no_grad():
        x = vit.blocks(vit._pos_embed(vit.patch_embed(val_batch(imagenet_folder))))
        x = F.linear(x, state["llama_dim_mapper1.weight"])
        x = rms_norm(llama_block(x, state, 0), state["llama.norm.weight"])
        x = vit.norm(F.linear(x, state["llama_dim_mapper2.weight"]))
        expected = vit.head(x[:, 0])
    np.testing.assert_allclose(np.load(logits_file), expected.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case,code,message", [
    ("missing", 1, "checkpoint not found"),
    ("unknown_set", 2, "--eval-sets: unknown imagenet-x"),
    ("no_path", 4, "needs --imagenet-a-path"),
    ("bad_path", 4, "no such directory"),
    ("no_ema", 1, "no 'ema' weights"),
    ("garbage", 1, "neither an engine checkpoint"),
])
def test_errors(case, code, message, in1k_checkpoint, tmp_path, capsys):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    argv = {
        "missing": ["--resume", str(tmp_path / "none.pth")],
        "unknown_set": ["--resume", str(in1k_checkpoint), "--eval-sets", "imagenet,imagenet-x"],
        "no_path": ["--resume", str(in1k_checkpoint), "--eval-sets", "imagenet-a"],
        "bad_path": ["--resume", str(in1k_checkpoint), "--eval-sets", "imagenet-sketch", "--imagenet-sketch-path",
                     str(tmp_path / "nowhere")],
        "no_ema": ["--resume", str(in1k_checkpoint), "--ema"],
        "garbage": ["--resume", str(garbage)],
    }[case]
    assert evaluate.main(argv + ["--device", "cpu", "--output-json", str(tmp_path / "r.json")]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert not (tmp_path / "r.json").exists()
