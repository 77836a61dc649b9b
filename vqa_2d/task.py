"""The vqa_2d task: METER ± a frozen LLM block, fine-tuned on VQAv2 (``--dataset vqav2``) or Flickr30k image-text
retrieval (``--dataset f30k``). See vqa_2d/README.md."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from common.engine import distributed, loop
from common.engine.errors import CheckpointError, ConfigError, DataPathError
from common.frozen_lm import LLMSpec, add_llm_args
from common.task import AnalysisSample, Task, TaskData

log = logging.getLogger(__name__)
# the question paired with every image by ``analysis_samples`` (the maps show the image stream given a text)
ANALYSIS_QUESTION = "what is in the image?"

SIZE_FLAGS = ("vit_width", "vit_layers", "vit_heads", "vit_patch", "vit_ffn", "text_vocab", "text_width",
              "text_layers", "text_heads", "text_ffn", "text_max_positions", "text_pad_id", "num_answers")


@dataclass
class VQAEvalSet:
    """A VQA evaluation loader with what the metric needs: the questions (raw answers) and the label names."""

    loader: Any
    questions: list
    label2ans: list[str]
    counter: Any = None  # the run's SkipCounter: unreadable evaluation images are counted into it


class VQA2DTask(Task):
    name = "vqa_2d"
    best_metric = "vqa_score"
    best_mode = "max"
    metrics = ("vqa_score", "acc", "acc_yes_no", "acc_number", "acc_other")
    graft = "METER: LLM adapter on the image tokens after the last co-attention layer, before the image pooler"
    # --freeze-encoder trains the adapter and what follows it: the two poolers and the task heads
    head_prefixes = ("cross_modal_image_pooler.", "cross_modal_text_pooler.", "vqa_classifier.", "itm_score.",
                     "rank_output.")

    # ---- flags ------------------------------------------------------------------------------------------------
    def add_args(self, parser: argparse.ArgumentParser) -> None:
        b = argparse.BooleanOptionalAction
        data = parser.add_argument_group("data")
        data.add_argument("--dataset", default="vqav2", choices=("vqav2", "f30k"),
                          help="vqav2: VQA head, BCE on soft scores; f30k: IR/TR ranking head")
        data.add_argument("--data-format", default="arrow", choices=("arrow", "json"),
                          help="METER's arrow files, or the official JSONs + image folders")
        data.add_argument("--data-path", default=None, help="folder with the arrow files or JSONs + images")
        data.add_argument("--train-splits", nargs="+", default=None,
                          help="default: vqav2 arrow 'train', json 'train2014'; f30k 'train'")
        data.add_argument("--eval-split", default=None,
                          help="default: vqav2 arrow 'val', json 'val2014'; f30k 'test' (METER's f30k 'val')")
        data.add_argument("--annotations", default=None,
                          help="arrow: official annotation JSON of the eval split (enables the official accuracy)")
        data.add_argument("--answer-min-count", type=int, default=9, help="json: METER's vocabulary threshold")
        data.add_argument("--answers-file", default=None,
                          help="label -> answer JSON list (written to OUTPUT_DIR/answers.json by training)")
        data.add_argument("--tokenizer", default=None, help="roberta-base tokenizer dir, or a .gguf file")
        data.add_argument("--max-text-len", type=int, default=40, help="METER: 50 for VQA, 40 for f30k")
        data.add_argument("--draw-false-text", type=int, default=15, help="f30k: negative captions per image")
        data.add_argument("--randaug", action=b, default=False, help="METER's clip_randaug training transform")
        data.add_argument("--train-limit", type=int, default=None, help="use the first N training samples")
        data.add_argument("--eval-limit", type=int, default=None, help="use the first N eval questions / images")
        data.add_argument("--eval-batch-size", type=int, default=None, help="default: --batch-size")
        data.add_argument("--score-cache", default=None, help="f30k: resumable per-rank score files here")

        model = parser.add_argument_group("model (METER; sizes are read from --clip-path / --text-path)")
        model.add_argument("--clip-path", default=None, help="OpenAI CLIP .pt (ViT-B-32.pt) or an HF CLIP dir")
        model.add_argument("--text-path", default=None, help="HF roberta-base dir")
        model.add_argument("--meter-ckpt", default=None, help="METER Lightning .ckpt to start from (strict map)")
        model.add_argument("--image-size", type=int, default=576, help="METER: 576 VQA, 384 f30k (ViT-B/32)")
        for flag, default in (("vit-width", 768), ("vit-layers", 12), ("vit-heads", 12), ("vit-patch", 32),
                              ("vit-ffn", 3072), ("text-vocab", 50265), ("text-width", 768), ("text-layers", 12),
                              ("text-heads", 12), ("text-ffn", 3072), ("text-max-positions", 514),
                              ("text-pad-id", 1), ("hidden-size", 768), ("num-heads", 12), ("num-top-layer", 6),
                              ("mlp-ratio", 4), ("num-answers", 3129)):
            model.add_argument(f"--{flag}", type=int, default=default)
        model.add_argument("--drop-rate", type=float, default=0.1)

        llm = add_llm_args(parser)
        llm.add_argument("--adapter-lr-mult", type=float, default=10.0, help="adapter LR / base LR (paper: 10)")
        opt = parser.add_argument_group("METER optimizer groups")
        opt.add_argument("--lr-mult-head", type=float, default=50.0, help="METER: 50 VQA, 5 f30k")
        opt.add_argument("--lr-mult-cross-modal", type=float, default=5.0)
        opt.add_argument("--itm-weight", type=float, default=0.5, help="f30k: ITM loss weight (METER 0.5)")

    def check_args(self, args: argparse.Namespace) -> None:
        super().check_args(args)
        if args.tokenizer is None:
            raise ConfigError("--tokenizer is required (roberta-base dir or a .gguf file)")
        for flag in ("clip_path", "text_path", "meter_ckpt"):
            value = getattr(args, flag)
            if value and not Path(value).exists():
                raise ConfigError(f"--{flag.replace('_', '-')} {value}: no such file or directory")

    def best_for(self, args: argparse.Namespace) -> tuple[str, str]:
        return ("vqa_score" if args.dataset == "vqav2" else "rsum"), "max"

    # ---- data ----------------------------------------------------------------------------------------------------
    def build_data(self, args: argparse.Namespace, rank: int, world_size: int) -> TaskData:
        from vqa_2d.data import inputs

        if not args.data_path or not Path(args.data_path).is_dir():
            raise DataPathError(f"--data-path {args.data_path}: not a directory")
        tokenizer = inputs.load_tokenizer(args.tokenizer)
        resolve_sizes(args, tokenizer)
        if args.dataset == "vqav2":
            return self._vqa_data(args, tokenizer, rank)
        return self._f30k_data(args, tokenizer, rank)

    def _vqa_data(self, args, tokenizer, rank: int) -> TaskData:
        from vqa_2d.data import inputs, vqav2

        root = Path(args.data_path)
        json_mode = args.data_format == "json"
        train_splits = args.train_splits or (["train2014"] if json_mode else ["train"])
        eval_split = args.eval_split or ("val2014" if json_mode else "val")
        if args.answers_file and Path(args.answers_file).is_file():
            label2ans = json.loads(Path(args.answers_file).read_text())
        else:
            label2ans = vqav2.json_answer_vocab(root, args.answer_min_count) if json_mode else \
                vqav2.arrow_answer_vocab(root)
            args.answers_file = str(Path(args.output_dir) / "answers.json")
            if rank == 0:
                Path(args.output_dir).mkdir(parents=True, exist_ok=True)
                Path(args.answers_file).write_text(json.dumps(label2ans))
        if not label2ans:
            raise DataPathError(f"VQAv2: no answer reaches --answer-min-count {args.answer_min_count}")
        args.num_answers = len(label2ans)
        ans2label = {a: i for i, a in enumerate(label2ans)}
        static: dict[str, int] = {}

        def read(split: str, train: bool) -> list:
            if json_mode:
                qs, skipped = vqav2.read_json_split(root, split, ans2label, keep_unlabelled=not train)
                for k, v in skipped.items():
                    static[f"{split}_{k}"] = static.get(f"{split}_{k}", 0) + v
                return qs
            annotations = None
            if not train and args.annotations:
                annotations = {a["question_id"]: a for a in vqav2.read_json(Path(args.annotations), "annotations")}
            return vqav2.read_arrow_split(root, split, annotations)

        train_qs = [q for s in train_splits for q in read(s, True)][:args.train_limit]
        eval_qs = read(eval_split, False)[:args.eval_limit]
        if not train_qs:
            raise DataPathError(f"VQAv2: no training question in {train_splits} under {root}")
        size = args.image_size
        train_set = vqav2.VQADataset(train_qs, len(label2ans), tokenizer, args.max_text_len,
                                     inputs.image_transform(size, True, args.randaug))
        eval_set = vqav2.VQADataset(eval_qs, len(label2ans), tokenizer, args.max_text_len,
                                    inputs.image_transform(size, False))
        counter = inputs.SkipCounter(static if rank == 0 else None)
        evals = {}
        if eval_qs:
            evals["val"] = VQAEvalSet(loop.make_loader(eval_set, args, train=False, collate_fn=inputs.collate,
                                                       batch_size=args.eval_batch_size), eval_qs, label2ans, counter)
        return TaskData(train=loop.make_loader(train_set, args, train=True, collate_fn=inputs.collate),
                        evals=evals, skipped=counter,
                        info={"num_answers": len(label2ans), "train_questions": len(train_qs),
                              "eval_questions": len(eval_qs)})

    def _f30k_data(self, args, tokenizer, rank: int) -> TaskData:
        from vqa_2d.data import f30k, inputs

        root = Path(args.data_path)
        reader = f30k.read_arrow if args.data_format == "arrow" else f30k.read_karpathy
        train_images, skipped_train = reader(root, args.train_splits or ["train"])
        eval_images, skipped_eval = reader(root, [args.eval_split or "test"])
        train_images = train_images[:args.train_limit]
        eval_images = eval_images[:args.eval_limit]
        if not train_images:
            raise DataPathError(f"Flickr30k: no training image under {root}")
        static = {f"train_{k}": v for k, v in skipped_train.items()}
        static.update({f"eval_{k}": v for k, v in skipped_eval.items()})
        size = args.image_size
        train_set = f30k.CaptionTrainDataset(train_images, tokenizer, args.max_text_len,
                                             inputs.image_transform(size, True, args.randaug), args.draw_false_text)
        counter = inputs.SkipCounter(static if rank == 0 else None)
        evals = {}
        if eval_images:
            evals["test"] = f30k.RetrievalSet(f30k.ImageSet(eval_images, inputs.image_transform(size, False)),
                                              f30k.TextSet(eval_images, tokenizer, args.max_text_len))
        return TaskData(train=loop.make_loader(train_set, args, train=True, collate_fn=inputs.collate),
                        evals=evals, skipped=counter,
                        info={"train_images": len(train_images), "eval_images": len(eval_images)})

    # ---- analysis ------------------------------------------------------------------------------------------------
    def analysis_samples(self, args: argparse.Namespace, paths: Sequence[str]) -> list[AnalysisSample]:
        """Each image through the evaluation transform, paired with ``ANALYSIS_QUESTION`` tokenized by the run's
        tokenizer (``--max-text-len``); ``display`` is the same crop as an (H, W, 3) array in [0, 1]."""
        import numpy as np
        from torchvision import transforms as T

        from vqa_2d.data import inputs

        size = int(args.image_size)
        transform = inputs.image_transform(size, train=False)
        geometry = T.Compose(transform.transforms[:-2])  # without ToTensor + Normalize
        tokenizer = inputs.load_tokenizer(args.tokenizer)
        text_ids, text_masks = inputs.encode_text(tokenizer, ANALYSIS_QUESTION, int(args.max_text_len))
        samples = []
        for path in paths:
            image = inputs.open_image(path)
            if image is None:
                raise DataPathError(f"{path}: not a readable image")
            batch = {"pixels": transform(image)[None], "text_ids": text_ids[None], "text_masks": text_masks[None]}
            display = np.asarray(geometry(image), dtype=np.float32) / 255.0
            samples.append(AnalysisSample(name=Path(path).name, inputs=batch, display=display))
        return samples

    def analysis_spec(self, model: nn.Module, inputs: Any) -> Any:
        """Image tokens after the last co-attention layer (``encoder``: CLS + the patch grid), then the adapter.
        No ``cls_attn_encoder`` row: that layer attends to the text too (its self-attention row is not read)."""
        from common.analysis import PatchGrid, spec_from_parts

        grid = model.cfg.image_size // model.cfg.vit_patch
        return spec_from_parts(model.cross_modal_image_layers[-1], PatchGrid(grid, grid), model.llm,
                               num_prefix_tokens=1, cls_index=0)

    # ---- model -----------------------------------------------------------------------------------------------------
    def build_model(self, args: argparse.Namespace) -> nn.Module:
        from vqa_2d.checkpoints import load_pretrained
        from vqa_2d.model import METER

        model = METER(meter_config(args), LLMSpec.from_config(args))
        load_pretrained(model, args)
        return model

    def build_optimizer(self, args: argparse.Namespace, model: nn.Module) -> torch.optim.Optimizer:
        from common.engine import optim
        from vqa_2d.model import lr_multiplier_patterns

        meter = lr_multiplier_patterns(args.lr_mult_head, args.lr_mult_cross_modal, args.adapter_lr_mult)
        if not hasattr(model, "llm") or model.llm is None:
            meter = meter[:-1]
        head = "vqa_classifier" if args.dataset == "vqav2" else None  # f30k: itm_score is frozen (METER)
        meter = [p for p in meter if not p.startswith(("vqa_classifier", "itm_score")) or p.startswith(str(head))]
        merged = argparse.Namespace(**{**vars(args), "lr_mult": list(args.lr_mult or []) + meter})
        return optim.build_optimizer(merged, model)

    # ---- loss ------------------------------------------------------------------------------------------------------
    def loss_fn(self, args: argparse.Namespace, data: TaskData):
        from vqa_2d.model import vqa_loss

        counter = data.skipped

        def vqa(model, batch):
            counter.add({f"train_{k}": v for k, v in batch["skipped"].items()})
            logits = model(batch["pixels"], batch["text_ids"], batch["text_masks"], head="vqa")
            return vqa_loss(logits, batch["targets"])

        def irtr(model, batch):
            counter.add({f"train_{k}": v for k, v in batch["skipped"].items()})
            scores, itm_logits = model(batch["pixels"], batch["text_ids"], batch["text_masks"], head="irtr")
            irtr_loss = F.cross_entropy(scores, torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device))
            out = {"loss": irtr_loss, "irtr": irtr_loss.detach()}
            if args.itm_weight > 0 and itm_logits is not None:
                labels = torch.cat([torch.ones(itm_logits.shape[0] // 2), torch.zeros(itm_logits.shape[0] // 2)])
                itm = F.cross_entropy(itm_logits, labels.long().to(itm_logits.device))
                out["loss"] = irtr_loss + args.itm_weight * itm
                out["itm"] = itm.detach()
            return out

        return vqa if args.dataset == "vqav2" else irtr

    # ---- evaluation --------------------------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, eval_set: Any, args: argparse.Namespace) -> dict[str, float]:
        from vqa_2d.evaluation import evaluate_retrieval, evaluate_vqa

        if isinstance(eval_set, VQAEvalSet):
            return evaluate_vqa(model, eval_set, args, eval_set.counter)
        return evaluate_retrieval(model, eval_set, args)


def resolve_sizes(args: argparse.Namespace, tokenizer) -> None:
    """Write the checkpoint-given sizes into ``args`` (CLIP dims from --clip-path, RoBERTa's from --text-path,
    vocabulary and padding id from the tokenizer) so a run's saved config rebuilds its model."""
    from vqa_2d.clip_weights import CLIPWeightsError, clip_dims

    if args.clip_path:
        try:
            dims = clip_dims(args.clip_path)
        except CLIPWeightsError as err:
            raise CheckpointError(f"--clip-path {args.clip_path}: {err}") from err
        args.vit_width, args.vit_layers, args.vit_heads = dims.width, dims.layers, dims.heads
        args.vit_patch, args.vit_ffn = dims.patch, dims.ffn
    args.text_pad_id = tokenizer.pad_token_id
    if args.text_path:
        try:
            config = json.loads((Path(args.text_path) / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CheckpointError(f"--text-path {args.text_path}: no readable config.json ({err})") from err
        args.text_vocab, args.text_width = config["vocab_size"], config["hidden_size"]
        args.text_layers, args.text_heads = config["num_hidden_layers"], config["num_attention_heads"]
        args.text_ffn, args.text_max_positions = config["intermediate_size"], config["max_position_embeddings"]
        if len(tokenizer) > args.text_vocab:
            raise ConfigError(f"--tokenizer has {len(tokenizer)} tokens, the text encoder {args.text_vocab}")
    else:
        args.text_vocab = len(tokenizer)
        args.text_max_positions = args.max_text_len + args.text_pad_id + 1  # RoBERTa positions start at pad + 1
    if args.max_text_len + args.text_pad_id + 1 > args.text_max_positions:
        raise ConfigError(f"--max-text-len {args.max_text_len} exceeds the text encoder's positions")


def meter_config(args: argparse.Namespace):
    from vqa_2d.model import METERConfig

    return METERConfig(
        vit_width=args.vit_width, vit_layers=args.vit_layers, vit_heads=args.vit_heads, vit_patch=args.vit_patch,
        vit_ffn=args.vit_ffn, image_size=args.image_size, text_vocab=args.text_vocab, text_width=args.text_width,
        text_layers=args.text_layers, text_heads=args.text_heads, text_ffn=args.text_ffn,
        text_max_positions=args.text_max_positions, text_pad_id=args.text_pad_id, hidden_size=args.hidden_size,
        num_heads=args.num_heads, num_top_layer=args.num_top_layer, mlp_ratio=args.mlp_ratio,
        drop_rate=args.drop_rate, head="vqa" if args.dataset == "vqav2" else "irtr", num_answers=args.num_answers)


def reduce_sums(values: list[float], device: torch.device) -> list[float]:
    return distributed.all_reduce_sum(torch.tensor(values, dtype=torch.float64, device=device)).cpu().tolist()


TASK = VQA2DTask()
