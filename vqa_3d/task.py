"""vqa_3d: SQA3D (ScanQA + auxiliary situation task) ± a frozen LLM block, on the common task interface."""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.engine import distributed, loop
from common.engine.errors import ConfigError, DataPathError
from common.frozen_lm import LLMSpec, add_llm_args
from common.task import AnalysisSample, Task, TaskData

from .data import SQADataset, collate, glove_words
from .losses import LossWeights, total_loss
from .metrics import em_metrics
from .model import ScanQA, SQAConfig
from .scenes import load_scene, point_cloud_input
from .sqa import AnswerVocab, answers_of, read_split
from .text import GloVe, tokenize

log = logging.getLogger(__name__)
VOCAB_FILE = "answer_vocab.json"
SCENE_SUFFIX = "_aligned_vert.npy"
ANALYSIS_SITUATION = "I am standing in the middle of the room facing the table."  # one fixed situation ...
ANALYSIS_QUESTION = "What is in front of me?"  # ... and question for every analysed scene (tools.analyze)


def add_data_args(parser: argparse.ArgumentParser) -> None:
    b = argparse.BooleanOptionalAction
    data = parser.add_argument_group("SQA3D data")
    data.add_argument("--sqa-path", default=None, help="folder with v1_balanced_{questions,sqa_annotations}_*.json "
                      "(or its balanced/ subfolder)")
    data.add_argument("--scannet-data", default=None, help="ScanQA's scannet_data/ (<scene>_aligned_vert.npy ...)")
    data.add_argument("--scannet-scans", default=None, help="ScanNet scans/ for <scene>/<scene>.txt (axisAlignment); "
                      "default: <scene>.txt beside the npy files")
    data.add_argument("--glove", default=None, help="GloVe: text file, ScanRefer glove.p, or .npy + .vocab.txt")
    data.add_argument("--answer-vocab", default=None, help="answer_counter.json / answer_dict.json; default: built "
                      "from the training answers (and written to OUTPUT_DIR/answer_vocab.json)")
    data.add_argument("--answer-min-freq", type=int, default=1)
    data.add_argument("--answer-max-size", type=int, default=-1, help="most common answers kept (-1: all)")
    data.add_argument("--train-split", default="train")
    data.add_argument("--eval-splits", nargs="+", default=["val", "test"], help="the first selects best.pth")
    data.add_argument("--num-points", type=int, default=40000)
    data.add_argument("--use-color", action=b, default=True, help="rgb input (auxi.sh --use_color)")
    data.add_argument("--use-height", action=b, default=True, help="height above the floor input")
    data.add_argument("--augment", action=b, default=True, help="ScanQA's flips, rotations, translation")
    data.add_argument("--wos", action=b, default=False, help="situation text replaced by 'unk' (the w/o s ablation)")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    b = argparse.BooleanOptionalAction
    m = parser.add_argument_group("ScanQA model (sizes the data decide are written back)")
    m.add_argument("--num-answers", type=int, default=None, help="set from the answer vocabulary")
    m.add_argument("--input-feature-dim", type=int, default=None, help="set from --use-color / --use-height")
    m.add_argument("--lang-emb-size", type=int, default=None, help="set from the GloVe file's width")
    m.add_argument("--hidden-size", type=int, default=256)
    m.add_argument("--num-proposals", type=int, default=256)
    m.add_argument("--seed-feat-dim", type=int, default=256)
    m.add_argument("--proposal-size", type=int, default=128)
    m.add_argument("--pointnet-width", type=int, default=1)
    m.add_argument("--pointnet-depth", type=int, default=2)
    m.add_argument("--vote-radius", type=float, default=0.3)
    m.add_argument("--vote-nsample", type=int, default=16)
    m.add_argument("--sa-npoints", type=int, nargs=4, default=[2048, 1024, 512, 256], help="points of SA1..SA4")
    m.add_argument("--mcan-num-layers", type=int, default=2)
    m.add_argument("--mcan-num-heads", type=int, default=8)
    m.add_argument("--mcan-pdrop", type=float, default=0.1)
    m.add_argument("--mcan-flat-mlp-size", type=int, default=256)
    m.add_argument("--mcan-flat-glimpses", type=int, default=1)
    m.add_argument("--mcan-flat-out-size", type=int, default=512)
    m.add_argument("--lang-pdrop", type=float, default=0.3)
    m.add_argument("--answer-pdrop", type=float, default=0.3)
    m.add_argument("--use-object-mask", action=b, default=True)
    m.add_argument("--use-aux-situation", action=b, default=True, help="the auxiliary situation head (auxi.sh)")
    loss = parser.add_argument_group("losses (x10 in total, as upstream)")
    for name, default in (("vote", 1.0), ("objectness", 0.5), ("box", 1.0), ("sem-cls", 0.1), ("aux", 0.1),
                          ("answer", 0.1)):
        loss.add_argument(f"--{name}-loss-weight", type=float, default=default)
    loss.add_argument("--hpos", type=float, default=1.0, help="position weight in the aux loss")
    loss.add_argument("--hrot", type=float, default=1.0, help="quaternion weight in the aux loss")
    loss.add_argument("--detection", action=b, default=True, help="train with the VoteNet losses")
    opt = parser.add_argument_group("SQA3D optimizer extras")
    opt.add_argument("--opt", default="adam", choices=("adam", "adamw"), help="upstream: Adam (L2 weight decay)")
    opt.add_argument("--clip-grad-value", type=float, default=1.0,
                     help="clip each gradient element to +-value before the step (upstream's clip_grad_value_)")
    opt.add_argument("--bn-momentum-init", type=float, default=0.5)
    opt.add_argument("--bn-decay-step", type=int, default=20, help="epochs per BN momentum decay")
    opt.add_argument("--bn-decay-rate", type=float, default=0.5)
    opt.add_argument("--bn-momentum-min", type=float, default=0.001)


def bn_momentum(args: argparse.Namespace, epoch: int) -> float:
    """VoteNet's BNMomentumScheduler: max(init * rate ** (epoch // step), min)."""
    return max(args.bn_momentum_init * args.bn_decay_rate ** (epoch // args.bn_decay_step), args.bn_momentum_min)


class ClipValueMixin:
    """``step()`` clips every gradient element to [-clip_value, clip_value] first (upstream's order)."""

    clip_value: float | None = None

    def step(self, closure=None):
        if self.clip_value:
            params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_value_(params, self.clip_value)
        return super().step(closure)


class ClipAdam(ClipValueMixin, torch.optim.Adam):
    pass


class ClipAdamW(ClipValueMixin, torch.optim.AdamW):
    pass


class EpochLoader:
    """The training loader; ``set_epoch`` (called by ``loop.fit``) also sets the model's BN momentum."""

    def __init__(self, loader, on_epoch):
        self.loader, self.on_epoch = loader, on_epoch

    def __iter__(self):
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.on_epoch(epoch)
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)


class VQA3DTask(Task):
    name = "vqa_3d"
    best_metric = "em1"
    best_mode = "max"
    metrics = ("em1", "em10", "em1_what", "em1_is", "em1_how", "em1_can", "em1_which", "em1_others")
    graft = "on the 256 fused object-proposal tokens after the MCAN SGA layers, before attflat_visual (object mask)"
    head_prefixes = ("attflat_visual.", "attflat_s.", "attflat_q.", "aux_reg.", "answer_cls.")  # --freeze-encoder

    def __init__(self):
        self._epoch = 0

    def add_args(self, parser: argparse.ArgumentParser) -> None:
        add_data_args(parser)
        add_model_args(parser)
        add_llm_args(parser)
        parser.set_defaults(epochs=50, batch_size=16, lr=5e-4, weight_decay=1e-5, sched="constant",
                            warmup_epochs=0.0, warmup_lr=5e-4, min_lr=0.0)

    def check_args(self, args: argparse.Namespace) -> None:
        super().check_args(args)
        for flag in ("sqa_path", "scannet_data", "glove"):
            if not getattr(args, flag):
                raise ConfigError(f"--{flag.replace('_', '-')} is required")
        for flag in ("sqa_path", "scannet_data", "glove"):
            if not Path(getattr(args, flag)).exists():
                raise DataPathError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: no such file or directory")
        if args.hidden_size % args.mcan_num_heads:
            raise ConfigError(f"--hidden-size {args.hidden_size} is not divisible by --mcan-num-heads "
                              f"{args.mcan_num_heads}")
        if args.num_proposals > args.sa_npoints[1]:
            raise ConfigError(f"--num-proposals {args.num_proposals} > the {args.sa_npoints[1]} seeds (SA2)")

    # ---- data -------------------------------------------------------------------------------------------------
    def vocab_and_glove(self, args: argparse.Namespace, train_records=None, all_records=()):
        if args.answer_vocab:
            vocab = AnswerVocab.from_file(args.answer_vocab, args.answer_min_freq, args.answer_max_size)
        elif train_records is not None:
            vocab = AnswerVocab.from_answers(answers_of(train_records), args.answer_min_freq, args.answer_max_size)
            path = Path(args.output_dir) / VOCAB_FILE
            if distributed.is_main_process():
                path.parent.mkdir(parents=True, exist_ok=True)
                vocab.write(path)
            args.answer_vocab = str(path)
        else:
            raise ConfigError("--answer-vocab is needed (answer_counter.json or the run's answer_vocab.json)")
        if not len(vocab):
            raise DataPathError("the answer vocabulary is empty")
        glove = GloVe.load(args.glove, keep=glove_words(all_records))
        args.num_answers = len(vocab)
        args.lang_emb_size = glove.dim
        args.input_feature_dim = 3 * int(args.use_color) + int(args.use_height)
        return vocab, glove

    def dataset(self, args, records, vocab, glove, train: bool) -> SQADataset:
        return SQADataset(records, vocab, glove, args.scannet_data, args.scannet_scans, train=train,
                          num_points=args.num_points, augment=args.augment, use_color=args.use_color,
                          use_height=args.use_height, seed=args.seed, wos=args.wos)

    def build_data(self, args: argparse.Namespace, rank: int, world_size: int) -> TaskData:
        train_records = read_split(args.sqa_path, args.train_split)
        eval_records = {split: read_split(args.sqa_path, split) for split in args.eval_splits}
        everything = list(train_records) + [r for rs in eval_records.values() for r in rs]
        vocab, glove = self.vocab_and_glove(args, train_records, everything)
        train_set = self.dataset(args, train_records, vocab, glove, train=True)
        if not len(train_set):
            raise DataPathError(f"no training question left in {args.sqa_path} (skipped: {dict(train_set.skipped)})")
        eval_sets = {s: self.dataset(args, r, vocab, glove, train=False) for s, r in eval_records.items()}
        loader = loop.make_loader(train_set, args, train=True, collate_fn=collate)
        evals = {s: loop.make_loader(d, args, train=False, collate_fn=collate) for s, d in eval_sets.items()}
        sets = {args.train_split: train_set, **eval_sets}

        def skipped():
            return {f"{name}_{reason}": n for name, d in sets.items() for reason, n in d.skipped.items()}

        info = {"num_answers": len(vocab), "train_questions": len(train_set),
                **{f"{s}_questions": len(d) for s, d in eval_sets.items()}}
        log.info("SQA3D: %s; skipped %s", info, skipped())
        return TaskData(train=EpochLoader(loader, self._set_epoch), evals=evals, skipped=skipped, info=info)

    def _set_epoch(self, epoch: int) -> None:
        self._epoch = epoch

    # ---- model ------------------------------------------------------------------------------------------------
    def build_model(self, args: argparse.Namespace) -> nn.Module:
        if not args.num_answers or not args.lang_emb_size or args.input_feature_dim is None:
            raise ConfigError("--num-answers, --lang-emb-size and --input-feature-dim are unset (build_data sets "
                              "them; a saved run config has them)")
        return ScanQA(SQAConfig.from_args(args), LLMSpec.from_config(args))

    def build_optimizer(self, args: argparse.Namespace, model: nn.Module) -> torch.optim.Optimizer:
        """Upstream: Adam (L2 decay on every parameter), clip_grad_value_ before the step; ``--opt adamw`` is the
        paper's. One group at ``--lr`` (``--lr-mult`` patterns still apply through the engine's groups)."""
        from common.engine import optim

        groups = optim.param_groups(model, args.weight_decay, optim.parse_lr_multipliers(args.lr_mult), None,
                                    args.no_decay_lr_mult)
        for group in groups:
            group["weight_decay"] = args.weight_decay  # upstream decays biases and norms too
            group["lr"] = args.lr * group["lr_scale"]
            group["initial_lr"] = args.lr
        cls = ClipAdam if args.opt == "adam" else ClipAdamW
        opt = cls(groups, lr=args.lr, betas=tuple(args.opt_betas), eps=args.opt_eps)
        opt.clip_value = args.clip_grad_value
        return opt

    def loss_fn(self, args: argparse.Namespace, data: TaskData):
        weights = LossWeights(args.vote_loss_weight, args.objectness_loss_weight, args.box_loss_weight,
                              args.sem_cls_loss_weight, args.aux_loss_weight, args.answer_loss_weight,
                              args.hpos, args.hrot)
        state = {"epoch": None}

        def loss(model: nn.Module, batch: dict):
            if state["epoch"] != self._epoch:  # VoteNet's per-epoch BN momentum
                state["epoch"] = self._epoch
                momentum = bn_momentum(args, self._epoch)
                for m in model.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.momentum = momentum
            return total_loss(model(batch), batch, weights, detection=args.detection)

        return loss

    def evaluate(self, model: nn.Module, eval_set, args: argparse.Namespace) -> dict[str, float]:
        device = next(model.parameters()).device
        scores, targets, types = [], [], []
        for batch in eval_set:
            batch = loop.to_device(batch, device)
            scores.append(model(batch)["answer_scores"].float())
            targets.append(batch["answer"])
            types.extend(batch["question_type"])
        n_answers = args.num_answers
        local_scores = torch.cat(scores) if scores else torch.zeros(0, n_answers, device=device)
        local_targets = torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long, device=device)
        all_scores = distributed.all_gather_cat(local_scores).cpu()
        all_targets = distributed.all_gather_cat(local_targets).cpu()
        all_types = [t for part in distributed.all_gather_object(types) for t in part]
        if not len(all_targets):
            return {"em1": math.nan, "em10": math.nan}
        return em_metrics(all_scores, all_targets, all_types)


    # ---- analysis (tools.analyze) -----------------------------------------------------------------------------
    def analysis_samples(self, args: argparse.Namespace, paths) -> list[AnalysisSample]:
        """Each ScanQA scene file (``<scene>_aligned_vert.npy``, its other files beside it) as the evaluation input
        is built (``point_cloud_input``, ``--num-points``, the run's colour / height flags, seeded), with
        ``ANALYSIS_SITUATION`` and ``ANALYSIS_QUESTION`` embedded by the run's GloVe (``--wos``: situation 'unk');
        ``display`` is the scene's xyz (every vertex)."""
        s_tokens, q_tokens = tokenize(ANALYSIS_SITUATION), tokenize(ANALYSIS_QUESTION)
        glove = GloVe.load(args.glove, keep=set(s_tokens) | set(q_tokens))
        if args.lang_emb_size and glove.dim != args.lang_emb_size:
            raise DataPathError(f"--glove {args.glove}: width {glove.dim}, the model reads {args.lang_emb_size}")
        s_feat = glove.embed(s_tokens)
        if args.wos:
            s_feat = np.broadcast_to(glove.unk, s_feat.shape)
        q_feat = glove.embed(q_tokens)
        text = {"s_feat": torch.tensor(s_feat, dtype=torch.float32)[None], "s_len": torch.tensor([len(s_feat)]),
                "q_feat": torch.tensor(q_feat, dtype=torch.float32)[None], "q_len": torch.tensor([len(q_feat)])}
        scans = Path(args.scannet_scans) if args.scannet_scans else None
        samples = []
        for path in map(Path, paths):
            if not path.name.endswith(SCENE_SUFFIX):
                raise DataPathError(f"{path}: not a ScanQA scene file (<scene>{SCENE_SUFFIX})")
            scene = load_scene(path.parent, path.name.removesuffix(SCENE_SUFFIX), scans)
            if not len(scene.aligned_vert):
                raise DataPathError(f"{path}: the scene has no vertices")
            pc, _ = point_cloud_input(scene, args.num_points, np.random.default_rng([args.seed, 0]), args.use_color,
                                      args.use_height)
            inputs = {"point_clouds": torch.from_numpy(pc.astype(np.float32))[None], **text}
            samples.append(AnalysisSample(name=path.name, inputs=inputs, display=scene.aligned_vert[:, :3].copy()))
        return samples

    def analysis_spec(self, model: nn.Module, inputs) -> object:
        """The ``--num-proposals`` fused proposal tokens: ``encoder`` = the last MCAN SGA layer (question-guided,
        the adapter's input), then the adapter; drawn at the proposal centres (``vote_aggregation``'s output 0,
        read during the same forward), z up as in ScanNet. No CLS token, so no attention rows."""
        from common.analysis import GroupCentres, spec_from_parts

        return spec_from_parts(model.dec_list_2[-1], GroupCentres(model.proposal_net.vote_aggregation, output_index=0,
                                                                  up_axis=2),
                               model.llm, num_prefix_tokens=0, cls_index=None)


TASK = VQA3DTask()
