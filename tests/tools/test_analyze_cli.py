"""python -m tools.analyze end to end through the task interface: engine checkpoints of image_cls (ImageNet-S-layout
images and masks -> PNG grids and mIoU), point_cloud (.npy clouds -> group centres coloured per stage) and
action_recognition (PyAV clips -> token maps per frame), each built by its task's ``build_model`` with the shared tiny
LLaMA as the frozen block; the task is read off the checkpoint."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.engine import checkpoint
from common.engine.config import config_to_dict, namespace_from_config
from common.task import Task, get_task
from tools import analyze


def save_run(task_name: str, settings: dict, folder) -> str:
    """A trained-run checkpoint as the engine writes it (config with its ``task`` key, trainable weights,
    fingerprints of the frozen block), of the model the task builds from ``settings``."""
    task = get_task(task_name)
    args = namespace_from_config(task.build_parser(), settings)
    model = task.build_model(args)
    state = checkpoint.build_state(model=model, epoch=0, config=config_to_dict(args))
    return str(checkpoint.save(folder / "checkpoint.pth", state))


@pytest.fixture
def image_run(tmp_path, tiny_llama_dir):
    settings = {"model": "vit_demo_llm", "input_size": 28, "in_chans": 1, "num_classes": 10, "dataset": "fashion_mnist",
                "llm_variant": "frozen", "llm_path": str(tiny_llama_dir), "epochs": 1}
    return save_run("image_cls", settings, tmp_path / "image_run")


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


def test_image_run_writes_grids_and_miou(image_run, imagenet_s, tmp_path, capsys):
    out = tmp_path / "analysis"
    code = analyze.main(["--resume", image_run, "--images", str(imagenet_s), "--out", str(out), "--grid-images", "2",
                         "--batch-size", "2"])
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


def test_errors_are_one_line_with_the_families_codes(image_run, imagenet_s, tmp_path, capsys):
    def run(*argv):
        code = analyze.main(["--out", str(tmp_path / "x"), *argv])
        err = capsys.readouterr().err.strip().splitlines()
        return code, err[-1] if err else ""

    code, err = run("--task", "image_cls", "--resume", str(tmp_path / "missing.pth"), "--images", str(imagenet_s))
    assert code == 1 and "checkpoint not found" in err  # CheckpointError
    code, err = run("--resume", image_run, "--images", str(imagenet_s), "--ema")
    assert code == 1 and "no 'ema' weights" in err
    code, err = run("--task", "no_such_task", "--resume", image_run, "--images", str(imagenet_s))
    assert code == 2 and "unknown task 'no_such_task'" in err
    code, err = run("--task", "point_cloud", "--resume", image_run, "--images", str(imagenet_s))
    assert code == 1 and "checkpoint of task 'image_cls', not point_cloud" in err
    code, err = run("--resume", image_run, "--images", str(imagenet_s), "--measures", "energy")
    assert code == 2 and "--measures" in err
    code, err = run("--resume", image_run, "--images", str(tmp_path / "nowhere"))
    assert code == 2 and "no such input" in err


def test_a_task_without_analysis_hooks_is_skipped_in_one_line(image_run, imagenet_s, tmp_path, capsys, monkeypatch):
    task = get_task("image_cls")
    monkeypatch.setattr(type(task), "analysis_spec", Task.analysis_spec)
    out = tmp_path / "skipped"
    assert analyze.main(["--resume", image_run, "--images", str(imagenet_s), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == ["skipped: image_cls: tools.analyze is not wired for this task"]
    assert not out.exists()


@pytest.fixture
def point_run(tmp_path, tiny_llama_dir):
    settings = {"npoints": 64, "num_group": 8, "group_size": 8, "trans_dim": 32, "depth": 2, "num_heads": 2,
                "encoder_dims": 32, "cls_dim": 5, "drop_path": 0.0, "llm_variant": "frozen",
                "llm_path": str(tiny_llama_dir), "epochs": 1}
    return save_run("point_cloud", settings, tmp_path / "point_run")


def test_point_cloud_run_draws_tokens_on_their_group_centres(point_run, tmp_path, capsys):
    clouds = tmp_path / "clouds"
    clouds.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        np.save(clouds / f"cloud{index}.npy", rng.normal(size=(200, 3)).astype(np.float32))
    (clouds / "broken.npy").write_bytes(b"not a numpy file")
    out = tmp_path / "analysis"
    code = analyze.main(["--resume", point_run, "--inputs", str(clouds), "--out", str(out), "--measures",
                         "magnitude"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0, err
    assert len(err) == 1 and err[0].startswith("warning: skipping ") and "broken.npy" in err[0]
    png = out / "overlays_magnitude.png"
    with Image.open(png) as image:
        assert image.size[0] > 2 * image.size[1] and np.asarray(image.convert("L")).std() > 5
    assert not (out / "miou.json").exists()  # no masks for point clouds

    task = get_task("point_cloud")
    from common.engine import runner

    loaded = runner.load_run(task, point_run)
    samples = task.analysis_samples(loaded.args, [str(clouds / "cloud0.npy"), str(clouds / "cloud1.npy")])
    analysis = analyze.analyze_inputs(task, loaded.model, samples, ("magnitude",))
    assert set(analysis.maps["magnitude"]) == {"encoder", "in_proj", "llm_attn", "llm_ffn", "out_proj",
                                               "cls_attn_encoder", "cls_attn_llm"}
    assert all(v.shape == (2, 8) for v in analysis.maps["magnitude"].values())
    _, centres = loaded.model.group_divider(samples[0].inputs)
    assert analysis.positions.shape == (2, 8, 3) and np.allclose(analysis.positions[0], centres[0])


@pytest.fixture
def video_run(tmp_path, tiny_llama_dir):
    settings = {"model": "vit_small_patch16_224", "embed_dim": 48, "depth": 2, "num_heads": 3, "patch_size": 8,
                "input_size": 32, "short_side_size": 32, "num_frames": 8, "tubelet_size": 2, "nb_classes": 4,
                "drop_path": 0.0, "llm_variant": "frozen", "llm_path": str(tiny_llama_dir), "epochs": 1}
    return save_run("action_recognition", settings, tmp_path / "video_run")


def write_clip(path, frames: int = 12, width: int = 40, height: int = 32):
    """A short clip written by PyAV (MPEG-4 in .mp4): a bright square moving right over a dark background."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            image = np.full((height, width, 3), 30, np.uint8)
            image[8:24, 2 + 2 * index:14 + 2 * index] = 220
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_video_run_draws_tokens_per_frame(video_run, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    for index in range(2):
        write_clip(videos / f"clip{index}.mp4")
    out = tmp_path / "analysis"
    code = analyze.main(["--resume", video_run, "--inputs", str(videos), "--out", str(out), "--measures",
                         "frequency"])
    assert code == 0, capsys.readouterr().err
    pictures = sorted(p.name for p in out.glob("*.png"))
    assert pictures == ["overlays_frequency_0_clip0.png", "overlays_frequency_1_clip1.png"]
    with Image.open(out / pictures[0]) as image:  # 4 token time steps (rows) x (frame + 5 stages)
        assert image.size[1] > image.size[0] / 2

    from common.engine import runner

    task = get_task("action_recognition")
    loaded = runner.load_run(task, video_run)
    samples = task.analysis_samples(loaded.args, [str(videos / "clip0.mp4")])
    analysis = analyze.analyze_inputs(task, loaded.model, samples, ("frequency",))
    assert set(analysis.maps["frequency"]) == {"encoder", "in_proj", "llm_attn", "llm_ffn", "out_proj"}
    assert all(v.shape == (1, 4, 4, 4) for v in analysis.maps["frequency"].values())  # (T/2, 32/8, 32/8)


def test_task_of_a_run_from_its_config_yaml_or_its_checkpoint(image_run, tmp_path):
    run_dir = tmp_path / "run_with_yaml"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("task: point_cloud\nllm_variant: none\n")
    assert analyze.task_of_checkpoint(run_dir / "checkpoint.pth") == "point_cloud"  # the file is not even read
    assert analyze.task_of_checkpoint(Path(image_run)) == "image_cls"  # no config.yaml beside: the saved config
