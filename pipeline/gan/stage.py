"""Everything around a training stage's loop: processes and seeds, the VGG decision every process
must share, the memory check, the data, and the run record with the fingerprints a resumed checkpoint
is checked against. ``edn train`` and ``edn train-face`` each call :func:`run_stage` with their task."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist

from pipeline.gan.augment import Augmentation
from pipeline.gan.checkpoint import tensors_sha256
from pipeline.gan.data import Clip, PairDataset, load_clip
from pipeline.gan.engine import run_training
from pipeline.gan.memory import StepMemory, check_step_fits
from pipeline.gan.models.losses import VGGWeightsNotFound, find_vgg_weights
from pipeline.gan.options import C
from pipeline.gan.runtime import Runtime, all_gather, determinism, seed_everything, start_runtime
from pipeline.gan.task import GANTask

log = logging.getLogger(__name__)

ClipFiles = tuple[str | Path, str | Path, str | Path]  # frames dir, stick-figure dir, keypoints Parquet


def agree_on_vgg(vgg_loss: bool, no_vgg: str | None, rt: Runtime) -> None:
    """Every rank must train with the same losses (their values are all-reduced by position): a VGG
    decision that differs between ranks (``vgg_loss: auto`` with the weights on some nodes only) is an error."""
    decisions = all_gather((bool(vgg_loss), no_vgg), rt)
    if len({on for on, _ in decisions}) > 1:
        found = [rank for rank, (on, _) in enumerate(decisions) if on]
        missing = "; ".join(f"rank {rank}: {why}" for rank, (on, why) in enumerate(decisions) if not on)
        raise RuntimeError(f"the VGG loss would be on for ranks {found} only ({missing}): every process must "
                           "see the same VGG19 weight file (train: vgg_weights on a shared file system), or set "
                           "vgg_loss: false (--no-vgg-loss)")


def agree_on_memory(estimate: Callable[[], StepMemory], rt: Runtime, what: str) -> None:
    """Refuse the run on every rank when the training step cannot fit any rank's device (one rank
    stopping alone would leave the others waiting for it); the estimate is logged otherwise."""
    try:
        fitted, refusal = check_step_fits(estimate, rt.device, what), None
    except ValueError as exc:
        fitted, refusal = None, str(exc)
    refusals = [r for r in all_gather(refusal, rt) if r]
    if refusals:
        raise ValueError(refusals[0])
    if rt.is_main:
        log.info("%s: a training step needs %s", what, fitted.describe())



def resolve_vgg(cfg: C) -> tuple[C, str | None]:
    """Settle ``vgg_loss`` to True/False; returns the config and, when VGG is off, why.

    True: the weights must exist (:class:`VGGWeightsNotFound` otherwise). "auto": use them when
    found. Nothing is ever downloaded and random VGG weights are never used.
    """
    if cfg.vgg_loss is False:
        return cfg, "disabled by --no-vgg-loss"
    try:
        path = find_vgg_weights(cfg.vgg_weights)
    except VGGWeightsNotFound as exc:
        if cfg.vgg_loss != "auto":
            raise
        return dataclasses.replace(cfg, vgg_loss=False), f"vgg_loss auto: {exc}"
    return dataclasses.replace(cfg, vgg_loss=True, vgg_weights=str(path)), None


def clip_inputs(clips: Sequence[Clip]) -> list[dict[str, Any]]:
    """What a checkpoint's data is: each clip's frames, size and keypoints (values, not file bytes)."""
    return [{"n_frames": len(c.indices), "first_frame": c.indices[0], "size": [c.width, c.height],
             "keypoints_sha256": tensors_sha256({"keypoints": torch.from_numpy(c.keypoints)})} for c in clips]


def clip_records(clips: Sequence[ClipFiles]) -> list[list[str | None]]:
    """Per clip, the SHA-256 of its frames' and stick figures' meta.json (None where absent), run details
    (time, command, host) left out: what made them, so a checkpoint is continued only on the very images it
    was trained on (a render setting changes the images, not the keypoints), and two runs that made the
    same images record the same."""
    from pipeline.provenance import what_was_made

    def digest(path: Path) -> str | None:
        if not path.is_file():
            return None
        made = what_was_made(json.loads(path.read_text()))
        return hashlib.sha256(json.dumps(made, sort_keys=True).encode()).hexdigest()

    return [[digest(Path(frames) / "meta.json"), digest(Path(render) / "meta.json")] for frames, render, _ in clips]


def qc_exclusions(clips: Sequence[ClipFiles], clip_qc: Sequence[str | Path] | None) -> list[set[int]] | None:
    """Per clip, the frames its QC file does not call ok (None without QC files)."""
    if clip_qc is None or len(clip_qc) == 0:
        return None
    if len(clip_qc) != len(clips):
        raise ValueError(f"--clip-qc given {len(clip_qc)} times for {len(clips)} --clip: one QC file per clip, "
                         "in the same order")
    from pipeline.pose.quality import bad_frames

    return [bad_frames(path) for path in clip_qc]


def run_stage(stage: str, out_dir: str | Path, clips: Sequence[ClipFiles], cfg: C,
              make_task: Callable[[C, Runtime], GANTask], *, model_path: str | Path | None = None,
              dataset_options: dict[str, Any] | None = None, inputs: dict[str, Any] | None = None,
              record: dict[str, Any] | None = None, clip_qc: Sequence[str | Path] | None = None,
              memory: Callable[[C, bool], StepMemory] | None = None) -> dict[str, Any]:
    """Everything around :func:`run_training`: processes, seeds, the VGG decision, data, run record.

    ``memory``: the step's memory estimate of a config (and whether it computes in half precision);
    a step that cannot fit the device is refused before any data is loaded.

    ``clip_qc``: one `edn qc` file per clip (same order); pairs touching a frame it does not
    call ok are left out, and run.json lists those frames per clip.
    """
    out_dir = Path(out_dir)
    rt = start_runtime(cfg.device, cfg.precision, cfg.channels_last)
    try:
        with determinism(cfg.deterministic, rt):
            requested = cfg.vgg_loss
            cfg, no_vgg = resolve_vgg(cfg)  # first: a missing weight file stops the run before any work
            agree_on_vgg(cfg.vgg_loss, no_vgg, rt)
            if memory is not None:
                agree_on_memory(lambda: memory(cfg, rt.precision in ("bf16", "fp16")), rt,
                                f"{out_dir}: {stage} at {cfg.width}x{cfg.height}, batch size {cfg.batch_size}")
            if no_vgg and rt.is_main:
                log.warning("=" * 72)
                log.warning("VGG perceptual loss OFF (%s). Results will be worse than the paper's; "
                            "recorded as vgg_loss: false in run.json, the checkpoints and the model.", no_vgg)
                log.warning("=" * 72)
            seed_everything(cfg.seed)
            loaded = [load_clip(*c) for c in clips]
            excluded = qc_exclusions(clips, clip_qc)
            dataset = PairDataset(loaded, cfg.width, cfg.height, cfg.holdout, **(dataset_options or {}),
                                  excluded=excluded, augment=Augmentation.of(cfg))
            task = make_task(cfg, rt)
            run_record = {**(record or {}), "params": cfg.as_dict(), "vgg_loss_requested": requested,
                          "vgg_off_reason": no_vgg, "model_config": task.model_config,
                          "clips": [{"frames": str(c.frames_dir), "render": str(c.render_dir),
                                     "keypoints": str(c.keypoints_path), "held_out_frames": held}
                                    for c, held in zip(loaded, dataset.held_out)],
                          "inputs": {"clips": clip_inputs(loaded), "clip_records": clip_records(clips),
                                     **(inputs or {})}}
            if excluded is not None:
                for entry, qc_path, frames in zip(run_record["clips"], clip_qc, excluded):
                    entry.update({"qc": str(qc_path), "qc_excluded_frames": sorted(frames)})
                run_record["inputs"]["qc_excluded_frames"] = [sorted(frames) for frames in excluded]
            return run_training(stage, task, dataset, out_dir, cfg, rt, run_record, model_path)
    finally:
        if rt.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
