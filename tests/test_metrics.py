import math

import numpy as np
import pytest

from pipeline.evaluation.metrics import (LPIPS, crop, keypoint_box, missed_detections, pose_distance, ssim,
                                         temporal_instability)
from pipeline.pose.keypoints import BODY, FACE, empty_track


def _image(seed=0, shape=(64, 48, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_ssim_identical_is_one_and_noise_lowers_it():
    a = _image()
    assert ssim(a, a) == pytest.approx(1.0)
    # Flat images: only the luminance term is left, (2 m1 m2 + C1) / (m1^2 + m2^2 + C1).
    c1 = (0.01 * 255) ** 2
    flat_a, flat_b = np.full((32, 32), 100, np.uint8), np.full((32, 32), 150, np.uint8)
    assert ssim(flat_a, flat_b) == pytest.approx((2 * 100 * 150 + c1) / (100**2 + 150**2 + c1))
    assert ssim(a, 255 - a) < 0.0  # inverted structure correlates negatively


def test_ssim_shape_mismatch():
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(_image(shape=(10, 10, 3)), _image(shape=(12, 10, 3)))


def test_shifted_keypoints_give_the_known_pose_distance():
    real = empty_track(4)
    real[:, BODY, 0], real[:, BODY, 1], real[:, BODY, 2] = 100.0, 200.0, 1.0
    real[:, FACE, 0], real[:, FACE, 1], real[:, FACE, 2] = 50.0, 60.0, 1.0
    gen = real.copy()
    gen[:, BODY, 0] += 3.0
    gen[:, BODY, 1] += 4.0  # a 3-4-5 triangle: 5 px on the body
    d = pose_distance(real, gen)
    assert d["body"] == pytest.approx(5.0) and d["face"] == pytest.approx(0.0)
    assert d["overall"] == pytest.approx(5.0 * 25 / 95)
    assert np.isnan(d["left_hand"])


def test_missed_detections_counts_joints_lost_on_generated_frames():
    real = empty_track(2)
    real[:, :10, :] = (1.0, 1.0, 1.0)
    gen = real.copy()
    gen[0, :3, 2] = 0.0  # 3 missed in frame 0, none in frame 1
    gen[1, 20, :] = (1.0, 1.0, 1.0)  # extra detections are not misses
    assert missed_detections(real, gen)["overall"] == pytest.approx(1.5)


def test_boxes_and_crops():
    joints = empty_track(1)[0]
    joints[0] = (10, 20, 1)
    joints[1] = (30, 60, 1)
    assert keypoint_box(joints, margin=0.0) == (10, 20, 30, 60)
    assert keypoint_box(joints, margin=0.5) == (0, 0, 40, 80)
    image = _image(shape=(50, 50, 3))
    assert crop(image, (-5, -5, 20, 30)).shape == (30, 20, 3)
    assert crop(image, (45, 45, 60, 60)) is None
    assert keypoint_box(empty_track(1)[0]) is None


def test_temporal_instability():
    still = [np.full((4, 4, 3), 7, np.uint8)] * 3
    assert temporal_instability(still) == 0.0
    flicker = [np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 10, np.uint8)]
    assert temporal_instability(flicker) == pytest.approx(10.0)


def test_lpips_is_unavailable_without_pretrained_backbone(tmp_path, monkeypatch, caplog):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert LPIPS.load(None) is None
    assert "LPIPS unavailable" in caplog.text
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        LPIPS.load(tmp_path / "nowhere.pth")


def test_lpips_loads_backbone_from_the_configured_file(tmp_path):
    import torch
    import torchvision

    # A stand-in weights file checks only the loading path (never reported as LPIPS).
    weights = tmp_path / "alexnet.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), weights)
    metric = LPIPS.load(weights)
    expected = torch.load(weights, weights_only=True)["features.3.weight"]
    assert torch.equal(dict(metric.model.net.named_parameters())["slice2.3.weight"], expected)  # file used
    a = _image(shape=(64, 64, 3))
    same, different = LPIPS.floats([metric(a, a), metric(a, 255 - a)])
    assert same == pytest.approx(0.0, abs=1e-6) and different > 0.0
    # as the RGB float crops the metric took one at a time before (each copied and synchronised alone)
    rgb = [torch.from_numpy(np.ascontiguousarray(x[..., ::-1], dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
           for x in (a, 255 - a)]
    with torch.no_grad():
        assert different == pytest.approx(float(metric.model(*rgb)), rel=1e-6)


def test_lpips_leaves_cudnn_autotuning_off_for_its_crops_and_stays_on_the_device(monkeypatch):
    import torch

    seen = []

    def model(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append((torch.backends.cudnn.benchmark, x.shape, y.shape))
        return (x - y).abs().mean().reshape(1, 1, 1, 1)

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)  # as load_models leaves it on a GPU
    metric = LPIPS(model, "cpu")
    a, b = _image(shape=(20, 12, 3)), _image(shape=(20, 12, 3), seed=1)
    value = metric(a, b)
    assert isinstance(value, torch.Tensor) and value.shape == ()  # not brought to the host per crop
    assert seen == [(False, (1, 3, 20, 12), (1, 3, 20, 12))] and torch.backends.cudnn.benchmark
    expected = np.abs(a.astype(np.float64) - b).mean() / 127.5
    assert LPIPS.floats([value, math.nan, value]) == pytest.approx([expected, math.nan, expected], nan_ok=True)


def test_chroma_noise_rises_with_added_colour_grain_and_not_with_grey_grain():
    from pipeline.evaluation.metrics import chroma_highband_energy

    rng = np.random.default_rng(0)
    # A smooth colour gradient with a sharp-edged patch: what a clean frame of a person looks like.
    y, x = np.mgrid[0:96, 0:64]
    clean = np.stack([60 + x, 100 + y // 2, 180 - x], axis=-1).astype(np.float64)
    clean[30:60, 20:40] = (40, 160, 90)
    grain = rng.normal(0, 12, clean.shape[:2])
    coloured = clean + np.stack([grain, -grain, grain], axis=-1)  # opposite in G: chroma changes
    grey = clean + grain[..., None]  # the same in every channel: luma only
    as_u8 = [np.clip(np.round(v), 0, 255).astype(np.uint8) for v in (clean, coloured, grey)]
    clean_e, coloured_e, grey_e = (chroma_highband_energy(v) for v in as_u8)
    assert coloured_e > 20 * clean_e
    assert grey_e < 2 * clean_e + 1.0  # rounding leaves a trace of chroma; grey grain is not colour noise
    assert chroma_highband_energy(as_u8[0]) == chroma_highband_energy(as_u8[0].copy())
    flat = np.full((32, 32, 3), (30, 120, 200), np.uint8)
    assert chroma_highband_energy(flat) == 0.0
