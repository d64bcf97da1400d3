"""``edn transfer``: a tiny trained model makes a browser-playable video of the right length, size and rate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.cli import main
from pipeline.footage.media import probe_video
from pipeline.gan.train import TrainConfig, train
from pipeline.gan.train_face import FaceConfig, train_face

# A tiny model on the 64x128 synthetic clip: training and transfer take seconds.
TINY = dict(width=64, height=128, ngf=4, n_downsample=2, n_blocks=1, ndf=4, num_d=1, workers=0, vgg_loss=False,
            sample_every=0, deterministic=True, max_steps=3, device="cpu")
FPS = 25.0  # not a common default, so the video's rate must come from the source


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A clip at 25 fps and the generator and face GAN trained on it."""
    from conftest import make_synthetic_clip

    root = tmp_path_factory.mktemp("transfer")
    clip = make_synthetic_clip(root / "clip", n_frames=10, fps=FPS)
    train(root / "run", [clip], TrainConfig(**TINY))
    train_face(root / "run" / "face", root / "run" / "generator.pt", [clip],
               FaceConfig(face_ngf=4, face_n_blocks=1, ndf=4, workers=0, vgg_loss=False, sample_every=0,
                          max_steps=3))
    return clip, root / "run" / "generator.pt", root / "run" / "face" / "face.pt"


@pytest.mark.slow
def test_transfer_video_has_the_sources_frames_size_and_rate(tmp_path, models):
    (frames, render, keypoints), generator, face = models
    out = tmp_path / "out" / "dancer.mp4"
    # The clip's own keypoints stand in for normalized ones: same file contract, same frame size.
    code = main(["transfer", str(keypoints), str(render), str(frames), str(out), "--generator", str(generator),
                 "--face", str(face), "--side-by-side", str(tmp_path / "out" / "sbs.mp4"), "--device", "cpu"])
    assert code == 0
    info = probe_video(out)
    assert (info.frame_count, info.width, info.height, info.fps) == (10, 64, 128, FPS)
    assert (info.codec, info.pix_fmt) == ("h264", "yuv420p")  # what browsers play
    side = probe_video(tmp_path / "out" / "sbs.mp4")
    # source frame (64x128) | stick figure at the model size | result, all at the model's height
    assert (side.frame_count, side.width, side.height, side.fps) == (10, 3 * 64, 128, FPS)

    record = json.loads(out.with_suffix(".json").read_text())  # default record beside the video
    assert record["frames"] == 10 and record["fps"] == FPS and record["device"] == "cpu"
    assert record["precision"] == "fp32" and "no native bf16" in record["precision_reason"]  # auto (conftest)
    assert record["models"]["generator"]["path"] == str(generator) and record["models"]["face"]["path"] == str(face)
    assert record["models"]["generator"]["training_provenance"]["stage"] == "train"
    assert record["models"]["generator"]["step"] == 3 and record["models"]["face"]["step"] == 3  # max_steps
    assert record["models"]["generator"]["vgg_loss"] is False
    assert record["face_boxes"] == 10 and record["frames_per_second"] > 0
    assert len(record["consecutive_differences"]) == 9
    assert record["provenance"]["params"]["seed"] == 0
    assert not list(out.parent.glob(".*"))  # no temporary frames or partial videos left behind


@pytest.mark.slow
def test_transfer_is_the_generator_fed_its_own_output(tmp_path, models):
    """The video's first frames are what generate_frames makes (decoded within H.264's loss)."""
    import cv2

    from pipeline.gan.generate import generate_frames, load_models, model_pose

    (frames, render, keypoints), generator, _ = models
    out = tmp_path / "plain.mp4"
    assert main(["transfer", str(keypoints), str(render), str(frames), str(out), "--generator", str(generator),
                 "--crf", "0"]) == 0
    loaded = load_models(generator, None, "cpu")
    poses = [model_pose(p, loaded.size) for p in sorted(render.glob("*.png"))]
    expected = list(generate_frames(loaded, poses))
    capture = cv2.VideoCapture(str(out))
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(float))
    expected = [cv2.cvtColor(e, cv2.COLOR_RGB2GRAY).astype(float) for e in expected]
    assert len(decoded) == len(expected) == 10
    # yuv420p halves the colour resolution but keeps luma whole (lossless at crf 0): compare brightness
    errors = [np.abs(d - e).mean() for d, e in zip(decoded, expected)]
    assert max(errors) < 2.0, errors
    assert np.abs(expected[0] - expected[5]).mean() > 2 * max(errors)  # another frame differs by far more
    # differences taken on the fly are those of the generated frames themselves (not of the decoded video)
    from pipeline.evaluation.metrics import consecutive_differences

    record = json.loads(out.with_suffix(".json").read_text())
    bgr = [cv2.cvtColor(e, cv2.COLOR_RGB2BGR) for e in generate_frames(loaded, poses)]
    assert len(bgr) == 10
    assert record["consecutive_differences"] == pytest.approx(consecutive_differences(bgr), abs=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.json", "plain.mp4"]  # no temp frames written


def test_prefetch_reads_a_bounded_way_ahead_and_passes_errors_on():
    from pipeline.footage.streams import prefetch

    produced = []

    def items():
        for i in range(100):
            produced.append(i)
            yield i

    stream = prefetch(items(), depth=3)
    assert next(stream) == 0
    import time

    time.sleep(0.3)
    assert len(produced) <= 1 + 3 + 1  # the one taken, a full queue, one waiting to be put
    assert list(stream) == list(range(1, 100))

    def failing():
        yield 1
        raise ValueError("bad frame file")

    with pytest.raises(ValueError, match="bad frame file"):
        list(prefetch(failing()))


def test_video_encoder_leaves_nothing_behind_on_error(tmp_path):
    from pipeline.footage.video import VideoEncoder

    out = tmp_path / "v.mp4"
    with pytest.raises(ValueError, match="expected 16x8"):
        with VideoEncoder(out, 10.0) as encoder:
            encoder.write(np.zeros((8, 16, 3), np.uint8))
            encoder.write(np.zeros((8, 18, 3), np.uint8))
    with pytest.raises(ValueError, match="no frames"):
        with VideoEncoder(out, 10.0):
            pass
    assert list(tmp_path.iterdir()) == []
    with VideoEncoder(out, 10.0) as encoder:
        for _ in range(3):
            encoder.write(np.full((7, 9, 3), 100, np.uint8))  # odd size: padded
    assert encoder.count == 3 and out.is_file() and [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_missing_or_mismatched_stick_figures_are_named(tmp_path, synthetic_clip):
    frames, render, keypoints = synthetic_clip
    broken = tmp_path / "render"
    shutil.copytree(render, broken)
    (broken / "000003.png").unlink()
    with pytest.raises(ValueError, match=r"render: no stick-figure image for 1 of 8 frames \(first: frame 3\)"):
        from pipeline.gan.transfer import transfer

        transfer(keypoints, broken, frames, tmp_path / "g.pt", tmp_path / "v.mp4")

    import cv2

    small = tmp_path / "small"
    small.mkdir()
    for png in render.glob("*.png"):
        cv2.imwrite(str(small / png.name), cv2.resize(cv2.imread(str(png)), (32, 64)))
    assert main(["transfer", str(keypoints), str(small), str(frames), str(tmp_path / "v.mp4"),
                 "--generator", str(tmp_path / "g.pt")]) == 2  # a clear error, no traceback
    with pytest.raises(ValueError, match="stick figure is 32x64 but .* is in 64x128 frames"):
        from pipeline.gan.transfer import transfer

        transfer(keypoints, small, frames, tmp_path / "g.pt", tmp_path / "v.mp4")
    assert not (tmp_path / "v.mp4").exists()


def test_cuda_is_refused_clearly_without_a_gpu(monkeypatch):
    from pipeline.gan.launch import GPU_VARIABLES
    from pipeline.gan.runtime import pick_device

    for name in GPU_VARIABLES:  # a job given no GPU
        monkeypatch.delenv(name, raising=False)
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="--device cuda requested but CUDA is unusable"):
            pick_device("cuda")
        assert pick_device("auto") == torch.device("cpu")


def test_inference_autotunes_cudnn_on_a_gpu_only(monkeypatch, tmp_path):
    """As training does: one frame size all run long, so cuDNN may pick its fastest kernels for it."""
    import pipeline.gan.generate as generate

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    conv = (torch.nn.Conv2d(1, 1, 1), {"width": 8, "height": 8})
    monkeypatch.setattr(generate, "load_generator", lambda path, dev, extras=None: conv)
    generate.load_models(tmp_path / "g.pt", device="cpu")
    assert not torch.backends.cudnn.benchmark
    monkeypatch.setattr(generate, "pick_device", lambda device: torch.device("cuda"))  # no GPU needed below
    monkeypatch.setattr(generate, "choose_precision", lambda precision, dev: ("fp32", "requested"))
    assert generate.load_models(tmp_path / "g.pt", device="cuda").device.type == "cuda"
    assert torch.backends.cudnn.benchmark


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_transfer_in_reduced_precision_runs_the_autocast_path_on_cpu(tmp_path, models, precision):
    (frames, render, keypoints), generator, face = models
    out = tmp_path / "low.mp4"
    assert main(["transfer", str(keypoints), str(render), str(frames), str(out), "--generator", str(generator),
                 "--face", str(face), "--device", "cpu", "--precision", precision]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["precision"] == precision and record["provenance"]["params"]["precision"] == precision
    assert probe_video(out).frame_count == 10
    from pipeline.gan.generate import generate_frames, load_models, model_pose

    poses = [model_pose(p, (64, 128)) for p in sorted(render.glob("*.png"))][:3]
    exact = list(generate_frames(load_models(generator, None, "cpu", "fp32"), poses))
    low = list(generate_frames(load_models(generator, None, "cpu", precision), poses))
    assert len(exact) == len(low) == len(poses) == 3
    errors = [np.abs(a.astype(float) - b).mean() for a, b in zip(exact, low)]
    assert 0 < max(errors) < 8, errors  # autocast really ran (not bit-identical), close to fp32


def test_generation_runs_ahead_while_frames_are_encoded(tmp_path, synthetic_clip, monkeypatch):
    """The generator works in its own thread while the last frame is encoded, and each side-by-side
    panel shows the stick figure of its own frame."""
    import sys
    import threading
    import time

    import pipeline.gan.generate
    from pipeline.footage.video import VideoEncoder
    from pipeline.gan.transfer import transfer

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from bench_transfer import stand_in_models  # a generator that paints its stick figure

    models = stand_in_models(64, 128, latency=0.0)
    calls: list[tuple[float, int]] = []  # (start, thread) of each generator call
    paint = models.generator.forward
    models.generator.forward = lambda x: calls.append((time.perf_counter(), threading.get_ident())) or paint(x)
    monkeypatch.setattr(pipeline.gan.generate, "load_models", lambda *args, **kwargs: models)
    writes: list[tuple[float, float]] = []
    panels: list[np.ndarray] = []
    real_write = VideoEncoder.write

    def slow_write(encoder, frame):
        start = time.perf_counter()
        time.sleep(0.02)  # a busy encoder
        if encoder.out.name == "sbs.mp4":
            panels.append(frame)
        real_write(encoder, frame)
        writes.append((start, time.perf_counter()))

    monkeypatch.setattr(VideoEncoder, "write", slow_write)
    frames, render, keypoints = synthetic_clip
    transfer(keypoints, render, frames, "stand-in", tmp_path / "out.mp4", side_by_side_out=tmp_path / "sbs.mp4",
             device="cpu")
    assert len(calls) == 8 and {thread for _, thread in calls} != {threading.get_ident()}
    during = [t for t, _ in calls if any(a < t < b for a, b in writes)]
    assert len(during) >= 3, "the generator waited for the encoders"
    # source | stick figure | result, each 64 wide: the stand-in's result is its stick figure
    assert len(panels) == 8 and all(np.array_equal(p[:, 64:128], p[:, 128:]) for p in panels)
    assert not all(np.array_equal(panels[0][:, 64:128], p[:, 64:128]) for p in panels[1:])
