"""The options a training rule passes to ``edn train`` or ``edn train-face``, from the config's ``train:``
section and each option's declaration (pipeline/gan/options.py: which command takes it, from which key);
whether the config trains a global phase first, and the checks of its keys."""

from __future__ import annotations

import shlex
from typing import Any

from pipeline.gan.options import FaceConfig, config_key, options

# train: keys of the workflow's own: a job's processes and memory, and its phases; no edn option.
WORKFLOW_ONLY = ("gpus", "nodes", "cpu_processes", "mem_mb", "face", "global_phase")
# What only the local enhancer has: the global phase trains the generator it starts from.
LOCAL_ONLY = ("local_enhancer", "niter_fix_global", "n_blocks_local")
STAGES = ("generator", "global", "face")


def stage_options(train: dict[str, Any], stage: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The options of a training job by field name: ``stage`` generator (the pose GAN, frame-by-frame, an
    ablation with its ``overrides``), global (the reference schedule's first phase: what the local enhancer's
    global part is, at half the size with twice the filters) or face (the face GAN: its own network, epochs
    and pixel L1 from ``train: face:``, the generator's architecture and resolution from generator.pt)."""
    if stage not in STAGES:
        raise ValueError(f"training stage {stage!r}: one of {', '.join(STAGES)}")
    chosen = {k: v for k, v in {**train, **(overrides or {})}.items() if k not in WORKFLOW_ONLY}
    if stage == "global":
        chosen = {k: v for k, v in chosen.items() if k not in LOCAL_ONLY}
        chosen.update(width=chosen["width"] // 2, height=chosen["height"] // 2, ngf=2 * chosen["ngf"],
                      **(train["global_phase"] or {}))
    if stage == "face":
        taken = {f.name for f, o in options(FaceConfig) if "train-face" in o.stages and
                 config_key(FaceConfig, f.name) == f.name}
        chosen = {k: v for k, v in chosen.items() if k in taken}
        from_face = {config_key(FaceConfig, f.name).removeprefix("face."): f.name for f, _ in options(FaceConfig)
                     if (config_key(FaceConfig, f.name) or "").startswith("face.")}
        chosen.update({from_face[k]: v for k, v in train["face"].items()})
    return chosen


def command_flags(chosen: dict[str, Any]) -> str:
    """``--name value`` per option, shell-quoted: switches as on/off, a true flag bare, false and empty left out."""
    flags = []
    for key, value in chosen.items():
        if key in ("vgg_loss", "tensorboard", "compile"):
            value = {True: "on", False: "off"}.get(value, value)
        if value is False or value in ("", None):
            continue
        flags += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    return " ".join(shlex.quote(f) for f in flags)


def train_flags(train: dict[str, Any], stage: str, overrides: dict[str, Any] | None = None) -> str:
    """The flags of :func:`stage_options`."""
    return command_flags(stage_options(train, stage, overrides))


def global_phase(train: dict[str, Any]) -> bool:
    """Whether the generator is trained in two phases (global, then local from it), from ``train``
    (config['train']); an error when its keys cannot give such a schedule."""
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


def check_ablations(train: dict[str, Any], ablations: dict[str, Any]) -> None:
    """Refuse ablations (evaluate: ablations) with a global phase. Ablations are trained like the main
    generator, from scratch; with a global phase that would not be the same schedule, and a global phase
    of their own (with their options) is not implemented."""
    if ablations and global_phase(train):
        raise ValueError("config evaluate.ablations: not supported with train.global_phase (each ablation "
                         "would need a global phase of its own, trained with its options); set evaluate: "
                         "ablations to {} (to null in a --configfile merged over config/config.yaml, as "
                         "config/paper.yaml does)")
