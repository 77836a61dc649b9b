"""The motion-forecasting task: VectorNet / mmTransformer ± the frozen LLM block on Argoverse 1.1 or 2.

    python -m motion_forecasting.train --config motion_forecasting/configs/vectornet_av1_llama.yaml \\
        --train-path av1/train --val-path av1/val --map-dir av1/map_files --cache-dir cache/av1 --llm-path /ckpt/llama
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.engine import distributed, loop
from common.engine.errors import ConfigError, DataPathError
from common.frozen_lm import LLMSpec, add_llm_args
from common.task import AnalysisSample, AnalysisUnavailable, Task, TaskData

from .data.cache import CachedDataset, CacheMismatch, build_cache
from .data.dataset import SOURCES, STEPS, ScenarioDataset, SceneReader, SkipCounts, collate, list_split
from .data.scenario import BadScenario
from .data.vectorize import AGENT_FEATURES, LANE_FEATURES, VectorConfig
from .metrics import MISS_THRESHOLD, av2_metrics, get_displacement_errors_and_miss_rate
from .models import MMTransformer, VectorNet
from .models.checkpoints import load_released_mmtransformer
from .models.heads import kmeans_centres, rts_best, wta_loss
from .models.mmtransformer import PLACEMENTS

log = logging.getLogger(__name__)
MODELS = ("vectornet", "mmtransformer")


def vector_config(args: argparse.Namespace) -> VectorConfig:
    return VectorConfig(agent_radius=args.agent_radius, lane_radius=args.lane_radius, max_agents=args.max_agents,
                        max_lanes=args.max_lanes, lane_points=args.lane_points)


def split_dataset(args: argparse.Namespace, split: str, path: str, skips: SkipCounts, build: bool = True):
    """One split as a dataset: the memory-mapped cache under ``--cache-dir/<split>`` (built by the main process
    when missing, resumable) or on-the-fly reading."""
    files = list_split(args.dataset, path)
    if not files:
        raise DataPathError(f"--{split}-path {path}: no {'*.csv' if args.dataset == 'av1' else 'scenario_*.parquet'} "
                            f"scenes found (an empty split)")
    cfg = vector_config(args)
    ids = [Path(f).stem.removeprefix("scenario_") for f in files]
    if not args.cache_dir:
        return ScenarioDataset(files, SceneReader(args.dataset, args.map_dir, cfg), skips)
    root = Path(args.cache_dir) / split
    if build and distributed.is_main_process():
        try:
            build_cache(root, args.dataset, files, args.map_dir, cfg, workers=args.preprocess_workers,
                        progress=True)
        except CacheMismatch as e:
            raise DataPathError(str(e)) from None
        finally:
            distributed.barrier()
    elif build:
        distributed.barrier()
    try:
        dataset = CachedDataset(root, skips, ids)
    except FileNotFoundError as e:
        raise DataPathError(str(e)) from None
    dataset.files = files
    return dataset


def forecasts(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K, T, 2) trajectories in the target frame and (B, K) probabilities."""
    out = model(batch)
    return out["traj"].float(), out["logits"].float().softmax(-1)


class MotionForecasting(Task):
    name = "motion_forecasting"
    best_metric = "minFDE"
    best_mode = "min"
    metrics = ("minFDE", "minADE", "MR", "minFDE_k1", "minADE_k1", "MR_k1", "brier-minFDE")
    graft = ("the agent and lane tokens before the trajectory decoder (VectorNet: after the global graph; "
             "mmTransformer: --llm-placement, default lane memory + social tokens)")
    # --freeze-encoder trains the adapter and these: VectorNet's decoder (+ node completion), mmTransformer's generator
    head_prefixes = ("decoder.", "completion.", "prediction_header.")

    def add_args(self, parser: argparse.ArgumentParser) -> None:
        b = argparse.BooleanOptionalAction
        data = parser.add_argument_group("data (Argoverse 1.1 CSV + vector maps, or Argoverse 2 parquet + log maps)")
        data.add_argument("--dataset", default="av1", choices=SOURCES)
        data.add_argument("--train-path", default=None, help="training split folder (AV1 train/ or AV2 train/)")
        data.add_argument("--val-path", default=None, help="validation split folder")
        data.add_argument("--map-dir", default=None, help="AV1 map_files/ (vector-map XMLs, bbox tables)")
        data.add_argument("--cache-dir", default=None,
                          help="preprocessing cache root (one memory-mapped folder per split; built when missing)")
        data.add_argument("--preprocess-workers", type=int, default=4, help="worker processes building the cache")
        data.add_argument("--agent-radius", type=float, default=56.0, help="agents within this distance (m)")
        data.add_argument("--lane-radius", type=float, default=65.0, help="lane pieces within this distance (m)")
        data.add_argument("--max-agents", type=int, default=64)
        data.add_argument("--max-lanes", type=int, default=160)
        data.add_argument("--lane-points", type=int, default=10, help="points per lane piece (9 vectors)")
        data.add_argument("--obs-steps", type=int, default=None, help="set from the data (20 AV1, 50 AV2)")
        data.add_argument("--future-steps", type=int, default=None, help="set from the data (30 AV1, 60 AV2)")
        data.add_argument("--agent-dim", type=int, default=None, help="agent vector width (set from the data)")
        data.add_argument("--lane-dim", type=int, default=None, help="lane vector width (set from the data)")

        model = parser.add_argument_group("model")
        model.add_argument("--model", default="vectornet", choices=MODELS)
        model.add_argument("--modes", type=int, default=6, help="K predicted trajectories (1: VectorNet's original)")
        model.add_argument("--subgraph-hidden", type=int, default=64, help="VectorNet subgraph width")
        model.add_argument("--subgraph-layers", type=int, default=3)
        model.add_argument("--global-width", type=int, default=64, help="VectorNet global graph width")
        model.add_argument("--global-heads", type=int, default=1)
        model.add_argument("--decoder-hidden", type=int, default=128)
        model.add_argument("--normalize-polylines", action=b, default=True, help="VectorNet: L2-normalise tokens")
        model.add_argument("--node-completion", type=float, default=0.0, help="VectorNet auxiliary loss weight")
        model.add_argument("--mm-subgraph-width", type=int, default=32, help="mmTransformer LaneNet width")
        model.add_argument("--mm-subgraph-layers", type=int, default=2)
        model.add_argument("--d-model", type=int, default=128, help="mmTransformer width")
        model.add_argument("--d-ff", type=int, default=256)
        model.add_argument("--mm-heads", type=int, default=2)
        model.add_argument("--mm-layers", type=int, default=2, help="layers per stacked transformer")
        llm = add_llm_args(parser)
        model.add_argument("--mm-checkpoint", default=None, metavar="PT",
                           help="start from a released mmTransformer checkpoint (decisionforce/mmTransformer demo.pt)")
        llm.add_argument("--llm-placement", default="lanes+social", choices=PLACEMENTS,
                         help="mmTransformer: which tokens go through the LLM block (see models/mmtransformer.py)")
        loss = parser.add_argument_group("loss and metrics")
        loss.add_argument("--cls-weight", type=float, default=1.0, help="mode classification loss weight")
        loss.add_argument("--miss-threshold", type=float, default=MISS_THRESHOLD, help="MR threshold (m)")
        loss.add_argument("--eval-k", type=int, default=6, help="trajectories scored (top-K by probability)")
        loss.add_argument("--rts-regions", type=int, default=0,
                          help="mmTransformer region-based training: M regions (0: plain winner-take-all)")
        loss.add_argument("--rts-centres", type=float, nargs="+", default=None,
                          help="region centres x1 y1 x2 y2 ... (set from the training endpoints by K-means)")

    def check_args(self, args: argparse.Namespace) -> None:
        super().check_args(args)
        for name in ("modes", "max_agents", "max_lanes", "preprocess_workers"):
            if getattr(args, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
        if args.rts_regions and args.modes % args.rts_regions:
            raise ConfigError(f"--modes {args.modes} proposals cannot be split into --rts-regions {args.rts_regions}")
        if args.lane_points < 2:
            raise ConfigError(f"--lane-points must be >= 2, got {args.lane_points}")

    def build_data(self, args: argparse.Namespace, rank: int, world_size: int) -> TaskData:
        if not args.train_path:
            raise DataPathError("--train-path is not set (the training split folder)")
        for flag in ("train_path", "val_path", "map_dir"):
            value = getattr(args, flag)
            if value and not Path(value).is_dir():
                raise DataPathError(f"--{flag.replace('_', '-')} {value}: no such folder")
        if args.dataset == "av1" and not args.map_dir:
            raise DataPathError("--map-dir is required for Argoverse 1 (map_files/ with the vector-map XMLs)")
        obs, fut = STEPS[args.dataset]
        args.obs_steps, args.future_steps = obs, fut
        args.agent_dim, args.lane_dim = AGENT_FEATURES, LANE_FEATURES
        train_skips, val_skips = SkipCounts(), SkipCounts()
        train_set = split_dataset(args, "train", args.train_path, train_skips)
        train = loop.make_loader(train_set, args, train=True, collate_fn=collate)
        if args.rts_regions and not args.rts_centres:
            centres = kmeans_centres(training_endpoints(train_set), args.rts_regions, args.seed)
            args.rts_centres = [float(v) for v in centres.reshape(-1)]
            log.info("RTS region centres (target frame, m): %s", np.round(centres, 2).tolist())
        evals = {}
        if args.val_path:
            val_set = split_dataset(args, "val", args.val_path, val_skips)
            evals["val"] = loop.make_loader(val_set, args, train=False, collate_fn=collate)

        def skipped() -> dict[str, int]:
            return {**train_skips.snapshot("train_"), **val_skips.snapshot("val_")}

        return TaskData(train=train, evals=evals, skipped=skipped,
                        info={"obs_steps": obs, "future_steps": fut, "dataset": args.dataset})

    def build_model(self, args: argparse.Namespace) -> nn.Module:
        if args.future_steps is None or args.agent_dim is None:
            raise ConfigError("the data sizes (--obs-steps, --future-steps, --agent-dim, --lane-dim) are unset")
        llm = LLMSpec.from_config(args)
        if args.model == "vectornet":
            return VectorNet(args.agent_dim, args.lane_dim, args.future_steps, args.modes, args.subgraph_hidden,
                             args.subgraph_layers, args.global_width, args.global_heads, args.decoder_hidden,
                             args.normalize_polylines, args.node_completion, llm=llm)
        return MMTransformer(args.lane_dim, args.future_steps, args.modes,
                             subgraph_width=args.mm_subgraph_width, subgraph_layers=args.mm_subgraph_layers,
                             d_model=args.d_model, d_ff=args.d_ff, heads=args.mm_heads, layers=args.mm_layers,
                             llm=llm, llm_placement=args.llm_placement)

    def build_optimizer(self, args: argparse.Namespace, model: nn.Module) -> torch.optim.Optimizer:
        """Loads ``--mm-checkpoint`` first (training only; a ``--resume`` checkpoint then replaces it)."""
        if args.mm_checkpoint:
            if args.model != "mmtransformer":
                raise ConfigError("--mm-checkpoint is a released mmTransformer checkpoint; this run is --model "
                                  f"{args.model}")
            load_released_mmtransformer(model, args.mm_checkpoint)
            log.info("initialised from the released mmTransformer checkpoint %s", args.mm_checkpoint)
        return super().build_optimizer(args, model)

    def loss_fn(self, args: argparse.Namespace, data: TaskData):
        centres = torch.tensor(args.rts_centres).reshape(-1, 2) if args.rts_regions else None

        def loss(model: nn.Module, batch) -> dict[str, torch.Tensor]:
            if batch is None:  # every scene of the batch was skipped: a zero step
                return {"loss": sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad)}
            out = model(batch)
            best = None
            if centres is not None:
                best = rts_best(out["traj"].detach(), batch["future"], batch["future_mask"], centres)
            losses = wta_loss(out, batch["future"], batch["future_mask"], args.cls_weight, best=best)
            if "completion" in out:
                losses["completion"] = out["completion"]
                losses["loss"] = losses["loss"] + args.node_completion * out["completion"]
            return losses

        return loss

    @torch.no_grad()
    def evaluate(self, model: nn.Module, eval_set, args: argparse.Namespace) -> dict[str, float]:
        """K = 6 (all modes) and K = 1 (the most likely) metrics of the leaderboard of ``--dataset``, over ranks."""
        device = next(model.parameters()).device
        keys = None
        sums = None
        for batch in eval_set:
            if batch is None:
                continue
            batch = loop.to_device(batch, device)
            traj, probs = forecasts(model, batch)
            rows = batch_metrics(traj.cpu().numpy(), probs.cpu().numpy(), batch["future"].cpu().numpy(),
                                 batch["future_mask"].cpu().numpy(), args)
            if not rows:
                continue
            keys = keys or sorted(rows[0])
            part = torch.tensor([[r[k] for k in keys] for r in rows], dtype=torch.float64).sum(0)
            part = torch.cat([part, torch.tensor([float(len(rows))], dtype=torch.float64)])
            sums = part if sums is None else sums + part
        keys = keys or metric_keys(args)
        if sums is None:
            sums = torch.zeros(len(keys) + 1, dtype=torch.float64)
        total = distributed.all_reduce_sum(sums.to(device)).cpu()
        n = float(total[-1])
        out = {k: float(total[i]) / n if n else float("nan") for i, k in enumerate(keys)}
        out["samples"] = n
        return out

    # ---- analysis (tools.analyze) -----------------------------------------------------------------------------
    def analysis_samples(self, args: argparse.Namespace, paths) -> list[AnalysisSample]:
        """Each scenario file of the run's ``--dataset`` (an AV1 CSV with ``--map-dir``, or an AV2 scenario parquet
        with its map beside it) vectorised as the evaluation reads it; ``display`` is every agent-history and
        lane-centreline point in the target frame, (P, 3) with z = 0."""
        reader = SceneReader(args.dataset, args.map_dir, vector_config(args))
        samples = []
        for path in map(Path, paths):
            try:
                sample = reader.sample(path)
            except BadScenario as e:
                raise DataPathError(f"{path}: unusable scenario ({e})") from None
            batch = collate([sample])
            samples.append(AnalysisSample(name=path.name, inputs=batch, display=_polyline_points(batch)[0].numpy()))
        return samples

    def analysis_spec(self, model: nn.Module, inputs) -> object:
        """The tokens the adapter sees, drawn from above at their polylines' centres in the target frame (the mean
        of the valid vectors' mid-points, z = 0; padded slots at the origin):

        - VectorNet: agents then lane pieces; ``encoder`` = the global interaction graph;
        - mmTransformer: the lane memory (``encoder`` = ``lane_enc``) when the adapter runs there (``lanes``,
          ``lanes+social``: its first call in the forward pass is the one recorded), else the social tokens
          (``encoder`` = ``social_enc``). ``header`` placement runs it on agent x mode pairs, which have no place
          on the map: not drawn."""
        from common.analysis import GroupCentres, spec_from_parts

        if isinstance(model, VectorNet):
            encoder, centres = model.global_graph, polyline_centres(inputs)
        elif isinstance(model, MMTransformer):
            placements = model.placement.split("+")
            if model.llm is not None and "header" in placements:
                raise AnalysisUnavailable(f"{self.name}: mmTransformer with llm_placement=header runs the adapter "
                                          "on agent x mode pairs, which have no map position to draw")
            lanes = model.llm is None or "lanes" in placements
            encoder = model.lane_enc if lanes else model.social_enc
            centres = polyline_centres(inputs, ("lane",) if lanes else ("agent",))
        else:
            raise AnalysisUnavailable(f"{self.name}: tools.analyze is not wired for {type(model).__name__}")
        layout = GroupCentres(centres=centres, up_axis=None)  # a map: drawn from above
        return spec_from_parts(encoder, layout, model.llm, num_prefix_tokens=0, cls_index=None)


def polyline_centres(batch: dict, sets: tuple[str, ...] = ("agent", "lane")) -> torch.Tensor:
    """(B, N, 3) centres of the polylines of ``sets`` in the model's token order (VectorNet: agents then lanes):
    the mean of the valid vectors' mid-points, z = 0; padded slots at the origin."""
    parts = []
    for name in sets:
        vec, mask = batch[f"{name}_vec"], batch[f"{name}_vec_mask"]
        mid = (vec[..., 0:2] + vec[..., 2:4]).float() / 2
        weight = mask.float()[..., None]
        parts.append((mid * weight).sum(-2) / weight.sum(-2).clamp(min=1))
    xy = torch.cat(parts, 1)
    return torch.cat([xy, xy.new_zeros(*xy.shape[:-1], 1)], -1)


def _polyline_points(batch: dict) -> list[torch.Tensor]:
    """Per scene, the start and end points of every valid agent and lane vector, (P, 3) with z = 0."""
    out = []
    for b in range(batch["agent_vec"].shape[0]):
        points = [vec[b][mask[b]][:, i:i + 2] for vec, mask in ((batch["agent_vec"], batch["agent_vec_mask"]),
                                                               (batch["lane_vec"], batch["lane_vec_mask"]))
                  for i in (0, 2)]
        xy = torch.cat(points).float()
        out.append(torch.cat([xy, xy.new_zeros(len(xy), 1)], -1))
    return out


def training_endpoints(dataset) -> np.ndarray:
    """Final ground-truth positions (N, 2, target frame) of a training split: read from the cache's arrays, or by
    reading every scene (skipped ones left out)."""
    if hasattr(dataset, "endpoints"):
        return dataset.endpoints()
    ends = [s["future"][-1] for s in (dataset[i] for i in range(len(dataset))) if s is not None and len(s["future"])]
    return np.asarray(ends).reshape(-1, 2)


def metric_keys(args: argparse.Namespace) -> list[str]:
    base = (["minADE", "minFDE", "MR", "p-minADE", "p-minFDE", "p-MR", "brier-minADE", "brier-minFDE"]
            if args.dataset == "av1" else ["minADE", "minFDE", "MR", "brier-minFDE"])
    return sorted(base + [f"{k}_k1" for k in ("minADE", "minFDE", "MR")])


def batch_metrics(traj: np.ndarray, probs: np.ndarray, future: np.ndarray, fmask: np.ndarray,
                  args: argparse.Namespace) -> list[dict[str, float]]:
    """Per-scene metric rows (the leaderboard functions, one scene at a time) for scenes with a full future."""
    rows = []
    for i in range(len(traj)):
        if fmask.shape[1] != traj.shape[2] or not fmask[i].all():
            continue
        gt = future[i]
        if args.dataset == "av1":
            row = get_displacement_errors_and_miss_rate({0: list(traj[i])}, {0: gt}, args.eval_k, gt.shape[0],
                                                        args.miss_threshold, {0: list(probs[i])})
        else:
            top = np.argsort(-probs[i], kind="stable")[: args.eval_k]
            row = av2_metrics([traj[i][top]], [gt], [probs[i][top]], k=args.eval_k)
        top1 = get_displacement_errors_and_miss_rate({0: list(traj[i])}, {0: gt}, 1, gt.shape[0],
                                                     args.miss_threshold, {0: list(probs[i])})
        row.update({f"{k}_k1": top1[k] for k in ("minADE", "minFDE", "MR")})
        rows.append(row)
    return rows


TASK = MotionForecasting()
