"""SQA3D's ScanQA model (``ScanQA/models/sqa_module.py`` + ``sep_lang_module.py``) ± the frozen LLM block.

Language: GloVe vectors -> dropout -> one shared 1-layer LSTM (packed) for the situation ``s`` and the question
``q``; masks are True where the LSTM output is all zeros (the padding). 3D: VoteNet (``votenet.py``), 256 proposals
x 128 with an objectness mask (True = "not an object", from the objectness argmax). Fusion (MCAN): shared
``lang_feat_linear`` on s and q, 2 SA layers on each, objects through 2 SGA layers guided by s (``dec_list``) then
2 guided by q (``dec_list_2``); **the LLM block sits here**, on the 256 fused proposal tokens with the object mask
as its padding mask; AttFlat on s, q and objects -> 3 x 512 -> ``answer_cls``; ``aux_reg`` predicts the situation
(position 3 + quaternion 4) from [s, objects].

Upstream also builds ``s_feat_linear``, ``q_feat_linear``, ``object_cls`` and ``attflat_lstm_q`` but never uses
them; they are not built here and ``checkpoints.py`` drops them by name from released files.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from common.frozen_lm import LLMSpec, build_adapter

from .mcan import SA, SGA, AttFlat
from .votenet import NUM_HEADING_BIN, SCANNET_CLASSES, Pointnet2Backbone, ProposalModule, VotingModule


@dataclass
class SQAConfig:
    """Sizes and switches of the model (train.py's flags, upstream defaults)."""

    num_answers: int
    input_feature_dim: int = 4  # rgb (3) + height (1), ``--use_color``
    lang_emb_size: int = 300
    hidden_size: int = 256
    num_proposals: int = 256
    seed_feat_dim: int = 256
    proposal_size: int = 128
    pointnet_width: int = 1
    pointnet_depth: int = 2
    vote_radius: float = 0.3
    vote_nsample: int = 16
    sa_npoints: tuple[int, int, int, int] = (2048, 1024, 512, 256)
    mcan_num_layers: int = 2
    mcan_num_heads: int = 8
    mcan_pdrop: float = 0.1
    mcan_flat_mlp_size: int = 256
    mcan_flat_glimpses: int = 1
    mcan_flat_out_size: int = 512
    lang_pdrop: float = 0.3
    answer_pdrop: float = 0.3
    use_object_mask: bool = True
    use_aux_situation: bool = True
    num_pos: int = 7

    @classmethod
    def from_args(cls, args) -> SQAConfig:
        values = vars(args)
        found = {f.name: values[f.name] for f in fields(cls) if values.get(f.name) is not None}
        if "sa_npoints" in found:
            found["sa_npoints"] = tuple(found["sa_npoints"])
        return cls(**found)


class LangModule(nn.Module):
    """``sep_lang_module.LangModule`` without its unused classifier: word dropout, shared LSTM, zero-output masks."""

    def __init__(self, emb_size: int, hidden_size: int, pdrop: float):
        super().__init__()
        self.lstm = nn.LSTM(input_size=emb_size, hidden_size=hidden_size, batch_first=True, num_layers=1,
                            bidirectional=False)
        self.word_drop = nn.Dropout(pdrop)

    def encode(self, embs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        packed = pack_padded_sequence(self.word_drop(embs), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True)
        return out, out.abs().sum(dim=-1) == 0  # mask: True for padding (an all-zero output)


class ScanQA(nn.Module):
    """The SQA3D baseline (ScanQA + auxiliary situation head), upstream module names, optional LLM block."""

    def __init__(self, cfg: SQAConfig, llm: LLMSpec | nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        h, num_class = cfg.hidden_size, len(SCANNET_CLASSES)
        self.lang_net = LangModule(cfg.lang_emb_size, h, cfg.lang_pdrop)
        self.detection_backbone = Pointnet2Backbone(cfg.input_feature_dim, cfg.pointnet_width, cfg.pointnet_depth,
                                                    cfg.seed_feat_dim, cfg.sa_npoints)
        self.voting_net = VotingModule(1, cfg.seed_feat_dim)
        self.proposal_net = ProposalModule(num_class, NUM_HEADING_BIN, num_class, cfg.num_proposals,
                                           cfg.seed_feat_dim, cfg.proposal_size, cfg.vote_radius, cfg.vote_nsample)
        self.lang_feat_linear = nn.Sequential(nn.Linear(h, h), nn.GELU())
        self.object_feat_linear = nn.Sequential(nn.Linear(cfg.proposal_size, h), nn.GELU())
        heads, layers, p = cfg.mcan_num_heads, cfg.mcan_num_layers, cfg.mcan_pdrop
        self.enc_list_s = nn.ModuleList([SA(h, heads, p) for _ in range(layers)])
        self.enc_list_q = nn.ModuleList([SA(h, heads, p) for _ in range(layers)])
        self.dec_list = nn.ModuleList([SGA(h, heads, p) for _ in range(layers)])
        self.dec_list_2 = nn.ModuleList([SGA(h, heads, p) for _ in range(layers)])
        self.llm = build_adapter(h, llm)  # the graft: on the fused proposal tokens, before attflat_visual
        flat = (h, cfg.mcan_flat_mlp_size, cfg.mcan_flat_glimpses, cfg.mcan_flat_out_size, 0.1)
        self.attflat_visual = AttFlat(*flat)
        self.attflat_s = AttFlat(*flat)
        self.attflat_q = AttFlat(*flat)
        out = cfg.mcan_flat_out_size
        if cfg.use_aux_situation:
            self.aux_reg = nn.Sequential(nn.Linear(2 * out, h), nn.GELU(), nn.Dropout(0.1), nn.Linear(h, cfg.num_pos))
        self.answer_cls = nn.Sequential(nn.Linear(3 * out, h), nn.GELU(), nn.Dropout(cfg.answer_pdrop),
                                        nn.Linear(h, cfg.num_answers))

    def forward(self, batch: dict) -> dict:
        """``batch``: ``point_clouds`` (B, N, 3 + F), ``s_feat`` / ``q_feat`` (B, L, emb), ``s_len`` / ``q_len``.
        Returns a dict with ``answer_scores``, ``aux_scores`` and the detection outputs the losses read."""
        out: dict = {}
        s_feat, s_mask = self.lang_net.encode(batch["s_feat"], batch["s_len"])
        q_feat, q_mask = self.lang_net.encode(batch["q_feat"], batch["q_len"])

        out = self.detection_backbone(batch["point_clouds"], out)
        vote_xyz, vote_features = self.voting_net(out["seed_xyz"], out["seed_features"])
        vote_features = vote_features / torch.norm(vote_features, p=2, dim=1).unsqueeze(1)
        out["vote_xyz"] = vote_xyz
        out = self.proposal_net(vote_xyz, vote_features, out)

        object_feat = out["aggregated_vote_features"]
        object_mask = ~out["bbox_mask"].bool().detach() if self.cfg.use_object_mask else None  # True = no object
        s_mask4, q_mask4 = s_mask[:, None, None, :], q_mask[:, None, None, :]
        o_mask4 = object_mask[:, None, None, :] if object_mask is not None else None

        s_feat = self.lang_feat_linear(s_feat)
        q_feat = self.lang_feat_linear(q_feat)
        object_feat = self.object_feat_linear(object_feat)
        for enc in self.enc_list_s:
            s_feat = enc(s_feat, s_mask4)
        for enc in self.enc_list_q:
            q_feat = enc(q_feat, q_mask4)
        for dec in self.dec_list:
            object_feat = dec(object_feat, s_feat, o_mask4, s_mask4)
        for dec in self.dec_list_2:
            object_feat = dec(object_feat, q_feat, o_mask4, q_mask4)
        if self.llm is not None:
            object_feat = self.llm(object_feat, object_mask)
        out["fused_object_feat"] = object_feat

        s_vec, out["satt"] = self.attflat_s(s_feat, s_mask4)
        q_vec, out["qatt"] = self.attflat_q(q_feat, q_mask4)
        o_vec, out["oatt"] = self.attflat_visual(object_feat, o_mask4)
        if self.cfg.use_aux_situation:
            out["aux_scores"] = self.aux_reg(torch.cat((s_vec, o_vec), dim=1))
        out["answer_scores"] = self.answer_cls(torch.cat((s_vec, q_vec, o_vec), dim=1))
        return out


def build_model(cfg: SQAConfig, llm: LLMSpec | nn.Module | None = None) -> ScanQA:
    return ScanQA(cfg, llm)
