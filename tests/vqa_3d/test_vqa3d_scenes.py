"""Scenes in ScanQA's .npy layout: situation frame, inputs, augmentation, VoteNet targets, the dataset's skips,
and the losses against their formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from vqa3d_fixtures import AXIS_ALIGN, write_dataset, write_scene

from vqa_3d.data import SQADataset, collate
from vqa_3d.losses import LossWeights, answer_loss, aux_situation_loss, objectness_loss, total_loss, vote_loss
from vqa_3d.scenes import (
    MEAN_COLOR_RGB,
    augment,
    detection_targets,
    load_scene,
    point_cloud_input,
    quat_from_matrix,
    scene_boxes,
    situation_target,
)
from vqa_3d.sqa import AnswerVocab, read_split
from vqa_3d.text import GloVe
from vqa_3d.votenet import MEAN_SIZES


@pytest.fixture(scope="module")
def dataset_paths(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("sqa3d"), n_points=400)


@pytest.fixture(scope="module")
def scene(dataset_paths):
    return load_scene(dataset_paths["scannet_data"], "scene0000_00")


def test_situation_is_offset_by_the_raw_box_centre_then_axis_aligned(scene, dataset_paths):
    vert = np.load(dataset_paths["scannet_data"] / "scene0000_00_vert.npy")[:, :3].astype(np.float64)
    centre = (vert.max(0) + vert.min(0)) / 2
    np.testing.assert_allclose(scene.axis_align, AXIS_ALIGN)
    quat = np.array([0.1, -0.2, 0.3, 0.9]) / np.linalg.norm([0.1, -0.2, 0.3, 0.9])
    coord, q = situation_target(scene, (0.5, -0.25, 0.0), quat)
    np.testing.assert_allclose(coord, (AXIS_ALIGN @ np.append(np.array([0.5, -0.25, 0.0]) + centre, 1))[:3])
    expected = Rotation.from_matrix(AXIS_ALIGN[:3, :3] @ Rotation.from_quat(quat).as_matrix()).as_quat()
    np.testing.assert_allclose(q, expected, atol=1e-12)


def test_quaternions_follow_scipy_and_accept_the_flips_improper_matrices():
    for m in Rotation.random(20, random_state=0).as_matrix():
        np.testing.assert_allclose(quat_from_matrix(m), Rotation.from_matrix(m).as_quat(), atol=1e-12)
    improper = Rotation.random(random_state=1).as_matrix() * np.array([[-1], [1], [1]])
    q = quat_from_matrix(improper)
    assert np.isclose(np.linalg.norm(q), 1) and np.linalg.det(improper) < 0


def test_inputs_are_mean_normalised_colour_and_height_above_the_floor_percentile(scene):
    pc, choices = point_cloud_input(scene, 1000, np.random.default_rng(0))
    assert pc.shape == (1000, 7) and len(set(choices.tolist())) < 400  # 400 vertices: drawn with replacement
    v = scene.aligned_vert[choices]
    np.testing.assert_allclose(pc[:, 3:6], (v[:, 3:6] - MEAN_COLOR_RGB) / 256.0)
    np.testing.assert_allclose(pc[:, 6], v[:, 2] - np.percentile(scene.aligned_vert[:, 2], 0.99))
    few, choices = point_cloud_input(scene, 100, np.random.default_rng(0), use_color=False)
    assert few.shape == (100, 4) and len(set(choices.tolist())) == 100


def test_augmentation_moves_points_boxes_and_the_situation_together(scene):
    boxes, classes = scene_boxes(scene)
    coord = np.array([0.3, 0.7, 0.2])
    probe = np.zeros((3, 7))
    probe[0, :3] = coord
    probe[1, :3] = boxes[0, :3]
    for seed in range(4):  # the flips are drawn per call
        pc, new_boxes, new_coord, _ = augment(probe.copy(), boxes.copy(), coord.copy(), np.array([0, 0, 0, 1.0]),
                                              np.random.default_rng(seed))
        np.testing.assert_allclose(pc[0, :3], new_coord, atol=1e-12)
        np.testing.assert_allclose(pc[1, :3], new_boxes[0, :3], atol=1e-12)


def test_votes_point_at_instance_centres_and_boxes_carry_classes(scene):
    pc, choices = point_cloud_input(scene, 400, np.random.default_rng(1))
    boxes, classes = scene_boxes(scene)
    assert classes.tolist() == [2, 4, 17]  # chair, table, otherfurniture; the wall's box is not a target
    t = detection_targets(scene, choices, pc, boxes, classes)
    ins, sem = scene.instance_labels[choices], scene.semantic_labels[choices]
    chair = ins == 1
    x = pc[chair, :3]
    np.testing.assert_allclose(t["vote_label"][chair, :3], 0.5 * (x.min(0) + x.max(0)) - x, atol=1e-6)
    np.testing.assert_array_equal(t["vote_label"][:, :3], t["vote_label"][:, 6:])
    assert t["vote_label_mask"][(sem == 1) | (sem == 2)].sum() == 0 and t["vote_label_mask"][chair].all()
    assert t["box_label_mask"].sum() == 3 and t["sem_cls_label"][:3].tolist() == [2, 4, 17]
    np.testing.assert_allclose(t["size_residual_label"][:3], boxes[:, 3:6] - np.asarray(MEAN_SIZES)[classes],
                               atol=1e-6)


def test_dataset_skips_and_counts_missing_scenes_empty_scenes_and_unknown_training_answers(dataset_paths, tmp_path):
    glove = GloVe.load(dataset_paths["glove"])
    records = read_split(dataset_paths["sqa"], "test")
    vocab = AnswerVocab.from_answers(["yes", "no", "table"])
    test = SQADataset(records, vocab, glove, dataset_paths["scannet_data"], train=False, num_points=64)
    assert len(test) == 8 and test.skipped == {"missing_scene": 8}
    assert sum(test[i]["answer"] < 0 for i in range(8)) == 4  # unknown answers stay, with no class
    train = SQADataset(read_split(dataset_paths["sqa"], "train"), vocab, glove, dataset_paths["scannet_data"],
                       train=True, num_points=64)
    assert len(train) == 8 and train.skipped == {"unknown_answer": 8}
    write_scene(tmp_path, "scene0002_00", n_points=400)
    np.save(tmp_path / "scene0002_00_aligned_vert.npy", np.zeros((0, 9), np.float32))
    empty = SQADataset(records, vocab, glove, tmp_path, train=False)
    assert len(empty) == 0 and empty.skipped == {"missing_scene": 8, "empty_scene": 8}


def test_eval_items_are_repeatable_and_batches_pad_the_texts(dataset_paths):
    glove = GloVe.load(dataset_paths["glove"])
    records = read_split(dataset_paths["sqa"], "val")
    vocab = AnswerVocab.from_answers(r.answer for r in records)
    ds = SQADataset(records, vocab, glove, dataset_paths["scannet_data"], train=False, num_points=64)
    np.testing.assert_array_equal(ds[3]["point_clouds"], ds[3]["point_clouds"])
    batch = collate([ds[0], ds[5]])
    assert batch["s_feat"].shape[:2] == (2, max(batch["s_len"].tolist()))
    assert batch["s_len"].tolist() == [10, 8]  # "... the table  ." -> "table", "  ", "."
    assert batch["point_clouds"].shape == (2, 64, 7) and batch["question_type"] == ["What", "Others"]
    assert batch["answer_cat_scores"].sum(1).tolist() == pytest.approx([0.3, 0.3])  # answers seen once
    assert "vote_label" not in batch  # detection targets only in training


def test_losses_follow_their_formulas():
    torch.manual_seed(0)
    b, k, s, n = 2, 4, 6, 20
    out = {"answer_scores": torch.randn(b, 3), "aux_scores": torch.randn(b, 7), "seed_xyz": torch.rand(b, s, 3),
           "seed_inds": torch.randint(n, (b, s)), "aggregated_vote_xyz": torch.rand(b, k, 3),
           "objectness_scores": torch.randn(b, k, 2)}
    out["vote_xyz"] = out["seed_xyz"].clone()
    batch = {"answer_cat_scores": torch.tensor([[0, 0.3, 0], [1.0, 0, 0]]), "auxiliary_task": torch.randn(b, 7),
             "vote_label": torch.zeros(b, n, 9), "vote_label_mask": torch.ones(b, n, dtype=torch.long),
             "center_label": torch.rand(b, 5, 3)}
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        out["answer_scores"], batch["answer_cat_scores"], reduction="sum") / 2
    torch.testing.assert_close(answer_loss(out, batch), expected)
    w = LossWeights(pos=2.0, rot=0.5)
    a, t = out["aux_scores"], batch["auxiliary_task"]
    torch.testing.assert_close(aux_situation_loss(out, batch, w),
                               2 * ((a[:, :3] - t[:, :3]) ** 2).mean() + 0.5 * ((a[:, 3:] - t[:, 3:]) ** 2).mean())
    assert vote_loss(out, batch).item() == 0  # every vote on its target (zero offsets)
    _, label, assignment = objectness_loss(out, batch)
    d = torch.cdist(out["aggregated_vote_xyz"], batch["center_label"])
    assert torch.equal(label, (torch.sqrt(d.min(-1).values ** 2 + 1e-6) < 0.3).long())
    assert torch.equal(assignment, d.argmin(-1))
    terms = total_loss(out, batch, LossWeights(), detection=False)
    torch.testing.assert_close(terms["loss"], 10 * (0.1 * terms["answer_loss"] + 0.1 * terms["aux_loss"]))


def test_wos_and_no_colour_options(dataset_paths):
    glove = GloVe.load(dataset_paths["glove"])
    records = read_split(dataset_paths["sqa"], "val")
    vocab = AnswerVocab.from_answers(r.answer for r in records)
    ds = SQADataset(records, vocab, glove, dataset_paths["scannet_data"], train=False, num_points=32, wos=True,
                    use_color=False)
    item = ds[0]
    assert item["point_clouds"].shape == (32, 4)  # xyz + height, as input_feature_dim = 1
    np.testing.assert_array_equal(item["s_feat"], np.broadcast_to(glove.unk, item["s_feat"].shape))
    assert len(item["s_feat"]) == 10 and not np.array_equal(item["q_feat"][0], glove.unk)
