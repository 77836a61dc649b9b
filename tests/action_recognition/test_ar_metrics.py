"""The multi-view merge equals VideoMAE's merge/compute_video (restated below), on one process and gathered from
two gloo processes holding uneven shards."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from action_recognition.metrics import ViewCollector, merge_views


def videomae_merge(rows):
    """VideoMAE engine_for_finetuning.merge + compute_video over (name, chunk_nb, split_nb, logits, label) rows."""
    feats, labels, seen = {}, {}, {}
    for name, chunk, split, logits, label in rows:
        data = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()  # softmax
        feats.setdefault(name, [])
        seen.setdefault(name, [])
        if str(chunk) + str(split) in seen[name]:
            continue
        feats[name].append(data)
        seen[name].append(str(chunk) + str(split))
        labels[name] = label
    top1, top5 = [], []
    for name, data in feats.items():
        feat = np.mean(data, axis=0)
        top1.append(float(int(np.argmax(feat)) == labels[name]))
        top5.append(float(labels[name] in np.argsort(-feat)[:5]))
    return np.mean(top1) * 100, np.mean(top5) * 100


def random_rows(seed: int, videos: int = 40, classes: int = 10):
    """Every video x (2 clips x 3 crops) view once plus some repeated rows with other logits (both merges keep a
    view's first row), shuffled."""
    g = np.random.RandomState(seed)
    labels = g.randint(classes, size=videos)
    rows = [(v, c, s, g.randn(classes) * 2, int(labels[v])) for v in range(videos) for c in range(2) for s in range(3)]
    rows += [(v, c, s, g.randn(classes) * 5, label) for v, c, s, _, label in (rows[i] for i in g.randint(len(rows),
                                                                                                        size=15))]
    order = g.permutation(len(rows))
    return [rows[i] for i in order]


def as_tensors(rows):
    return (torch.tensor([r[0] for r in rows]), torch.tensor([r[1] * 3 + r[2] for r in rows]),
            torch.tensor(np.stack([r[3] for r in rows]), dtype=torch.float32), torch.tensor([r[4] for r in rows]))


@pytest.mark.parametrize("seed", [0, 1])
def test_merge_equals_videomae(seed):
    rows = random_rows(seed)
    out = merge_views(*as_tensors(rows))
    top1, top5 = videomae_merge(rows)
    assert out["videos"] == 40
    assert out["acc1"] == pytest.approx(top1) and out["acc5"] == pytest.approx(top5)
    assert 0 < out["acc1"] < out["acc5"] < 100  # the numbers are not trivial


def test_merge_refuses_nothing_and_conflicting_labels():
    with pytest.raises(ValueError, match="no test view"):
        merge_views(torch.zeros(0), torch.zeros(0), torch.zeros(0, 3), torch.zeros(0))
    with pytest.raises(ValueError, match="different labels"):
        merge_views(torch.tensor([1, 1]), torch.tensor([0, 1]), torch.zeros(2, 3), torch.tensor([0, 2]))


def _rank(rank: int, port: int, shards, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    collector = ViewCollector(num_classes=10)
    for video_ids, labels, logits in shards[rank]:
        collector.update(logits, video_ids, labels)
    queue.put((rank, collector.result()))
    dist.destroy_process_group()


def test_two_ranks_with_uneven_shards_give_the_one_process_result():
    g = torch.Generator().manual_seed(0)
    labels, logits = torch.randint(10, (7,), generator=g), torch.randn(7, 6, 10, generator=g)
    ids = torch.arange(7)
    single = ViewCollector(10)
    single.update(logits, ids, labels)
    expected = single.result()
    # rank 0: videos 0-3 in two batches, rank 1: videos 4-6 in one batch (the engine's contiguous shards)
    shards = [[(ids[:2], labels[:2], logits[:2]), (ids[2:4], labels[2:4], logits[2:4])],
              [(ids[4:], labels[4:], logits[4:])]]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, port, shards, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results[0] == results[1]
    assert results[0]["videos"] == 7 and results[0]["acc1"] == pytest.approx(expected["acc1"])
    assert results[0]["acc5"] == pytest.approx(expected["acc5"])
    assert results[0]["loss"] == pytest.approx(expected["loss"], rel=1e-5)
