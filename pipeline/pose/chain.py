"""Frames, keypoints and stick figures that belong together: one chain from one video.

Each piece records what it was made from, and the stages that take several pieces at once
(``edn train``, ``train-face``, ``transfer``, ``evaluate``) check the records before any work:

* a frames folder's ``meta.json`` holds the record of the extraction that made it (``provenance``:
  the video, the command, the time);
* a keypoint file carries its lineage (``upstream`` then ``provenance``, see
  :func:`pipeline.pose.keypoints.chain_provenance`), which starts with the record of the frames it
  was detected on, whatever smoothing and normalization followed;
* a stick-figure folder's ``meta.json`` names the keypoints it drew (``keypoints``: their path, the
  stage that wrote them and :func:`keypoints_fingerprint` of their values).

:func:`check_chain` refuses stick figures drawn from other keypoints and keypoints detected on other
frames, naming both files and what differs. A piece made without these records (by hand, or by an
older edn) cannot be checked: a warning names it and the piece is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.pose.keypoints import KeypointTrack, present

log = logging.getLogger(__name__)

RENDER_KEY = "keypoints"  # the entry of a stick-figure folder's meta.json naming the keypoints drawn


def keypoints_fingerprint(track: KeypointTrack) -> str:
    """sha256 of a track's frame numbers and values (missing joints as zeros): the same keypoints give
    the same fingerprint whatever file or metadata they travel in."""
    data = np.where(present(track.data)[..., None], track.data, np.float32(0)).astype("<f4")
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(track.frames, dtype="<i4").tobytes())
    digest.update(np.ascontiguousarray(data).tobytes())
    return digest.hexdigest()


def lineage(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """A keypoint file's records, oldest first: its ``upstream`` then its own ``provenance``."""
    records = list(meta.get("upstream") or []) + [meta.get("provenance")]
    return [r for r in records if isinstance(r, dict)]


def render_record(track: KeypointTrack, keypoints_path: str | Path | None) -> dict[str, Any]:
    """What a stick-figure folder records of the keypoints it drew."""
    made_by = track.meta.get("provenance")
    return {"path": None if keypoints_path is None else str(keypoints_path),
            "stage": made_by.get("stage") if isinstance(made_by, dict) else None,
            "fingerprint": keypoints_fingerprint(track)}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _made(record: dict[str, Any]) -> str:
    return f"`{record.get('command') or record.get('stage')}` at {record.get('created', 'an unrecorded time')}"


def check_chain(keypoints_path: str | Path, track: KeypointTrack, *, frames_dir: str | Path | None = None,
                frames_meta: dict[str, Any] | None = None, render_dir: str | Path | None = None) -> None:
    """Refuse keypoints detected on other frames than ``frames_dir`` and stick figures in ``render_dir``
    drawn from other keypoints than ``track`` (read from ``keypoints_path``): ValueError naming both.

    ``frames_meta``: the frames folder's meta.json when the caller has read it already.
    """
    keypoints_path = Path(keypoints_path)
    unchecked = []
    if render_dir is not None:
        render_dir = Path(render_dir)
        drawn = (_read_json(render_dir / "meta.json") or {}).get(RENDER_KEY)
        if not isinstance(drawn, dict) or not drawn.get("fingerprint"):
            unchecked.append(f"{render_dir} does not record which keypoints it drew")
        elif drawn["fingerprint"] != keypoints_fingerprint(track):
            raise ValueError(f"{render_dir}: stick figures drawn from other keypoints than {keypoints_path} "
                             f"(drawn from {drawn.get('path')}, written by `edn {drawn.get('stage')}`, whose values "
                             f"differ); give the keypoints they were drawn from, or render {keypoints_path} with "
                             "`edn render`")
    if frames_dir is not None:
        frames_dir = Path(frames_dir)
        if frames_meta is None:
            frames_meta = _read_json(frames_dir / "meta.json") or {}
        frames_record = frames_meta.get("provenance")
        records = lineage(track.meta)
        if not isinstance(frames_record, dict):
            unchecked.append(f"{frames_dir}/meta.json does not record what made the frames")
        elif not (same_stage := [r for r in records if r.get("stage") == frames_record.get("stage")]):
            unchecked.append(f"{keypoints_path} does not record the frames it was detected on")
        elif frames_record not in records:
            raise ValueError(f"{keypoints_path}: keypoints detected on other frames than {frames_dir}: theirs were "
                             f"made by {_made(same_stage[0])}, these ({frames_meta.get('source', 'no source recorded')})"
                             f" by {_made(frames_record)}; give the keypoints detected on these frames")
    for why in unchecked:
        log.warning("%s: cannot check that frames, stick figures and keypoints are one chain (%s: made by hand "
                    "or by an older edn)", keypoints_path, why)
