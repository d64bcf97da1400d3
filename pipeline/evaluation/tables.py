"""The evaluation's tables and sample grid: the paper's Tables 1-4 with its published rows beside ours,
what we add (bodies found, temporal instability, colour noise, the transfers' fidelity), as Markdown
and HTML, and the grid of held-out frames."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROWS = {
    "frame_by_frame": "Frame-by-frame (separate model, no previous-frame input)",
    "temporal": "Temporal smoothing",
    "temporal_face": "Temporal smoothing + Face GAN",
}
# Which loaded model makes each row and whether the face GAN refines its frames: rows of one model
# come from one generator pass (temporal_face is the face GAN on the temporal row's frames).
ROW_SOURCES = {"frame_by_frame": ("frame_by_frame", False), "temporal": ("temporal", False),
               "temporal_face": ("temporal", True)}
PARTS = ("body", "face", "hands", "overall")
# Our joint counts beside the paper's (23 body, 70 face, 21 per hand, 135 overall): MediaPipe has no
# small toes, so our body is BODY_25 less LSmallToe/RSmallToe (23; the paper does not name its two);
# face 70 = 68 OpenPose points mapped from the face mesh + 2 pupils; hands 2 x 21; overall 135 found
# of the 137 columns.
JOINT_NOTE = ("Joint counts: the paper counts body 23 (BODY_25 less two joints it does not name), face 70, "
              "hands 21 per hand, overall 135. Ours: body 23 = BODY_25 less LSmallToe and RSmallToe, which "
              "MediaPipe does not detect; face 70 = the 68 OpenPose face points mapped from MediaPipe's face "
              "mesh plus 2 pupils (iris centres); hands 2 x 21 from MediaPipe's hand models; overall 135 "
              "(137 columns less the two small toes). Our keypoints come from MediaPipe, theirs from OpenPose.")
PAPER_NOTE = ("Rows labelled 'paper (their data, 1024x512)' are the published values of Chan et al. 2019, "
              "Tables 1-4, for pix2pixHD (beside our frame-by-frame row), T.S. (temporal) and T.S. + Face "
              "(temporal + face GAN): their own subjects, ~20 min targets at 120 fps, many GPU-days; a "
              "reference, not a target. Their pose distances' resolution is not stated (model 1024x512).")


Table = tuple[str, list[str], list[list[str]]]  # title, header, rows of cells


def _bgr(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[..., ::-1])


def _fmt(value: float, digits: int) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def result_tables(metrics: Any, rows: Sequence[str], lpips: bool,
                  size: tuple[int, int] | None = None, labels: dict[str, str] | None = None) -> list[Table]:
    """The paper's four tables (and what we add: bodies found, temporal instability, colour noise) as text
    cells, the paper's rows beside ours.

    ``size`` (width, height) is the resolution our pixel distances were measured at; Table 3 then
    also gives them scaled to 512 px height (the height of the paper's model). ``labels`` names rows
    beyond :data:`ROWS` (ablations).
    """
    from pipeline.evaluation.paper_tables import PAPER_LABEL, PAPER_NAMES, paper_cell, paper_value

    names = {**ROWS, **(labels or {})}

    def value(table: str, row: str, metric: str) -> float:
        hit = metrics[(metrics["table"] == table) & (metrics["ablation"] == row) & (metrics["metric"] == metric)]
        return float(hit["value"].iloc[0]) if len(hit) else math.nan

    def paper_rows(table: str, metrics_: Sequence[str]) -> list[list[str]]:
        return [[f"{PAPER_LABEL}: {PAPER_NAMES[r]}"] + [paper_cell(paper_value(table, r, m)) for m in metrics_]
                for r in rows if r in PAPER_NAMES]

    tables: list[Table] = []
    for number, table, where in ((1, "body", "the crop to the body's bounding box"), (2, "face", "the face box")):
        cells = [[names[r], _fmt(value(table, r, "ssim"), 4),
                  _fmt(value(table, r, "lpips"), 4) if lpips else "unavailable"] for r in rows]
        tables.append((f"Table {number}: images, {where}", ["", "SSIM (higher is better)",
                                                            "LPIPS (lower is better)"],
                       cells + paper_rows(table, ("ssim", "lpips"))))
    header = ["", "Body (23)", "Face (70)", "Hands (2 x 21)", "Overall (135)"]
    at = f"at {size[0]}x{size[1]}" if size else "in model pixels"
    distance = [[f"{names[r]} ({at})"] + [_fmt(value("pose_distance", r, p), 2) for p in PARTS] for r in rows]
    if size:
        scale = 512 / size[1]
        distance += [[f"{names[r]} (scaled to 512 px height, x{scale:.3g})"]
                     + [_fmt(value("pose_distance", r, p) * scale, 2) for p in PARTS] for r in rows]
    tables.append((f"Table 3: pose distance (mean L2 in pixels, lower is better; ours measured {at})", header,
                   distance + paper_rows("pose_distance", PARTS)))
    tables.append(("Table 4: missed detections per image (lower is better)", header,
                   [[names[r]] + [_fmt(value("missed_detections", r, p), 2) for p in PARTS] for r in rows]
                   + paper_rows("missed_detections", PARTS)))
    tables.append(("Beyond the paper: frames where MediaPipe finds a body (%, higher is better)",
                   ["", "Generated (of the frames with a body found in the real frame)", "Real footage"],
                   [[names[r], _fmt(value("bodies_found", r, "generated"), 1),
                     _fmt(value("bodies_found", r, "real"), 1)] for r in rows]))
    tables.append(("Beyond the paper: temporal instability (mean absolute difference of consecutive frames, "
                   "0-255)", ["", "Generated", "Real footage"],
                   [[names[r], _fmt(value("temporal_instability", r, "generated"), 2),
                     _fmt(value("temporal_instability", r, "real"), 2)] for r in rows]))
    tables.append(("Beyond the paper: colour noise in the body box (high-band chroma energy: mean squared "
                   "Laplacian of Cr and Cb; lower is better, real footage is the floor)",
                   ["", "Generated", "Real footage", "Generated / real"],
                   [[names[r], _fmt(value("chroma_noise", r, "generated"), 2),
                     _fmt(value("chroma_noise", r, "real"), 2), _fmt(value("chroma_noise", r, "ratio"), 2)]
                    for r in rows]))
    return tables


def intro_lines(record: dict[str, Any], rows: Sequence[str]) -> list[str]:
    clips = "; ".join(f"{Path(h['frames_dir']).name}: frames {h['frames'][0]}-{h['frames'][-1]}"
                      for h in record["held_out"])
    lines = [f"{record['n_frames']} held-out frames that training never saw ({clips}), generated from the "
             f"target's own poses and compared with the real frames at the model's resolution "
             f"({record['size'][0]}x{record['size'][1]}). Each clip's sequence starts from a zero previous frame."]
    if "frame_by_frame" in rows:
        lines.append("Frame-by-frame is a separate generator trained without the previous-frame input "
                     "(`edn train --no-temporal`, single-frame discriminator), as the paper's baseline.")
    if not record["lpips"]:
        lines.append("LPIPS is unavailable: the pretrained AlexNet weights were not found (see the log); it is "
                     "never computed with random weights.")
    ablations = [r for r in rows if r not in ROWS]
    if ablations:
        lines.append("Ablation rows (" + ", ".join(ablations) + ") are generators trained on the same clips, held-out "
                     "frames and budget with the options their label names changed; they are generated like the "
                     "temporal row.")
    if record.get("no_face_gan"):
        lines.append(f"No Face GAN row: {record['no_face_gan']}.")
    if record["real_faces_detected"] == 0:
        lines.append("No face keypoints were found on the real frames, so face pose distance and misses are n/a.")
    lines += [PAPER_NOTE, JOINT_NOTE]
    return lines


def transfer_summaries(records: dict[str, str | Path]) -> dict[str, Any]:
    """Each source's transfer fidelity and coverage summary, read from its transfer record."""
    out = {}
    for name, path in records.items():
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read the transfer record ({exc})") from exc
        fidelity = record.get("fidelity")
        if not fidelity:
            raise ValueError(f"{path}: the transfer record has no fidelity (written by `edn measure-transfer`?)")
        out[name] = {"fidelity": {k: v for k, v in fidelity.items() if k != "per_frame"},
                     "coverage": record.get("coverage")}
    return out


def transfer_tables(summaries: dict[str, Any]) -> list[Table]:
    """The transfers' fidelity (re-detected poses against the poses given) and coverage, a row per source."""
    if not summaries:
        return []

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.0f}"

    rows, relation_rows = [], []
    for name, s in summaries.items():
        f, c = s["fidelity"], s["coverage"] or {}
        rows.append([name, str(f["frames"]), pct(f["body_found_share"]), pct(f.get("pck_given")), pct(f["pck"]),
                     _fmt(f["median_joint_error"], 3), pct(c.get("uncovered_share"))])
        r = f.get("coverage_relation")
        if r:
            relation_rows.append([name, f"{pct(r['covered']['body_found_share'])} / "
                                        f"{pct(r['uncovered']['body_found_share'])}",
                                  f"{_fmt(r['covered']['median_joint_error'], 3)} / "
                                  f"{_fmt(r['uncovered']['median_joint_error'], 3)}",
                                  f"{r['covered']['frames']} / {r['uncovered']['frames']}",
                                  _fmt(r["spearman_distance_error"], 2)])
    tables: list[Table] = [(
        "Transfer: poses re-detected on the generated frames against the poses given (no real frame exists)",
        ["source", "frames", "body found %", "PCK@0.1 of the joints given %", "PCK@0.1 of the joints found %",
         "median joint error of the joints found (body heights)",
         "frames uncovered by the target's poses %"], rows)]
    if relation_rows:
        tables.append(("Transfer: do uncovered poses fail? (covered / uncovered frames)",
                       ["source", "body found %", "median joint error", "frames", "rank correlation of coverage "
                        "distance and error"], relation_rows))
    return tables


def tables_markdown(tables: list[Table], intro: list[str]) -> str:
    out = ["# Evaluation on held-out frames", "", *[f"{line}\n" for line in intro]]
    for title, header, cells in tables:
        out += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(row) + " |" for row in cells]
        out.append("")
    return "\n".join(out)


def tables_html(tables: list[Table], intro: list[str]) -> str:
    style = ("body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1.5em}"
             "td,th{border:1px solid #bbb;padding:.3em .7em;text-align:right}td:first-child{text-align:left}")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Evaluation</title><style>{style}</style>"
             "</head><body><h1>Evaluation on held-out frames</h1>"]
    parts += [f"<p>{html.escape(line)}</p>" for line in intro]
    for title, header, cells in tables:
        parts.append(f"<h2>{html.escape(title)}</h2><table><tr>"
                     + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells]
        parts.append("</table>")
    return "\n".join(parts + ["</body></html>\n"])


def write_samples(path: Path, samples: list[dict[str, np.ndarray]], rows: Sequence[str]) -> None:
    """A grid of held-out frames: stick figure | each row's result | real frame, labelled on top."""
    import cv2

    from pipeline.footage.images import write_image
    from pipeline.footage.video import side_by_side

    grid = np.vstack([side_by_side(*[_bgr(frames[k]) for k in ["pose", *rows, "real"]]) for frames in samples])
    width = samples[0]["pose"].shape[1]
    label = np.full((28, grid.shape[1], 3), 255, np.uint8)
    for k, name in enumerate(["pose", *rows, "real"]):
        cv2.putText(label, name.replace("_", " "), (k * width + 4, 19), cv2.FONT_HERSHEY_SIMPLEX,
                    min(0.5, width / 260), (0, 0, 0), 1, cv2.LINE_AA)
    if not write_image(path, np.vstack([label, grid])):
        raise RuntimeError(f"{path}: cannot write sample grid")
