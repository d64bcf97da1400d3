"""The published numbers of Chan et al. 2019 ("Everybody Dance Now", arXiv 1808.07371), Tables 1-4.

Source: the paper's Tables 1-4 as quoted to five digits in a lecture presentation of the paper
(Denis Tarasov), checked against the paper's tables (copied from the project's shared
reference ``paper-tables.md``). Their data: ~20 min target videos at 120 fps, a 1024x512 model,
OpenPose keypoints, many GPU-days of training: a reference beside a small model, not a target.
The pixel resolution of their pose distances is not stated in the paper.

Keys: our evaluation row each paper row corresponds to (pix2pixHD = ``frame_by_frame``,
T.S. = ``temporal``, T.S. + Face = ``temporal_face``); values per table and metric/part.
"""

from __future__ import annotations

PAPER_LABEL = "paper (their data, 1024x512)"
PAPER_NAMES = {"frame_by_frame": "pix2pixHD", "temporal": "T.S.", "temporal_face": "T.S. + Face"}
# The paper's joint counts in its table headers: body 23 (BODY_25 less two unnamed joints),
# face 70, hands 21 (per hand), overall 135 = 23 + 70 + 2 x 21.
PAPER_JOINTS = {"body": 23, "face": 70, "hands": 21, "overall": 135}

PAPER_TABLES: dict[str, dict[str, dict[str, float]]] = {
    "body": {  # Table 1: crop to the bounding box of the input pose
        "frame_by_frame": {"ssim": 0.89564, "lpips": 0.03189},
        "temporal": {"ssim": 0.89597, "lpips": 0.03137},
        "temporal_face": {"ssim": 0.89807, "lpips": 0.03066},
    },
    "face": {  # Table 2: crop to the bounding box of the input face
        "frame_by_frame": {"ssim": 0.81374, "lpips": 0.03731},
        "temporal": {"ssim": 0.8177, "lpips": 0.03662},
        "temporal_face": {"ssim": 0.83046, "lpips": 0.03304},
    },
    "pose_distance": {  # Table 3: mean L2 in pixels (resolution not stated)
        "frame_by_frame": {"body": 2.39352, "face": 1.1872, "hands": 3.86359, "overall": 2.0781},
        "temporal": {"body": 2.63446, "face": 1.14348, "hands": 3.76056, "overall": 2.06884},
        "temporal_face": {"body": 2.56743, "face": 0.91636, "hands": 3.29771, "overall": 1.92704},
    },
    "missed_detections": {  # Table 4: mean missed detections per image
        "frame_by_frame": {"body": 0.17864, "face": 0.77796, "hands": 1.67584, "overall": 2.63244},
        "temporal": {"body": 0.15989, "face": 0.56318, "hands": 1.76016, "overall": 2.48323},
        "temporal_face": {"body": 0.15578, "face": 0.47392, "hands": 1.66366, "overall": 2.29336},
    },
}


def paper_value(table: str, row: str, metric: str) -> float | None:
    """The paper's value for one of our rows, or None where the paper has no such row."""
    return PAPER_TABLES.get(table, {}).get(row, {}).get(metric)


def paper_cell(value: float | None) -> str:
    """The paper's number as published (all its digits)."""
    return "n/a" if value is None else f"{value:g}"
