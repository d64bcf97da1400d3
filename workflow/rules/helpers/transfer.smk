# Helpers of the rules after training (workflow/rules/transfer.smk): ablation flags, models, evaluation
# and loss-figure options, and what they make (transfer_targets, the Snakefile's `all`).


def ablation_train_flags(wildcards):
    """train_generator's options with the ablation's overrides (evaluate: ablations)."""
    return train_flags("generator", ABLATIONS[wildcards.ablation])


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


def subject_transfers(wildcards):
    """The transfer records (edn measure-transfer) of every source onto the subject."""
    return [f"results/transfer/{s}/{t}.json" for s, t in transfer_pairs() if t == wildcards.subject]


def transfer_flags(wildcards, input):
    """`--transfer SOURCE=RECORD` for each transfer onto the subject: the evaluation's transfer table."""
    return " ".join(f"--transfer {shlex.quote(f'{Path(p).parent.name}={p}')}" for p in input.transfers)


def evaluate_flags():
    options = config["evaluate"]
    flags = ["--rows", *options["rows"], "--samples", str(options["samples"]), "--clip-batch",
             str(options["clip_batch"]), "--device", options["device"],
             "--precision", config["train"]["precision"],  # generation in the precision it was trained in
             "--compile", compile_option()]
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
        targets.append(f"results/plots/transfer/{source}/{subject}.png")
    for subject in SUBJECTS:
        targets += [f"results/evaluation/{subject}/{name}" for name in ("tables.md", "samples.png")]
        targets.append(f"results/plots/losses/{subject}.png")
    return targets
