"""Stage hooks, CLS attention recomputation and the picture API on image_cls's ViT with stand-in adapters
(tests/tools/conftest.py), and on small video / point-group models."""

import math

import numpy as np
import pytest
import torch
from analysis_models import GRID, HEADS, IMAGE_SIZE, IN_CHANS
from PIL import Image
from timm.models.vision_transformer import Block
from torch import nn

from common import frozen_lm
from tools.analysis import (
    GroupCentres,
    activation_maps,
    capture_tokens,
    save_overlay_grid,
    save_point_grid,
    save_video_grid,
    spec_from_parts,
    token_activation,
    video_spec,
    vit_spec,
)
from tools.analysis.capture import cls_row

LLM_STAGES = ["encoder", "in_proj", "llm_attn", "llm_ffn", "out_proj", "cls_attn_encoder", "cls_attn_llm"]


def _images(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, IN_CHANS, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))


def test_stages_shapes_and_range(vit_factory):
    model = vit_factory("lm")
    maps = activation_maps(model, _images())
    assert list(maps) == LLM_STAGES
    for name, values in maps.items():
        assert values.shape == (2, GRID, GRID), name
        flat = values.flatten(1)
        assert torch.allclose(flat.amin(1), torch.zeros(2)) and torch.allclose(flat.amax(1), torch.ones(2)), name
    assert not model.training


def test_stage_tokens_are_the_hooked_outputs(vit_factory):
    model = vit_factory("lm")
    x = _images()
    with torch.no_grad():
        encoded = model.blocks(model._pos_embed(model.patch_embed(x)))
        hidden = model.llm.in_proj(encoded)
        block = model.llm.lm.blocks[0]
        attn_out = block.attn(block.attn_norm(hidden))
        out = model.llm.out_proj(model.llm.lm(hidden))
    maps = activation_maps(model, x, stages=["encoder", "llm_attn", "out_proj"], measure="frequency")
    assert list(maps) == ["encoder", "llm_attn", "out_proj"]
    for name, tokens in (("encoder", encoded), ("llm_attn", attn_out), ("out_proj", out)):
        expected = token_activation(tokens[:, 1:], "frequency").reshape(2, GRID, GRID)  # CLS token dropped
        assert torch.allclose(maps[name], expected, atol=1e-5), name


def _manual_encoder_cls_row(model, x):
    with torch.no_grad():
        tokens = model.blocks[:-1](model._pos_embed(model.patch_embed(x)))
        attn = model.blocks[-1].attn
        h = model.blocks[-1].norm1(tokens)
        b, n, _ = h.shape
        q, k, _ = attn.qkv(h).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        return ((q[:, :, :1] @ k.transpose(-2, -1)) * attn.scale).softmax(-1)[:, :, 0]  # (B, H, N)


def _forbid_recompute(monkeypatch):
    def fail(*_args):
        raise AssertionError("the SDPA tap should have recorded q/k")

    monkeypatch.setattr("tools.analysis.capture.recompute_cls_row", fail)


@pytest.mark.parametrize("fused", [True, False])
def test_encoder_cls_attention_sdpa_tap_and_recompute(vit_factory, fused, monkeypatch):
    model = vit_factory("lm")
    if fused:
        _forbid_recompute(monkeypatch)
    for block in model.blocks:
        block.attn.fused_attn = fused  # False: no SDPA call, the qkv recompute path is used
    x = _images()
    capture = capture_tokens(model, x, vit_spec(model, x.shape))
    row = capture.cls_attention["cls_attn_encoder"]
    assert row.shape == (2, HEADS, 1 + GRID * GRID)
    assert torch.allclose(row, _manual_encoder_cls_row(model, x), atol=1e-5)
    assert torch.allclose(row.sum(-1), torch.ones(2, HEADS), atol=1e-5)


def test_llm_cls_attention_equals_the_blocks_own_probabilities(vit_factory, monkeypatch):
    x = _images()
    explicit = vit_factory("lm", use_sdpa=False)  # wq/wk recompute path; keeps its softmax for checking
    rows = capture_tokens(explicit, x, vit_spec(explicit, x.shape)).cls_attention["cls_attn_llm"]
    probs = explicit.llm.lm.blocks[0].attn.last_probs[:, :, 0]
    assert torch.allclose(rows, probs, atol=1e-5)
    fused = vit_factory("lm", use_sdpa=True)  # same weights (same seed), SDPA tap path
    _forbid_recompute(monkeypatch)
    fused_rows = capture_tokens(fused, x, vit_spec(fused, x.shape)).cls_attention["cls_attn_llm"]
    assert torch.allclose(fused_rows, probs, atol=1e-5)
    maps = activation_maps(fused, x, stages=["cls_attn_llm"])
    summed = probs.sum(1)[:, 1:]
    low, high = summed.amin(1, keepdim=True), summed.amax(1, keepdim=True)
    assert torch.allclose(maps["cls_attn_llm"], ((summed - low) / (high - low)).reshape(2, GRID, GRID), atol=1e-5)


def test_grouped_query_and_masked_cls_row():
    q = torch.randn(1, 4, 5, 8)
    k = torch.randn(1, 2, 5, 8)
    full = (q[:, :, :1] @ k.repeat_interleave(2, 1).transpose(-2, -1) / math.sqrt(8)).softmax(-1)[:, :, 0]
    assert torch.allclose(cls_row(q, k, 0), full, atol=1e-6)
    keep = torch.tensor([True, True, True, False, False]).view(1, 1, 1, 5)  # padding after token 2
    masked = cls_row(q, k, 0, attn_mask=keep)
    assert torch.all(masked[..., 3:] == 0) and torch.allclose(masked.sum(-1), torch.ones(1, 4))


def test_multi_block_mlp_and_baseline_stage_names(vit_factory):
    x = _images(1)
    two = activation_maps(vit_factory("lm", n_blocks=2), x)
    assert [k for k in two if k.startswith(("llm", "cls_attn_llm"))] == [
        "llm0_attn", "llm0_ffn", "llm1_attn", "llm1_ffn", "cls_attn_llm0", "cls_attn_llm1"]
    assert list(activation_maps(vit_factory("mlp"), x)) == ["encoder", "in_proj", "mlp", "out_proj",
                                                             "cls_attn_encoder"]
    assert list(activation_maps(vit_factory("none"), x)) == ["encoder", "cls_attn_encoder"]
    with pytest.raises(ValueError, match="unknown stage"):
        activation_maps(vit_factory("none"), x, stages=["llm_ffn"])


def test_real_frozen_lm_adapter(vit_factory, monkeypatch):
    cfg = frozen_lm.LMConfig(family="llama", dim=48, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=12,
                             ffn_hidden=64, norm_eps=1e-5)
    model = vit_factory("none")
    model.llm = frozen_lm.LLMAdapter(model.embed_dim, frozen_lm.FrozenLM.from_config(cfg, seed=0))
    x = _images()
    _forbid_recompute(monkeypatch)
    capture = capture_tokens(model, x, vit_spec(model, x.shape))
    assert list(capture.features) == ["encoder", "in_proj", "llm_attn", "llm_ffn", "out_proj"]
    attn = model.llm.lm.blocks[0].attn
    with torch.no_grad():  # grouped-query recompute straight from the fused qkv weight
        h = model.llm.lm.blocks[0].attn_norm(capture.features["in_proj"])
        q, k, _ = attn.qkv(h).split(attn.split, dim=-1)
        q = q.view(2, 1 + GRID * GRID, 4, 12).transpose(1, 2)
        k = k.view(2, 1 + GRID * GRID, 2, 12).transpose(1, 2).repeat_interleave(2, 1)
        expected = (q[:, :, :1] @ k.transpose(-2, -1) / math.sqrt(12)).softmax(-1)[:, :, 0]
    assert torch.allclose(capture.cls_attention["cls_attn_llm"], expected, atol=1e-5)


class _TinyVideoMAE(nn.Module):
    """VideoMAE-shaped stand-in: tubelet embedding (2 frames x 8 x 8), blocks, mean pooling, no CLS."""

    def __init__(self):
        super().__init__()
        self.patch_embed = nn.Conv3d(3, 16, (2, 8, 8), (2, 8, 8))
        self.patch_embed.tubelet_size, self.patch_embed.patch_size = 2, (8, 8)
        self.blocks = nn.Sequential(Block(16, 2))
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        tokens = self.blocks(self.patch_embed(x).flatten(2).transpose(1, 2))
        return self.head(tokens.mean(1))


def test_video_tubelet_layout_drawn_per_frame(tmp_path):
    model = _TinyVideoMAE()
    video = torch.randn(2, 3, 4, 16, 24)
    spec = video_spec(model, video.shape)
    maps = activation_maps(model, video, spec=spec)
    assert list(maps) == ["encoder"] and maps["encoder"].shape == (2, 2, 2, 3)  # no CLS -> no attention rows
    frames = np.zeros((4, 16, 24, 3), np.float32)
    frames[:, :, :12] = 1.0  # left half white: visible under the overlay
    path = save_video_grid(frames, {"encoder": maps["encoder"][0], "copy": maps["encoder"][0]}, tmp_path / "v.png",
                           title="clip")
    with Image.open(path) as png:
        width, height = png.size
    assert width / 2 < height < width  # 2 token time steps (rows) x 3 columns (frame, two stages)
    with pytest.raises(ValueError, match="disagree"):
        save_video_grid(frames, {"a": maps["encoder"][0], "b": maps["encoder"][0, :1]}, tmp_path / "bad.png")


class _TinyPointModel(nn.Module):
    """Point-BERT-shaped stand-in: grouping returns (neighbourhoods, centres); CLS + one token per group."""

    class Group(nn.Module):
        def forward(self, points):
            centres = points[:, ::8]
            return points.unsqueeze(1), centres

    def __init__(self):
        super().__init__()
        self.group_divider = self.Group()
        self.embed = nn.Linear(3, 16)
        self.cls_token = nn.Parameter(torch.randn(1, 1, 16))
        self.blocks = nn.Sequential(Block(16, 2), Block(16, 2))

    def forward(self, points):
        _, centres = self.group_divider(points)
        tokens = torch.cat([self.cls_token.expand(points.shape[0], -1, -1), self.embed(centres)], 1)
        return self.blocks(tokens)[:, 0]


def test_point_groups_layout_and_point_grid(tmp_path):
    model = _TinyPointModel()
    points = torch.randn(2, 64, 3)
    spec = spec_from_parts(model.blocks[-1], GroupCentres(model.group_divider), num_prefix_tokens=1, cls_index=0,
                           encoder_attention=model.blocks[-1].attn)
    capture = capture_tokens(model, points, spec)
    assert torch.equal(capture.positions, points[:, ::8])
    maps = activation_maps(model, points, spec=spec)
    assert maps["encoder"].shape == (2, 8) and maps["cls_attn_encoder"].shape == (2, 8)
    path = save_point_grid(capture.positions, maps, tmp_path / "points.png", points=points)
    assert path.stat().st_size > 1000


def test_overlay_grid_png(vit_factory, tmp_path):
    model = vit_factory("lm")
    x = _images(3)
    maps = activation_maps(model, x)
    path = save_overlay_grid(x, maps, tmp_path / "sub" / "grid.png", titles=["a", "b", "c"])
    with Image.open(path) as png:
        width, height = png.size
        pixels = np.asarray(png.convert("L"))
    assert width > height > 100 and pixels.std() > 10  # a drawn, non-blank picture
    with pytest.raises(ValueError, match="has 3 images"):
        save_overlay_grid(x[:2], maps, tmp_path / "bad.png")


def _drawn_extent(path) -> tuple[int, int]:
    """(height, width) in pixels of the coloured (non-grey) marks of a one-panel picture."""
    with Image.open(path) as png:
        rgb = np.asarray(png.convert("RGB")).astype(int)
    coloured = np.nonzero(rgb.max(-1) - rgb.min(-1) > 60)
    return int(np.ptp(coloured[0])), int(np.ptp(coloured[1]))


@pytest.mark.parametrize("up_axis", [1, 2])
def test_point_grid_draws_the_up_axis_vertically(tmp_path, up_axis):
    pole = torch.zeros(1, 40, 3)
    pole[0, :, up_axis] = torch.linspace(0, 10, 40)  # a tall pole along the scene's up axis
    pole[0, :, 0] = torch.linspace(0, 1, 40)
    values = {"v": torch.linspace(0, 1, 40)[None]}
    height, width = _drawn_extent(save_point_grid(pole, values, tmp_path / "up.png", up_axis=up_axis))
    assert height > 2 * width
    lying = save_point_grid(pole, values, tmp_path / "side.png", up_axis=3 - up_axis)  # the other axis up: on its side
    height, width = _drawn_extent(lying)
    assert width > height


def test_point_grid_top_down_for_planar_scenes(tmp_path):
    grid = torch.stack(torch.meshgrid(torch.linspace(0, 40, 8), torch.linspace(0, 10, 8), indexing="ij"), -1)
    flat = torch.cat([grid.reshape(1, 64, 2), torch.zeros(1, 64, 1)], -1)  # a 40 x 10 map, z = 0
    path = save_point_grid(flat, {"v": torch.rand(1, 64)}, tmp_path / "map.png", up_axis=None)
    height, width = _drawn_extent(path)
    assert 2.5 < width / height < 6  # drawn from above at its true 4:1 proportions, not as a line
