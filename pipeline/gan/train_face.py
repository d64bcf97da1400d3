"""``edn train-face``: the face GAN (Chan et al. 2019, section 3.3).

The main generator G, trained by ``edn train``, is frozen. For each sample (t, t+1) it makes
G(x_{t+1}, G(x_t, 0)) as in its own training; a square box of fixed size around the face of
frame t+1 (face keypoints, else the nose) is cut from the stick figure, the generated frame and
the real frame. The residual generator G_f sees (x_F, G(x)_F) and returns G(x)_F + r; a 70x70
PatchGAN D_f (one scale, n_layers 3) judges (x_F, G(x)_F + r) against (x_F, y_F). Losses as for
the main GAN, on the crop: LSGAN + feature matching + VGG19, and the pixel L1 when ``lambda_l1`` > 0
(the anchor that keeps the residual from drifting off the real face while VGG19 is absent).

Its options are :class:`~pipeline.gan.options.FaceConfig`; devices, DDP, resume and records are those
of ``edn train`` (:mod:`pipeline.gan.stage`, :mod:`pipeline.gan.engine`). The run folder gets its
own checkpoint.pt, run.json, losses.csv and samples/; the model is face.pt.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.gan.checkpoint import tensors_sha256
from pipeline.gan.memory import face_step_memory
from pipeline.gan.models.discriminator import MultiscaleDiscriminator
from pipeline.gan.models.face import build_face_generator, crop_boxes, default_face_config, face_box_size
from pipeline.gan.models.generator import is_temporal, load_generator, sample_plates
from pipeline.gan.networks import FACE_D_NC, TemporalPair, initialise
from pipeline.gan.options import FaceConfig, config_from_args
from pipeline.gan.runtime import Runtime
from pipeline.gan.stage import ClipFiles, run_stage
from pipeline.gan.task import GANTask

log = logging.getLogger(__name__)


class FaceTask(GANTask):
    """The face residual GAN on top of a frozen main generator."""

    model_file = "face.pt"

    def __init__(self, cfg: FaceConfig, rt: Runtime, generator: nn.Module, box_size: int):
        # The residual is upsampled and coloured as the main generator's output (its reasons hold here too).
        config = default_face_config(ngf=cfg.face_ngf, n_downsample=cfg.face_n_downsample,
                                     n_blocks=cfg.face_n_blocks, box_size=box_size, width=cfg.width,
                                     height=cfg.height, upsample=cfg.upsample, chroma=cfg.chroma)
        face, discriminator = build_face_generator(config), MultiscaleDiscriminator(FACE_D_NC, cfg.ndf,
                                                                                     cfg.n_layers_d, cfg.num_d)
        initialise(cfg, face, discriminator)
        face.zero_residual()  # whatever the init: an untrained face GAN returns the generated crop
        super().__init__(cfg, rt, face, discriminator, config)
        # Frozen and outside self.models: neither optimised nor checkpointed (generator.pt is the record).
        self.main = TemporalPair(rt.prepare(generator).eval().requires_grad_(False), cfg.temporal)
        self.face = rt.wrap(self.G)

    def compiled_modules(self) -> list[nn.Module]:
        return super().compiled_modules() + [self.main.generator]  # the frozen generator runs every step too

    def step(self, batch: dict[str, torch.Tensor], visuals: bool = False
             ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor] | None]:
        pose_t, pose_t1, real_t1 = self.inputs(batch, "pose_t", "pose_t1", "real_t1")
        boxes = batch["box_t1"].tolist()  # corners as Python ints: slicing needs no tensor work on the host
        # A plate generator paints each sample over its own clip's plate, as in its training and in
        # generation; without it every sample would get clip 0's background and the residual would learn to
        # repaint backgrounds it never sees at generation time.
        plate = sample_plates(self.main.generator, batch.get("clip"))
        with torch.no_grad(), self.rt.autocast():
            _, generated = self.main(pose_t, pose_t1, plate)
        pose_f, gen_f, real_f = (crop_boxes(t, boxes) for t in (pose_t1, generated.to(pose_t1.dtype), real_t1))
        with self.rt.autocast():
            face = self.face(pose_f, gen_f)
        losses = self.optimise(torch.cat([pose_f, face.to(pose_f.dtype)], 1), torch.cat([pose_f, real_f], 1),
                               face, real_f)
        losses["L1"] = F.l1_loss(face.detach().float(), real_f.float())  # monitoring only
        losses["L1_main"] = F.l1_loss(gen_f.float(), real_f.float())  # the frozen generator's face, to beat
        return losses, [pose_f[0], gen_f[0], face[0], real_f[0]] if visuals else None


def face_landmark_share(clips: Sequence[ClipFiles], holdout: float) -> float:
    """The share of the clips' training frames (before each held-out tail) with face landmarks."""
    from pipeline.gan.data import split_holdout
    from pipeline.pose.keypoints import FACE, read_keypoints

    counts = []
    for clip in clips:
        data = read_keypoints(clip[2]).data
        data = data[split_holdout(len(data), holdout)[0]]
        counts.append(((data[:, FACE, 2] > 0).any(axis=1).sum(), len(data)))
    frames = sum(n for _, n in counts)
    return float(sum(k for k, _ in counts) / frames) if frames else 0.0


def skip_face(out_dir: Path, model_path: Path, share: float, cfg: FaceConfig, clips: Sequence[ClipFiles]
              ) -> dict[str, Any]:
    """Write ``face.pt`` holding no face GAN, with the reason (:func:`pipeline.gan.models.face.face_skipped`),
    and the run folder's ``run.json`` with the same record."""
    from pipeline.gan.checkpoint import sealed
    from pipeline.provenance import atomic_path, provenance, write_json

    reason = (f"face landmarks on {share:.0%} of the target's training frames, fewer than the "
              f"{cfg.face_min_landmarks:.0%} a face GAN needs (train: face: min_landmarks); no face GAN is "
              "trained or applied")
    record = {"skipped": reason, "face_landmark_share": share, "min_landmarks": cfg.face_min_landmarks,
              "provenance": provenance("train-face", {"clips": [[str(p) for p in c] for c in clips],
                                                      "holdout": cfg.holdout,
                                                      "min_landmarks": cfg.face_min_landmarks})}
    with atomic_path(model_path) as tmp:
        torch.save(sealed(record), tmp)
    write_json(Path(out_dir) / "run.json", record)  # the run folder says why it holds no losses
    log.warning("%s: %s", model_path, reason)
    return record


def train_face(out_dir: str | Path, generator_path: str | Path, clips: Sequence[ClipFiles], cfg: FaceConfig,
               model_path: str | Path | None = None, clip_qc: Sequence[str | Path] | None = None) -> dict[str, Any]:
    """Train the face GAN against the frozen ``generator_path``; writes ``out_dir``'s run files and
    the face generator to ``model_path`` (default ``out_dir/face.pt``). Resumes like :func:`train`.
    With face landmarks on fewer training frames than ``cfg.face_min_landmarks``, writes a face.pt
    that holds no face GAN and says why (:func:`skip_face`)."""
    share = face_landmark_share(clips, cfg.holdout)
    if share < cfg.face_min_landmarks:
        return skip_face(Path(out_dir), Path(model_path or Path(out_dir) / "face.pt"), share, cfg, clips)
    generator, gen_config = load_generator(generator_path)
    if "width" not in gen_config or "height" not in gen_config:
        raise ValueError(f"{generator_path}: generator file lacks its training resolution (width, height)")
    # The face run works at the generator's resolution; its record shows the generator's architecture.
    cfg = dataclasses.replace(cfg, width=gen_config["width"], height=gen_config["height"], ngf=gen_config["ngf"],
                              n_downsample=gen_config["n_downsample"], n_blocks=gen_config["n_blocks"],
                              n_blocks_local=gen_config["n_blocks_local"],
                              upsample=gen_config.get("upsample", "transpose"),
                              chroma=gen_config.get("chroma", "full"),
                              local_enhancer=gen_config["kind"] == "local", temporal=is_temporal(gen_config))
    box = cfg.face_size or face_box_size(cfg.height, 2 ** cfg.face_n_downsample)
    if box > min(cfg.width, cfg.height):
        raise ValueError(f"face box {box} px does not fit the generator's {cfg.width}x{cfg.height} frames")
    return run_stage("train-face", out_dir, clips, cfg, lambda c, rt: FaceTask(c, rt, generator, box),
                     model_path=model_path, dataset_options={"face_box_size": box, "require_face": True},
                     inputs={"generator_weights_sha256": tensors_sha256(generator.state_dict())},
                     record={"generator": str(generator_path), "face_box_size": box}, clip_qc=clip_qc,
                     memory=lambda c, half: face_step_memory(c, gen_config, box, half))


def cli(args: argparse.Namespace) -> int:
    train_face(args.out_dir, args.generator, [tuple(c) for c in args.clip], config_from_args(FaceConfig, args),
               args.model_out, clip_qc=args.clip_qc)
    return 0
