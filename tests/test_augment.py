"""Training-data augmentation (pipeline/gan/augment.py): mirrored pairs with left and right exchanged,
one jitter for frames, plate and stick figures, detector faults on the input only, fixed seeds, and
nothing of it outside training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.gan import augment
from pipeline.gan.augment import Augmentation, draw_sample, pose_faults, transform_image, transform_keypoints
from pipeline.gan.data import PairDataset, fit_to_size, load_clip, read_rgb, render_settings, render_stick_figure
from pipeline.pose.keypoints import BODY_25_NAMES, FACE, LEFT_HAND, MIRROR_SWAP, N_JOINTS, RIGHT_HAND, J, \
    empty_track, present
from pipeline.pose.render import BODY_25_COLORS, render_frame

W, H = 144, 256  # the demo's model size


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    from pipeline.gan.synthetic import make_synthetic_clip

    return make_synthetic_clip(tmp_path_factory.mktemp("augment"), n_frames=8, width=W, height=H)


@pytest.fixture(scope="module")
def clip(clip_files):
    return load_clip(*clip_files)


def numpy_image(tensor) -> np.ndarray:
    return tensor.numpy().transpose(1, 2, 0)


def test_mirror_relabelling_is_an_involution_mapping_each_left_joint_to_its_right():
    assert np.array_equal(MIRROR_SWAP[MIRROR_SWAP], np.arange(N_JOINTS))
    for name in BODY_25_NAMES:
        if name[0] == "L":
            assert MIRROR_SWAP[J[name]] == J["R" + name[1:]], name
            assert MIRROR_SWAP[J["R" + name[1:]]] == J[name], name
    for name in ("Nose", "Neck", "MidHip"):
        assert MIRROR_SWAP[J[name]] == J[name]
    assert np.array_equal(MIRROR_SWAP[LEFT_HAND], np.arange(RIGHT_HAND.start, RIGHT_HAND.stop))
    face = MIRROR_SWAP[FACE] - FACE.start
    assert (face[0], face[16], face[8], face[30], face[36], face[45], face[48], face[54], face[68]) == \
        (16, 0, 8, 30, 45, 36, 54, 48, 69)
    # a symmetric face mirrored and relabelled is the same face: each point lands on its counterpart
    x = np.concatenate([np.linspace(-1, 1, 17), np.zeros(53)])  # the jaw's points mirror about x = 0
    assert np.allclose(-x[face[:17]], x[:17])


def _left_arm_raised() -> np.ndarray:
    """A person facing the camera (their left on the picture's right) with the left forearm raised."""
    pose = empty_track(1)[0]
    for name, xy in {"Neck": (72, 80), "MidHip": (72, 160), "RShoulder": (52, 80), "LShoulder": (92, 80),
                     "RElbow": (45, 120), "RWrist": (42, 155), "LElbow": (110, 80), "LWrist": (115, 30)}.items():
        pose[J[name]] = (*xy, 1.0)
    return pose


def test_a_mirrored_raised_left_arm_is_a_raised_right_arm_in_the_right_arms_colour():
    pose = _left_arm_raised()
    draw = draw_sample(Augmentation(mirror=1.0), 0, 0, W, H)
    assert draw.mirrored
    mirrored = transform_keypoints(pose, draw)
    # the raised wrist is now on the picture's left, labelled right
    assert mirrored[J["RWrist"], 0] == pytest.approx(W - 1 - 115) and mirrored[J["RWrist"], 1] == pytest.approx(30)
    image = render_frame(mirrored, (W, H))[..., ::-1]  # RGB
    mid = np.round((mirrored[J["RElbow"], :2] + mirrored[J["RWrist"], :2]) / 2).astype(int)
    colour = image[mid[1], mid[0]]
    assert np.array_equal(colour, BODY_25_COLORS[J["RWrist"]]), colour  # the right forearm's colour (yellow)
    assert not np.array_equal(colour, BODY_25_COLORS[J["LWrist"]])
    # and the lowered arm, now on the picture's right, is the left arm
    low = np.round((mirrored[J["LElbow"], :2] + mirrored[J["LWrist"], :2]) / 2).astype(int)
    assert low[0] > W / 2 and np.array_equal(image[low[1], low[0]], BODY_25_COLORS[J["LWrist"]])


def test_an_untransformed_redraw_is_the_stored_stick_figure_byte_for_byte(clip_files, clip):
    face, hands = render_settings(clip)
    for width, height in ((W, H), (64, 128), (48, 128)):  # as stored, scaled, scaled and cropped
        for i in (0, 5):
            stored = fit_to_size(read_rgb(clip.pose_paths[i]), width, height)
            assert np.array_equal(render_stick_figure(clip, clip.keypoints[i], width, height, face, hands), stored)


def test_off_gives_the_samples_as_they_always_were(clip):
    plain = PairDataset([clip], W, H, 0.2)
    zero = PairDataset([clip], W, H, 0.2, augment=Augmentation(seed=7))
    assert zero.augment is None
    for k in range(len(plain)):
        c, t = plain.items[k]
        expected = {"pose_t": clip.pose_paths[t], "pose_t1": clip.pose_paths[t + 1],
                    "real_t": clip.frame_paths[t], "real_t1": clip.frame_paths[t + 1]}
        for sample in (plain[k], zero[k], zero[(3, k)]):
            assert set(sample) == {"pose_t", "pose_t1", "real_t", "real_t1", "box_t1", "has_face", "clip", "frame"}
            for key, path in expected.items():
                assert np.array_equal(numpy_image(sample[key]), fit_to_size(read_rgb(path), W, H)), key
            assert (sample["clip"], sample["frame"]) == (c, clip.indices[t])


def test_a_mirrored_sample_flips_frames_and_plate_and_redraws_the_figure_with_sides_exchanged(clip):
    import torch

    plates = torch.from_numpy(np.stack([np.arange(W * H * 3, dtype=np.int64).reshape(H, W, 3) % 251]).astype(
        np.uint8)).permute(0, 3, 1, 2)
    unknown = torch.zeros(1, 1, H, W, dtype=torch.bool)
    unknown[..., :10] = True  # the plate's left edge was inpainted
    data = PairDataset([clip], W, H, 0.2, augment=Augmentation(mirror=1.0), plates=plates, plate_unknown=unknown)
    sample = data[(0, 1)]
    c, t = data.items[1]
    assert np.array_equal(numpy_image(sample["real_t"]), fit_to_size(read_rgb(clip.frame_paths[t]), W, H)[:, ::-1])
    assert np.array_equal(numpy_image(sample["real_t1"]),
                          fit_to_size(read_rgb(clip.frame_paths[t + 1]), W, H)[:, ::-1])
    assert np.array_equal(numpy_image(sample["plate"]), numpy_image(plates[0])[:, ::-1])
    assert sample["plate_unknown"][0, :, -10:].all() and not sample["plate_unknown"][0, :, :-10].any()
    # the stick figure: where the stored one draws the left forearm, the mirrored one draws the right
    # forearm at the mirrored place, in the right forearm's colour
    stored = fit_to_size(read_rgb(clip.pose_paths[t]), W, H)
    kp = data.keypoints[c][t]
    mid = (kp[J["LElbow"], :2] + kp[J["LWrist"], :2]) / 2
    x, y = int(round(mid[0])), int(round(mid[1]))
    assert np.array_equal(stored[y, x], BODY_25_COLORS[J["LWrist"]])
    mirrored = numpy_image(sample["pose_t"])
    assert np.array_equal(mirrored[y, W - 1 - x], BODY_25_COLORS[J["RWrist"]]), mirrored[y, W - 1 - x]


def test_plate_and_frame_move_together_under_jitter():
    plate = np.dstack([np.add.outer(np.arange(H), np.arange(W)) % 200] * 3).astype(np.uint8)
    frame = plate.copy()
    marker = (40, 180)  # x, y
    frame[marker[1] - 1:marker[1] + 2, marker[0] - 1:marker[0] + 2] = 255
    aug = Augmentation(jitter_scale=0.05, jitter_shift=0.05, jitter_rotation=3.0)
    for k in range(5):
        draw = draw_sample(aug, 0, k, W, H)
        assert not draw.identity
        moved_frame, moved_plate = transform_image(frame, draw), transform_image(plate, draw)
        difference = np.abs(moved_frame.astype(int) - moved_plate.astype(int)).sum(axis=2)
        ys, xs = np.nonzero(difference > 30)
        expected = draw.matrix @ np.array([*marker, 1.0])
        assert len(xs) and abs(xs.mean() - expected[0]) < 1.0 and abs(ys.mean() - expected[1]) < 1.0, k
        assert (difference > 30).sum() < 30  # the plate's own pixels agree everywhere else


def test_under_jitter_frame_plate_and_stick_figure_stay_aligned(clip):
    import cv2
    import torch

    frames = [fit_to_size(read_rgb(p), W, H) for p in clip.frame_paths]
    plates = torch.from_numpy(frames[1]).permute(2, 0, 1)[None]  # the plate is frame 1 itself
    aug = Augmentation(jitter_scale=0.05, jitter_shift=0.05, jitter_rotation=3.0, seed=3)
    data = PairDataset([clip], W, H, 0.2, augment=aug, plates=plates)
    k = [i for i, (_, t) in enumerate(data.items) if t == 1][0]
    joints = data.keypoints[0][1][present(data.keypoints[0][1]), :2]
    # epochs whose draw moves the figure's joints by 8 pixels or more on average (about half do)
    epochs = [e for e in range(10) if np.linalg.norm(transform_keypoints(data.keypoints[0][1], draw_sample(
        aug, e, k, W, H))[present(data.keypoints[0][1]), :2] - joints, axis=1).mean() >= 8][:3]
    assert len(epochs) == 3
    for epoch in epochs:
        sample = data[(epoch, k)]
        draw = draw_sample(aug, epoch, k, W, H)
        assert np.array_equal(numpy_image(sample["real_t"]), numpy_image(sample["plate"]))  # one transform
        # the re-drawn stick figure lies where the stored one lies once the frame's transform moves it
        stored = fit_to_size(read_rgb(clip.pose_paths[1]), W, H)
        warped = cv2.warpAffine(stored, draw.matrix, (W, H), flags=cv2.INTER_LINEAR).max(axis=2) > 60
        drawn = numpy_image(sample["pose_t"]).max(axis=2) > 60
        near = cv2.dilate(warped.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert drawn.sum() > 100 and (drawn & near).sum() / drawn.sum() > 0.97
        unmoved = cv2.dilate((stored.max(axis=2) > 60).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert (drawn & unmoved).sum() / drawn.sum() < 0.9  # the check tells a moved figure from an unmoved one


def test_pose_faults_touch_the_input_only_and_drop_a_joint_with_its_hand(clip):
    aug = Augmentation(pose_drop=1.0)
    pose = clip.keypoints[0]
    dropped = [set(np.flatnonzero(present(pose) & ~present(pose_faults(pose, aug, aug.rng(0, k), H))))
               for k in range(200)]
    assert all(len(d) >= 1 for d in dropped)
    wrists = [d for d in dropped if J["LWrist"] in d]
    assert wrists and all(d == {J["LWrist"]} | set(range(LEFT_HAND.start, LEFT_HAND.stop)) & set(
        np.flatnonzero(present(pose))) for d in wrists)
    noisy = pose_faults(pose, Augmentation(pose_noise=0.01), np.random.default_rng(0), H)
    moved = np.linalg.norm(noisy[:, :2] - pose[:, :2], axis=1)[present(pose)]
    assert 0.5 < np.median(moved) < 5  # a few pixels at 256 high (sigma 2.56 px)
    data = PairDataset([clip], W, H, 0.2, augment=Augmentation(pose_drop=1.0, pose_noise=0.01))
    plain = PairDataset([clip], W, H, 0.2)
    for k in range(len(data)):
        sample, before = data[(0, k)], plain[k]
        assert all(np.array_equal(sample[key], before[key]) for key in ("real_t", "real_t1"))
        assert not np.array_equal(sample["pose_t1"], before["pose_t1"])


def test_the_same_seed_gives_the_same_samples_and_epochs_and_seeds_differ(clip):
    from torch.utils.data import DataLoader

    settings = dict(mirror=0.5, jitter_scale=0.05, jitter_shift=0.05, jitter_rotation=3.0, pose_drop=0.3,
                    pose_noise=0.005)
    one = PairDataset([clip], W, H, 0.2, augment=Augmentation(**settings, seed=1))
    two = PairDataset([clip], W, H, 0.2, augment=Augmentation(**settings, seed=1))
    other = PairDataset([clip], W, H, 0.2, augment=Augmentation(**settings, seed=2))
    keys = ("pose_t", "pose_t1", "real_t", "real_t1")

    def same(a, b):
        return all(np.array_equal(a[key], b[key]) for key in keys)

    indices = [(epoch, k) for epoch in range(2) for k in range(len(one))]
    assert all(same(one[i], two[i]) for i in indices)
    assert not all(same(one[i], other[i]) for i in indices)
    assert not all(same(one[(0, k)], one[(1, k)]) for k in range(len(one)))
    # data workers draw what the trainer's own process would: a sample's draw is its (seed, epoch, index)
    loader = DataLoader(one, batch_size=None, sampler=indices, num_workers=2)
    assert all(same(batch, one[i]) for batch, i in zip(loader, indices))


def test_invalid_augmentation_settings_are_refused_by_name():
    from pipeline.gan.train import TrainConfig

    for bad in ({"mirror": 1.5}, {"jitter_shift": -0.1}, {"jitter_rotation": 270.0}, {"pose_noise": 1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(**bad)


def test_options_reach_the_training_config_from_the_command_line():
    from pipeline.cli import build_parser
    from pipeline.gan.train import TrainConfig, config_from_args

    args = build_parser().parse_args(["train", "o", "--clip", "f", "r", "k", "--mirror", "0.5", "--jitter-scale",
                                      "0.05", "--jitter-shift", "0.04", "--jitter-rotation", "3", "--pose-drop",
                                      "0.1", "--pose-noise", "0.005", "--lambda-new-pose", "0.5", "--seed", "4"])
    assert Augmentation.of(config_from_args(TrainConfig, args)) == Augmentation(
        mirror=0.5, jitter_scale=0.05, jitter_shift=0.04, jitter_rotation=3.0, pose_drop=0.1, pose_noise=0.005,
        lambda_new_pose=0.5, seed=4)


@pytest.mark.slow
def test_augmentation_reaches_training_and_never_evaluation_or_transfer(tmp_path, clip_files, monkeypatch):
    """A plate generator trained with every augmentation on (its mask loss reading each sample's moved
    plate and inpainted map): training draws samples; evaluation and transfer of it run with the
    augmentation functions made to fail, so neither path can use them."""
    from pipeline.cli import main
    from pipeline.evaluation.evaluate import evaluate
    from pipeline.gan.plate import plate_of_clip
    from pipeline.gan.synthetic import make_synthetic_clip
    from pipeline.gan.train import TrainConfig, train

    small = make_synthetic_clip(tmp_path / "clip", n_frames=10, width=64, height=128)
    plate_of_clip(small[0], small[2], tmp_path / "plate")
    drawn = []
    real_draw = augment.draw_sample
    monkeypatch.setattr(augment, "draw_sample", lambda *a, **k: drawn.append(a[1:3]) or real_draw(*a, **k))
    cfg = TrainConfig(width=64, height=128, ngf=4, n_downsample=2, n_blocks=1, ndf=4, num_d=1, workers=0,
                      vgg_loss=False, sample_every=0, deterministic=True, max_steps=3, device="cpu", mirror=0.5,
                      jitter_scale=0.05, jitter_shift=0.05, jitter_rotation=3.0, pose_drop=0.2, pose_noise=0.005,
                      background="plate", lambda_mask=1.0, lambda_fg=1.0, lambda_new_pose=1.0)
    record = train(tmp_path / "run", [small], cfg, clip_plate=[tmp_path / "plate" / "plate.png"])
    assert len(drawn) == 3  # one draw per training sample (batch 1, 3 steps)
    assert record["params"]["mirror"] == 0.5
    losses = (tmp_path / "run" / "losses.csv").read_text().splitlines()
    assert {"G_NEW", "D_new"} <= set(losses[0].split(",")) and len(losses) == 4

    def refuse(*args, **kwargs):
        raise AssertionError("augmentation used outside training")

    for name in ("draw_sample", "transform_image", "transform_keypoints", "pose_faults", "turn_limbs"):
        monkeypatch.setattr(augment, name, refuse)
    generator = tmp_path / "run" / "generator.pt"
    frames, render, keypoints = small
    assert main(["transfer", str(keypoints), str(render), str(frames), str(tmp_path / "t.mp4"), "--generator",
                 str(generator)]) == 0
    evaluate(tmp_path / "eval", [small], generator, rows=["temporal"], device="cpu", samples=1)


def _standing() -> np.ndarray:
    """A person standing facing the camera, arms down, with hands and a face."""
    pose = empty_track(1)[0]
    body = {"Nose": (72, 40), "Neck": (72, 60), "RShoulder": (56, 60), "RElbow": (52, 90), "RWrist": (50, 118),
            "LShoulder": (88, 60), "LElbow": (92, 90), "LWrist": (94, 118), "MidHip": (72, 120), "RHip": (64, 120),
            "RKnee": (63, 160), "RAnkle": (62, 200), "LHip": (80, 120), "LKnee": (81, 160), "LAnkle": (82, 200),
            "REye": (68, 36), "LEye": (76, 36), "REar": (64, 38), "LEar": (80, 38), "LBigToe": (86, 206),
            "LSmallToe": (88, 204), "LHeel": (80, 204), "RBigToe": (58, 206), "RSmallToe": (56, 204),
            "RHeel": (64, 204)}
    for name, xy in body.items():
        pose[J[name]] = (*xy, 1.0)
    pose[FACE, :2] = np.array([72, 40]) + np.random.default_rng(0).normal(0, 3, (FACE.stop - FACE.start, 2))
    pose[LEFT_HAND, :2] = np.array([94, 124]) + np.random.default_rng(1).normal(0, 3, (21, 2))
    pose[RIGHT_HAND, :2] = np.array([50, 124]) + np.random.default_rng(2).normal(0, 3, (21, 2))
    pose[FACE, 2] = pose[LEFT_HAND, 2] = pose[RIGHT_HAND, 2] = 1.0
    return pose


def _turns(**degrees: float) -> np.ndarray:
    """Turns of LIMB_TURNS by the name of the segment's pivot ("RHip": the right thigh) in degrees."""
    turns = np.zeros(len(augment.LIMB_TURNS))
    for i, (pivot, _, _) in enumerate(augment.LIMB_TURNS):
        turns[i] = np.radians(degrees.get(BODY_25_NAMES[pivot], 0.0))
    return turns


def test_a_turned_thigh_carries_its_shank_and_foot_and_leaves_the_rest_of_the_body():
    pose = _standing()
    turned = augment.turn_limbs(pose, _turns(RHip=45.0))  # the right thigh kicked out sideways
    leg = [J[n] for n in ("RKnee", "RAnkle", "RBigToe", "RSmallToe", "RHeel")]
    rest = [j for j in range(N_JOINTS) if j not in leg]
    assert np.array_equal(turned[rest], pose[rest])
    hip = pose[J["RHip"], :2]
    # every moved joint keeps its distance from the hip, and the knee's angle is kept
    assert np.allclose(np.linalg.norm(turned[leg, :2] - hip, axis=1), np.linalg.norm(pose[leg, :2] - hip, axis=1),
                       atol=1e-3)
    thigh = turned[J["RKnee"], :2] - hip
    assert np.degrees(np.arctan2(thigh[1], thigh[0])) == pytest.approx(90 + 1.4 + 45, abs=0.5)  # to the person's right
    assert turned[J["RKnee"], 0] < pose[J["RKnee"], 0] - 25  # on the picture's left, away from the body
    def knee(k: np.ndarray) -> float:  # the shank's direction against the thigh's
        thigh, shank = k[J["RKnee"], :2] - k[J["RHip"], :2], k[J["RAnkle"], :2] - k[J["RKnee"], :2]
        return float(np.arctan2(np.cross(thigh, shank), np.dot(thigh, shank)))

    assert knee(turned) == pytest.approx(knee(pose), abs=1e-3)


def test_a_bent_trunk_carries_head_face_arms_and_hands_and_not_the_legs():
    pose = _standing()
    turned = augment.turn_limbs(pose, _turns(MidHip=30.0))
    legs = [J[n] for n in ("MidHip", "RHip", "LHip", "RKnee", "LKnee", "RAnkle", "LAnkle", "LBigToe", "RHeel")]
    assert np.array_equal(turned[legs], pose[legs])
    upper = [J[n] for n in ("Neck", "Nose", "RShoulder", "LWrist")] + [FACE.start, LEFT_HAND.start, RIGHT_HAND.stop - 1]
    assert (np.abs(turned[upper, :2] - pose[upper, :2]).max(axis=1) > 5).all()
    # a rigid turn: the shoulder line keeps its length and turns by the same 30 degrees
    line = lambda k: k[J["LShoulder"], :2] - k[J["RShoulder"], :2]
    assert np.linalg.norm(line(turned)) == pytest.approx(np.linalg.norm(line(pose)), abs=1e-3)
    assert np.degrees(np.arctan2(line(turned)[1], line(turned)[0])) == pytest.approx(30.0, abs=1e-3)


def test_no_turn_is_the_pose_itself_and_a_missing_pivot_or_joint_stays_as_it_is():
    pose = _standing()
    assert np.array_equal(augment.turn_limbs(pose, np.zeros(len(augment.LIMB_TURNS))), pose)
    pose[J["LShoulder"]] = (np.nan, np.nan, 0.0)  # the pivot of the left upper arm is missing
    pose[J["RAnkle"]] = (np.nan, np.nan, 0.0)
    turned = augment.turn_limbs(pose, _turns(LShoulder=60.0, RKnee=40.0))
    assert np.array_equal(turned[[J["LElbow"], J["LWrist"]]], pose[[J["LElbow"], J["LWrist"]]])
    assert np.isnan(turned[J["RAnkle"], :2]).all() and turned[J["RAnkle"], 2] == 0
    assert not np.allclose(turned[J["RBigToe"], :2], pose[J["RBigToe"], :2])  # the foot still turns with the shank


def test_new_pose_turns_stay_within_each_joints_range_and_change_no_other_draw(clip):
    aug = Augmentation(lambda_new_pose=1.0, seed=3)
    largest = np.radians([t for _, _, t in augment.LIMB_TURNS])
    draws = np.array([aug.new_pose_turns(epoch, i) for epoch in range(3) for i in range(200)])
    assert (np.abs(draws) <= largest).all()
    assert 0.4 < (draws != 0).mean() < 0.6  # each segment turned half the time
    assert np.array_equal(aug.new_pose_turns(1, 5), Augmentation(lambda_new_pose=2.0, seed=3).new_pose_turns(1, 5))
    assert not np.array_equal(aug.new_pose_turns(1, 5), aug.new_pose_turns(2, 5))
    # the pair itself is as mirroring draws it with or without the new pose, which comes on top
    plain = PairDataset([clip], W, H, holdout=0.0, augment=Augmentation(mirror=0.5, seed=3))[(1, 2)]
    both = PairDataset([clip], W, H, holdout=0.0, augment=Augmentation(mirror=0.5, lambda_new_pose=1.0, seed=3))[(1, 2)]
    for key, value in plain.items():
        assert np.array_equal(np.asarray(value), np.asarray(both[key])), key
    assert set(both) - set(plain) == {"new_pose_t", "new_pose_t1"}
    assert not np.array_equal(both["new_pose_t1"].numpy(), both["pose_t1"].numpy())


def test_the_new_pose_is_drawn_from_the_pairs_keypoints_with_the_sampled_turns(clip):
    aug = Augmentation(lambda_new_pose=1.0, seed=0)
    data = PairDataset([clip], W, H, holdout=0.0, augment=aug)
    epoch, k = 0, 1
    c, t = data.items[k]
    turns = aug.new_pose_turns(epoch, k)
    from pipeline.gan.data import to_frame_pixels

    for name, i in (("new_pose_t", t), ("new_pose_t1", t + 1)):
        expected = render_stick_figure(clip, to_frame_pixels(clip, augment.turn_limbs(data.keypoints[c][i], turns),
                                                             W, H), W, H, *render_settings(clip))
        assert np.array_equal(numpy_image(data[(epoch, k)][name]), expected), name


def test_the_new_pose_marks_where_its_body_cannot_be(clip):
    """lambda_new_pose_plate: each new-pose figure comes with the pixels outside the body its turned keypoints
    outline (body_mask at the clip's standing height): where a turned limb went is body, the pixels it left
    and those far from the person are the plate's."""
    from pipeline.gan.data import clip_body_height
    from pipeline.pose.body_region import body_mask

    aug = Augmentation(lambda_new_pose=1.0, lambda_new_pose_plate=1.0, seed=0)
    data = PairDataset([clip], W, H, holdout=0.0, augment=aug)
    epoch, k = 0, 1
    c, t = data.items[k]
    sample = data[(epoch, k)]
    height = clip_body_height(data.keypoints[c], clip.fps)
    assert 0.3 * H < height < H  # the synthetic person, standing in the frame, in model pixels
    turns = aug.new_pose_turns(epoch, k)
    assert (turns != 0).any()
    for name, i in (("new_plate_t", t), ("new_plate_t1", t + 1)):
        free = sample[name][0].numpy()
        assert sample[name].dtype == torch.bool and sample[name].shape == (1, H, W)
        assert np.array_equal(free, ~body_mask(augment.turn_limbs(data.keypoints[c][i], turns), height, W, H)), name
        own = body_mask(data.keypoints[c][i], height, W, H)  # the body the real frame shows
        assert (own & free).any() and (~own & ~free).any()  # what a turned limb left is plate, where it went body
        assert free[0, 0] and free[-1, -1]
    # only with the setting: a new pose alone carries no such mask
    assert not {"new_plate_t", "new_plate_t1"} & set(PairDataset([clip], W, H, holdout=0.0,
                                                                 augment=Augmentation(lambda_new_pose=1.0))[(0, 1)])
