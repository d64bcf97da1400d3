import torch

from pipeline.checkpoint import save_model
from pipeline.models.generator import PlateComposite, build_generator, default_generator_config, load_generator


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

    from pipeline.generate import generate_frames, load_models
    from pipeline.models.generator import image_to_tensor

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
