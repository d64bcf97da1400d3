import pytest
import torch

from pipeline.gan.checkpoint import save_model
from pipeline.gan.models.generator import PlateComposite, build_generator, default_generator_config, load_generator


def _config():
    return default_generator_config(ngf=4, n_downsample=2, n_blocks=1, width=16, height=8, background="plate")


def test_composite_is_the_plate_where_the_mask_is_zero():
    torch.manual_seed(0)
    g = build_generator(_config())
    assert isinstance(g, PlateComposite)
    g.plate.copy_(torch.rand(1, 3, 8, 16) * 2 - 1)
    last_conv = [m for m in g.inner.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last_conv.bias[3] = -1e4  # mask channel -> tanh -1 -> mask 0
    out = g(torch.rand(2, 6, 8, 16))
    assert torch.allclose(out, g.plate.expand(2, -1, -1, -1), atol=1e-6)
    out.mean().backward()  # a training step's backward runs through the composite
    assert g.inner.model[1].weight.grad is not None


def test_generator_file_keeps_plate_and_background(tmp_path):
    g = build_generator(_config())
    with torch.no_grad():
        g.plate.fill_(0.25)
    save_model(tmp_path / "generator.pt", g, _config())
    loaded, config = load_generator(tmp_path / "generator.pt")
    assert config["background"] == "plate"
    assert torch.equal(loaded.plate, g.plate)
    x = torch.rand(1, 6, 8, 16)
    assert torch.allclose(loaded(x), g.eval()(x))


def test_paper_generator_unchanged_by_background_none():
    g = build_generator(default_generator_config(ngf=4, n_downsample=2, n_blocks=1))
    assert not isinstance(g, PlateComposite)


def test_generation_with_a_plate_generator_uses_its_stored_plate(tmp_path):
    import numpy as np

    from pipeline.gan.generate import generate_frames, load_models
    from pipeline.gan.models.generator import image_to_tensor

    g = build_generator(_config())
    plate = np.random.default_rng(0).integers(0, 256, size=(8, 16, 3), dtype=np.uint8)
    with torch.no_grad():
        g.plate.copy_(image_to_tensor(plate))
        [m for m in g.inner.modules() if isinstance(m, torch.nn.Conv2d)][-1].bias[3] = -1e4
    save_model(tmp_path / "generator.pt", g, _config())
    models = load_models(tmp_path / "generator.pt", device="cpu")
    poses = [np.full((8, 16, 3), v, dtype=np.uint8) for v in (0, 128, 255)]
    frames = list(generate_frames(models, poses, use_face=False))
    assert len(frames) == 3 and all(np.abs(f.astype(int) - plate.astype(int)).max() <= 1 for f in frames)


# ------------------------------------------------------------------ training with plates (edn train)

def _tiny_plate_run(tmp_path, clips, **overrides):
    from pipeline.gan.plate import plate_of_clip
    from pipeline.gan.train import TrainConfig, train

    plates = []
    for i, (frames, _, keypoints) in enumerate(clips):
        plate_of_clip(frames, keypoints, tmp_path / f"plate{i}")
        plates.append(tmp_path / f"plate{i}" / "plate.png")
    # Plates resized (half the clips' size) and a forked data worker: the path that hung on the demo's
    # frames while the plates were resized on OpenCV's thread pool (these small images do not start it).
    cfg = TrainConfig(width=32, height=64, ngf=8, n_downsample=2, n_blocks=1, ndf=8, n_layers_d=2, num_d=2,
                      workers=1, vgg_loss=False, sample_every=0, deterministic=True, max_steps=3, device="cpu",
                      background="plate", **overrides)
    record = train(tmp_path / "run", clips, cfg, clip_plate=plates)
    return record, plates


def test_training_with_plates_stores_each_clips_plate_and_logs_l1(tmp_path, synthetic_clip_factory):
    import csv

    from pipeline.gan.data import fit_to_size, read_rgb
    from pipeline.gan.models.generator import image_to_tensor, select_plate

    clips = [synthetic_clip_factory(tmp_path / f"clip{i}", n_frames=6) for i in range(2)]
    # the second view's background differs: its plate must differ from the first's
    import cv2
    for path in sorted((clips[1][0]).glob("*.jpg")):
        cv2.imwrite(str(path), 255 - cv2.imread(str(path)))
    record, plates = _tiny_plate_run(tmp_path, clips, lambda_l1=10.0)
    assert record["status"] == "finished" and record["plates"] == [str(p) for p in plates]
    assert record["inputs"]["plates_sha256"]
    generator, config = load_generator(tmp_path / "run" / "generator.pt")
    assert config["background"] == "plate" and config["n_plates"] == 2
    for i, plate in enumerate(plates):
        expected = image_to_tensor(fit_to_size(read_rgb(plate), 32, 64))[0]
        assert torch.allclose(generator.plate[i], expected, atol=1e-6)
    assert not torch.allclose(generator.plate[0], generator.plate[1], atol=0.1)
    with (tmp_path / "run" / "losses.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(float(r["G_L1"]) > 0 for r in rows)
    select_plate(generator, 1)
    assert generator.plate_index == 1
    with pytest.raises(ValueError, match="plate 2 asked of a generator trained with 2 plates"):
        select_plate(generator, 2)


def test_each_training_sample_is_composited_over_its_own_clips_plate():
    from pipeline.gan.networks import TemporalPair

    g = build_generator(default_generator_config(ngf=4, n_downsample=2, n_blocks=1, width=16, height=8,
                                                 background="plate", n_plates=2))
    with torch.no_grad():
        [m for m in g.inner.modules() if isinstance(m, torch.nn.Conv2d)][-1].bias[3] = -1e4  # mask 0
    plates = torch.rand(2, 3, 8, 16) * 2 - 1
    fake_t, fake_t1 = TemporalPair(g)(torch.rand(2, 3, 8, 16), torch.rand(2, 3, 8, 16), plates)
    assert torch.allclose(fake_t, plates, atol=1e-6) and torch.allclose(fake_t1, plates, atol=1e-6)


def test_plate_training_needs_one_plate_per_clip(tmp_path, synthetic_clip):
    from pipeline.gan.train import TrainConfig, train

    cfg = TrainConfig(width=64, height=128, ngf=8, n_downsample=2, n_blocks=1, workers=0, vgg_loss=False,
                      background="plate", max_steps=1)
    with pytest.raises(ValueError, match="--clip-plate given 0 times for 1 --clip"):
        train(tmp_path / "run", [synthetic_clip], cfg)
    with pytest.raises(ValueError, match="--clip-plate is for --background plate"):
        train(tmp_path / "run", [synthetic_clip], TrainConfig(background="none"), clip_plate=["p.png"])
    with pytest.raises(ValueError, match="background='wall'"):
        TrainConfig(background="wall")


def test_a_batch_of_sequences_equals_each_sequence_alone_with_its_own_plate(tmp_path):
    """Evaluation's batched generation (several clips per step, each with its own previous frame and
    plate, sequences of different lengths) makes the frames one-clip-at-a-time generation makes."""
    import numpy as np

    from pipeline.gan.generate import SequenceBatch, generate_frames, load_models
    from pipeline.gan.models.generator import select_plate

    torch.manual_seed(0)
    config = default_generator_config(ngf=4, n_downsample=2, n_blocks=1, width=16, height=8, background="plate",
                                      n_plates=2)
    g = build_generator(config)
    with torch.no_grad():
        g.plate.copy_(torch.rand(2, 3, 8, 16) * 2 - 1)  # two clips, two different backgrounds
    save_model(tmp_path / "generator.pt", g, config)
    models = load_models(tmp_path / "generator.pt", device="cpu")
    rng = np.random.default_rng(0)
    poses = {0: [rng.integers(0, 256, (8, 16, 3), dtype=np.uint8) for _ in range(4)],
             1: [rng.integers(0, 256, (8, 16, 3), dtype=np.uint8) for _ in range(2)]}
    alone = {}
    for c, sequence in poses.items():
        select_plate(models.generator, c)
        alone[c] = list(generate_frames(models, sequence, use_face=False))
        assert len(alone[c]) == len(sequence)
    batch = SequenceBatch(models, plates=[0, 1])
    together = {c: [] for c in poses}
    for t in range(4):
        active = [c for c in poses if t < len(poses[c])]
        for c, (plain, refined) in batch.step({c: poses[c][t] for c in active}, use_face=False).items():
            assert plain is refined  # no face GAN: one frame
            together[c].append(plain)
        for c in active:
            if t == len(poses[c]) - 1:
                batch.finish(c)
    for c in poses:
        assert len(together[c]) == len(alone[c])
        for a, b in zip(alone[c], together[c]):
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # equal up to float rounding
    assert np.abs(together[0][0].astype(int) - together[1][0].astype(int)).mean() > 5  # plates differ
    with pytest.raises(ValueError, match=r"plates \[2\] asked of a generator trained with 2 plates"):
        SequenceBatch(models, plates=[0, 2])
