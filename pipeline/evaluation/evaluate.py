"""``edn evaluate``: the paper's evaluation (Chan et al. 2019, section 5) on held-out frames of the target.

The held-out frames are the ones training never saw: the lists in the training record inside the
generator file itself (``training.clips[].held_out_frames``; a run.json beside it is not read),
whose clip fingerprints must match the clips given here, as must those of the face GAN, the
frame-by-frame and the ablation models. Only
those frames and their stick figures are read. From the target's own poses each model makes
the held-out frames (feeding back its previous output from a zero first frame, per clip), and
they are compared with the real frames at the model's resolution:

* Table 1: SSIM and LPIPS (AlexNet) on the crop to the body's bounding box (all present
  keypoints, 10 % margin);
* Table 2: the same on the face box the face GAN works on;
* Table 3: pose distance, the mean L2 in model pixels between keypoints that MediaPipe finds on
  both the real and the generated frame, for body, face, both hands and overall;
* Table 4: missed detections, joints found on the real frame but not on the generated one, per image;
* beyond the paper: the share of held-out frames where MediaPipe finds a body at all (of those
  where it finds one on the real frame), temporal instability, the mean absolute difference
  between consecutive frames, and colour noise, the high-band chroma energy in the body box
  (:func:`pipeline.evaluation.metrics.chroma_highband_energy`), generated against real.

Rows are the ablations asked for: ``frame_by_frame`` (a separate generator trained without the
previous-frame input, ``edn train --no-temporal``, as the paper's frame-by-frame baseline),
``temporal`` (temporal smoothing) and ``temporal_face`` (temporal smoothing + face GAN), and one
row per ablation generator (``--ablation NAME=generator.pt``: the same clips and held-out frames,
other training options, labelled with what differs).

The frames stream: a group of clips at a time, every model generates one frame of each clip per
step as one batch, and each real and generated frame is scored and re-detected (MediaPipe
Holistic, one tracker per sequence) in memory; only the sample grid's few frames are kept. Memory
and temporary disk therefore do not grow with the clips' length.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from pipeline.evaluation.tables import PARTS, ROW_SOURCES, ROWS, _bgr, intro_lines, result_tables, tables_html, \
    tables_markdown, transfer_summaries, transfer_tables, write_samples
from pipeline.gan.data import Clip, fit_keypoints, fit_to_size, load_clip, read_rgb
from pipeline.provenance import atomic_dir, provenance, write_json

log = logging.getLogger(__name__)

BODY_MARGIN = 0.1  # the body crop: keypoints' bounding box grown by this fraction of its size


@dataclass
class HeldOutClip:
    """One clip's held-out frames: their indices, where their images are, and their keypoints in model pixels.

    Images are read one frame at a time while evaluating (:meth:`real`, :meth:`pose`), so memory does
    not grow with the clip's length.
    """

    clip: Clip
    frames: list[int]
    size: tuple[int, int] = (0, 0)
    positions: list[int] = field(default_factory=list)
    keypoints: np.ndarray | None = None

    def real(self, i: int) -> np.ndarray:
        """Held-out frame ``i`` (RGB) at the model's size."""
        return fit_to_size(read_rgb(self.clip.frame_paths[self.positions[i]]), *self.size)

    def pose(self, i: int) -> np.ndarray:
        """Its stick figure (RGB) at the model's size."""
        from pipeline.gan.generate import model_pose

        return model_pose(self.clip.pose_paths[self.positions[i]], self.size)


@dataclass(frozen=True)
class Row:
    """An evaluation row: which loaded model makes it and whether the face GAN refines its frames."""

    name: str
    label: str
    model: str
    face: bool = False


def row_specs(rows: Sequence[str], ablations: dict[str, str] | None = None) -> list[Row]:
    """The configured rows, then one temporal row per ablation generator (labelled with what differs)."""
    specs = [Row(r, ROWS[r], *ROW_SOURCES[r]) for r in rows]
    specs += [Row(name, label, name) for name, label in (ablations or {}).items()]
    return specs


# Training options that do not change what a generator learns: left out of an ablation's label.
_NOT_ABLATED = {"workers", "device", "checkpoint_every", "sample_every", "deterministic", "max_steps", "init_global",
                "vgg_weights"}


def changed_options(main: dict[str, Any], other: dict[str, Any], ignore: Sequence[str] = ()) -> list[str]:
    """"key value (not main's value)" for each training option in which two generators' records differ."""
    main_params = (main.get("training_provenance") or {}).get("params") or {}
    params = (other.get("training_provenance") or {}).get("params") or {}
    return [f"{k} {params[k]} (not {main_params.get(k)})" for k in sorted(params)
            if k not in _NOT_ABLATED and k not in ignore and params[k] != main_params.get(k)]


def ablation_label(name: str, main: dict[str, Any], ablation: dict[str, Any]) -> str:
    """"Temporal smoothing, ablation NAME: key value (main's value) ..." from the two training records."""
    return f"{ROWS['temporal']}, ablation {name}: " + (", ".join(changed_options(main, ablation))
                                                        or "same training options")


def frame_by_frame_label(main: dict[str, Any], frame_by_frame: dict[str, Any]) -> str:
    """The frame-by-frame row's label: the previous-frame input, and any other way its training differs."""
    others = changed_options(main, frame_by_frame, ignore=("temporal",))
    return ROWS["frame_by_frame"] + (f"; also {', '.join(others)}" if others else "")


def stored_record(model: str | Path) -> dict[str, Any]:
    """The records a generator file carries beside its weights (its training record among them)."""
    from pipeline.gan.models.generator import load_generator

    stored: dict[str, Any] = {}
    load_generator(model, extras=stored)
    return stored


def held_out_frames(model: str | Path, clips: Sequence[tuple[str | Path, str | Path, str | Path]],
                    record: dict[str, Any] | None = None) -> tuple[list[list[int]], Path]:
    """The held-out frame indices per clip from the training record inside the model file ``model``
    (``record``: that file's records when already loaded, :func:`pipeline.gan.generate._model_record`),
    never from a run.json that happens to lie beside it; returns them and the file they come from."""
    path = Path(model)
    record = stored_record(path) if record is None else record
    training = record.get("training")
    recorded = training.get("clips") if isinstance(training, dict) else None
    if not isinstance(recorded, list):
        raise ValueError(f"{path}: the model file carries no training record (which frames training held out), "
                         "it was written by an older edn: train it again to evaluate it")
    if len(recorded) != len(clips):
        raise ValueError(f"{path}: trained on {len(recorded)} clips but {len(clips)} are given to evaluate")
    held = [[int(f) for f in (c.get("held_out_frames") or [])] for c in recorded]
    for files, frames in zip(clips, held):
        if not frames:
            params = (record.get("provenance") or record.get("training_provenance") or {}).get("params") or {}
            holdout = f"holdout {params['holdout']:g}" if isinstance(params.get("holdout"), (int, float)) else \
                "a holdout it does not record"
            raise ValueError(f"{path}: no held-out frames for {files[0]}: the model was trained with {holdout}, "
                             "which holds out the last round(frames x holdout) frames of each clip, none of this one; "
                             "train with a larger holdout or on a longer clip to evaluate it")
    return held, path


def check_same_clips(model: Path, clips: list[Clip], record: dict[str, Any] | None = None) -> None:
    """The clips must be the ones the model's training split (frame count, first frame, size, keypoint values),
    by the fingerprints the model file itself records."""
    from pipeline.gan.stage import clip_inputs

    record = stored_record(model) if record is None else record
    inputs = record.get("training_inputs", record.get("inputs"))
    trained = inputs.get("clips") if isinstance(inputs, dict) else None
    now = clip_inputs(clips)
    if trained is None or len(trained) != len(now):
        raise ValueError(f"{model}: the model file records no fingerprints of its {len(now)} training clips "
                         "(inputs.clips)")
    for i, (a, b) in enumerate(zip(trained, now)):
        if a != b:
            raise ValueError(f"{model}: clip {i + 1} ({clips[i].frames_dir}) is not the clip this model was "
                             f"trained on (recorded {a}, found {b}); its held-out frames would not be held out")


def load_held_out(clips: Sequence[tuple[str | Path, str | Path, str | Path]], held: list[list[int]],
                  model: Path, size: tuple[int, int], record: dict[str, Any] | None = None) -> list[HeldOutClip]:
    """Open the clips (checked to be one chain each, and the clips ``model`` was trained on) and locate
    their held-out frames (images are read later, one at a time)."""
    out = []
    for files, frames in zip(clips, held):
        clip = load_clip(*files, check_frame=frames[0])  # the size check reads a held-out frame
        out.append(HeldOutClip(clip, frames, size))
    check_same_clips(model, [h.clip for h in out], record)
    for h in out:
        position = {f: i for i, f in enumerate(h.clip.indices)}
        missing = [f for f in h.frames if f not in position]
        if missing:
            raise ValueError(f"{h.clip.frames_dir}: held-out frames {missing[:5]} are not in the clip")
        h.positions = [position[f] for f in h.frames]
        h.keypoints = fit_keypoints(h.clip.keypoints[h.positions], h.clip.width, h.clip.height, *size)
    return out


def _image_scores(real: np.ndarray, fake: np.ndarray, box: Any, lpips: Any) -> tuple[float, Any]:
    """SSIM and LPIPS of the crop to ``box``; LPIPS as the metric's unsynchronised tensor (or NaN)."""
    from pipeline.evaluation.metrics import crop, ssim

    a, b = crop(_bgr(real), box), crop(_bgr(fake), box)
    if a is None or b is None:
        return math.nan, math.nan
    return ssim(a, b), (lpips(a, b) if lpips is not None else math.nan)


def _chroma_noise(image: np.ndarray, box: Any) -> float:
    """High-band chroma energy of an RGB frame's crop to ``box`` (NaN without a usable crop)."""
    from pipeline.evaluation.metrics import chroma_highband_energy, crop

    part = crop(_bgr(image), box)
    return math.nan if part is None else chroma_highband_energy(part)


def chroma_ratio(generated: Any, real: Any) -> float:
    """Generated over real high-band chroma energy, each the mean over the frames both have (NaN: none)."""
    generated, real = np.asarray(generated, dtype=np.float64), np.asarray(real, dtype=np.float64)
    both = np.isfinite(generated) & np.isfinite(real)
    if not both.any() or real[both].mean() <= 0:
        return math.nan
    return float(generated[both].mean() / real[both].mean())


def body_found(keypoints: np.ndarray) -> np.ndarray:
    """Per frame of (frames, 137, 3) keypoints: whether any body joint was detected."""
    from pipeline.pose.keypoints import BODY

    return (keypoints[:, BODY, 2] > 0).any(axis=1)


_OWNED = r"metrics\.parquet|frames\.parquet|tables\.(md|html)|samples\.png|evaluation\.json"  # what evaluate writes


def _load_row_models(generator: Path, face: Path | None, others: dict[str, Path], device: str, precision: str
                     ) -> dict[str, Any]:
    """The main generator (and face GAN) as "temporal" and each of ``others`` (frame_by_frame, ablations),
    loaded once and checked to be comparable with the main generator."""
    from pipeline.gan.generate import load_models

    models = {"temporal": load_models(generator, face, device, precision)}
    for name, path in others.items():
        models[name] = load_models(path, None, device, precision)
        if name == "frame_by_frame" and models[name].temporal:
            raise ValueError(f"{path}: this generator takes the previous frame; the frame-by-frame row "
                             "needs one trained with `edn train --no-temporal`")
        if models[name].size != models["temporal"].size:
            raise ValueError(f"{path}: trained at {models[name].size}, {generator} at {models['temporal'].size}")
    return models


def evaluate(out_dir: str | Path, clips: Sequence[tuple[str | Path, str | Path, str | Path]], generator: str | Path,
             *, face: str | Path | None = None, frame_by_frame: str | Path | None = None,
             ablations: dict[str, str | Path] | None = None,
             rows: Sequence[str] = ("temporal", "temporal_face"), lpips_weights: str | Path | None = None,
             device: str = "auto", samples: int = 4, precision: str = "auto", clip_batch: int = 4,
             compile: str = "auto", transfers: dict[str, str | Path] | None = None) -> dict[str, Any]:
    """Evaluate on the held-out frames; writes metrics.parquet, frames.parquet, tables.md, tables.html,
    samples.png and evaluation.json into ``out_dir``. Returns the record.

    ``transfers`` maps a source's name to its transfer record (`edn measure-transfer`): a table of each
    transfer's fidelity and coverage follows the held-out tables.
    ``ablations`` maps a row name to a generator trained with other options on the same clips
    (``edn train`` with the same holdout): each becomes a row generated like ``temporal``. The
    held-out frames stream through: ``clip_batch`` clips at a time, one frame of each per step, are
    generated as one batch per model, scored and re-detected (MediaPipe on the frame in memory), so
    memory and temporary disk do not grow with the clips' length.
    """
    import re

    from pipeline.provenance import check_output_dir

    ablations = {name: Path(path) for name, path in (ablations or {}).items()}
    # Refuse a folder that is not ours before the long computation, not only at the end.
    inputs = ((Path(generator),) + tuple(ablations.values())
              + tuple(Path(p) for clip in clips for p in clip))
    check_output_dir(Path(out_dir), "evaluate", re.compile(_OWNED), inputs, marker="evaluation.json")
    import pandas as pd
    import torch

    from pipeline.evaluation.metrics import LPIPS

    rows, face, no_face = _checked_rows(rows, ablations, face, frame_by_frame, clip_batch)
    started = time.perf_counter()
    torch.manual_seed(0)
    others = ({"frame_by_frame": Path(frame_by_frame)} if "frame_by_frame" in rows else {}) | ablations
    models = _load_row_models(Path(generator), face, others, device, precision)
    main_record = models["temporal"].records["generator"]
    specs = row_specs(rows, {name: ablation_label(name, main_record, models[name].records["generator"])
                             for name in ablations})
    if "frame_by_frame" in models:
        specs = [Row(r.name, frame_by_frame_label(main_record, models[r.name].records["generator"]), r.model, r.face)
                 if r.name == "frame_by_frame" else r for r in specs]
    size = models["temporal"].size
    data = _shared_held_out(Path(generator), clips, face, others, models, size)
    for m in models.values():
        m.use_compile(compile, sum(len(h.frames) for h in data))
    lpips = LPIPS.load(lpips_weights, device=str(models["temporal"].device))
    scores = _stream_scores(data, specs, models, lpips, samples, clip_batch)
    per_frame = pd.DataFrame(scores.frame_rows)
    metrics = _metric_rows(scores, specs, lpips is not None)
    table = pd.DataFrame(metrics)
    record = {
        "provenance": provenance("evaluate", {"rows": [r.name for r in specs], "device": str(models["temporal"].device),
                                              "precision": models["temporal"].precision,
                                              "lpips_weights": str(lpips_weights) if lpips_weights else None,
                                              "body_margin": BODY_MARGIN, "seed": 0, "clip_batch": clip_batch}),
        "models": {k: m.records for k, m in models.items()}, "held_out_from": str(generator),
        "precision_reason": models["temporal"].precision_reason,
        "compile": models["temporal"].compiled, "compile_reason": models["temporal"].compile_reason,
        "rows": {r.name: r.label for r in specs},
        "held_out": [{"frames_dir": str(h.clip.frames_dir), "frames": h.frames} for h in data],
        "n_frames": sum(len(h.frames) for h in data), "size": list(size), "lpips": lpips is not None,
        "real_faces_detected": int((scores.real_keypoints[:, 25:95, 2] > 0).any(axis=1).sum()),
        "real_bodies_detected": int(body_found(scores.real_keypoints).sum()),
        "seconds": round(time.perf_counter() - started, 1), "no_face_gan": no_face,
        "transfers": transfer_summaries(transfers or {}),
    }
    out_dir = Path(out_dir)
    _write_evaluation(out_dir, inputs, {r.name: r.label for r in specs}, table, per_frame, scores.samples, record)
    log.info("%s: evaluated %d held-out frames in %.0f s", out_dir, record["n_frames"], record["seconds"])
    return record



def _checked_rows(rows: Sequence[str], ablations: dict[str, Path], face: str | Path | None,
                  frame_by_frame: str | Path | None, clip_batch: int
                  ) -> tuple[list[str], str | Path | None, str | None]:
    """The rows to evaluate, the face GAN and why there is none (a face.pt that records it: its row is left
    out); a row without its model, an unknown row or a badly named ablation is an error."""
    import re

    from pipeline.gan.models.face import face_skipped

    unknown = [r for r in rows if r not in ROWS]
    if unknown or not (rows or ablations):
        raise ValueError(f"unknown or no evaluation rows {unknown or list(rows)} (choose from {list(ROWS)})")
    clashing = [name for name in ablations if name in ROWS or not re.fullmatch(r"[a-z][a-z0-9_]*", name)]
    if clashing:
        raise ValueError(f"ablation row names {clashing} must be lower-case identifiers other than {list(ROWS)}")
    if "temporal_face" in rows and face is None:
        raise ValueError("row temporal_face needs the face GAN (--face face.pt)")
    no_face = face_skipped(face) if face is not None else None
    rows = list(rows)
    if no_face:  # face.pt records why there is no face GAN: the row is left out, and the tables say why
        rows, face = [r for r in rows if r != "temporal_face"], None
    if "frame_by_frame" in rows and frame_by_frame is None:
        raise ValueError("row frame_by_frame needs the model trained without temporal input "
                         "(--frame-by-frame, made by `edn train --no-temporal`)")
    if clip_batch < 1:
        raise ValueError(f"clip_batch must be at least 1, got {clip_batch}")
    return rows, face, no_face


def _shared_held_out(generator: Path, clips: Sequence[tuple[str | Path, str | Path, str | Path]],
                     face: str | Path | None, others: dict[str, Path], models: dict[str, Any],
                     size: tuple[int, int]) -> list[HeldOutClip]:
    """The held-out frames of the main generator's training record, which every other model's own record
    must name too (the same frames of the same clips)."""
    main_record = models["temporal"].records["generator"]
    checked = {generator: main_record} | {path: models[name].records["generator"] for name, path in others.items()}
    if face is not None:
        checked[Path(face)] = models["temporal"].records["face"]
    held, _ = held_out_frames(generator, clips, main_record)
    for path, model_record in list(checked.items())[1:]:
        if held_out_frames(path, clips, model_record)[0] != held:
            raise ValueError(f"{path}: held-out frames differ from {generator}'s; train both with the same holdout "
                             "on the same clips")
    data = load_held_out(clips, held, generator, size, main_record)
    for path, model_record in list(checked.items())[1:]:
        check_same_clips(path, [h.clip for h in data], model_record)
    return data


def _write_evaluation(out_dir: Path, inputs: tuple[Path, ...], labels: dict[str, str], table: Any, per_frame: Any,
                      samples: list[dict[str, np.ndarray]], record: dict[str, Any]) -> None:
    """metrics.parquet, frames.parquet, tables.md, tables.html, samples.png and evaluation.json, all at once."""
    with atomic_dir(out_dir, "evaluate", _OWNED, inputs=inputs, marker="evaluation.json") as tmp_dir:
        for frame, name in ((table, "metrics.parquet"), (per_frame, "frames.parquet")):
            with open(tmp_dir / name, "wb") as f:  # a file object: pyarrow reads a name as a URI
                frame.to_parquet(f, index=False)
        tables = result_tables(table, list(labels), record["lpips"], tuple(record["size"]), labels)
        tables += transfer_tables(record["transfers"])
        intro = intro_lines(record, list(labels))
        (tmp_dir / "tables.md").write_text(tables_markdown(tables, intro))
        (tmp_dir / "tables.html").write_text(tables_html(tables, intro))
        write_samples(tmp_dir / "samples.png", samples, list(labels))
        write_json(tmp_dir / "evaluation.json", record)

@dataclass
class StreamScores:
    """What one streaming pass over the held-out frames leaves: per-frame scores, keypoints, sample frames."""

    frame_rows: list[dict[str, Any]]
    real_keypoints: np.ndarray  # (frames, 137, 3), clips one after another
    keypoints: dict[str, np.ndarray]  # per row, in the same order
    instability: dict[str, float]  # per row, and "real"
    samples: list[dict[str, np.ndarray]]  # the sample grid's frames: pose, real and each row's


def _sample_picks(data: list[HeldOutClip], n: int) -> set[tuple[int, int]]:
    picks = [(c, i) for c, h in enumerate(data) for i in range(len(h.frames))]
    return {picks[k] for k in np.linspace(0, len(picks) - 1, min(n, len(picks))).round().astype(int)}


def _group_steps(data: list[HeldOutClip], group: list[int]) -> Iterator[tuple[int, list[int], dict, dict]]:
    """Step t's real frames and stick figures of the group's clips that have a frame t."""
    for t in range(max(len(data[c].frames) for c in group)):
        active = [c for c in group if t < len(data[c].frames)]
        yield t, active, {c: data[c].real(t) for c in active}, {c: data[c].pose(t) for c in active}


class _ScoreCollector:
    """What the stream leaves, filled a frame at a time: per-frame rows, re-detected keypoints,
    consecutive differences and the sample grid's frames."""

    def __init__(self, data: list[HeldOutClip], specs: list[Row], samples: int) -> None:
        from pipeline.footage.streams import ConsecutiveDifferences
        from pipeline.pose.keypoints import empty_track

        self.data, self.specs = data, specs
        self.picks = _sample_picks(data, samples)
        self.offsets = np.cumsum([0] + [len(h.frames) for h in data])
        self.real_kp = empty_track(int(self.offsets[-1]))
        self.row_kp = {r.name: empty_track(int(self.offsets[-1])) for r in specs}
        self.stability = {name: ConsecutiveDifferences() for name in ["real", *(r.name for r in specs)]}
        self.frame_rows: dict[str, list[dict[str, Any]]] = {r.name: [] for r in specs}
        self.grid: dict[tuple[int, int], dict[str, np.ndarray]] = {}

    def score(self, c: int, t: int, real: np.ndarray, pose: np.ndarray, fakes: dict[str, np.ndarray],
              face_box: Any, lpips: Any) -> dict[str, dict[str, Any]]:
        """Clip c's frame t: every row's image scores against the real frame; returns the rows' entries."""
        from pipeline.evaluation.metrics import LPIPS, keypoint_box

        self.stability["real"].add(real, c)
        body_box = keypoint_box(self.data[c].keypoints[t], BODY_MARGIN)
        chroma_real = _chroma_noise(real, body_box)
        entries = {}
        for r in self.specs:
            fake = fakes[r.name]
            self.stability[r.name].add(fake, c)
            body, face = _image_scores(real, fake, body_box, lpips), _image_scores(real, fake, face_box, lpips)
            entries[r.name] = {"ablation": r.name, "clip": c, "frame": self.data[c].frames[t],
                               "ssim_body": body[0], "lpips_body": body[1], "ssim_face": face[0],
                               "lpips_face": face[1], "body_found": False,
                               "chroma_body": _chroma_noise(fake, body_box), "chroma_body_real": chroma_real}
            self.frame_rows[r.name].append(entries[r.name])
            if (c, t) in self.picks:
                self.grid.setdefault((c, t), {"pose": pose, "real": real})[r.name] = fake
        # The frame's LPIPS values come to the host together: one synchronisation, not one per crop.
        keys = [(name, k) for name in entries for k in ("lpips_body", "lpips_face")]
        for (name, k), value in zip(keys, LPIPS.floats([entries[name][k] for name, k in keys])):
            entries[name][k] = value
        if t == len(self.data[c].frames) - 1:
            for differences in self.stability.values():
                differences.end(c)
        return entries

    def detected(self, c: int, t: int, name: str, joints: np.ndarray | None, entry: dict[str, Any] | None) -> None:
        """MediaPipe's keypoints on clip c's frame t of sequence ``name`` ("real" or a row); None: nobody found."""
        if joints is None:
            return  # stays missing
        k = int(self.offsets[c]) + t
        if name == "real":
            self.real_kp[k] = joints
        else:
            self.row_kp[name][k] = joints
            entry["body_found"] = bool(body_found(joints[None])[0])

    def result(self) -> StreamScores:
        by_clip = [row for r in self.specs
                   for row in sorted(self.frame_rows[r.name], key=lambda f: (f["clip"], f["frame"]))]
        return StreamScores(by_clip, self.real_kp, self.row_kp, {name: s.mean for name, s in self.stability.items()},
                            [self.grid[p] for p in sorted(self.grid)])


def _score_group(data: list[HeldOutClip], group: list[int], specs: list[Row], models: dict[str, Any], lpips: Any,
                 collector: _ScoreCollector, detectors: ThreadPoolExecutor, progress: Any) -> None:
    """One group of clips through generation, scoring and re-detection, a step (one frame per clip) at a time."""
    from pipeline.footage.streams import prefetch
    from pipeline.gan.generate import SequenceBatch, face_boxes
    from pipeline.pose.detect import HolisticTracker

    size = models["temporal"].size
    sources = list(dict.fromkeys(r.model for r in specs))  # each model once, in row order
    refine = {m: any(r.face for r in specs if r.model == m) for m in sources}
    # The face box the face GAN works on (the main model's), also the face crop every row is scored on.
    boxes = {c: face_boxes(data[c].keypoints, size, models["temporal"]) for c in group}
    batches = {m: SequenceBatch(models[m], plates=range(len(data))) for m in sources}
    trackers = {(c, name): HolisticTracker(size) for c in group for name in ["real", *(r.name for r in specs)]}
    try:
        for t, active, real, poses in prefetch(_group_steps(data, group)):  # decoding overlaps the rest
            made = {m: batches[m].step(poses, {c: boxes[c][t] for c in active}, use_face=refine[m]) for m in sources}
            fakes = {c: {r.name: made[r.model][c][1 if r.face else 0] for r in specs} for c in active}
            frames = {(c, "real"): real[c] for c in active} | {(c, name): fake for c in active
                                                               for name, fake in fakes[c].items()}
            # Holistic releases the GIL: every sequence's tracker runs at once, while the scores are taken.
            found = {key: detectors.submit(trackers[key], frame) for key, frame in frames.items()}
            entries = {(c, name): entry for c in active for name, entry
                       in collector.score(c, t, real[c], poses[c], fakes[c], boxes[c][t], lpips).items()}
            for c in active:
                if t == len(data[c].frames) - 1:  # clip c is done: free its state
                    for m in sources:
                        batches[m].finish(c)
            for (c, name), future in found.items():
                collector.detected(c, t, name, future.result(), entries.get((c, name)))
            progress.update(len(active))
    finally:
        for tracker in trackers.values():
            tracker.close()


def _stream_scores(data: list[HeldOutClip], specs: list[Row], models: dict[str, Any], lpips: Any, samples: int,
                   clip_batch: int) -> StreamScores:
    """Generate, score and re-detect every held-out frame, ``clip_batch`` clips at a time, one frame each per step.

    Each model runs the clips of a group as one batch (its own previous frame and plate per clip);
    each real and generated sequence has its own MediaPipe tracker, fed the frames in memory.
    """
    from tqdm import tqdm

    collector = _ScoreCollector(data, specs, samples)
    total = int(collector.offsets[-1])
    with tqdm(total=total, unit="frame", desc="evaluate", mininterval=1.0) as progress, \
            ThreadPoolExecutor(max_workers=max(1, len(os.sched_getaffinity(0)))) as detectors:
        for first in range(0, len(data), clip_batch):
            group = list(range(first, min(first + clip_batch, len(data))))
            _score_group(data, group, specs, models, lpips, collector, detectors, progress)
    for r in specs:
        log.info("%s: generated %d held-out frames", r.label, total)
    return collector.result()


def _metric_rows(scores: StreamScores, specs: list[Row], lpips: bool) -> list[dict[str, Any]]:
    """The tables' values: image scores, pose distance, missed detections, bodies found, instability,
    colour noise."""
    import pandas as pd

    from pipeline.evaluation.metrics import missed_detections, pose_distance

    per_frame = pd.DataFrame(scores.frame_rows)
    real_body = body_found(scores.real_keypoints)
    metrics = []

    def add(table: str, row: Row, metric: str, value: float) -> None:
        metrics.append({"table": table, "ablation": row.name, "label": row.label, "metric": metric,
                        "value": float(value)})

    for r in specs:
        fake = scores.keypoints[r.name]
        for part, value in pose_distance(scores.real_keypoints, fake).items():
            if part in PARTS:
                add("pose_distance", r, part, value)
        for part, value in missed_detections(scores.real_keypoints, fake).items():
            if part in PARTS:
                add("missed_detections", r, part, value)
        # Of the held-out frames where MediaPipe finds a body on the real frame, the share where it finds
        # one on the generated frame too (a generated frame nobody can be seen in scores nothing above).
        add("bodies_found", r, "generated", 100 * body_found(fake)[real_body].mean() if real_body.any() else math.nan)
        add("bodies_found", r, "real", 100 * real_body.mean())
        mine = per_frame[per_frame["ablation"] == r.name]
        for table in ("body", "face"):
            add(table, r, "ssim", mine[f"ssim_{table}"].mean())
            add(table, r, "lpips", mine[f"lpips_{table}"].mean() if lpips else math.nan)
        add("temporal_instability", r, "generated", scores.instability[r.name])
        # Colour noise in the body box: generated frames against the real ones (ratio 1: as grainy as footage).
        add("chroma_noise", r, "generated", np.nanmean(mine["chroma_body"]) if len(mine) else math.nan)
        add("chroma_noise", r, "real", np.nanmean(mine["chroma_body_real"]) if len(mine) else math.nan)
        add("chroma_noise", r, "ratio", chroma_ratio(mine["chroma_body"], mine["chroma_body_real"]))
        add("temporal_instability", r, "real", scores.instability["real"])
    return metrics


# ------------------------------------------------------------------------------------------ tables

def parse_ablations(values: Sequence[str] | None, option: str = "--ablation", path_is: str = "GENERATOR_PT"
                    ) -> dict[str, Path]:
    """``NAME=PATH`` arguments (``option``'s) as a mapping; a malformed or repeated name is an error."""
    out: dict[str, Path] = {}
    for value in values or ():
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"{option} {value!r}: expected NAME={path_is}")
        if name in out:
            raise ValueError(f"{option} {name} given twice")
        out[name] = Path(path)
    return out


def cli(args: argparse.Namespace) -> int:
    evaluate(args.out_dir, [tuple(c) for c in args.clip], args.generator, face=args.face,
             frame_by_frame=args.frame_by_frame, ablations=parse_ablations(args.ablation), rows=args.rows,
             lpips_weights=args.lpips_weights, device=args.device, samples=args.samples, precision=args.precision,
             clip_batch=args.clip_batch, compile=args.compile, transfers=parse_ablations(args.transfer, "--transfer", "RECORD_JSON"))
    return 0
