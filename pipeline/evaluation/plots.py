"""Figures for the report: keypoint tracks, normalization diagnostics, limb proportions."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.pose.keypoints import J, KeypointTrack, read_keypoints
from pipeline.provenance import PNG_KEY, atomic_path, provenance

TRACK_JOINTS = ("Nose", "RWrist", "LWrist", "RAnkle", "LAnkle")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on clusters or CI
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: str | Path) -> None:
    import json

    # Provenance in a text chunk: the output rule (provenance.check_outputs) replaces only its own figures.
    record = json.dumps({"provenance": provenance("plot", {"out": str(out)})}, sort_keys=True, default=str)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png", metadata={PNG_KEY: record})
    _pyplot().close(fig)


def plot_tracks(raw: KeypointTrack, smooth: KeypointTrack, out: str | Path,
                joints: Sequence[str] = TRACK_JOINTS) -> None:
    """x and y over time of a few joints, raw (dots) against smoothed (line)."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(joints), 2, figsize=(10, 1.8 * len(joints)), sharex=True, squeeze=False)
    for row, name in enumerate(joints):
        j = J[name]
        for col, axis in enumerate("xy"):
            ax = axes[row, col]
            ax.plot(raw.frames, raw.data[:, j, col], ".", ms=3, color="0.6", label="raw")
            ax.plot(smooth.frames, smooth.data[:, j, col], "-", lw=1.2, color="C0", label="smoothed")
            ax.set_ylabel(f"{name} {axis} (px)", fontsize=8)
            if axis == "y":
                ax.invert_yaxis()  # image y grows downward
    axes[0, 0].legend(fontsize=8, loc="best")
    for ax in axes[-1]:
        ax.set_xlabel("frame")
    fig.suptitle("Keypoint tracks: raw detections and median pre-smoothing")
    _save(fig, out)


def plot_normalization(normalized: KeypointTrack, source_stats: dict[str, Any], target_stats: dict[str, Any],
                       out: str | Path) -> None:
    """Ankle-height histograms with far/near and the heights there, and the per-frame mapping."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for ax, (name, stats) in zip(axes[:2], (("source", source_stats), ("target", target_stats))):
        hist = stats["histogram"]
        edges = np.asarray(hist["edges"], dtype=float)
        ax.stairs(hist["counts_all"], edges, color="0.6", label="all frames")
        ax.stairs(hist["counts_ground"], edges, color="C0", fill=True, alpha=0.5, label="feet on the ground")
        for key, colour in (("far", "C2"), ("near", "C3")):
            ax.axvline(stats[f"ankle_{key}"], color=colour, lw=1.5,
                       label=f"{key}: y {stats[f'ankle_{key}']:.0f}, height {stats[f'height_{key}']:.0f} px")
        ax.set_xlabel("ankle y (px, larger = nearer the camera)")
        ax.set_ylabel("frames")
        ax.set_title(f"{name}: {stats['n_ground_frames']} of {stats['n_frames']} frames grounded", fontsize=9)
        ax.legend(fontsize=7)
    mapping = normalized.meta.get("mapping")
    if not mapping:
        raise ValueError("normalized keypoints carry no 'mapping' metadata (not written by `edn normalize`)")
    ax = axes[2]
    y = np.array([np.nan if v is None else v for v in mapping["ankle_y"]], dtype=float)
    y2 = np.array([np.nan if v is None else v for v in mapping["mapped_ankle_y"]], dtype=float)
    k = np.asarray(mapping["k"], dtype=float)
    ax.plot(y, y2, ".", ms=3, color="C0", label="frames: source ankle y -> target ankle y")
    ax.set_xlabel("source ankle y (px)")
    ax.set_ylabel("mapped ankle y (px)", color="C0")
    twin = ax.twinx()
    twin.plot(y, k, ".", ms=2, color="C1")
    twin.set_ylabel("scale k", color="C1")
    params = normalized.meta.get("normalize", {})
    ax.set_title(f"mapping ({params.get('method', '?')}); scale k {np.nanmin(k):.2f}-{np.nanmax(k):.2f}",
                 fontsize=9)
    fig.suptitle("Global pose normalization (Chan et al. 2019, sec. 3.2)")
    notes = [f"{name} stats fallback: {stats['fallback']}" for name, stats in
             (("source", source_stats), ("target", target_stats)) if stats.get("fallback")]
    if notes:  # a visible warning: the mapping uses one scale, not the paper's two
        fig.text(0.5, -0.02, "\n".join(notes), ha="center", va="top", fontsize=9, color="C3", weight="bold")
    _save(fig, out)


def bone_ratio_table(normalized: KeypointTrack, target_stats: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per bone, (normalized length / mapped height) over the target's, after the paper's mapping
    and after retargeting (computed here when the file was made with the paper method)."""
    from pipeline.pose.retarget import bone_length_ratios, retarget_track

    meta = normalized.meta
    if "bone_ratios_before" in meta:
        return {"paper": meta["bone_ratios_before"], "retarget": meta["bone_ratios_after"]}
    mapping = meta.get("mapping") or {}
    p = np.asarray(mapping["p"], dtype=float) if "p" in mapping else None
    retargeted = retarget_track(normalized, target_stats, p=p)
    return {"paper": bone_length_ratios(normalized, target_stats, p=p),
            "retarget": bone_length_ratios(retargeted, target_stats, p=p)}


def plot_bone_ratios(normalized: KeypointTrack, target_stats: dict[str, Any], out: str | Path) -> None:
    """Horizontal bars: each bone's length relative to the target's, before and after retargeting."""
    table = bone_ratio_table(normalized, target_stats)
    bones = [b for b in table["paper"] if table["paper"][b] is not None or table["retarget"][b] is not None]
    if not bones:
        raise ValueError("no bone seen in both the normalized source and the target")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(bones) + 1.2))
    rows = np.arange(len(bones))
    for offset, (method, colour) in zip((-0.2, 0.2), (("paper", "C0"), ("retarget", "C1"))):
        values = [np.nan if table[method][b] is None else table[method][b] for b in bones]
        ax.barh(rows + offset, values, height=0.4, color=colour, label="paper mapping" if method == "paper" else "paper mapping + retargeting")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(rows, bones, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("bone length / target's (1 = the target's proportion)")
    ax.legend(fontsize=8)
    ax.set_title(f"Limb proportions of {normalized.meta.get('provenance', {}).get('params', {}).get('source', 'source')}",
                 fontsize=9)
    _save(fig, out)


def plot_qc(verdicts: Sequence[tuple[str, dict[str, np.ndarray], dict[str, Any]]], out: str | Path) -> None:
    """Pose QC over time: per QC file a verdict strip (ok / implausible / break) and its scores."""
    plt = _pyplot()
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(2 * len(verdicts), 1, figsize=(11, 2.6 * len(verdicts)), squeeze=False,
                             gridspec_kw={"height_ratios": [1, 3] * len(verdicts)})
    for k, (name, columns, meta) in enumerate(verdicts):
        strip, ax = axes[2 * k, 0], axes[2 * k + 1, 0]
        frames = columns["frame"]
        ok, plausible, brk = (columns[c].astype(bool) for c in ("ok", "plausible", "break"))
        handles = []
        for mask, colour, label in ((ok, "C2", "ok"), (~plausible, "C3", "implausible"),
                                    (plausible & brk, "C1", "jump / person change")):
            strip.bar(frames[mask], np.ones(mask.sum()), width=1.0, color=colour)
            handles.append(Patch(color=colour, label=f"{label} ({mask.sum()})"))  # also for empty classes
        strip.set_yticks([])
        strip.set_xlim(frames.min() - 0.5 if len(frames) else 0, frames.max() + 0.5 if len(frames) else 1)
        strip.legend(handles=handles, fontsize=7, ncol=3, loc="lower right", bbox_to_anchor=(1, 1.0), frameon=False)
        strip.set_title(f"{name}: {int((~ok).sum())} of {len(frames)} frames not ok", fontsize=9, loc="left")
        th = meta.get("thresholds", {})
        for column, colour, limit in (("max_limb_ratio", "C0", th.get("limb_long")),
                                      ("box_ratio", "C4", th.get("box_factor")),
                                      ("scale_change", "C5", th.get("scale_change"))):
            ax.plot(frames, columns[column], lw=1, color=colour, label=column.replace("_", " "))
            if limit is not None:
                ax.axhline(limit, color=colour, lw=0.8, ls="--")
        twin = ax.twinx()
        # Temporal scores over their thresholds, so one dotted line at 1 serves all three.
        for column, colour, limit, label in (("jump", "0.4", th.get("jump_speed"), "body speed / jump_speed"),
                                             ("moved_fraction", "C6", th.get("switch_joints"),
                                              "fraction of joints jumping / switch_joints"),
                                             ("spike", "C8", 1.0, "joint spike / its limit")):
            if column in columns and limit:
                twin.plot(frames, np.asarray(columns[column], dtype=float) / limit, lw=1, color=colour, label=label)
        twin.axhline(1.0, color="0.3", lw=0.8, ls=":")
        twin.set_ylabel("score / threshold (dotted: 1)", fontsize=8)
        twin.legend(fontsize=7, ncol=2, loc="upper right")
        ax.set_ylabel("ratio to bound", fontsize=8)
        ax.legend(fontsize=7, ncol=3, loc="upper left")
        ax.set_xlim(strip.get_xlim())
    axes[-1, 0].set_xlabel("frame")
    fig.suptitle("Pose quality control (dashed, dotted: thresholds)")
    fig.tight_layout()
    _save(fig, out)


def cli_qc(args: argparse.Namespace) -> int:
    from pipeline.pose.quality import read_qc

    plot_qc([(label, *read_qc(path)) for label, path in (("raw detections", args.raw_qc),
                                                          ("smoothed", args.smooth_qc))], args.out)
    return 0


def cli_tracks(args: argparse.Namespace) -> int:
    plot_tracks(read_keypoints(args.raw), read_keypoints(args.smooth), args.out)
    return 0


def cli_normalization(args: argparse.Namespace) -> int:
    from pipeline.pose.stats import load_stats

    plot_normalization(read_keypoints(args.normalized), load_stats(args.source_stats),
                       load_stats(args.target_stats), args.out)
    return 0


def cli_bones(args: argparse.Namespace) -> int:
    from pipeline.pose.stats import load_stats

    plot_bone_ratios(read_keypoints(args.normalized), load_stats(args.target_stats), args.out)
    return 0


def plot_losses(runs: Sequence[tuple[str, str | Path]], out: str | Path) -> None:
    """Per training run (``losses.csv``): generator losses and discriminator losses against the step."""
    import pandas as pd

    import json

    tables, skipped = [], []
    for name, run_dir in runs:
        path = Path(run_dir) / "losses.csv"
        run = Path(run_dir) / "run.json"
        reason = json.loads(run.read_text()).get("skipped") if not path.is_file() and run.is_file() else None
        if reason:  # a run that decided not to train (no Face GAN without faces): said on the figure
            skipped.append(f"{name}: not trained ({reason})")
            continue
        if not path.is_file():
            raise FileNotFoundError(f"{path}: loss log not found (written by `edn train` / `edn train-face`)")
        table = pd.read_csv(path)
        if table.empty or "step" not in table:
            raise ValueError(f"{path}: no loss rows")
        tables.append((name, table))
    plt = _pyplot()
    fig, axes = plt.subplots(max(1, len(tables)), 2, figsize=(11, 2.8 * max(1, len(tables))), squeeze=False)
    if not tables:
        for ax in axes[0]:
            ax.set_axis_off()
    for row, (name, table) in enumerate(tables):
        window = max(1, len(table) // 40)  # a running mean shows the trend through the GAN noise
        for col, prefix in enumerate(("G", "D")):
            ax = axes[row, col]
            columns = [c for c in table.columns if c.startswith(prefix) or (prefix == "G" and c.startswith("L1"))]
            for k, column in enumerate(columns):
                ax.plot(table["step"], table[column], color=f"C{k}", alpha=0.2, lw=0.6)
                ax.plot(table["step"], table[column].rolling(window, min_periods=1).mean(), color=f"C{k}",
                        lw=1.3, label=column)
            ax.set_title(f"{name}: {'generator' if prefix == 'G' else 'discriminator'} "
                         f"(dark: running mean of {window} steps)", fontsize=9)
            ax.set_xlabel("step")
            ax.set_yscale("log")  # feature matching is ~10x the other terms
            ax.legend(fontsize=7, ncol=2)
    fig.suptitle("Training losses (light: every step)" + "".join(f"\n{line}" for line in skipped), fontsize=9)
    fig.tight_layout()
    _save(fig, out)


def plot_stability(record: dict[str, Any], real_dirs: Sequence[str | Path], out: str | Path) -> None:
    """Consecutive-frame differences of a generated video against the target's real footage."""
    from pipeline.footage.extract import list_frames
    from pipeline.footage.streams import consecutive_differences
    from pipeline.gan.data import fit_to_size, read_rgb

    generated = np.asarray(record.get("consecutive_differences") or [], dtype=float)
    if generated.size == 0:
        raise ValueError("the transfer record has no consecutive_differences (fewer than two frames?)")
    width, height = record["size"]
    # Real frames at the model's resolution, as the generator made its frames.
    real = np.asarray([d for folder in real_dirs for d in consecutive_differences(
        fit_to_size(read_rgb(p), width, height) for p in list_frames(folder))], dtype=float)
    if real.size == 0:
        raise ValueError(f"no consecutive real frames in {', '.join(map(str, real_dirs))}")
    plt = _pyplot()
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(12, 3.6), gridspec_kw={"width_ratios": [2, 1]})
    seconds = np.arange(1, generated.size + 1) / float(record["fps"])
    ax.plot(seconds, generated, color="C3", lw=1, label=f"generated (mean {generated.mean():.2f})")
    ax.axhline(real.mean(), color="C0", lw=1.5, label=f"real footage of the target (mean {real.mean():.2f})")
    ax.axhspan(np.percentile(real, 10), np.percentile(real, 90), color="C0", alpha=0.15,
               label="real: 10th-90th percentile")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mean |frame t - frame t-1| (0-255)")
    ax.legend(fontsize=7)
    bins = np.linspace(0, max(generated.max(), real.max()) * 1.05, 30)
    hist.hist(real, bins=bins, density=True, color="C0", alpha=0.5, label="real")
    hist.hist(generated, bins=bins, density=True, color="C3", alpha=0.5, label="generated")
    hist.set_xlabel("consecutive-frame difference")
    hist.legend(fontsize=7)
    follows = record.get("follows_source")
    fig.suptitle(f"Temporal stability at {width}x{height}, {record['fps']:.6g} fps "
                 f"({generated.size + 1} generated frames, {real.size + len(real_dirs)} real)"
                 + (f"; follows the source in {follows:.0%} of frames (the rest repaired by pose QC)"
                    if follows is not None else ""))
    fig.tight_layout()
    _save(fig, out)


def cli_losses(args: argparse.Namespace) -> int:
    plot_losses([(name, Path(folder)) for name, folder in args.run], args.out)
    return 0


def cli_stability(args: argparse.Namespace) -> int:
    import json

    try:
        record = json.loads(Path(args.record).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{args.record}: cannot read the transfer record ({exc})") from exc
    plot_stability(record, args.real, args.out)
    return 0


def plot_transfer(record: dict[str, Any], out: str | Path) -> None:
    """A transfer's fidelity over time (body found, PCK, joint error) above its coverage distance."""
    from pipeline.evaluation.fidelity import percent

    fidelity = record.get("fidelity")
    if not fidelity:
        raise ValueError("the transfer record has no fidelity (not written by `edn measure-transfer`?)")
    frames = fidelity["per_frame"]
    t = np.asarray(frames["frame"])
    found = np.asarray(frames["body_found"], dtype=bool)

    def values(key: str) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in frames.get(key, [])], dtype=float)

    plt = _pyplot()
    cover = "coverage_distance" in frames
    fig, axes = plt.subplots(3 if cover else 2, 1, figsize=(11, 6.5 if cover else 4.5), sharex=True)
    ax = axes[0]
    ax.bar(t, np.ones(len(t)), width=1.0, color=np.where(found, "#4caf50", "#e53935"), alpha=0.35)
    ax.plot(t, values("pck_given"), color="C0", lw=1, label=f"PCK@{fidelity['pck_threshold']:g} of the joints given")
    ax.plot(t, values("pck"), color="C1", lw=0.8, ls=":", label="of the joints found")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("share")
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(f"body found (green) or lost (red) in {fidelity['body_found_share']:.0%} of frames, "
                 f"PCK {percent(fidelity.get('pck_given'))} of the joints given ({percent(fidelity['pck'])} of those "
                 "found)", fontsize=9)
    ax = axes[1]
    ax.plot(t, values("joint_error"), ".", ms=3, color="C3", label="median joint error")
    ax.axhline(fidelity["pck_threshold"], color="0.4", lw=1, ls="--", label="PCK threshold")
    ax.set_ylabel("body heights")
    ax.legend(fontsize=7, loc="upper left")
    if cover:
        ax = axes[2]
        distance = values("coverage_distance")
        uncovered = np.asarray(frames["uncovered"], dtype=bool)
        ax.plot(t, distance, color="C1", lw=1, label="coverage distance (limb tolerances)")
        ax.axhline(1.0, color="0.4", lw=1, ls="--", label="threshold: a limb beyond its width")
        ax.fill_between(t, 0, np.nanmax(distance, initial=1.0) if np.isfinite(distance).any() else 1.0,
                        where=uncovered, color="C1", alpha=0.12, step="mid", label="uncovered frames")
        ax.set_ylabel("distance")
        ax.legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel("source frame")
    fig.suptitle(f"Transfer fidelity: poses re-detected on the generated frames against the poses given "
                 f"({len(t)} frames)")
    fig.tight_layout()
    _save(fig, out)


def cli_transfer(args: argparse.Namespace) -> int:
    import json

    try:
        record = json.loads(Path(args.record).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{args.record}: cannot read the transfer record ({exc})") from exc
    plot_transfer(record, args.out)
    return 0
