# Helpers of the pose rules (workflow/rules/pose.smk): detection chunks and options, qc and render flags,
# and what the pose half makes (pose_targets, the Snakefile's `all` and `pose`).


def detect_options(wildcards):
    """OpenPose JSON from the sheet wins over the configured backend."""
    json_dir = VIDEOS.loc[wildcards.video, "openpose_json"]
    if json_dir:
        # one word with its option: a folder whose name starts with "-" is not read as an option
        return f"--backend openpose-json {shlex.quote('--json-dir=' + json_dir)}"
    return f"--backend {config['detect']['backend']}"


def n_chunks(video):
    """Detection chunks of a video: its frame count (extract's meta.json, a checkpoint) / chunk_frames."""
    import json

    frames_dir = checkpoints.extract.get(video=video).output[0]
    n_frames = json.loads((Path(frames_dir) / "meta.json").read_text())["frame_count"]
    return -(-n_frames // config["detect"]["chunk_frames"])


def detect_chunks(wildcards):
    return [f"results/keypoints/{wildcards.video}/chunks/{i}.parquet" for i in range(n_chunks(wildcards.video))]


def chunk_range(wildcards):
    """`--start S --stop E` of chunk i; the last chunk runs to the video's end."""
    size, i = config["detect"]["chunk_frames"], int(wildcards.chunk)
    stop = "" if i == n_chunks(wildcards.video) - 1 else f" --stop {(i + 1) * size}"
    return f"--start {i * size}{stop}"


def subject_clips(wildcards):
    return [f"results/keypoints/{v}/smooth.parquet" for v in TARGETS.index[TARGETS["subject"] == wildcards.subject]]


def pose_targets():
    """Everything the pose half of the workflow makes."""
    targets = [f"results/render/{v}" for v in TARGETS.index]
    targets += [f"results/render_transfer/{s}/{t}" for s, t in transfer_pairs()]
    targets += [f"results/plots/tracks/{v}.png" for v in VIDEOS.index]
    targets += [f"results/plots/qc/{v}.png" for v in VIDEOS.index]
    targets += [f"results/plate/{v}/plate.json" for v in TARGETS.index]  # shown in the report
    targets += [f"results/plots/{kind}/{s}/{t}.png" for s, t in transfer_pairs() for kind in ("normalization", "bones")]
    targets += [f"results/coverage/{s}/{t}.json" for s, t in transfer_pairs()]
    targets += [f"results/coverage/target/{t}.json" for t in SUBJECTS]
    return targets


def subject_keypoints(wildcards):
    """The smoothed keypoints of every clip of the subject, in the training's clip order."""
    return [f"results/keypoints/{v}/smooth.parquet" for v in TARGETS.index[TARGETS["subject"] == wildcards.subject]]


def qc_flags():
    """`edn qc` thresholds from config['qc'] (max_repair_gap and max_repaired_share are normalize's)."""
    options = {k: v for k, v in config["qc"].items() if k not in ("max_repair_gap", "max_repaired_share")}
    return " ".join(f"--{k.replace('_', '-')} {shlex.quote(str(v))}" for k, v in options.items())


def render_flags():
    flags = [] if config["render"]["face"] else ["--no-face"]
    return " ".join(flags + ([] if config["render"]["hands"] else ["--no-hands"]))
