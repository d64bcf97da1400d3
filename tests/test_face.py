"""The face GAN: face boxes, crops, the frozen main generator, and ``edn train-face`` end to end."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from pipeline.gan.checkpoint import load_checkpoint, tensors_sha256
from pipeline.gan.data import PairDataset, load_clip
from pipeline.gan.models.face import crop_boxes, face_box, face_box_size, load_face_generator, paste_boxes
from pipeline.gan.models.generator import GlobalGenerator, load_generator
from pipeline.gan.runtime import Runtime
from pipeline.gan.train import TrainConfig, train
from pipeline.gan.train_face import FaceConfig, FaceTask, train_face
from pipeline.pose.keypoints import FACE, J, empty_track, read_keypoints, write_keypoints
from pipeline.pose.render import render_track


def frame_with(face_centre=None, nose=None) -> np.ndarray:
    kp = empty_track(1)[0]
    if face_centre is not None:
        kp[FACE, 0] = face_centre[0] + np.linspace(-10, 10, 70)
        kp[FACE, 1] = face_centre[1] + np.linspace(-12, 12, 70)
        kp[FACE, 2] = 1
    if nose is not None:
        kp[J["Nose"]] = (*nose, 1)
    return kp


def test_face_box_is_centred_on_the_face_points_else_the_nose():
    # the face points' bounding-box centre wins over the nose
    assert face_box(frame_with((100, 50), nose=(10, 10)), 200, 400, 32) == (84, 34, 116, 66)
    assert face_box(frame_with(nose=(50, 70)), 200, 400, 32) == (34, 54, 66, 86)
    assert face_box(frame_with(), 200, 400, 32) is None
    # kept inside the frame, size unchanged
    assert face_box(frame_with(nose=(5, 395)), 200, 400, 32) == (0, 368, 32, 400)


def test_face_box_size_follows_the_frame_height():
    assert [face_box_size(h) for h in (512, 256, 128, 300)] == [128, 64, 32, 72]  # 300 / 4 = 75 -> 9 x 8
    assert face_box_size(64, multiple=16) == 16


def test_crops_paste_back_where_they_came_from():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    boxes = torch.tensor([[0, 0, 4, 4], [4, 2, 8, 6]])
    crops = crop_boxes(images, boxes)
    assert crops.shape == (2, 3, 4, 4)
    assert torch.equal(crops[1], images[1, :, 2:6, 4:8])
    assert torch.equal(paste_boxes(torch.zeros_like(images), crops, boxes).sum(), crops.sum())


def test_dataset_boxes_follow_the_face_and_skip_frames_without_one(tmp_path, synthetic_clip):
    frames, render, keypoints = synthetic_clip
    dataset = PairDataset([load_clip(frames, render, keypoints)], 64, 128, 0.2, face_box_size=32, require_face=True)
    assert len(dataset) == 5
    track = read_keypoints(keypoints)
    for k in range(len(dataset)):
        item = dataset[k]
        x0, y0, x1, y1 = item["box_t1"].tolist()
        nose_x, nose_y = track.data[item["frame"] + 1, J["Nose"], :2]
        assert item["has_face"] and x1 - x0 == y1 - y0 == 32 and x0 <= nose_x < x1 and y0 <= nose_y < y1
    # no face and no nose in frame 3: the sample (2, 3) has nothing to train the face on
    track.data[3, FACE] = track.data[3, J["Nose"]] = (np.nan, np.nan, 0)
    write_keypoints(tmp_path / "kp.parquet", track)
    render_track(track, tmp_path / "render", keypoints_path=tmp_path / "kp.parquet")  # figures of these keypoints
    dataset = PairDataset([load_clip(frames, tmp_path / "render", tmp_path / "kp.parquet")], 64, 128, 0.2,
                          face_box_size=32, require_face=True)
    assert [dataset[k]["frame"] for k in range(len(dataset))] == [0, 1, 3, 4]


def test_face_task_trains_the_face_generator_only():
    torch.manual_seed(0)
    generator = GlobalGenerator(ngf=4, n_downsample=2, n_blocks=1)
    main_before = {k: v.clone() for k, v in generator.state_dict().items()}
    cfg = FaceConfig(width=32, height=64, face_ngf=4, face_n_blocks=1, ndf=4, batch_size=2, vgg_loss=False)
    task = FaceTask(cfg, Runtime(0, 1, torch.device("cpu")), generator, box_size=16)
    face_before = {k: v.clone() for k, v in task.G.state_dict().items()}
    batch = {k: torch.rand(2, 3, 64, 32) * 2 - 1 for k in ("pose_t", "pose_t1", "real_t", "real_t1")}
    batch["box_t1"] = torch.tensor([[0, 0, 16, 16], [16, 48, 32, 64]])
    first, _ = task.step(batch)
    # the residual starts at zero: the first refined face is the main generator's
    assert first["L1"].item() == pytest.approx(first["L1_main"].item(), abs=1e-7)
    losses, visuals = task.step(batch, visuals=True)
    assert set(losses) == {"G_GAN", "G_FM", "D_fake", "D_real", "L1", "L1_main"}
    assert [v.shape for v in visuals] == [(3, 16, 16)] * 4
    assert all(torch.equal(main_before[k], v) for k, v in generator.state_dict().items())
    assert not all(torch.equal(face_before[k], v) for k, v in task.G.state_dict().items())
    assert set(task.models) == {"G", "D"} and task.models["G"] is task.G  # checkpointed: face G and D only


def test_face_task_sees_each_sample_over_its_own_clips_plate():
    """The frozen plate generator paints each training sample over its clip's plate, as in generation."""
    from pipeline.gan.models.generator import build_generator, default_generator_config

    torch.manual_seed(0)
    config = default_generator_config(ngf=4, n_downsample=2, n_blocks=1, width=32, height=64, background="plate",
                                      n_plates=2)
    generator = build_generator(config)
    with torch.no_grad():
        generator.plate[0].fill_(-0.5)
        generator.plate[1].fill_(0.5)
        [m for m in generator.inner.modules() if isinstance(m, torch.nn.Conv2d)][-1].bias[3] = -1e4  # mask 0
    cfg = FaceConfig(width=32, height=64, face_ngf=4, face_n_blocks=1, ndf=4, batch_size=2, vgg_loss=False)
    task = FaceTask(cfg, Runtime(0, 1, torch.device("cpu")), generator, box_size=16)
    batch = {k: torch.rand(2, 3, 64, 32) * 2 - 1 for k in ("pose_t", "pose_t1", "real_t", "real_t1")}
    batch["box_t1"] = torch.tensor([[0, 0, 16, 16], [16, 48, 32, 64]])
    batch["clip"] = torch.tensor([1, 0])
    _, visuals = task.step(batch, visuals=True)  # visuals: sample 0's pose, generated, refined and real crops
    assert torch.allclose(visuals[1], torch.full((3, 16, 16), 0.5), atol=1e-5)  # clip 1's plate, not clip 0's


@pytest.mark.slow
def test_train_face_end_to_end(tmp_path, synthetic_clip):
    tiny = dict(ndf=4, workers=0, vgg_loss=False, deterministic=True, device="cpu")
    train(tmp_path / "main", [synthetic_clip], TrainConfig(width=64, height=128, ngf=4, n_downsample=2, n_blocks=1,
                                                           num_d=1, max_steps=2, sample_every=0, **tiny))
    generator = tmp_path / "main" / "generator.pt"
    before = generator.read_bytes()
    face_cfg = FaceConfig(face_ngf=4, face_n_blocks=1, epochs=1, niter_decay=0, sample_every=5, **tiny)
    record = train_face(tmp_path / "face", generator, [synthetic_clip], face_cfg)

    assert generator.read_bytes() == before  # frozen
    model, config = load_face_generator(tmp_path / "face" / "face.pt")
    assert (config["box_size"], config["width"], config["height"]) == (32, 64, 128)  # 128 / 4
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    with (tmp_path / "face" / "losses.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and record["final_step"] == 5
    state = load_checkpoint(tmp_path / "face" / "checkpoint.pt")
    assert state["stage"] == "train-face" and set(state["models"]) == {"G", "D"}
    assert set(state["models"]["G"]) == set(model.state_dict())
    run = json.loads((tmp_path / "face" / "run.json").read_text())
    assert run["inputs"]["generator_weights_sha256"] == tensors_sha256(load_generator(generator)[0].state_dict())
    assert run["params"]["ngf"] == 4  # the face run records the main generator's architecture
    assert (tmp_path / "face" / "samples" / "step_0000005.png").is_file()

    # a retrained main generator does not continue the old face run: it starts over, as a fresh run would
    train(tmp_path / "main", [synthetic_clip], TrainConfig(width=64, height=128, ngf=4, n_downsample=2, n_blocks=1,
                                                           num_d=1, max_steps=3, sample_every=0, **tiny))
    short = dataclasses.replace(face_cfg, max_steps=2)
    record = train_face(tmp_path / "face", generator, [synthetic_clip], short)
    assert record["resumed_from_step"] is None and not (tmp_path / "face" / "samples" / "step_0000005.png").exists()
    train_face(tmp_path / "fresh_face", generator, [synthetic_clip], short)
    assert (tmp_path / "face" / "losses.csv").read_text() == (tmp_path / "fresh_face" / "losses.csv").read_text()


def test_face_residual_follows_the_main_generators_upsampling_and_colour(tmp_path, synthetic_clip):
    from pipeline.evaluation.metrics import chroma_highband_energy
    from pipeline.gan.checkpoint import save_model
    from pipeline.gan.models.face import build_face_generator, default_face_config
    from pipeline.gan.models.generator import ChromaLowPass, ResizeConv2d

    tiny = dict(ndf=4, workers=0, vgg_loss=False, deterministic=True, device="cpu")
    train(tmp_path / "main", [synthetic_clip], TrainConfig(width=64, height=128, ngf=4, n_downsample=2, n_blocks=1,
                                                           num_d=1, max_steps=1, sample_every=0, upsample="resize",
                                                           chroma="half", **tiny))
    train_face(tmp_path / "face", tmp_path / "main" / "generator.pt", [synthetic_clip],
               FaceConfig(face_ngf=4, face_n_blocks=1, max_steps=1, sample_every=0, **tiny))
    model, config = load_face_generator(tmp_path / "face" / "face.pt")
    assert (config["upsample"], config["chroma"]) == ("resize", "half")
    assert isinstance(model.chroma, ChromaLowPass) and any(isinstance(m, ResizeConv2d) for m in model.modules())
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules())

    # The residual's colour is low-passed as the generated crop's: the same weights (the zero-started
    # last convolution given random values) with the network's own colour give the grain back.
    torch.manual_seed(0)
    torch.nn.init.normal_(model.model[-2].weight, std=0.5)
    full = build_face_generator({**config, "chroma": "full"})
    full.load_state_dict(model.state_dict())
    pose, crop = torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32)
    crop[:, 0, ::2, ::2], crop[:, 2, 1::2, 1::2] = 0.5, 0.5  # colour grain in the crop the residual sees
    as_bgr = lambda t: ((t[0].permute(1, 2, 0).detach().numpy()[:, :, ::-1] + 1) * 127.5)
    with torch.no_grad():
        half_residual, full_residual = model(pose, crop) - crop, full(pose, crop) - crop
    assert chroma_highband_energy(as_bgr(full_residual)) > 0
    assert chroma_highband_energy(as_bgr(half_residual)) < 0.2 * chroma_highband_energy(as_bgr(full_residual))

    # face files from before the keys load as pix2pixHD's (transposed convolutions, the network's colour)
    older = {k: v for k, v in config.items() if k not in ("upsample", "chroma")}
    save_model(tmp_path / "old_face.pt", build_face_generator(older), older, step=0)
    old, old_config = load_face_generator(tmp_path / "old_face.pt")
    assert isinstance(old.chroma, torch.nn.Identity) and any(isinstance(m, torch.nn.ConvTranspose2d)
                                                             for m in old.modules())
