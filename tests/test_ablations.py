"""config evaluate: ablations: pose GANs trained again with some train: options changed, each an
evaluation row and a loss curve (rule train_ablation). Dry runs only: planned commands, schema
refusals, and what a changed ablation reruns (outputs made by `snakemake --touch`, no training)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
TARGETS = ("results/evaluation/dancer/tables.md", "results/plots/losses/dancer.png")
MODEL = "results/models/dancer/ablations/paper_generator/generator.pt"


def write_config(workdir: Path, ablations: dict | None = None, **train) -> None:
    """config/config.yaml as it is (or with `ablations`, train: overrides), on two empty target clips of dancer."""
    (workdir / "videos.tsv").write_text("name\tpath\trole\tsubject\nva\tva.mp4\ttarget\tdancer\n"
                                        "vb\tvb.mp4\ttarget\tdancer\n")
    for video in ("va", "vb"):
        (workdir / f"{video}.mp4").touch()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["videos"] = "videos.tsv"
    config["train"].update(train)
    if ablations is not None:
        config["evaluate"]["ablations"] = ablations
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--cores", "1", *args, *TARGETS,
                           "--configfile", "config.yaml"], cwd=workdir, capture_output=True, text=True)


def plan(workdir: Path) -> str:
    done = snakemake(workdir, "-n", "-p")
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    return done.stdout


def jobs(planned: str) -> dict[str, str]:
    """Job header ("train_ablation" or "train_ablation paper_generator") -> its block of the dry run."""
    out = {}
    for block in planned.split("\nrule ")[1:]:
        name = block.split(":", 1)[0]
        ablation = re.search(r"wildcards: .*ablation=(\w+)", block)
        out[f"{name} {ablation.group(1)}" if ablation else name] = block
    return out


def options(block: str) -> list[str]:
    """A training job's options but background, lambda_l1 and plates."""
    start = block.index("--width")
    command = block[start:block.index(" -- ", start)]  # the run folder follows the options' end
    return re.sub(r"--(background|lambda-l1|clip-plate) \S+", "", command).split()


def planned_rules(planned: str) -> dict[str, int]:
    table = planned.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)
            if m.group(1) != "total"}


def test_default_config_trains_the_paper_generator_and_evaluates_it_as_a_row(tmp_path):
    write_config(tmp_path)
    blocks = jobs(plan(tmp_path))
    ablation = blocks["train_ablation paper_generator"]
    command = ablation[ablation.index("pipeline.cli train "):]
    assert "wildcards: subject=dancer, ablation=paper_generator" in ablation
    assert command.startswith("pipeline.cli train --clip ")
    assert " -- results/models/dancer/ablations/paper_generator > " in command
    assert f"--model-out {MODEL} " in command
    assert "--background none" in command and "--lambda-l1 0 " in command
    assert "--clip-plate" not in command and "results/plate/" not in ablation  # no plate for background none
    assert "--background plate" in blocks["train_generator"]  # the main model keeps the measured defaults
    assert "--clip-plate results/plate/va/plate.png" in blocks["train_generator"]
    # the same training budget and architecture as the main model: only the overrides differ
    assert options(ablation) == options(blocks["train_generator"])
    assert "results/logs/train_ablation/dancer_paper_generator.log" in ablation
    assert f"--ablation paper_generator={MODEL}" in blocks["evaluate"] and "--clip-batch 4" in blocks["evaluate"]
    assert MODEL in blocks["evaluate"].split("output:")[0]  # an input
    assert "--run 'ablation paper_generator' results/models/dancer/ablations/paper_generator" in blocks["plot_losses"]


def test_the_paper_generator_stays_the_papers_whatever_augmentation_the_main_model_trains_with(tmp_path):
    """The default ablation turns off every setting beyond the paper's, those that need a plate included,
    so a config that turns them all on still plans a valid paper_generator (background none)."""
    write_config(tmp_path, mirror=0.5, lambda_new_pose=1.0, lambda_mismatch=1.0, lambda_new_pose_plate=100.0)
    blocks = jobs(plan(tmp_path))
    ablation = blocks["train_ablation paper_generator"]
    for flag in ("--background none", "--mirror 0 ", "--lambda-new-pose 0 ", "--lambda-mismatch 0 ",
                 "--lambda-new-pose-plate 0 "):
        assert flag in ablation, flag
    assert "--lambda-new-pose-plate 100.0" in blocks["train_generator"]


def test_an_ablation_with_background_plate_gets_the_plates(tmp_path):
    write_config(tmp_path, ablations={"plate": {"background": "plate", "lambda_l1": 10.0}}, background="none",
                 lambda_l1=0.0)
    blocks = jobs(plan(tmp_path))
    ablation = blocks["train_ablation plate"]
    assert ("--clip-plate results/plate/va/plate.png --clip-plate results/plate/vb/plate.png" in ablation
            and "--background plate" in ablation and "--lambda-l1 10.0" in ablation)
    assert "results/plate/va/plate.png" in ablation.split("output:")[0]  # an input: the plate job runs first
    assert "--clip-plate" not in blocks["train_generator"] and "--background none" in blocks["train_generator"]


def test_no_ablations_plan_no_training_and_no_rows(tmp_path):
    # In an overlay, null removes the base config's ablations ({} would keep them: mappings merge key by key).
    write_config(tmp_path)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["evaluate"]["ablations"] = None
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    planned = plan(tmp_path)
    assert "train_ablation" not in planned and "--ablation" not in planned and "ablations/" not in planned


def test_ablation_names_and_options_outside_the_schema_are_refused(tmp_path):
    for ablations, message in (({"temporal": {"lambda_l1": 0}}, "'temporal' should not be valid under"),
                               ({"Paper": {"lambda_l1": 0}}, "'Paper' does not match '^[a-z][a-z0-9_]*$'"),
                               ({"wide": {"width": 288}}, "('width' was unexpected)"),  # one resolution for all rows
                               ({"empty": {}}, "{} should be non-empty")):
        write_config(tmp_path, ablations=ablations)
        done = snakemake(tmp_path, "-n")
        assert done.returncode != 0 and message in done.stderr + done.stdout, (ablations, done.stderr[-2000:])
        assert "evaluate']['ablations" in done.stderr + done.stdout


def test_ablation_sizes_and_the_global_phase_are_checked_at_start(tmp_path):
    write_config(tmp_path, ablations={"deep": {"n_downsample": 5}})
    done = snakemake(tmp_path, "-n")
    assert done.returncode != 0
    assert ("train.width = 144 must be a multiple of 32 (2 ** n_downsample) (evaluate.ablations.deep sets "
            "n_downsample 5)") in done.stderr + done.stdout
    write_config(tmp_path, width=160, local_enhancer=True, global_phase={"epochs": 2, "niter_decay": 1})
    done = snakemake(tmp_path, "-n")
    assert done.returncode != 0
    assert "evaluate.ablations: not supported with train.global_phase" in done.stderr + done.stdout


def test_paper_preset_trains_three_models_no_ablation_and_no_frame_by_frame(tmp_path):
    # config/paper.yaml's generator is the paper's already; its null empties config.yaml's mapping, and its
    # evaluate: rows leave out frame_by_frame, which would be a fourth full-size training
    # (docs/evaluation.md).
    write_config(tmp_path)
    done = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--cores", "1", "-n", *TARGETS, "--configfile",
                           "config.yaml", str(REPO / "config" / "paper.yaml")],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    assert "train_ablation" not in done.stdout and "train_global" in done.stdout
    assert "train_frame_by_frame" not in done.stdout
    trainings = {line.split()[0] for line in done.stdout.splitlines() if line.startswith("train")}
    assert trainings == {"train_global", "train_generator", "train_face"}


def test_changing_an_ablation_reruns_only_it_its_row_and_the_loss_figure(tmp_path):
    write_config(tmp_path)
    # every planned output, empty, then recorded (params included) as made by its job
    outputs = [line.split(": ", 1)[1].split(", ") for line in plan(tmp_path).splitlines()
               if line.startswith("    output: ")]
    for path in sum(outputs, []):
        if re.match(r"results/(frames|render)/", path):  # directory() outputs, whole as far as planning can tell
            (tmp_path / path).mkdir(parents=True, exist_ok=True)
            (tmp_path / path / "meta.json").write_text('{"frame_count": 0, "format": "jpg"}')
        else:
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).touch()
    touched = snakemake(tmp_path, "--touch", "--forceall")
    assert touched.returncode == 0, touched.stderr[-3000:]
    assert "Nothing to be done" in snakemake(tmp_path, "-n").stdout
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["evaluate"]["ablations"]["paper_generator"]
    write_config(tmp_path, ablations={"paper_generator": {**default, "lambda_l1": 1}})
    assert planned_rules(plan(tmp_path)) == {"train_ablation": 1, "evaluate": 1, "plot_losses": 1}
    write_config(tmp_path, ablations={"paper_generator": default, "seed1": {"seed": 1}})
    blocks = jobs(plan(tmp_path))
    assert set(blocks) == {"train_ablation seed1", "evaluate", "plot_losses"}
    assert "--ablation paper_generator=" in blocks["evaluate"] and "--ablation seed1=" in blocks["evaluate"]


def test_rules_that_run_a_network_take_every_core_of_the_run(tmp_path):
    """Snakemake sets OMP_NUM_THREADS (torch's threads) to a job's threads: without `threads:` every
    training, transfer and evaluation would run on one core."""
    write_config(tmp_path)
    done = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--cores", "3", "-n", *TARGETS,
                           "--configfile", "config.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    threads = {name: re.search(r"threads: (\d+)", block) for name, block in jobs(done.stdout).items()}
    for name in ("train_generator", "train_face", "train_frame_by_frame", "train_ablation paper_generator",
                 "evaluate"):
        assert threads[name] and threads[name].group(1) == "3", name
    assert threads["plot_losses"] is None  # light rules keep one thread


def test_augmentation_keys_reach_the_pose_gans_and_not_the_face_gan(tmp_path):
    """train: augmentation keys become `edn train` flags (an ablation may switch them on); the face GAN,
    trained without augmentation, gets none of them."""
    write_config(tmp_path, ablations={"unmirrored": {"mirror": 0.0, "jitter_rotation": 3.0}}, pose_drop=0.1)
    blocks = jobs(plan(tmp_path))
    assert "--mirror 0.5 " in blocks["train_generator"] and "--pose-drop 0.1 " in blocks["train_generator"]
    ablation = blocks["train_ablation unmirrored"]
    assert "--mirror 0.0 " in ablation and "--jitter-rotation 3.0 " in ablation and "--pose-drop 0.1 " in ablation
    face = blocks["train_face"]
    assert not re.search(r"--(mirror|jitter-\w+|pose-drop|pose-noise) ", face)
