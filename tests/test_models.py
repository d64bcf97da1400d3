"""The networks and losses: pix2pixHD's sizes, output shapes, the 70x70 patch, VGG loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.gan.checkpoint import save_model
from pipeline.gan.models.discriminator import TEMPORAL_NC, MultiscaleDiscriminator, NLayerDiscriminator
from pipeline.gan.models.face import build_face_generator, default_face_config
from pipeline.gan.models.generator import GlobalGenerator, LocalEnhancer, load_generator
from pipeline.gan.models.losses import VGGLoss, VGGWeightsNotFound, feature_matching_loss, lsgan_loss
from pipeline.gan.networks import TemporalPair


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv(c_in: int, c_out: int, k: int) -> int:
    """Weights plus bias of one (transposed) convolution; instance norm has no parameters in pix2pixHD."""
    return c_in * c_out * k * k + c_out


def global_generator_params(input_nc: int, ngf: int, n_down: int, n_blocks: int, last: bool = True) -> int:
    """pix2pixHD GlobalGenerator: c7s1-ngf, n_down 3x3 stride-2 convs doubling the filters,
    n_blocks residual blocks of two 3x3 convs, n_down 3x3 transposed convs halving them, c7s1-3."""
    total = conv(input_nc, ngf, 7)
    total += sum(conv(ngf * 2 ** i, ngf * 2 ** (i + 1), 3) for i in range(n_down))
    total += n_blocks * 2 * conv(ngf * 2 ** n_down, ngf * 2 ** n_down, 3)
    total += sum(conv(ngf * 2 ** (i + 1), ngf * 2 ** i, 3) for i in range(n_down))
    return total + (conv(ngf, 3, 7) if last else 0)


def patchgan_params(input_nc: int, ndf: int, n_layers: int) -> int:
    """pix2pixHD NLayerDiscriminator: 4x4 convs ndf, 2ndf, ... (capped at 512), one more stride-1, then 1."""
    total, nf = conv(input_nc, ndf, 4), ndf
    for _ in range(n_layers):
        total, nf = total + conv(nf, min(nf * 2, 512), 4), min(nf * 2, 512)
    return total + conv(nf, 1, 4)


def test_global_generator_has_pix2pixhd_size():
    # pix2pixHD's global generator (ngf 64, 4 downsamplings, 9 blocks) for a 3-channel input.
    # By hand: 9,472 + (73,856 + 295,168 + 1,180,160 + 4,719,616) + 9 blocks x 18,876,416
    # + (4,719,104 + 1,179,904 + 295,040 + 73,792) + 9,411 = 182,443,267 (730 MB in fp32).
    model = GlobalGenerator(input_nc=3, ngf=64, n_downsample=4, n_blocks=9)
    assert n_params(model) == global_generator_params(3, 64, 4, 9) == 182_443_267
    # ours sees stick figure + previous frame: only the first convolution grows
    assert n_params(GlobalGenerator()) - n_params(model) == 3 * 64 * 49


def test_local_enhancer_has_pix2pixhd_size():
    # The global generator of 2 x 32 filters without its last c7s1-3, plus the local branch:
    # c7s1-32, down 32->64, 3 blocks of 64, up 64->32, c7s1-3.
    model = LocalEnhancer(input_nc=3, ngf=32, n_downsample_global=4, n_blocks_global=9, n_blocks_local=3)
    local = conv(3, 32, 7) + conv(32, 64, 3) + 3 * 2 * conv(64, 64, 3) + conv(64, 32, 3) + conv(32, 3, 7)
    assert local == 267_971
    assert n_params(model) == global_generator_params(3, 64, 4, 9, last=False) + local == 182_701_827


def test_multiscale_discriminator_has_pix2pixhd_size():
    # 3 scales x 70x70 PatchGAN (n_layers 3, ndf 64) on label + image (3 + 3 channels):
    # 6,208 + 131,200 + 524,544 + 2,097,664 + 8,193 = 2,767,809 per scale.
    model = MultiscaleDiscriminator(input_nc=6, ndf=64, n_layers=3, num_d=3)
    assert n_params(model) == 3 * patchgan_params(6, 64, 3) == 8_303_427
    # the temporal discriminator of the paper sees x_t, x_t+1 and two frames: 12 channels
    assert n_params(MultiscaleDiscriminator(TEMPORAL_NC)) == 3 * patchgan_params(12, 64, 3) == 8_321_859


def test_face_generator_size():
    # Default face G: c7s1-32 on (pose crop, generated crop), 3 downsamplings, 5 blocks of 256.
    model = build_face_generator(default_face_config())
    assert n_params(model) == global_generator_params(6, 32, 3, 5) == 6_689_763


def test_generators_keep_512x256_and_stay_in_range():
    x = torch.rand(1, 6, 256, 512) * 2 - 1
    for model in (GlobalGenerator(ngf=4, n_downsample=4, n_blocks=1),
                  LocalEnhancer(ngf=4, n_downsample_global=4, n_blocks_global=1, n_blocks_local=1)):
        with torch.no_grad():
            y = model(x)
        assert y.shape == (1, 3, 256, 512)
        assert y.abs().max() <= 1


def test_multiscale_discriminator_shapes_at_512x256():
    # pix2pixHD pads 4x4 convs by 2: a stride-2 conv maps n to n/2 + 1, a stride-1 conv n to n + 1;
    # each scale sees the input average-pooled by 2 once more.
    model = MultiscaleDiscriminator(TEMPORAL_NC, ndf=4, n_layers=3, num_d=3)
    with torch.no_grad():
        out = model(torch.randn(2, TEMPORAL_NC, 256, 512))
    assert len(out) == 3
    for scale, (h, w) in enumerate([(256, 512), (128, 256), (64, 128)]):
        sizes, channels = [], []
        for f in out[scale]:
            assert f.shape[0] == 2
            sizes.append(tuple(f.shape[2:]))
            channels.append(f.shape[1])
        assert channels == [4, 8, 16, 32, 1]
        expected = [(h // 2 + 1, w // 2 + 1)]
        for _ in range(2):
            expected.append((expected[-1][0] // 2 + 1, expected[-1][1] // 2 + 1))
        expected += [(expected[-1][0] + 1, expected[-1][1] + 1), (expected[-1][0] + 2, expected[-1][1] + 2)]
        assert sizes == expected


def test_patchgan_sees_70x70_patches():
    # Batch norm in eval mode is per-channel affine, so each score depends only on its receptive
    # field (instance norm would mix the whole image in).
    model = NLayerDiscriminator(6, ndf=4, n_layers=3, norm="batch").eval()
    x = torch.randn(1, 6, 200, 200, requires_grad=True)
    scores = model(x)[-1]
    scores[0, 0, scores.shape[2] // 2, scores.shape[3] // 2].backward()
    rows, cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1)), as_tuple=True)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (70, 70)


def test_temporal_pair_matches_inference_feedback():
    # Training's two passes and inference (SequenceBatch, what transfer and evaluate run) feed the
    # previous output back the same way.
    from pipeline.gan.generate import Models, SequenceBatch
    from pipeline.gan.models.generator import image_to_tensor, tensor_to_image

    torch.manual_seed(0)
    model = GlobalGenerator(ngf=4, n_downsample=2, n_blocks=1).eval()
    poses = [np.random.default_rng(i).integers(0, 256, (32, 16, 3), dtype=np.uint8) for i in range(2)]
    with torch.no_grad():
        fake_t, fake_t1 = TemporalPair(model)(*(image_to_tensor(p) for p in poses))
    sequence = SequenceBatch(Models(model, {"width": 16, "height": 32}, torch.device("cpu")), [0])
    made = [sequence.step({0: p})[0][0] for p in poses]
    assert np.array_equal(made[0], tensor_to_image(fake_t)) and np.array_equal(made[1], tensor_to_image(fake_t1))


def test_generator_file_round_trip(tmp_path):
    config = {"kind": "global", "input_nc": 6, "output_nc": 3, "ngf": 4, "n_downsample": 2, "n_blocks": 1,
              "n_blocks_local": 3, "norm": "instance", "padding_type": "reflect", "width": 16, "height": 32}
    model = GlobalGenerator(ngf=4, n_downsample=2, n_blocks=1)
    save_model(tmp_path / "g.pt", model, config, step=3)
    loaded, cfg = load_generator(tmp_path / "g.pt")
    x = torch.randn(1, 6, 32, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert cfg["width"] == 16
    with pytest.raises(FileNotFoundError, match="missing.pt.*edn train"):
        load_generator(tmp_path / "missing.pt")


def test_transposed_upsampling_draws_a_checkerboard_and_resize_does_not():
    from pipeline.gan.models.generator import upsample_layer

    torch.manual_seed(0)
    flat = torch.ones(1, 8, 8, 8)  # a featureless input: any pattern in the output comes from the layer
    for kind, checkered in (("transpose", True), ("resize", False)):
        layer = torch.nn.Sequential(*upsample_layer(8, 4, kind))
        with torch.no_grad():
            out = layer(flat)[0, :, 2:-2, 2:-2]  # away from the borders
        assert out.shape == (4, 12, 12)
        parity = out.reshape(4, 6, 2, 6, 2)  # the four phases of the 2x grid
        spread = (parity.mean(dim=(1, 3)).amax(dim=(1, 2)) - parity.mean(dim=(1, 3)).amin(dim=(1, 2))).max()
        assert (spread > 1e-3) == checkered, kind
    with pytest.raises(ValueError, match="unknown upsampling 'bilinear'"):
        upsample_layer(8, 4, "bilinear")


def test_resize_convolution_equals_its_definition_values_and_gradients():
    from pipeline.gan.models.generator import ResizeConv2d

    torch.manual_seed(0)
    layer = ResizeConv2d(5, 3)
    x = torch.randn(2, 5, 7, 4, requires_grad=True)  # odd sizes: every border case
    fast, reference = layer(x), layer.reference(x)
    assert fast.shape == (2, 3, 14, 8)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad((fast * torch.cos(fast)).sum(), [x, layer.conv.weight, layer.conv.bias])
    expected = torch.autograd.grad((reference * torch.cos(reference)).sum(), [x, layer.conv.weight, layer.conv.bias])
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_resize_generator_has_the_same_size_is_recorded_and_round_trips(tmp_path):
    from pipeline.gan.models.generator import build_generator, default_generator_config

    config = default_generator_config(ngf=4, n_downsample=2, n_blocks=1, width=16, height=32, upsample="resize")
    model, reference = build_generator(config), build_generator({**config, "upsample": "transpose"})
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules())
    save_model(tmp_path / "g.pt", model, config, step=1)
    loaded, cfg = load_generator(tmp_path / "g.pt")
    assert cfg["upsample"] == "resize"
    x = torch.randn(1, 6, 32, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    older = {k: v for k, v in config.items() if k != "upsample"}  # files from before the key
    save_model(tmp_path / "old.pt", reference, older, step=1)
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in load_generator(tmp_path / "old.pt")[0].modules())


def test_half_chroma_keeps_luma_and_removes_colour_at_the_highest_frequency():
    import cv2

    from pipeline.evaluation.metrics import _luminance, chroma_highband_energy
    from pipeline.gan.models.generator import ChromaLowPass

    rng = np.random.default_rng(0)
    smooth = cv2.GaussianBlur(rng.uniform(-0.6, 0.6, (32, 24, 3)), (0, 0), 4) * 3  # colour that varies slowly
    checker = np.indices((32, 24)).sum(axis=0) % 2 * 0.2 - 0.1  # 0.5 cycles/pixel
    grain = smooth + np.stack([checker, -checker, checker], axis=2)  # colour grain at the Nyquist frequency
    x = torch.from_numpy(np.clip(grain, -0.9, 0.9)).permute(2, 0, 1)[None].float()
    mask = torch.rand(1, 1, 32, 24)
    with torch.no_grad():
        out = ChromaLowPass()(torch.cat([x, mask], dim=1))
    assert torch.equal(out[:, 3:], mask)  # a plate generator's mask passes as it is

    def as_bgr(t: torch.Tensor) -> np.ndarray:
        return ((t[0, :3].permute(1, 2, 0).numpy()[..., ::-1] + 1) * 127.5).astype(np.float64)

    np.testing.assert_allclose(_luminance(as_bgr(out)), _luminance(as_bgr(x)), atol=1e-3)  # luma untouched
    # The [1, 2, 1] filter has no gain at 0.5 cycles/pixel: the grain's colour is gone, the slow colour stays.
    assert chroma_highband_energy(as_bgr(out)) < 0.05 * chroma_highband_energy(as_bgr(x))
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    smooth_t = torch.from_numpy(np.clip(smooth, -0.9, 0.9)).permute(2, 0, 1)[None].float()
    assert (out[:, :3] - x[:, :3])[inner].abs().max() > 0.05
    chroma_of = lambda t: t[:, :3] - (t[:, :3] * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert (chroma_of(out) - chroma_of(smooth_t))[inner].abs().max() < 0.05


def test_half_chroma_generator_has_no_new_weights_is_recorded_and_old_files_stay_full(tmp_path):
    from pipeline.gan.models.generator import ChromaLowPass, build_generator, default_generator_config

    config = default_generator_config(ngf=4, n_downsample=2, n_blocks=1, width=16, height=32, chroma="half",
                                      background="plate", n_plates=1)
    model = build_generator(config)
    assert isinstance(model.inner.chroma, ChromaLowPass)
    full = build_generator({**config, "chroma": "full"})
    assert model.state_dict().keys() == full.state_dict().keys()
    save_model(tmp_path / "g.pt", model, config, step=1)
    loaded, cfg = load_generator(tmp_path / "g.pt")
    assert cfg["chroma"] == "half" and isinstance(loaded.inner.chroma, ChromaLowPass)
    x = torch.randn(1, 6, 32, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    older = {k: v for k, v in config.items() if k != "chroma"}  # files from before the key
    save_model(tmp_path / "old.pt", full, older, step=1)
    assert not any(isinstance(m, ChromaLowPass) for m in load_generator(tmp_path / "old.pt")[0].modules())
    with pytest.raises(ValueError, match="unknown chroma 'quarter'"):
        build_generator({**config, "chroma": "quarter", "background": "none"})


def test_lsgan_and_feature_matching_values():
    ones = [torch.ones(1, 1, 4, 4)]
    assert lsgan_loss([ones, ones], True).item() == 0
    assert lsgan_loss([ones, ones], False).item() == 2  # MSE 1 per scale, summed
    fake = [[torch.zeros(1, 2, 3, 3) for _ in range(5)]]
    real = [[torch.ones(1, 2, 3, 3) for _ in range(5)]]
    # n_layers 3: 4 intermediate features (the scores are left out), each weighted 4 / (3 + 1), times 10
    assert feature_matching_loss(fake, real, n_layers=3, lambda_feat=10).item() == pytest.approx(40)
    assert feature_matching_loss(real, real, n_layers=3).item() == 0


def test_vgg_loss_from_file(random_vgg_file):
    loss = VGGLoss(random_vgg_file, lambda_vgg=10.0)
    loss.train()
    assert not loss.training and not any(p.requires_grad for p in loss.parameters())
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    fake = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_()
    assert loss(real, real).item() == 0
    value = loss(fake, real)
    value.backward()
    assert value.item() > 0 and fake.grad.abs().sum() > 0


def test_vgg_missing_or_wrong_file_is_a_clear_error(tmp_path):
    with pytest.raises(VGGWeightsNotFound, match=r"nothere\.pth.*IMAGENET1K_V1.*--no-vgg-loss"):
        VGGLoss(tmp_path / "nothere.pth")
    torch.save({"features.0.weight": torch.zeros(3)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="wrong.pth: not a torchvision VGG19"):
        VGGLoss(tmp_path / "wrong.pth")


def test_images_cross_to_the_model_as_uint8_and_come_back_exactly():
    from pipeline.gan.models.generator import image_to_tensor, tensor_to_image

    image = np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    tensor = image_to_tensor(image, torch.device("cpu"))
    assert tensor.shape == (1, 3, 6, 10) and tensor.dtype == torch.float32
    assert float(tensor.min()) >= -1 and float(tensor.max()) <= 1
    back = tensor_to_image(tensor)
    assert back.dtype == np.uint8 and np.array_equal(back, image)
    assert back.flags.c_contiguous  # cv2 and the encoder pipe take it without another copy
    assert np.array_equal(tensor_to_image((tensor * 3).clamp(-5, 5)), tensor_to_image((tensor * 3).clamp(-1, 1)))
