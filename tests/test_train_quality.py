"""What keeps a short run's generator clean: the L1 anchor, the plate mask's terms, init, schedule and EMA."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pipeline.gan.checkpoint import load_checkpoint, load_tensor_file
from pipeline.gan.engine import _step_decay_factor
from pipeline.gan.models.face import FaceResidualGenerator
from pipeline.gan.models.generator import GlobalGenerator, PlateComposite, build_generator, \
    default_generator_config, init_weights
from pipeline.gan.models.losses import mask_binary_prior, masked_l1_loss, multiscale_l1_loss
from pipeline.gan.options import TrainConfig
from pipeline.gan.plate import stick_figure_region
from pipeline.gan.task import WeightEMA
from pipeline.gan.train import train

TINY = dict(width=64, height=128, ngf=8, n_downsample=2, n_blocks=1, ndf=8, n_layers_d=2, num_d=2, workers=0,
            vgg_loss=False, sample_every=0, deterministic=True, device="cpu")


def losses_csv(run: Path) -> list[dict[str, str]]:
    with (run / "losses.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_multiscale_l1_is_the_l1_at_one_scale_and_weighs_low_frequencies_more():
    real = torch.zeros(1, 3, 32, 32)
    checker = (torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2 * 2.0 - 1.0  # +-1, 0.5 cycles/pixel
    grain, offset = real + 0.2 * checker, real + 0.2  # the same per-pixel L1: 0.2
    assert multiscale_l1_loss(grain, real, 1) == pytest.approx(F.l1_loss(grain, real).item())
    assert multiscale_l1_loss(offset, real, 4) == pytest.approx(0.2)  # a colour shift counts at every scale
    assert multiscale_l1_loss(grain, real, 4) == pytest.approx(0.2 / 4)  # pixel grain only at full resolution


def test_mask_prior_is_zero_for_a_binary_mask_and_one_for_a_translucent_one():
    assert mask_binary_prior(torch.tensor([0.0, 1.0, 1.0, 0.0])) == 0.0
    assert mask_binary_prior(torch.full((4,), 0.5)) == pytest.approx(1.0)
    assert 0 < mask_binary_prior(torch.full((4,), 0.9)) < mask_binary_prior(torch.full((4,), 0.7))


def test_masked_l1_counts_only_the_selected_pixels():
    fake, real = torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    fake[..., :2, :] = 1.0  # wrong in the top half only
    top, bottom = torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
    top[..., :2, :], bottom[..., 2:, :] = 1.0, 1.0
    assert masked_l1_loss(fake, real, top) == pytest.approx(1.0)
    assert masked_l1_loss(fake, real, bottom) == 0.0
    assert masked_l1_loss(fake, real, torch.zeros(1, 1, 4, 4)) == 0.0


def test_stick_figure_region_is_the_drawn_box_with_its_margin():
    pose = torch.full((2, 3, 100, 60), -1.0)
    pose[0, 1, 20:60, 10:30] = 1.0  # 40 x 20 drawn: margin 0.15 x 39 px ~ 6 px each side
    region = stick_figure_region(pose)
    assert region.shape == (2, 1, 100, 60) and region[1].sum() == 0  # a blank figure: no region
    rows, cols = region[0, 0].any(1).nonzero(), region[0, 0].any(0).nonzero()
    assert (int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])) == (14, 65, 4, 35)
    assert region[0, 0, 14:66, 4:36].all()


def test_normal_init_draws_convolutions_from_n_0_002():
    torch.manual_seed(0)
    g = GlobalGenerator(6, 3, ngf=8, n_downsample=2, n_blocks=2)
    init_weights(g)
    weights = torch.cat([m.weight.flatten() for m in g.modules()
                         if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))])
    assert abs(weights.mean().item()) < 2e-3 and weights.std().item() == pytest.approx(0.02, rel=0.05)
    face = FaceResidualGenerator(ngf=8, n_downsample=2, n_blocks=1)
    init_weights(face)
    face.zero_residual()
    crop = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.equal(face(torch.zeros(1, 3, 32, 32), crop), crop)  # still the identity before training


def test_mask_init_starts_the_composite_near_the_plate():
    torch.manual_seed(0)
    config = default_generator_config(ngf=8, n_downsample=2, n_blocks=1, background="plate", width=32, height=64)
    g = build_generator(config)
    assert isinstance(g, PlateComposite)
    init_weights(g)  # small weights: the bias decides the starting mask
    g.set_mask_bias(0.1)
    g.parts = []
    g(torch.rand(1, 6, 64, 32) * 2 - 1, torch.zeros(1, 3, 64, 32))
    (_, mask), = g.parts
    assert mask.mean().item() == pytest.approx(0.1, abs=0.03)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        g.set_mask_bias(1.0)


def test_step_schedule_falls_to_zero_after_the_last_step():
    factor = _step_decay_factor(10, 4)  # 6 steps at full rate, then 4 decaying
    assert [factor(s) for s in range(11)] == [1, 1, 1, 1, 1, 1, 1.0, 0.75, 0.5, 0.25, 0.0]
    assert _step_decay_factor(10, 0)(10) == 1.0


def test_ema_follows_the_weights_with_its_ramped_decay():
    model = torch.nn.Linear(2, 1)
    ema = WeightEMA(model, decay=0.99)
    with torch.no_grad():
        start = model.weight.clone()
        model.weight.add_(1.0)
    ema.update(model)  # first update: decay min(0.99, 1/10) = 0.1
    assert torch.allclose(ema.average.weight, start + 0.9)
    for _ in range(2000):
        ema.update(model)
    assert torch.allclose(ema.average.weight, model.weight, atol=1e-6) and int(ema.updates) == 2001
    assert not any(p.requires_grad for p in ema.average.parameters())


@pytest.mark.slow
def test_step_schedule_and_ema_in_a_run_and_the_saved_model_is_the_average(tmp_path, synthetic_clip):
    run = tmp_path / "run"
    train(run, [synthetic_clip], TrainConfig(**TINY, epochs=2, niter_decay=1, lr_schedule="step", ema_decay=0.9,
                                             weight_init="normal"))
    rows = losses_csv(run)
    lrs = [float(r["lr"]) for r in rows]
    per_epoch = len(rows) // 2
    assert lrs[:per_epoch + 1] == [2e-4] * (per_epoch + 1)  # the first epoch and the second's first step at full rate
    assert all(a > b for a, b in zip(lrs[per_epoch:], lrs[per_epoch + 1:]))  # then falling every step ...
    assert lrs[-1] == pytest.approx(2e-4 / per_epoch)  # ... the last update at lr / decay steps ...
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["optimizers"]["G"]["param_groups"][0]["lr"] == 0.0  # ... and 0 after it
    saved = load_tensor_file(run / "generator.pt", "generator")
    assert saved["weights"] == "ema"
    average = {k[len("average."):]: v for k, v in state["models"]["G_ema"].items() if k.startswith("average.")}
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in average.items())
    assert any(not torch.equal(saved["state_dict"][k], state["models"]["G"][k]) for k in average)
    # ... and it is an average of the trained weights, not the initial ones kept under that name: the same
    # run stopped before its first step saves them
    train(tmp_path / "initial", [synthetic_clip], TrainConfig(**TINY, epochs=2, niter_decay=1, lr_schedule="step",
                                                              ema_decay=0.9, weight_init="normal", max_steps=0))
    initial = load_tensor_file(tmp_path / "initial" / "generator.pt", "generator")["state_dict"]
    moved = [k for k, v in average.items() if v.is_floating_point() and not torch.equal(initial[k], v)]
    assert len(moved) == len([k for k in average if average[k].is_floating_point()]), "weights the EMA left as they were"
    assert int(state["models"]["G_ema"]["updates"]) == len(rows)  # one update per step


def _one_step(synthetic_clip, plates: bool = False, **options) -> tuple[dict[str, float], list[torch.Tensor],
                                                                       list[torch.Tensor]]:
    """One training step of a freshly seeded pose GAN on the clip's first pair: its logged losses, the
    generator's gradients, and the two frames it made before the step."""
    from torch.utils.data import default_collate

    from pipeline.gan.data import PairDataset, load_clip
    from pipeline.gan.runtime import Runtime
    from pipeline.gan.task import batch_to_device
    from pipeline.gan.train import PoseTask

    dataset = PairDataset([load_clip(*synthetic_clip)], 64, 128, 0.2)
    batch = default_collate([dataset[0]])
    torch.manual_seed(0)
    cfg = TrainConfig(**{**TINY, "background": "plate" if plates else "none", **options})
    rt = Runtime(0, 1, torch.device("cpu"))
    task = PoseTask(cfg, rt, plates=batch["real_t"][:1].clone() if plates else None)
    poses = [batch_to_device(batch[k], rt) for k in ("pose_t", "pose_t1")]
    with torch.no_grad():
        fakes = task.pair(*poses, *([task.G.plate[:1]] if plates else []))
    losses, _ = task.step(batch)
    return {k: float(v.detach()) for k, v in losses.items()}, [p.grad.clone() for p in task.G.parameters()], list(fakes)


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_the_l1_scales_set_the_loss_and_the_generators_gradient(synthetic_clip):
    from torch.utils.data import default_collate

    from pipeline.gan.data import PairDataset, load_clip
    from pipeline.gan.runtime import Runtime
    from pipeline.gan.task import batch_to_device

    one, grad_one, fakes = _one_step(synthetic_clip, lambda_l1=10.0, l1_scales=1)
    three, grad_three, _ = _one_step(synthetic_clip, lambda_l1=10.0, l1_scales=3)
    rt = Runtime(0, 1, torch.device("cpu"))
    batch = default_collate([PairDataset([load_clip(*synthetic_clip)], 64, 128, 0.2)[0]])
    reals = torch.cat([batch_to_device(batch[k], rt) for k in ("real_t", "real_t1")])
    for scales, logged in ((1, one), (3, three)):
        assert logged["G_L1"] == pytest.approx(10.0 * float(multiscale_l1_loss(torch.cat(fakes), reals, scales)),
                                               rel=1e-5)
    assert one["G_GAN"] == three["G_GAN"] and not _same(grad_one, grad_three)  # the same forward, another pull
    none, grad_none, _ = _one_step(synthetic_clip, lambda_l1=0.0)
    assert "G_L1" not in none and not _same(grad_none, grad_one)


def test_the_foreground_weight_scales_its_loss_and_changes_the_generators_gradient(synthetic_clip):
    five, grad_five, _ = _one_step(synthetic_clip, plates=True, lambda_fg=5.0)
    ten, grad_ten, _ = _one_step(synthetic_clip, plates=True, lambda_fg=10.0)
    off, grad_off, _ = _one_step(synthetic_clip, plates=True, lambda_fg=0.0)
    assert ten["G_FG"] == pytest.approx(2 * five["G_FG"], rel=1e-5) and five["G_FG"] > 0 and "G_FG" not in off
    assert five["G_GAN"] == off["G_GAN"]  # the same forward pass ...
    assert not _same(grad_five, grad_off) and not _same(grad_five, grad_ten)  # ... pulled by the weighted term


@pytest.mark.slow
def test_plate_mask_terms_and_multiscale_l1_are_trained_and_logged(tmp_path, synthetic_clip):
    import cv2

    plate = tmp_path / "plate.png"
    cv2.imwrite(str(plate), cv2.imread(str(next(Path(synthetic_clip[0]).glob("*.jpg")))))
    run = tmp_path / "run"
    train(run, [synthetic_clip], TrainConfig(**TINY, max_steps=3, background="plate", lambda_l1=10.0, l1_scales=3,
                                             lambda_fg=5.0, lambda_mask_binary=1.0, mask_init=0.2),
          clip_plate=[plate])
    rows = losses_csv(run)
    assert len(rows) == 3 and all(float(r["G_FG"]) > 0 and 0 < float(r["G_MASK"]) <= 2 for r in rows)
    assert all(math.isfinite(float(r["G_L1"])) for r in rows)
    with pytest.raises(ValueError, match="mask_init=1.5"):
        TrainConfig(mask_init=1.5)
    with pytest.raises(ValueError, match="lr_schedule='cosine'"):
        TrainConfig(lr_schedule="cosine")


@pytest.mark.slow
def test_mask_against_the_plate_difference_is_trained_and_pulls_the_mask_to_the_person(tmp_path, synthetic_clip):
    import cv2
    import numpy as np

    from pipeline.gan.data import read_rgb
    from pipeline.gan.plate import plate_of_clip

    frames, _, keypoints = synthetic_clip
    plate_of_clip(Path(frames), Path(keypoints), tmp_path / "plate")
    plate = tmp_path / "plate" / "plate.png"
    assert cv2.imread(str(plate), cv2.IMREAD_UNCHANGED).shape[2] == 4
    cfg = dict(TINY, max_steps=12, background="plate", lambda_l1=10.0, lr=0.002)
    train(tmp_path / "with", [synthetic_clip], TrainConfig(**cfg, lambda_mask=10.0), clip_plate=[plate])
    train(tmp_path / "without", [synthetic_clip], TrainConfig(**cfg), clip_plate=[plate])
    rows = losses_csv(tmp_path / "with")
    assert len(rows) == 12 and "G_MASK_PLATE" not in losses_csv(tmp_path / "without")[0]
    first, last = float(rows[0]["G_MASK_PLATE"]), float(rows[-1]["G_MASK_PLATE"])
    assert 0 < last < 0.7 * first  # the mask learns the person's silhouette
    with pytest.raises(ValueError, match="no alpha channel"):
        rgb = tmp_path / "rgb.png"
        cv2.imwrite(str(rgb), cv2.cvtColor(read_rgb(plate), cv2.COLOR_RGB2BGR))
        train(tmp_path / "rgb", [synthetic_clip], TrainConfig(**cfg, lambda_mask=1.0), clip_plate=[rgb])
    assert np.isfinite([float(r["G_L1"]) for r in rows]).all()


@pytest.mark.slow
def test_face_gan_trains_with_its_pixel_l1(tmp_path, synthetic_clip):
    from pipeline.gan.train_face import FaceConfig, train_face

    train(tmp_path / "run", [synthetic_clip], TrainConfig(**TINY, max_steps=2))
    train_face(tmp_path / "face", tmp_path / "run" / "generator.pt", [synthetic_clip],
               FaceConfig(face_ngf=4, face_n_blocks=1, ndf=4, workers=0, vgg_loss=False, sample_every=0, max_steps=2,
                          lambda_l1=20.0, weight_init="normal"))
    rows = losses_csv(tmp_path / "face")
    # the face's L1 in its loss: 20 x the monitored L1 of the same forward pass
    assert len(rows) == 2 and all(float(r["G_L1"]) == pytest.approx(20.0 * float(r["L1"]), rel=1e-5) for r in rows)


def test_workflow_gives_the_face_gan_its_own_l1_and_the_pose_gan_its_mask_terms(tmp_path):
    from test_train import workflow

    import yaml

    face = {**yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())
            ["train"]["face"], "lambda_l1": 5.0}
    planned = workflow(tmp_path, "-n", "results/models/s/face.pt",
                       train={"lambda_l1": 10.0, "lambda_fg": 2.0, "lambda_mask": 3.0, "ema_decay": 0.9,
                              "face": face})
    blocks = {b.split(":", 1)[0]: b for b in planned.split("\nrule ")[1:]}
    pose, face_job = blocks["train_generator"], blocks["train_face"]
    assert "--lambda-l1 10.0" in pose and "--lambda-fg 2.0" in pose and "--ema-decay 0.9" in pose
    assert "--lambda-mask 3.0" in pose and "--lambda-mask" not in face_job
    assert "--lambda-l1 5.0" in face_job and "--lambda-l1 10.0" not in face_job
    assert "--lambda-fg" not in face_job and "--ema-decay 0.9" in face_job


@pytest.mark.slow
def test_a_resumed_run_with_ema_and_the_step_schedule_repeats_the_uninterrupted_one(tmp_path, synthetic_clip):
    cfg = dict(TINY, epochs=2, niter_decay=1, checkpoint_every=3, lr_schedule="step", ema_decay=0.9)
    train(tmp_path / "whole", [synthetic_clip], TrainConfig(**cfg))
    train(tmp_path / "parts", [synthetic_clip], TrainConfig(**cfg, max_steps=3))
    record = train(tmp_path / "parts", [synthetic_clip], TrainConfig(**cfg))
    assert record["resumed_from_step"] == 3
    assert losses_csv(tmp_path / "parts") == losses_csv(tmp_path / "whole")
    a = load_tensor_file(tmp_path / "whole" / "generator.pt", "generator")["state_dict"]
    b = load_tensor_file(tmp_path / "parts" / "generator.pt", "generator")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # the average, resumed with its update count


def test_new_poses_are_judged_by_the_discriminator_alone_and_leave_the_pairs_own_losses(synthetic_clip):
    """The pair's new pose goes through the generator beside the pair itself: the pair's losses (pixel L1,
    adversarial, feature matching) are those of a step without it, the new pose's frames add the weighted
    G_NEW and D_new terms only, and they pull the generator."""
    from torch.utils.data import default_collate

    from pipeline.gan.augment import Augmentation
    from pipeline.gan.data import PairDataset, load_clip
    from pipeline.gan.runtime import Runtime
    from pipeline.gan.train import PoseTask

    clip = load_clip(*synthetic_clip)
    with_new = default_collate([PairDataset([clip], 64, 128, 0.2, augment=Augmentation(lambda_new_pose=1.0))[(0, 0)]])
    plain = {k: v for k, v in with_new.items() if not k.startswith("new_pose")}
    assert not torch.equal(with_new["new_pose_t1"], with_new["pose_t1"])

    def step(batch: dict, weight: float) -> tuple[dict[str, float], list[torch.Tensor]]:
        torch.manual_seed(0)
        task = PoseTask(TrainConfig(**TINY, lambda_l1=10.0, lambda_new_pose=weight), Runtime(0, 1, torch.device("cpu")))
        losses, _ = task.step(batch)
        return {k: float(v.detach()) for k, v in losses.items()}, [p.grad.clone() for p in task.G.parameters()]

    alone, grad_alone = step(plain, 0.0)
    one, grad_one = step(with_new, 1.0)
    two, _ = step(with_new, 2.0)
    assert "G_NEW" not in alone and "D_new" not in alone
    for name in ("G_L1", "G_GAN", "G_FM", "L1"):
        assert one[name] == pytest.approx(alone[name], rel=1e-4), name
    assert two["G_NEW"] == pytest.approx(2 * one["G_NEW"], rel=1e-5) and one["G_NEW"] > 0 and one["D_new"] > 0
    assert not _same(grad_one, grad_alone)


def test_new_poses_frames_learn_the_plate_outside_their_bodies(synthetic_clip):
    """lambda_new_pose_plate: the new poses' frames get an L1 loss against the plate outside their bodies
    (G_NEW_PLATE, by its weight), only where the plate is known; the pair's own losses stay as without it."""
    from torch.utils.data import default_collate

    from pipeline.gan.augment import Augmentation
    from pipeline.gan.data import PairDataset, load_clip
    from pipeline.gan.runtime import Runtime
    from pipeline.gan.train import PoseTask

    clip = load_clip(*synthetic_clip)
    plates = torch.full((1, 3, 128, 64), 200, dtype=torch.uint8)
    unknown = torch.zeros(1, 1, 128, 64, dtype=torch.bool)
    aug = Augmentation(lambda_new_pose=1.0, lambda_new_pose_plate=1.0)
    batch = default_collate([PairDataset([clip], 64, 128, 0.2, augment=aug, plates=plates, plate_unknown=unknown)[(0, 0)]])
    assert batch["new_plate_t1"].any() and not batch["new_plate_t1"].all()

    def step(data: dict, weight: float) -> tuple[dict[str, float], list[torch.Tensor]]:
        torch.manual_seed(0)
        cfg = TrainConfig(**TINY, lambda_l1=10.0, background="plate", lambda_new_pose=1.0, lambda_new_pose_plate=weight)
        task = PoseTask(cfg, Runtime(0, 1, torch.device("cpu")), plates=plates, plate_unknown=unknown)
        losses, _ = task.step(data)
        return {k: float(v.detach()) for k, v in losses.items()}, [p.grad.clone() for p in task.G.parameters()]

    alone, grad_alone = step(batch, 0.0)
    one, grad_one = step(batch, 1.0)
    two, _ = step(batch, 2.0)
    unseen, _ = step({**batch, "plate_unknown": torch.ones_like(batch["plate_unknown"])}, 1.0)
    assert "G_NEW_PLATE" not in alone
    assert two["G_NEW_PLATE"] == pytest.approx(2 * one["G_NEW_PLATE"], rel=1e-5) and one["G_NEW_PLATE"] > 0
    assert unseen["G_NEW_PLATE"] == 0  # an inpainted plate is no target
    for name in ("G_L1", "G_GAN", "G_FM", "G_NEW"):
        assert one[name] == pytest.approx(alone[name], rel=1e-4), name
    assert not _same(grad_one, grad_alone)
    with pytest.raises(ValueError, match="lambda_new_pose_plate=1.0 needs background: plate and lambda_new_pose > 0"):
        TrainConfig(**TINY, lambda_new_pose=1.0, lambda_new_pose_plate=1.0)


def test_mismatched_figures_teach_the_discriminator_alone_that_a_frame_must_match_its_figure(synthetic_clip):
    """lambda_mismatch: the real frames shown with the new pose's stick figures are learnt as fakes by D
    (D_mismatch, weighted in D's loss), and leave the generator's update exactly as without them."""
    import copy

    from torch.utils.data import default_collate

    from pipeline.gan.augment import Augmentation
    from pipeline.gan.data import PairDataset, load_clip
    from pipeline.gan.models.losses import lsgan_loss
    from pipeline.gan.runtime import Runtime
    from pipeline.gan.train import PoseTask, discriminator_input

    clip = load_clip(*synthetic_clip)
    batch = default_collate([PairDataset([clip], 64, 128, 0.2, augment=Augmentation(lambda_mismatch=1.0))[(0, 0)]])
    plain = {k: v for k, v in batch.items() if not k.startswith("new_pose")}

    def step(data: dict, weight: float) -> tuple[dict[str, float], list[torch.Tensor], list[torch.Tensor], float]:
        torch.manual_seed(0)
        task = PoseTask(TrainConfig(**TINY, lambda_l1=10.0, lambda_mismatch=weight), Runtime(0, 1, torch.device("cpu")))
        expected = float("nan")
        if weight > 0:  # D's verdict, before its update, on the real frames under the new figures
            new_t, new_t1, real_t, real_t1 = task.inputs(data, "new_pose_t", "new_pose_t1", "real_t", "real_t1")
            with torch.no_grad():
                expected = float(lsgan_loss(copy.deepcopy(task.D)(discriminator_input(new_t, new_t1, real_t, real_t1)),
                                            False))
        losses, _ = task.step(data)
        return ({k: float(v.detach()) for k, v in losses.items()}, [p.grad.clone() for p in task.G.parameters()],
                [p.detach().clone() for p in task.D.parameters()], expected)

    alone, g_alone, d_alone, _ = step(plain, 0.0)
    one, g_one, d_one, expected = step(batch, 1.0)
    two, g_two, d_two, _ = step(batch, 2.0)
    assert "D_mismatch" not in alone and "G_NEW" not in one  # no new poses through the generator
    assert one["D_mismatch"] == pytest.approx(expected, rel=1e-4) and one["D_mismatch"] > 0
    for name in ("G_L1", "G_GAN", "G_FM", "D_fake", "D_real"):
        assert one[name] == pytest.approx(alone[name], rel=1e-4) and two[name] == pytest.approx(alone[name], rel=1e-4)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g_one, g_alone))  # G's update is untouched
    assert not _same(d_one, d_alone) and not _same(d_two, d_one)  # D learns from the mismatch, by its weight
