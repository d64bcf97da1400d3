"""``edn train``: the pose-to-frame GAN with temporal smoothing (Chan et al. 2019, section 3).

For every sample of consecutive frames (t, t+1) the generator runs twice,
I_t = G(x_t, 0) and I_{t+1} = G(x_{t+1}, I_t) with gradients through I_t, and the
multiscale discriminator judges (x_t, x_{t+1}, I_t, I_{t+1}) against (x_t, x_{t+1}, y_t, y_{t+1}).
Generator loss: LSGAN + feature matching (lambda 10) + VGG19 perceptual (lambda 10, both frames).

Its options are :mod:`pipeline.gan.options`, its networks :mod:`pipeline.gan.networks`, the GAN
step it shares with ``edn train-face`` :mod:`pipeline.gan.task`, the loop :mod:`pipeline.gan.engine`
and what surrounds the loop (processes, data, run record) :mod:`pipeline.gan.stage`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.gan.augment import Augmentation
from pipeline.gan.checkpoint import tensors_sha256
from pipeline.gan.memory import pose_step_memory
from pipeline.gan.models.discriminator import MultiscaleDiscriminator
from pipeline.gan.models.generator import PlateComposite, build_generator, sample_plates
from pipeline.gan.models.losses import mask_binary_prior, masked_l1_loss
from pipeline.gan.networks import TemporalPair, init_local_from_global, initialise, pose_model_configs
from pipeline.gan.options import TrainConfig, config_from_args
from pipeline.gan.runtime import Runtime
from pipeline.gan.stage import ClipFiles, run_stage
from pipeline.gan.task import GANTask, batch_to_device, to_model_range


class PoseTask(GANTask):
    """The temporally smoothed pose-to-frame GAN, or with ``temporal=False`` the frame-by-frame one."""

    model_file = "generator.pt"

    def __init__(self, cfg: TrainConfig, rt: Runtime, plates: torch.Tensor | None = None,
                 plate_unknown: torch.Tensor | None = None):
        """``plates``: uint8 (n_clips, 3, H, W) background plates at the model size (background plate);
        ``plate_unknown``: bool (n_clips, 1, H, W), their inpainted pixels (``lambda_mask``)."""
        if (cfg.background == "plate") != (plates is not None):
            raise ValueError("background plate needs one plate per clip (--clip-plate), and only it takes plates")
        if cfg.lambda_mask > 0 and plate_unknown is None:
            raise ValueError("lambda_mask needs the plates' inpainted areas (plate_unknown)")
        self.plate_unknown = None if plate_unknown is None else plate_unknown.to(rt.device)
        config, d_nc = pose_model_configs(cfg, 1 if plates is None else len(plates))
        generator = build_generator(config)
        discriminator = MultiscaleDiscriminator(d_nc, cfg.ndf, cfg.n_layers_d, cfg.num_d)
        initialise(cfg, generator, discriminator)
        if plates is not None:
            with torch.no_grad():  # on the host, where the generator is built; the one uint8 -> [-1, 1] conversion
                generator.plate.copy_(to_model_range(plates))
            if cfg.mask_init is not None:
                generator.set_mask_bias(cfg.mask_init)
        if cfg.init_global is not None:
            init_local_from_global(generator, config, cfg.init_global)
        super().__init__(cfg, rt, generator, discriminator, config)
        self.pair = rt.wrap(TemporalPair(self.G, cfg.temporal))

    def frozen_parameters(self, epoch: int) -> list[nn.Parameter]:
        # pix2pixHD's niter_fix_global: only the local branch learns at first.
        if self.cfg.local_enhancer and epoch < self.cfg.niter_fix_global:
            return list(self.G.model.parameters())
        return []

    def step(self, batch: dict[str, torch.Tensor], visuals: bool = False
             ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor] | None]:
        pose_t, pose_t1, real_t, real_t1 = self.inputs(batch, "pose_t", "pose_t1", "real_t", "real_t1")
        # a plate generator: each sample's own clip's plate, as augmentation moved it when it did
        plate = batch_to_device(batch["plate"], self.rt) if "plate" in batch else \
            sample_plates(self.G, batch.get("clip"))
        n = len(pose_t)
        # New poses (lambda_new_pose) go through the generator in the same batch, after the pair's own poses
        # (instance norm keeps samples apart; one forward, as DDP wants per backward).
        new = self.cfg.lambda_new_pose > 0
        mismatched = self.cfg.lambda_mismatch > 0
        in_t, in_t1 = pose_t, pose_t1
        if new or mismatched:
            new_t, new_t1 = self.inputs(batch, "new_pose_t", "new_pose_t1")
        if new:
            in_t, in_t1 = torch.cat([pose_t, new_t]), torch.cat([pose_t1, new_t1])
            plate = None if plate is None else torch.cat([plate, plate])
        mask_terms = isinstance(self.G, PlateComposite) and (
            self.cfg.lambda_fg > 0 or self.cfg.lambda_mask_binary > 0 or self.cfg.lambda_mask > 0)
        if mask_terms:
            self.G.parts = []  # each generator pass leaves its foreground and mask here
        with self.rt.autocast():
            out_t, out_t1 = self.pair(in_t, in_t1, plate)
        fake_t, fake_t1 = (None if out_t is None else out_t[:n]), out_t1[:n]
        extra = {}
        if mask_terms:  # on the pair's own poses, the ones with a real frame
            parts = [(fg[:n], mask[:n]) for fg, mask in self.G.parts]
            extra = self.mask_losses(parts, [pose_t, pose_t1][-len(parts):], [real_t, real_t1][-len(parts):],
                                     None if plate is None else plate[:n], batch.get("clip"),
                                     batch.get("plate_unknown"))
            self.G.parts = None
        real_seq = discriminator_input(pose_t, pose_t1, None if fake_t is None else real_t, real_t1)
        fake_seq = discriminator_input(pose_t, pose_t1, fake_t, fake_t1)
        if fake_t is None:  # frame-by-frame: D judges frame t+1 alone with its stick figure
            fakes, reals, vgg_weight = fake_t1, real_t1, 1.0
        else:
            # VGG on both frames stacked: the mean over the stack times 2 is the sum of both frames' losses.
            fakes, reals, vgg_weight = torch.cat([fake_t, fake_t1]), torch.cat([real_t, real_t1]), 2.0
        # The new poses' frames have no real frame to match: D's verdict is their loss (and the plate's, below).
        new_seq = discriminator_input(new_t, new_t1, None if out_t is None else out_t[n:], out_t1[n:]) if new else None
        if new and self.cfg.lambda_new_pose_plate > 0:
            # Outside the new pose's body a frame shows the plate, as a real frame does (its inpainted pixels
            # left out): the one pixel loss a frame without a real frame can have.
            names = ["new_plate_t1"] if out_t is None else ["new_plate_t", "new_plate_t1"]
            known = ~self.rt.tensor(batch["plate_unknown"])
            outside = torch.cat([self.rt.tensor(batch[k]) & known for k in names])
            frames = out_t1[n:] if out_t is None else torch.cat([out_t[n:], out_t1[n:]])
            extra["G_NEW_PLATE"] = self.cfg.lambda_new_pose_plate * masked_l1_loss(
                frames, torch.cat([plate[:n]] * len(names)), outside)
        # The real frames under the new poses' figures: a mismatch D learns as fake.
        mismatch_seq = discriminator_input(new_t, new_t1, None if fake_t is None else real_t, real_t1) \
            if mismatched else None
        losses = self.optimise(fake_seq, real_seq, fakes, reals, vgg_weight, extra, new_seq, self.cfg.lambda_new_pose,
                               mismatch_seq, self.cfg.lambda_mismatch)
        losses["L1"] = F.l1_loss(fake_t1.detach().float(), real_t1.float())  # monitoring only
        return losses, [pose_t1[0], fake_t1[0], real_t1[0]] if visuals else None

    def mask_losses(self, parts: list[tuple[torch.Tensor, torch.Tensor]], poses: list[torch.Tensor],
                    reals: list[torch.Tensor], plate: torch.Tensor, clips: Any,
                    unknown: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The plate generator's own terms, summed over its passes: the foreground against the real frame in
        the person's box (from the stick figure), the mask's binarisation prior, and the mask against where
        the real frame differs from the plate (the plate's inpainted pixels left out: ``unknown``, the
        batch's own when augmentation moved the plates, else each clip's)."""
        from pipeline.gan.plate import foreground_target, stick_figure_region

        cfg, out = self.cfg, {}
        # the person's box of each pass, shared by the two terms that need it
        regions = [stick_figure_region(pose) for pose in poses] if cfg.lambda_mask > 0 or cfg.lambda_fg > 0 else []
        if cfg.lambda_mask > 0:
            unknown = self.plate_unknown[torch.as_tensor(clips, device=self.plate_unknown.device)] if unknown is None \
                else self.rt.tensor(unknown)
            known = 1.0 - unknown.float()
            out["G_MASK_PLATE"] = cfg.lambda_mask * sum(
                masked_l1_loss(mask, foreground_target(real, plate, region), known)
                for (_, mask), region, real in zip(parts, regions, reals))
        if cfg.lambda_fg > 0:
            out["G_FG"] = cfg.lambda_fg * sum(masked_l1_loss(fg, real, region)
                                              for (fg, _), region, real in zip(parts, regions, reals))
        if cfg.lambda_mask_binary > 0:
            out["G_MASK"] = cfg.lambda_mask_binary * sum(mask_binary_prior(mask) for _, mask in parts)
        return out


def discriminator_input(pose_t: torch.Tensor, pose_t1: torch.Tensor, image_t: torch.Tensor | None,
                        image_t1: torch.Tensor) -> torch.Tensor:
    """What the discriminator judges: both stick figures and both frames of a pair, or for the frame-by-frame
    generator (``image_t`` None) frame t+1 with its stick figure."""
    if image_t is None:
        return torch.cat([pose_t1, image_t1.to(pose_t1.dtype)], dim=1)
    return torch.cat([pose_t, pose_t1, image_t.to(pose_t.dtype), image_t1.to(pose_t.dtype)], dim=1)


def train(out_dir: str | Path, clips: Sequence[ClipFiles], cfg: TrainConfig,
          model_path: str | Path | None = None, clip_qc: Sequence[str | Path] | None = None,
          clip_plate: Sequence[str | Path] | None = None) -> dict[str, Any]:
    """Train the pose-to-frame generator; writes run.json, losses.csv, samples/, checkpoint.pt in
    ``out_dir`` and the generator to ``model_path`` (default ``out_dir/generator.pt``).

    Resumes automatically from ``out_dir/checkpoint.pt``. ``clip_qc``: see :func:`run_stage`.
    Returns the run record.
    """
    inputs = {}
    if cfg.init_global is not None:  # the weights it starts from, not the path, decide whether a resume fits
        from pipeline.gan.models.generator import load_generator

        inputs["init_global_sha256"] = tensors_sha256(load_generator(cfg.init_global)[0].state_dict())
    make_task: Callable[[TrainConfig, Runtime], GANTask] = PoseTask
    dataset_options = None
    if cfg.background == "plate":
        plates = load_plates(clip_plate, len(clips), cfg.width, cfg.height)
        inputs["plates_sha256"] = tensors_sha256({"plates": plates})
        unknown = None
        if cfg.lambda_mask > 0 or cfg.lambda_new_pose_plate > 0:
            unknown = load_plate_unknown(clip_plate, cfg.width, cfg.height)
            inputs["plates_unknown_sha256"] = tensors_sha256({"unknown": unknown})
        make_task = functools.partial(PoseTask, plates=plates, plate_unknown=unknown)
        if Augmentation.of(cfg).active:  # the samples carry their plates, moved with their frames
            dataset_options = {"plates": plates, "plate_unknown": unknown}
    elif clip_plate:
        raise ValueError("--clip-plate is for --background plate")
    memory = functools.partial(pose_step_memory, n_plates=len(clips) if cfg.background == "plate" else 1)
    return run_stage("train", out_dir, clips, cfg, make_task, model_path=model_path, inputs=inputs or None,
                     dataset_options=dataset_options,
                     clip_qc=clip_qc, record={"plates": [str(p) for p in clip_plate or []]}, memory=memory)


def load_plates(paths: Sequence[str | Path] | None, n_clips: int, width: int, height: int) -> torch.Tensor:
    """Each clip's `edn plate` image at the model size, fitted like its frames: uint8 (n_clips, 3, H, W)."""
    from pipeline.gan.data import fit_to_size, read_rgb

    if not paths or len(paths) != n_clips:
        raise ValueError(f"background plate: --clip-plate given {len(paths or [])} times for {n_clips} --clip "
                         "(one `edn plate` image per clip, same order)")
    with opencv_on_one_thread():
        return torch.stack([torch.from_numpy(fit_to_size(read_rgb(Path(p)), width, height)).permute(2, 0, 1)
                            for p in paths])


def load_plate_unknown(paths: Sequence[str | Path], width: int, height: int) -> torch.Tensor:
    """Each plate's inpainted pixels (its alpha below 255) at the model size, fitted like its frames:
    bool (n_clips, 1, H, W). A plate without alpha (made before plates carried it) is refused by name."""
    import cv2

    from pipeline.footage.images import read_image
    from pipeline.gan.data import fit_to_size

    masks = []
    for p in paths:
        image = read_image(Path(p), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ValueError(f"{p}: cannot read image")
        if image.ndim != 3 or image.shape[2] != 4:
            raise ValueError(f"{p}: no alpha channel marking the plate's inpainted pixels (lambda_mask needs "
                             "it): make the plate again with `edn plate`")
        with opencv_on_one_thread():
            alpha = fit_to_size(np.ascontiguousarray(image[..., 3]), width, height)
        masks.append(torch.from_numpy(alpha < 255)[None])
    return torch.stack(masks)


@contextlib.contextmanager
def opencv_on_one_thread() -> Iterator[None]:
    """Resize plates on one thread: an OpenCV thread pool started in this process would hang the data
    workers forked from it later (measured: the first step never came with --workers 1)."""
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


def cli(args: argparse.Namespace) -> int:
    train(args.out_dir, [tuple(c) for c in args.clip], config_from_args(TrainConfig, args), args.model_out,
          clip_qc=args.clip_qc, clip_plate=args.clip_plate)
    return 0
