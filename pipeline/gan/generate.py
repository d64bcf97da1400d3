"""Running the trained models: stick figures in, frames out (shared by ``edn transfer`` and ``edn evaluate``).

The generator runs frame by frame, each output fed back as the next frame's previous-frame
input (as training's two passes do), several sequences at once where wanted
(:class:`SequenceBatch`); the face GAN then adds its residual inside the face box of each frame. Stick figures and keypoints are brought to the model's
resolution exactly as in training (:func:`pipeline.gan.data.fit_to_size`, :func:`fit_keypoints`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import numpy as np
import torch

from pipeline.gan.checkpoint import tensors_sha256
from pipeline.gan.compiled import AUTO_MIN_FRAMES, compile_in_place, decide_compile, first_call
from pipeline.gan.data import fit_keypoints, fit_to_size, read_rgb
from pipeline.gan.models.face import Box, enhance_face, face_box, face_box_size, face_skipped, load_face_generator
from pipeline.gan.models.generator import image_to_tensor, is_temporal, load_generator, sample_plates, \
    tensor_to_image
from pipeline.gan.runtime import AUTOCAST_DTYPES, choose_precision, pick_device, set_float32_math


log = logging.getLogger(__name__)
R = TypeVar("R")


def _model_record(path: Path, model: torch.nn.Module, config: dict[str, Any], stored: dict[str, Any]
                  ) -> dict[str, Any]:
    """What a model file is: path, weights hash, architecture and the training run that made it (its
    options, inputs' fingerprints and ``training`` record: clips, held-out frames, precision)."""
    return {"path": str(path), "weights_sha256": tensors_sha256(model.state_dict()), "config": config,
            "step": stored.get("step"), "vgg_loss": stored.get("vgg_loss"),
            "training_provenance": stored.get("provenance"), "training_inputs": stored.get("inputs"),
            "training": stored.get("training")}


@dataclass
class Models:
    """A trained generator, optionally its face GAN, on one device."""

    generator: torch.nn.Module
    config: dict[str, Any]
    device: torch.device
    face: torch.nn.Module | None = None
    face_config: dict[str, Any] | None = None
    records: dict[str, Any] | None = None
    precision: str = "fp32"  # resolved: bf16, fp16 or fp32
    precision_reason: str = "requested"  # why (choose_precision)
    compiled: bool = False  # torch.compile (use_compile)
    compile_reason: str = "off: not asked"
    # compiled networks not yet called: their first call compiles (or falls back to eager)
    _uncalled: list[torch.nn.Module] = field(default_factory=list, repr=False)

    def use_compile(self, mode: str, frames: int | None) -> None:
        """Compile the generator and face GAN for ``frames`` frames to come, as ``mode`` (auto, on, off) decides."""
        self.compiled, self.compile_reason = decide_compile(mode, self.device, frames, AUTO_MIN_FRAMES, "frames")
        if self.compiled:
            self._uncalled = [m for m in (self.generator, self.face) if m is not None]
            compile_in_place(self._uncalled)

    def call(self, module: torch.nn.Module, run: Callable[[], R], name: str) -> R:
        """``run()``, which calls ``module``; the first call of a compiled module compiles it (or falls back)."""
        if any(m is module for m in self._uncalled):
            self._uncalled = [m for m in self._uncalled if m is not module]
            return first_call([module], run, name)
        return run()

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) the generator was trained at."""
        return int(self.config["width"]), int(self.config["height"])

    @property
    def temporal(self) -> bool:
        return is_temporal(self.config)

    @property
    def face_box_size(self) -> int:
        if self.face_config is not None:
            return int(self.face_config["box_size"])
        return face_box_size(self.size[1])

    @property
    def amp(self) -> bool:
        return self.precision in AUTOCAST_DTYPES

    @property
    def amp_dtype(self) -> torch.dtype:
        return AUTOCAST_DTYPES.get(self.precision, torch.bfloat16)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to the reduced precision, or nothing (fp32, tf32)."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp else contextlib.nullcontext()


def load_models(generator_path: str | Path, face_path: str | Path | None = None, device: str = "auto",
                precision: str = "auto") -> Models:
    """Load ``generator.pt`` (and ``face.pt``); the face GAN must have been trained at the generator's size."""
    dev = pick_device(device)
    if dev.type == "cuda":
        # One frame size all run long: let cuDNN pick its fastest kernels for it, as training does.
        torch.backends.cudnn.benchmark = True
    generator_path = Path(generator_path)
    stored: dict[str, Any] = {}
    generator, config = load_generator(generator_path, dev, extras=stored)
    if "width" not in config or "height" not in config:
        raise ValueError(f"{generator_path}: generator file lacks its training resolution (width, height)")
    records = {"generator": _model_record(generator_path, generator, config, stored)}
    face = face_config = None
    skipped = face_skipped(face_path) if face_path is not None else None
    if skipped:
        log.info("%s: no face GAN (%s)", face_path, skipped)
        records["face"] = {"path": str(face_path), "skipped": skipped}
    elif face_path is not None:
        face_path = Path(face_path)
        face_stored: dict[str, Any] = {}
        face, face_config = load_face_generator(face_path, dev, extras=face_stored)
        if (face_config.get("width"), face_config.get("height")) != (config["width"], config["height"]):
            raise ValueError(f"{face_path}: face GAN trained at {face_config.get('width')}x{face_config.get('height')}"
                             f" but {generator_path} at {config['width']}x{config['height']}")
        records["face"] = _model_record(face_path, face, face_config, face_stored)
    resolved, reason = choose_precision(precision, dev)
    set_float32_math(resolved)
    return Models(generator, config, dev, face, face_config, records, resolved, reason)


def model_pose(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """A stick-figure image (RGB) at the model's (width, height), fitted as in training."""
    return fit_to_size(read_rgb(Path(path)), *size)


def face_boxes(keypoints: np.ndarray, src_size: tuple[int, int], models: Models) -> list[Box | None]:
    """Face box of each frame of (frames, 137, 3) keypoints given in ``src_size`` pixels, in model pixels."""
    width, height = models.size
    fitted = fit_keypoints(keypoints, src_size[0], src_size[1], width, height)
    return [face_box(k, width, height, models.face_box_size) for k in fitted]


class SequenceBatch:
    """Several frame sequences (clips) through one model at once: each step runs the current frame of
    every sequence given, as one batch.

    Each sequence keeps its own previous output (zeros before its first frame, as in training) and,
    with a plate generator, paints over its own plate: ``plates[k]`` is the training clip whose plate
    sequence ``k`` uses. Instance normalisation works per sample, so a sequence's frames do not
    depend on what else is in the batch (equal up to float rounding). The face GAN then refines each
    frame in its box. Evaluation runs its held-out clips this way (on a GPU a batch of clips keeps the
    device busier than one clip after another); :func:`generate_frames` is the one-sequence case.
    """

    def __init__(self, models: Models, plates: Sequence[int]) -> None:
        from pipeline.gan.models.generator import PlateComposite

        self.models = models
        self.plates = list(plates)
        if isinstance(models.generator, PlateComposite):
            n = len(models.generator.plate)
            bad = [p for p in self.plates if not 0 <= p < n]
            if bad:
                raise ValueError(f"plates {bad} asked of a generator trained with {n} plates")
        self.previous: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def step(self, poses: Mapping[int, np.ndarray], boxes: Mapping[int, Box | None] | None = None, *,
             use_face: bool = True) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """(generator's frame, face-refined frame) per sequence ``k`` in ``poses`` (stick figures, RGB uint8
        at the model size); the two are the same array without a face GAN, ``use_face`` or a box."""
        m = self.models
        keys = list(poses)
        pose = torch.cat([image_to_tensor(poses[k], m.device) for k in keys])
        x = pose
        if m.temporal:
            x = torch.cat([pose, torch.cat([self.previous.get(k, torch.zeros_like(pose[:1])) for k in keys])], dim=1)
        plate = sample_plates(m.generator, [self.plates[k] for k in keys])  # None: not a plate generator
        with m.autocast():
            out = m.call(m.generator, lambda: m.generator(x) if plate is None else m.generator(x, plate),
                         "the generator")
        out = out.float()
        results = {}
        for j, k in enumerate(keys):
            self.previous[k] = out[j:j + 1]
            plain = tensor_to_image(out[j])
            box = boxes.get(k) if boxes is not None else None
            refined = plain
            if use_face and m.face is not None and box is not None:
                with m.autocast():
                    face = m.call(m.face, lambda: enhance_face(m.face, pose[j:j + 1], out[j:j + 1], box),
                                  "the face GAN")
                refined = tensor_to_image(face)
            results[k] = (plain, refined)
        return results

    def finish(self, k: int) -> None:
        """Sequence ``k`` has ended: drop its previous frame."""
        self.previous.pop(k, None)


def generate_frames(models: Models, poses: Iterable[np.ndarray], boxes: Sequence[Box | None] | None = None,
                    *, use_face: bool = True, with_plain: bool = False) -> Iterator[Any]:
    """Frames (RGB uint8 at the model size) for consecutive stick figures (RGB uint8 at the model size).

    The first frame's previous-frame input is zeros, as in training; a plate generator paints over
    the plate :func:`~pipeline.gan.models.generator.select_plate` chose. With ``use_face`` and a face
    GAN loaded, ``boxes[i]`` (None: no face found) is refined. ``with_plain`` yields
    (generator's frame, face-refined frame) pairs from the one generator pass.
    """
    if use_face and models.face is not None and boxes is None:
        raise ValueError("face boxes are needed to run the face GAN")
    sequence = SequenceBatch(models, [getattr(models.generator, "plate_index", 0)])
    for i, pose in enumerate(poses):
        plain, refined = sequence.step({0: pose}, {0: boxes[i]} if boxes is not None else None,
                                       use_face=use_face)[0]
        yield (plain, refined) if with_plain else refined
