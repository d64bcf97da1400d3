# Helpers shared by the rule files (config and sheet validation, paths, per-video options).
import os
import shlex
import sys
from pathlib import Path

import pandas as pd
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

# Rules run `python -m pipeline.cli STAGE ...`. With a conda env deployed, its python runs our
# package from the workflow's folder; otherwise the interpreter running Snakemake (the venv's)
# comes first on PATH, so a non-activated `.venv/bin/snakemake` works too.
if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
    shell.prefix(f"export PYTHONPATH={shlex.quote(workflow.basedir)}${{PYTHONPATH:+:$PYTHONPATH}}; ")
else:
    shell.prefix(f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:\"$PATH\"; ")


def load_videos(path):
    """The video sheet as a DataFrame indexed by name; errors name the sheet and the row."""
    if not Path(path).is_file():
        raise ValueError(f"{path}: video sheet not found (config key 'videos')")
    sheet = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    sheet.columns = [c.strip() for c in sheet.columns]
    for column in ("subject", "crop", "rotation", "fps", "start", "end", "openpose_json"):
        if column not in sheet.columns:
            sheet[column] = ""
    sheet = sheet.apply(lambda col: col.str.strip())
    for i, row in sheet.iterrows():
        try:
            validate(row.to_dict(), schema="../schemas/videos.schema.yaml")
        except Exception as exc:
            raise ValueError(f"{path}: row {i + 2} ({row.get('name', '?')}): {exc}") from None
    duplicated = sheet["name"][sheet["name"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"{path}: video names must be unique, repeated: {duplicated}")
    if not (sheet["role"] == "target").any():
        raise ValueError(f"{path}: no video has role 'target'")
    return sheet.set_index("name", drop=False)


def check_config_sizes(config):
    """What the schema cannot say: model sizes that the generator's downsamplings divide, the main
    model's and each ablation's (evaluate: ablations may change n_downsample, not the size)."""
    train = config["train"]
    ablations = config["evaluate"]["ablations"] or {}
    for where, options in [("", train)] + [(f" (evaluate.ablations.{name} sets n_downsample {o['n_downsample']})",
                                            {**train, **o}) for name, o in ablations.items() if "n_downsample" in o]:
        divisor = 2 ** (options["n_downsample"] + (1 if train["local_enhancer"] else 0))
        for key in ("width", "height"):
            if train[key] % divisor:
                raise ValueError(f"config train.{key} = {train[key]} must be a multiple of {divisor} (2 ** n_downsample"
                                 f"{' + 1 for the local enhancer' if train['local_enhancer'] else ''}){where}")


def check_crops(sheet, path):
    """Each sheet crop box inside its video's frame (a header read per cropped video, no decoding)."""
    from pipeline.footage.extract import check_crop
    from pipeline.footage.media import probe_video

    for name, row in sheet.iterrows():
        if not row["crop"] or not Path(row["path"]).is_file():
            continue  # a video made by the workflow (the demo) is checked when extracted
        crop = tuple(int(v) for v in row["crop"].split(","))
        info = probe_video(row["path"], count_frames=False)
        try:
            check_crop(info, int(row["rotation"]) if row["rotation"] else None, crop)
        except ValueError as exc:
            raise ValueError(f"{path}: video {name}: {exc}") from None


def check_spans(sheet, path):
    """Each sheet row's start < end, both within its video (a header read per trimmed video, no decoding)."""
    from pipeline.footage.media import probe_video
    from pipeline.footage.timespan import check_span, parse_time

    for name, row in sheet.iterrows():
        if not (row["start"] or row["end"]):
            continue
        start, end = (parse_time(row[k]) if row[k] else None for k in ("start", "end"))
        # a video made by the workflow (the demo) has no header yet: start < end only; extract checks the rest
        duration = probe_video(row["path"], count_frames=False).duration if Path(row["path"]).is_file() else 0.0
        try:
            check_span(duration, start, end, row["path"])
        except ValueError as exc:
            raise ValueError(f"{path}: video {name}: {exc}") from None


check_config_sizes(config)
ABLATIONS = config["evaluate"]["ablations"] or {}  # NAME -> train: overrides; null: none (config/paper.yaml)
VIDEOS = load_videos(config["videos"])
check_crops(VIDEOS, config["videos"])
check_spans(VIDEOS, config["videos"])
TARGETS = VIDEOS[VIDEOS["role"] == "target"]
SOURCES = VIDEOS[VIDEOS["role"] == "source"]
SUBJECTS = sorted(TARGETS["subject"].unique())
DEMO_DIR = config.get("demo_dir", "resources/demo")
DEMO_VIDEOS = [f"{DEMO_DIR}/{s}/{c}.mp4" for s in ("Demo_SinglePerson", "Demo_MultiPerson")
               for c in ("cam01", "cam02", "cam03", "cam04")]


def transfer_pairs():
    """(source, subject) pairs: the config's list, else every source to every subject."""
    pairs = [(p["source"], p["target"]) for p in config.get("pairs", [])]
    for source, subject in pairs:
        if source not in SOURCES.index:
            raise ValueError(f"config pairs: {source!r} is not a source video in {config['videos']}")
        if subject not in SUBJECTS:
            raise ValueError(f"config pairs: {subject!r} is not a target subject in {config['videos']}")
    return pairs or [(s, t) for s in SOURCES.index for t in SUBJECTS]


def video_path(wildcards):
    return VIDEOS.loc[wildcards.video, "path"]


def extract_options(wildcards):
    """Per-video extraction flags from the sheet (crop, rotation, fps, start, end)."""
    row = VIDEOS.loc[wildcards.video]
    flags = []
    if row["crop"]:
        flags += ["--crop", row["crop"].replace(" ", "")]
    if row["rotation"]:
        flags += ["--rotation", row["rotation"]]
    if row["fps"]:
        flags += ["--fps", row["fps"]]
    for key in ("start", "end"):
        if row[key]:
            flags += [f"--{key}", row[key]]
    return " ".join(shlex.quote(f) for f in flags)


def detect_options(wildcards):
    """OpenPose JSON from the sheet wins over the configured backend."""
    json_dir = VIDEOS.loc[wildcards.video, "openpose_json"]
    if json_dir:
        return f"--backend openpose-json --json-dir {shlex.quote(json_dir)}"
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


def stage_code(module):
    """A stage's module ("pose/smooth": pipeline/pose/smooth.py) as an input, so editing it reruns that stage
    and what follows."""
    return str(Path(workflow.basedir) / "pipeline" / f"{module}.py")


def pose_targets():
    """Everything the pose half of the workflow makes."""
    targets = [f"results/render/{v}" for v in TARGETS.index]
    targets += [f"results/render_transfer/{s}/{t}" for s, t in transfer_pairs()]
    targets += [f"results/plots/tracks/{v}.png" for v in VIDEOS.index]
    targets += [f"results/plots/qc/{v}.png" for v in VIDEOS.index]
    targets += [f"results/plate/{v}/plate.json" for v in TARGETS.index]  # shown in the report
    targets += [f"results/plots/{kind}/{s}/{t}.png" for s, t in transfer_pairs() for kind in ("normalization", "bones")]
    return targets


def qc_flags():
    """`edn qc` thresholds from config['qc'] (max_repair_gap and max_repaired_share are normalize's)."""
    options = {k: v for k, v in config["qc"].items() if k not in ("max_repair_gap", "max_repaired_share")}
    return " ".join(f"--{k.replace('_', '-')} {shlex.quote(str(v))}" for k, v in options.items())


def render_flags():
    flags = [] if config["render"]["face"] else ["--no-face"]
    return " ".join(flags + ([] if config["render"]["hands"] else ["--no-hands"]))


# ---- training (workflow/rules/train.smk)


def train_inputs(wildcards):
    """Frames, stick figures and smoothed keypoints of every clip of the subject."""
    videos = TARGETS.index[TARGETS["subject"] == wildcards.subject]
    return {"frames": [f"results/frames/{v}" for v in videos],
            "render": [f"results/render/{v}" for v in videos],
            "keypoints": [f"results/keypoints/{v}/smooth.parquet" for v in videos],
            "qc": [f"results/qc/{v}/smooth.parquet" for v in videos]}


def train_options(wildcards):
    """config['train'], with the job's ablation's overrides (evaluate: ablations) for train_ablation."""
    return {**config["train"], **ABLATIONS.get(getattr(wildcards, "ablation", None), {})}


def plate_inputs(wildcards):
    """The background plate of every clip of the subject, when the job's train: background is plate."""
    if train_options(wildcards)["background"] != "plate":
        return []
    videos = TARGETS.index[TARGETS["subject"] == wildcards.subject]
    return [f"results/plate/{v}/plate.png" for v in videos]


def train_plate_flags(wildcards):
    """` --clip-plate PLATE` for each clip of the subject, in train_clip_flags' order (background plate);
    each with its leading space, so that none leaves the command as it was."""
    return "".join(f" --clip-plate {shlex.quote(path)}" for path in plate_inputs(wildcards))


def train_clip_flags(wildcards):
    """`--clip FRAMES RENDER KEYPOINTS` for each clip of the subject."""
    inputs = train_inputs(wildcards)
    clips = zip(inputs["frames"], inputs["render"], inputs["keypoints"])
    return " ".join("--clip " + " ".join(shlex.quote(path) for path in clip) for clip in clips)


def train_qc_flags(wildcards):
    """`--clip-qc QC` for each clip of the subject, in train_clip_flags' order."""
    return " ".join(f"--clip-qc {shlex.quote(path)}" for path in train_inputs(wildcards)["qc"])


def train_flags(stage, overrides=None):
    """`edn train` (stage "generator") or `edn train-face` (stage "face") options from config['train'],
    with `overrides` of some of its keys (an ablation's).

    The face run takes the generator's architecture and resolution from generator.pt, and its
    epochs and network from train: face:.
    """
    options = {k: v for k, v in {**config["train"], **(overrides or {})}.items()
               if k not in ("gpus", "nodes", "cpu_processes", "mem_mb", "face", "global_phase")}
    if stage == "global":  # the reference schedule's first phase: what the local enhancer's global part is
        options = {k: v for k, v in options.items() if k not in ("local_enhancer", "niter_fix_global", "n_blocks_local")}
        options.update(width=options["width"] // 2, height=options["height"] // 2, ngf=2 * options["ngf"],
                       **(config["train"]["global_phase"] or {}))
    if stage == "face":
        options.pop("niter_fix_global", None)
        generator_only = ("width", "height", "ngf", "n_downsample", "n_blocks", "n_blocks_local", "local_enhancer",
                          "num_d", "background", "lambda_l1")
        options = {k: v for k, v in options.items() if k not in generator_only}
        options.update({k if k in ("epochs", "niter_decay") else f"face_{k}": v
                        for k, v in config["train"]["face"].items()})
    flags = []
    for key, value in options.items():
        if key in ("vgg_loss", "tensorboard"):
            value = {True: "on", False: "off"}.get(value, value)
        if value is False or value in ("", None):
            continue
        flags += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    return " ".join(shlex.quote(f) for f in flags)


def ablation_train_flags(wildcards):
    """train_generator's options with the ablation's overrides (evaluate: ablations)."""
    return train_flags("generator", ABLATIONS[wildcards.ablation])


def global_phase():
    """Whether the generator is trained in two phases (global, then local from it); checks the keys."""
    train = config["train"]
    if train["global_phase"] is None:
        return False
    if not train["local_enhancer"]:
        raise ValueError("config train: global_phase needs local_enhancer: true (the global generator "
                         "initialises the local enhancer's global part)")
    divisor = 2 ** (train["n_downsample"] + 1)
    if train["width"] % divisor or train["height"] % divisor:
        raise ValueError(f"config train: width and height must be multiples of {divisor} (the global phase "
                         "runs at half of them)")
    return True


def check_ablations():
    """Ablations are trained like the main generator, from scratch; with a global phase that would not
    be the same schedule, and a global phase of their own (with their options) is not implemented."""
    if ABLATIONS and global_phase():
        raise ValueError("config evaluate.ablations: not supported with train.global_phase (each ablation "
                         "would need a global phase of its own, trained with its options); set evaluate: "
                         "ablations to {} (to null in a --configfile merged over config/config.yaml, as "
                         "config/paper.yaml does)")


check_ablations()


def global_generator_input(wildcards):
    """The global phase's generator.pt, when the config has one (input of the local phase)."""
    return [f"results/models/{wildcards.subject}/global/generator.pt"] if global_phase() else []


def init_global_flags(wildcards, input):
    return f"--init-global {shlex.quote(input.init_global[0])}" if global_phase() else ""


# Snakemake sets OMP_NUM_THREADS, torch's intra-op threads, to a job's `threads` (1 unless the rule
# says): rules that run a network (training, transfer, evaluation) take every core the run has. They
# hold the gpu resource one at a time anyway; on a 2-core CPU a demo training step took 0.63 s with
# one thread and 0.40 s with two (make bench-train). On SLURM the profile's set-threads gives transfer
# and evaluate theirs, and the SLURM executor asks `--cpus-per-task` = threads.
TORCH_THREADS = max(1, workflow.cores or 1)

# ---- what a training job asks a cluster for, from train: gpus (per node), nodes, workers, mem_mb.
TRAIN_PROCS = config["train"]["gpus"] or config["train"]["cpu_processes"]  # processes per node


def on_cluster():
    """Submitting to a cluster, or running inside a SLURM job (whose own Snakemake must compute the same
    threads: they become OMP_NUM_THREADS). Asked when jobs are planned: the executor is not known yet
    while the Snakefile is read."""
    return workflow.non_local_exec or bool(os.environ.get("SLURM_JOB_ID"))


def train_threads(wildcards):
    """A training job's threads: on a cluster its CPUs per node, each process plus its data workers
    (the launcher splits them among the processes); locally every core, as TORCH_THREADS. Snakemake
    would silently lower them to --cores (the profile's `cores`), leaving the processes and workers
    fewer CPUs than they need: that stops the run instead."""
    if not on_cluster():
        return TORCH_THREADS
    threads = TRAIN_PROCS * (config["train"]["workers"] + 1)
    cores = workflow._cores  # --cores (the profile's cores); None when unset
    if workflow.non_local_exec and cores is not None and threads > cores:
        raise ValueError(f"config train: {TRAIN_PROCS} process(es) per node x (workers {config['train']['workers']} "
                         f"+ 1) = {threads} CPUs per training job, more than the profile's cores: {cores}; "
                         f"raise cores (profiles/slurm/config.yaml) to at least {threads}, or lower train: workers")
    return threads


def train_resources(rule):
    """Resources of a training rule. One node: `gpu` (the SLURM executor's --gpus, a job total, here
    also the node's). Several nodes: the executor has no GPUs-per-node resource and would run the job
    as one task spanning the nodes (srun -n1), so the job declares `mpi` (Snakemake then runs it
    without its own srun), one task per node (torchrun's launcher) and --gpus-per-node."""
    nodes, gpus = config["train"]["nodes"], config["train"]["gpus"]
    resources = {"gpu": gpus, "nodes": nodes, "mem_mb": train_mem_mb(rule)}
    if nodes > 1:
        extra = "--ntasks-per-node=1" + (f" --gpus-per-node={gpus}" if gpus else "")
        resources.update(gpu=0, mpi="srun", tasks=nodes, slurm_extra=extra)
    return resources


def slurm_job_logs(rule, wildcards):
    """The folder where Snakemake's SLURM executor writes this job's logs (its logdir setting); None
    when not submitting to SLURM."""
    settings = getattr(workflow, "executor_settings", None)
    logdir = getattr(settings, "logdir", None)
    if logdir is None:
        return None
    # as the executor resolves it: relative to the working directory Snakemake started in
    return Path(workflow.workdir_init) / logdir / f"rule_{rule}" / "_".join(wildcards).replace(os.sep, "_")


def train_mem_mb(rule):
    """Memory per node: train: mem_mb per process, one more share for every attempt SLURM killed for
    memory (its log says so). A time-limit kill resumes from the checkpoint with the same request."""
    from pipeline.cluster import memory_mb

    def mem_mb(wildcards):
        return memory_mb(config["train"]["mem_mb"], TRAIN_PROCS, slurm_job_logs(rule, wildcards))

    return mem_mb


# ---- transfer, evaluation and their figures (workflow/rules/transfer.smk)


def subject_models(subject):
    """Model files of a target subject: the pose GAN, its face GAN, the frame-by-frame ablation
    (the configured ablations' are ablation_models')."""
    root = f"results/models/{subject}"
    return {"generator": f"{root}/generator.pt", "face": f"{root}/face.pt",
            "frame_by_frame": f"{root}/frame_by_frame/generator.pt"}


def ablation_models(subject):
    """NAME -> generator.pt of each ablation (evaluate: ablations) of a target subject."""
    return {name: f"results/models/{subject}/ablations/{name}/generator.pt" for name in ABLATIONS}


def transfer_models(wildcards):
    models = subject_models(wildcards.subject)
    return {"generator": models["generator"], **({"face": models["face"]} if config["transfer"]["face"] else {})}


def evaluate_models(wildcards):
    """The models the configured evaluation rows need."""
    models, rows = subject_models(wildcards.subject), config["evaluate"]["rows"]
    wanted = {"generator": True, "face": "temporal_face" in rows, "frame_by_frame": "frame_by_frame" in rows}
    return {**{name: path for name, path in models.items() if wanted[name]},
            "ablations": list(ablation_models(wildcards.subject).values())}


def model_flags(wildcards, input):
    """`--face F` / `--frame-by-frame G` for the models among a job's inputs."""
    flags = []
    for name in ("face", "frame_by_frame"):
        if name in input.keys():
            flags += [f"--{name.replace('_', '-')}", input[name]]
    return " ".join(shlex.quote(f) for f in flags)


def ablation_flags(wildcards):
    """`--ablation NAME=GENERATOR_PT` for each ablation: one evaluation row each, after evaluate: rows'."""
    models = ablation_models(wildcards.subject)
    return " ".join(f"--ablation {shlex.quote(f'{name}={path}')}" for name, path in models.items())


def evaluate_flags():
    options = config["evaluate"]
    flags = ["--rows", *options["rows"], "--samples", str(options["samples"]), "--clip-batch",
             str(options["clip_batch"]), "--device", options["device"],
             "--precision", config["train"]["precision"]]  # generation in the precision it was trained in
    if options["lpips_weights"]:
        flags += ["--lpips-weights", options["lpips_weights"]]
    return " ".join(shlex.quote(f) for f in flags)


def loss_runs(wildcards):
    """Run folders whose losses.csv the loss figure plots, with their titles."""
    root, rows = f"results/models/{wildcards.subject}", config["evaluate"]["rows"]
    runs = [("pose GAN", root), ("face GAN", f"{root}/face")]
    if "frame_by_frame" in rows:
        runs.append(("frame-by-frame ablation", f"{root}/frame_by_frame"))
    runs += [(f"ablation {name}", f"{root}/ablations/{name}") for name in ABLATIONS]
    return " ".join(f"--run {shlex.quote(name)} {shlex.quote(folder)}" for name, folder in runs)


def loss_models(wildcards):
    models = subject_models(wildcards.subject)
    if "frame_by_frame" not in config["evaluate"]["rows"]:
        del models["frame_by_frame"]
    return {**models, "ablations": list(ablation_models(wildcards.subject).values())}


def subject_frames(wildcards):
    return [f"results/frames/{v}" for v in TARGETS.index[TARGETS["subject"] == wildcards.subject]]


def real_frame_flags(wildcards, input):
    return " ".join(f"--real {shlex.quote(folder)}" for folder in input.real)


def transfer_targets():
    """Everything after training: transfer videos, their stability figures, evaluations, loss curves."""
    targets = []
    for source, subject in transfer_pairs():
        targets += [f"results/transfer/{source}/{subject}{suffix}" for suffix in (".mp4", "_side_by_side.mp4")]
        targets.append(f"results/plots/stability/{source}/{subject}.png")
    for subject in SUBJECTS:
        targets += [f"results/evaluation/{subject}/{name}" for name in ("tables.md", "samples.png")]
        targets.append(f"results/plots/losses/{subject}.png")
    return targets
