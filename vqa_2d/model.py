"""METER (Dou et al., CVPR 2022) without VL pretraining, ± the frozen LLM block on the image stream.

Upstream: zdou0830/METER ``meter/modules/meter_module.py`` (``METERTransformerSS.infer``), ``bert_model.py``
(``BertCrossLayer``), ``heads.py``; module and parameter names are METER's, so its ``.ckpt`` maps 1:1 except the
CLIP tower (``vqa_2d.checkpoints``).

    image ─ CLIP ViT (layers−1 blocks, post-LN on all tokens) ─ Linear ─ +type 1 ─┐  6 × co-attention (lock-step)
    text ── RoBERTa ─────────────────────────────────────────── Linear ─ +type 0 ─┘  ─▶ y ─[LLM adapter]─ pooler
                                                                                       x ─────────────── pooler
    cls_feats = [text_pool, image_pool] ─▶ VQA head (3129, BCE) | rank_output (IR/TR) | itm_score
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel, RobertaConfig, RobertaModel

from common.frozen_lm import LLMSpec, build_adapter

BERT_LN_EPS = 1e-12  # the co-attention layers are BERT layers (transformers 4.6 BertConfig default)
MASK_VALUE = -10000.0  # transformers 4.6 ``get_extended_attention_mask``: (1 - mask) * -10000


@dataclass
class METERConfig:
    """Every size of the model (from checkpoints or flags; see ``vqa_2d.task``)."""

    # CLIP visual tower: ``vit_layers`` is the checkpoint's block count; METER builds ``vit_layers - 1``.
    vit_width: int = 768
    vit_layers: int = 12
    vit_heads: int = 12
    vit_patch: int = 32
    vit_ffn: int = 3072
    image_size: int = 576
    # RoBERTa text encoder
    text_vocab: int = 50265
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    text_ffn: int = 3072
    text_max_positions: int = 514
    text_pad_id: int = 1
    # fusion
    hidden_size: int = 768
    num_heads: int = 12
    num_top_layer: int = 6
    mlp_ratio: int = 4
    drop_rate: float = 0.1
    # heads: "vqa" (VQA classifier) or "irtr" (rank_output + itm_score)
    head: str = "vqa"
    num_answers: int = 3129


def init_weights(module: nn.Module) -> None:
    """METER's ``objectives.init_weights`` (BERT init): N(0, 0.02) weights, zero biases, unit LayerNorms."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(mean=0.0, std=0.02)
    elif isinstance(module, nn.LayerNorm):
        module.bias.data.zero_()
        module.weight.data.fill_(1.0)
    if isinstance(module, nn.Linear) and module.bias is not None:
        module.bias.data.zero_()


def additive_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, L) 1 = keep -> (B, 1, 1, L) additive mask with METER's -10000 (None stays None: nothing masked)."""
    if mask is None:
        return None
    return ((1.0 - mask[:, None, None, :].to(dtype)) * MASK_VALUE).to(dtype)


class BertSelfAttention(nn.Module):
    """BERT attention scores on SDPA; ``query``/``key``/``value`` as in transformers' BertSelfAttention."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not a multiple of {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, d = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(t.shape[0], t.shape[1], self.heads, d // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(context)), split(self.value(context)),
                                             attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return out.transpose(1, 2).reshape(b, n, d)


class BertSelfOutput(nn.Module):
    """dense -> dropout -> LayerNorm(x + residual) (post-LN)."""

    def __init__(self, in_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.dense = nn.Linear(in_dim, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=BERT_LN_EPS)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.self = BertSelfAttention(hidden, heads, dropout)
        self.output = BertSelfOutput(hidden, hidden, dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(x, context, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, hidden: int, ffn: int):
        super().__init__()
        self.dense = nn.Linear(hidden, ffn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class BertCrossLayer(nn.Module):
    """METER's co-attention layer: bidirectional self-attention, cross-attention to the other modality, FFN."""

    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.attention = BertAttention(hidden, heads, dropout)
        self.crossattention = BertAttention(hidden, heads, dropout)
        self.intermediate = BertIntermediate(hidden, ffn)
        self.output = BertSelfOutput(ffn, hidden, dropout)

    def forward(self, x: torch.Tensor, other: torch.Tensor, mask: torch.Tensor | None,
                other_mask: torch.Tensor | None) -> torch.Tensor:
        h = self.attention(x, x, mask)
        h = self.crossattention(h, other, other_mask)
        return self.output(self.intermediate(h), h)


class Pooler(nn.Module):
    """dense + tanh on the first token."""

    def __init__(self, hidden: int):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(x[:, 0]))


class ITMHead(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.fc = nn.Linear(dim, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def clip_tower(cfg: METERConfig) -> CLIPVisionModel:
    """``CLIPVisionModel`` with METER's ``vit_layers - 1`` blocks at the training resolution (quick_gelu, 1e-5)."""
    if cfg.image_size % cfg.vit_patch:
        raise ValueError(f"--image-size {cfg.image_size} is not a multiple of the patch size {cfg.vit_patch}")
    if cfg.vit_layers < 2:
        raise ValueError("the CLIP tower needs >= 2 layers (METER drops the last one)")
    return CLIPVisionModel(CLIPVisionConfig(
        hidden_size=cfg.vit_width, intermediate_size=cfg.vit_ffn, num_hidden_layers=cfg.vit_layers - 1,
        num_attention_heads=cfg.vit_heads, image_size=cfg.image_size, patch_size=cfg.vit_patch,
        hidden_act="quick_gelu", layer_norm_eps=1e-5, attention_dropout=0.0))


def roberta(cfg: METERConfig) -> RobertaModel:
    """``RobertaModel`` (no pooling layer) of the config's sizes (roberta-base: eps 1e-5, dropout 0.1)."""
    return RobertaModel(RobertaConfig(
        vocab_size=cfg.text_vocab, hidden_size=cfg.text_width, num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads, intermediate_size=cfg.text_ffn,
        max_position_embeddings=cfg.text_max_positions, pad_token_id=cfg.text_pad_id, type_vocab_size=1,
        layer_norm_eps=1e-5), add_pooling_layer=False)


class METER(nn.Module):
    """METER-CLIP-ViT + RoBERTa; ``llm`` (an ``LLMSpec`` or module) sits on the image stream after the fusion."""

    def __init__(self, cfg: METERConfig, llm: LLMSpec | nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        hs = cfg.hidden_size
        self.cross_modal_text_transform = nn.Linear(cfg.text_width, hs)
        self.cross_modal_image_transform = nn.Linear(cfg.vit_width, hs)
        self.token_type_embeddings = nn.Embedding(2, hs)
        self.vit_model = clip_tower(cfg)
        self.text_transformer = roberta(cfg)
        ffn = hs * cfg.mlp_ratio
        self.cross_modal_image_layers = nn.ModuleList(
            BertCrossLayer(hs, cfg.num_heads, ffn, cfg.drop_rate) for _ in range(cfg.num_top_layer))
        self.cross_modal_text_layers = nn.ModuleList(
            BertCrossLayer(hs, cfg.num_heads, ffn, cfg.drop_rate) for _ in range(cfg.num_top_layer))
        self.cross_modal_image_pooler = Pooler(hs)
        self.cross_modal_text_pooler = Pooler(hs)
        if cfg.head == "vqa":
            self.vqa_classifier = nn.Sequential(nn.Linear(hs * 2, hs * 2), nn.LayerNorm(hs * 2), nn.GELU(),
                                                nn.Linear(hs * 2, cfg.num_answers))
        elif cfg.head == "irtr":
            self.itm_score = ITMHead(hs * 2)
            self.rank_output = nn.Linear(hs * 2, 1)
        else:
            raise ValueError(f"unknown head {cfg.head!r} (vqa | irtr)")
        for name, module in self.named_children():
            if name not in ("vit_model", "text_transformer"):
                module.apply(init_weights)
        if cfg.head == "irtr":  # METER: rank_output starts as the ITM head's "match" row; the ITM head is frozen
            self.rank_output.weight.data.copy_(self.itm_score.fc.weight.data[1:])
            self.rank_output.bias.data.copy_(self.itm_score.fc.bias.data[1:])
            self.itm_score.requires_grad_(False)
        # the graft: the frozen LLM block on the image tokens after the last co-attention layer (paper Fig. H)
        self.llm = build_adapter(hs, llm)

    # ---- unimodal encoders (cacheable per image / per text at evaluation) ------------------------------------------
    def encode_text(self, text_ids: torch.Tensor, text_masks: torch.Tensor) -> torch.Tensor:
        """RoBERTa tokens -> fusion width, + token type 0."""
        h = self.text_transformer(input_ids=text_ids, attention_mask=text_masks).last_hidden_state
        h = self.cross_modal_text_transform(h)
        return h + self.token_type_embeddings(torch.zeros_like(text_masks))

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """CLIP tokens (``post_layernorm`` on all of them, no projection) -> fusion width, + token type 1."""
        tower = self.vit_model
        h = tower.pre_layrnorm(tower.embeddings(pixels))
        h = tower.post_layernorm(tower.encoder(inputs_embeds=h).last_hidden_state)
        h = self.cross_modal_image_transform(h)
        types = torch.ones(h.shape[:2], dtype=torch.long, device=h.device)
        return h + self.token_type_embeddings(types)

    def fuse(self, text: torch.Tensor, text_masks: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Co-attention in lock-step, the LLM block on the image stream, poolers -> ``cls_feats`` (B, 2·hidden)."""
        x, y = text, image
        text_mask = additive_mask(text_masks, x.dtype)
        for text_layer, image_layer in zip(self.cross_modal_text_layers, self.cross_modal_image_layers):
            x, y = text_layer(x, y, text_mask, None), image_layer(y, x, None, text_mask)
        if self.llm is not None:
            y = self.llm(y)
        return torch.cat([self.cross_modal_text_pooler(x), self.cross_modal_image_pooler(y)], dim=-1)

    def forward(self, pixels: torch.Tensor | Mapping[str, torch.Tensor], text_ids: torch.Tensor | None = None,
                text_masks: torch.Tensor | None = None, head: str | None = None):
        """``head=None``: ``cls_feats`` of image-text pairs. ``"vqa"``: answer logits. ``"irtr"``: ``text_ids``
        (B, 1 + K, L) holds each image's positive caption then K negatives -> rank scores (B, 1 + K) and ITM
        logits (2·(B // 2), 2) of the first half of the images with their positive and the second half with
        their first negative (None when K = 0). Each image goes through CLIP once (exact: the tower has no
        dropout), as METER's repeated image batch would."""
        if isinstance(pixels, Mapping):  # one input dict (``tools.analyze`` calls ``model(inputs)``)
            return self(pixels["pixels"], pixels["text_ids"], pixels["text_masks"], head)
        if text_ids is None or text_masks is None:
            raise ValueError("METER needs text_ids and text_masks with the pixels")
        if head in (None, "vqa"):
            feats = self.fuse(self.encode_text(text_ids, text_masks), text_masks, self.encode_image(pixels))
            return feats if head is None else self.vqa_classifier(feats)
        if head != "irtr":
            raise ValueError(f"unknown head {head!r}")
        b, k, _ = text_ids.shape
        masks = text_masks.flatten(0, 1)
        feats = self.fuse(self.encode_text(text_ids.flatten(0, 1), masks), masks,
                          self.encode_image(pixels).repeat_interleave(k, dim=0))
        scores = self.rank_scores(feats).view(b, k)
        if k < 2 or b < 2:
            return scores, None
        feats = feats.view(b, k, -1)
        half = b // 2
        itm = self.itm_score(torch.cat([feats[:half, 0], feats[half:2 * half, 1]]))
        return scores, itm

    def vqa_logits(self, cls_feats: torch.Tensor) -> torch.Tensor:
        return self.vqa_classifier(cls_feats)

    def rank_scores(self, cls_feats: torch.Tensor) -> torch.Tensor:
        return self.rank_output(cls_feats)[:, 0]

    def no_weight_decay(self) -> set[str]:
        return set()

    @property
    def num_image_tokens(self) -> int:
        return (self.cfg.image_size // self.cfg.vit_patch) ** 2 + 1


def vqa_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """METER: ``BCEWithLogits(logits, soft targets) × num_answers`` (ban-vqa's scaling)."""
    return F.binary_cross_entropy_with_logits(logits, targets) * targets.shape[1]


def vqa_score(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """METER's ``VQAScore`` summed over the batch: the soft target score of each argmax answer."""
    return targets.gather(1, logits.argmax(dim=1, keepdim=True)).sum()


def lr_multiplier_patterns(head_mult: float, cross_modal_mult: float, adapter_mult: float) -> list[str]:
    """``--lr-mult`` items reproducing METER's optimizer groups (``meter_utils.set_schedule``): names containing
    ``vqa_classifier`` / ``itm_score`` × lr_mult_head, names containing ``cross_modal`` × lr_mult_cross_modal
    (``rank_output`` and ``token_type_embeddings`` keep the base LR, as upstream), the adapter × ``adapter_mult``
    (paper C.5: 10 × the image-encoder LR, which is the base LR)."""
    return [f"vqa_classifier.*={head_mult:g}", f"itm_score.*={head_mult:g}", f"*cross_modal*={cross_modal_mult:g}",
            f"llm.*={adapter_mult:g}"]
