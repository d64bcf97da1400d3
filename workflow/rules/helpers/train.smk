# Helpers of the training rules (workflow/rules/train.smk; transfer.smk's train_frame_by_frame and
# train_ablation use them too): inputs and flags, the global phase, and what a job asks a cluster for.
import os


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
    """`edn train` (stage "generator", "global") or `edn train-face` (stage "face") options from config['train'],
    with `overrides` of some of its keys (an ablation's); pipeline/plan/train_flags.py."""
    from pipeline.plan.train_flags import train_flags as flags

    return flags(config["train"], stage, overrides)


def compile_option():
    """train: compile as `edn transfer` and `edn evaluate` take it (YAML reads on/off as true/false)."""
    value = config["train"]["compile"]
    return {True: "on", False: "off"}.get(value, value)


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
    cores = workflow.resource_settings.cores  # --cores (the profile's cores); None when unset
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
