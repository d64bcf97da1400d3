"""What the workflow's rules compute when Snakemake plans them (pipeline/plan: targets, flags, train_flags'
phases, resources), tested without Snakemake: the paths a run asks for, each rule's flags in order and
shell-quoted, the global phase's checks, and what a training job asks a cluster for."""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from pipeline.plan import flags, resources, targets
from pipeline.plan.sheet import load_videos, transfer_pairs
from pipeline.plan.train_flags import check_ablations, global_phase

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "videos.schema.yaml"
BASE = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


@pytest.fixture
def config() -> dict:
    return copy.deepcopy(BASE)


@pytest.fixture
def sheet(tmp_path):
    """Two targets of one subject and one source, the first target with every extraction column set."""
    path = tmp_path / "videos.tsv"
    path.write_text("name\tpath\trole\tsubject\tcrop\trotation\tfps\tstart\tend\topenpose_json\n"
                    "t1\tmy clip.mp4\ttarget\tanna\t0, 64, 288, 448\t90\t15\t0:01\t2.5\t\n"
                    "t2\tt2.mp4\ttarget\tanna\t\t\t\t\t\t-odd json\n"
                    "s1\ts1.mp4\tsource\t\t\t\t\t\t\t\n")
    return load_videos(path, SCHEMA)


def test_extract_options_come_from_the_sheet_in_order_and_quoted(config, sheet):
    assert flags.extract_options(config, sheet, "t1") == \
        "--crop 0,64,288,448 --rotation 90 --fps 15 --start 0:01 --end 2.5"
    assert flags.extract_options(config, sheet, "s1") == ""  # extract: damaged fail adds no flag
    config["extract"]["damaged"] = "keep"
    assert flags.extract_options(config, sheet, "s1") == "--damaged keep"
    sheet.loc["s1", "start"] = "0:00 "  # a value the shell would split stays one word
    assert shlex.split(flags.extract_options(config, sheet, "s1")) == ["--start", "0:00 ", "--damaged", "keep"]


def test_openpose_json_wins_over_the_backend_and_stays_one_word(config, sheet):
    assert flags.detect_options(config, sheet, "t1") == f"--backend {config['detect']['backend']}"
    options = flags.detect_options(config, sheet, "t2")
    assert shlex.split(options) == ["--backend", "openpose-json", "--json-dir=-odd json"]


def test_detection_chunks_cover_the_video_and_the_last_runs_to_its_end(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({"frame_count": 25}))
    assert flags.n_chunks(tmp_path, 10) == 3
    assert flags.n_chunks(tmp_path, 25) == 1
    assert [flags.chunk_range(10, i, 3) for i in range(3)] == \
        ["--start 0 --stop 10", "--start 10 --stop 20", "--start 20"]
    assert flags.chunk_range(25, 0, 1) == "--start 0"
    assert targets.detect_chunks("v", 2) == ["results/keypoints/v/chunks/0.parquet",
                                             "results/keypoints/v/chunks/1.parquet"]


def test_qc_and_render_flags(config):
    qc = flags.qc_flags(config)
    assert qc.startswith(f"--limb-long {config['qc']['limb_long']} ") and "--spike-accel" in qc
    assert "repair" not in qc  # normalize's keys
    assert flags.render_flags(config) == ""
    config["render"].update(face=False, hands=False)
    assert flags.render_flags(config) == "--no-face --no-hands"


def test_pose_and_transfer_targets_of_two_targets_and_a_source(config, sheet):
    target_rows = sheet[sheet["role"] == "target"]
    pairs = transfer_pairs(config, ["s1"], ["anna"])
    made = targets.pose_targets(list(sheet.index), list(target_rows.index), ["s1"], ["anna"], pairs)
    for path in ("results/render/t1", "results/render/t2", "results/render_transfer/s1/anna",
                 "results/plots/qc/s1.png", "results/plate/t2/plate.json", "results/plots/bones/s1/anna.png",
                 "results/coverage/target/anna.json", "results/qc/t1/smooth.parquet",
                 "results/keypoints/s1/raw.parquet", "results/stats/video/s1.json",
                 "results/normalized/s1/anna.parquet"):
        assert path in made
    assert "results/render/s1" not in made and len(made) == len(set(made))
    after = targets.transfer_targets(pairs, ["anna"])
    assert after == ["results/transfer/s1/anna.mp4", "results/transfer/s1/anna_side_by_side.mp4",
                     "results/plots/stability/s1/anna.png", "results/plots/transfer/s1/anna.png",
                     "results/evaluation/anna/tables.md", "results/evaluation/anna/samples.png",
                     "results/plots/losses/anna.png", "results/models/anna/generator.pt",
                     "results/models/anna/face.pt"]


def test_training_inputs_and_clip_flags_keep_the_sheets_clip_order(config, sheet):
    rows = sheet[sheet["role"] == "target"]
    inputs = targets.train_inputs(rows, "anna")
    assert inputs["frames"] == ["results/frames/t1", "results/frames/t2"]
    assert inputs["qc"] == ["results/qc/t1/smooth.parquet", "results/qc/t2/smooth.parquet"]
    assert flags.train_clip_flags(inputs) == (
        "--clip results/frames/t1 results/render/t1 results/keypoints/t1/smooth.parquet "
        "--clip results/frames/t2 results/render/t2 results/keypoints/t2/smooth.parquet")
    assert flags.train_qc_flags(inputs["qc"]) == \
        "--clip-qc results/qc/t1/smooth.parquet --clip-qc results/qc/t2/smooth.parquet"
    assert targets.subject_keypoints(rows, "anna") == inputs["keypoints"]
    assert targets.subject_frames(rows, "anna") == inputs["frames"]
    # plates only where the job's background is plate (an ablation may set another)
    ablations = {"no_plate": {"background": "none"}}
    plated = flags.train_options({**config, "train": {**config["train"], "background": "plate"}}, ablations)
    plates = targets.plate_inputs(plated, rows, "anna")
    assert plates == ["results/plate/t1/plate.png", "results/plate/t2/plate.png"]
    assert flags.train_plate_flags(plates) == \
        " --clip-plate results/plate/t1/plate.png --clip-plate results/plate/t2/plate.png"
    assert flags.train_plate_flags([]) == ""
    ablated = flags.train_options({**config, "train": {**config["train"], "background": "plate"}}, ablations,
                                  "no_plate")
    assert targets.plate_inputs(ablated, rows, "anna") == []


def test_the_global_phase_and_its_two_errors(config):
    train = config["train"]
    assert train["global_phase"] is None and not global_phase(train)
    train.update(global_phase={"epochs": 1}, local_enhancer=False)
    with pytest.raises(ValueError, match="global_phase needs local_enhancer: true"):
        global_phase(train)
    train.update(local_enhancer=True, n_downsample=2, width=68, height=128)
    with pytest.raises(ValueError, match="width and height must be multiples of 8"):
        global_phase(train)
    train.update(width=64)
    assert global_phase(train)
    assert targets.global_generator_input("anna", True) == ["results/models/anna/global/generator.pt"]
    assert targets.global_generator_input("anna", False) == []
    assert flags.init_global_flags(["results/models/a b/global/generator.pt"], True) == \
        "--init-global 'results/models/a b/global/generator.pt'"
    assert flags.init_global_flags([], False) == ""


def test_ablations_are_refused_with_a_global_phase(config):
    train = {**config["train"], "global_phase": {"epochs": 1}, "local_enhancer": True, "width": 64, "height": 128,
             "n_downsample": 2}
    with pytest.raises(ValueError, match=re.escape("config evaluate.ablations: not supported with "
                                                   "train.global_phase")):
        check_ablations(train, {"x": {"lr": 0.1}})
    check_ablations(train, {})
    check_ablations(config["train"], config["evaluate"]["ablations"])


def test_ablation_training_flags_override_the_generators(config):
    ablations = {"small": {"ngf": 3, "vgg_loss": False}}
    options = shlex.split(flags.ablation_train_flags(config, ablations, "small"))
    assert options[options.index("--ngf") + 1] == "3" and options[options.index("--vgg-loss") + 1] == "off"
    with pytest.raises(KeyError):
        flags.ablation_train_flags(config, ablations, "unknown")


def test_train_threads_every_core_locally_and_processes_times_workers_on_a_cluster(config):
    train = {**config["train"], "gpus": 4, "workers": 3}
    assert resources.train_threads(train, False, {}, None, 7) == 7
    assert resources.train_threads(train, True, {}, 64, 7) == 16
    assert resources.train_threads(train, True, {}, None, 7) == 16  # --cores unset: nothing to compare
    assert resources.train_threads(train, False, {"SLURM_JOB_ID": "12"}, 2, 7) == 16  # inside the job
    with pytest.raises(ValueError, match=re.escape("config train: 4 process(es) per node x (workers 3 + 1) = 16 "
                                                   "CPUs per training job, more than the profile's cores: 8")):
        resources.train_threads(train, True, {}, 8, 7)
    cpu = {**config["train"], "gpus": 0, "cpu_processes": 2, "workers": 1}
    assert resources.train_processes(cpu) == 2 and resources.train_threads(cpu, True, {}, 64, 7) == 4


def test_train_resources_for_one_node_and_for_two(config):
    one = resources.train_resources({**config["train"], "gpus": 2, "nodes": 1}, 4000)
    assert one == {"gpu": 2, "nodes": 1, "mem_mb": 4000}
    two = resources.train_resources({**config["train"], "gpus": 4, "nodes": 2}, 8000)
    assert two == {"gpu": 0, "nodes": 2, "mem_mb": 8000, "mpi": "srun", "tasks": 2,
                   "slurm_extra": "--ntasks-per-node=1 --gpus-per-node=4"}
    cpu = resources.train_resources({**config["train"], "gpus": 0, "nodes": 2}, 8000)
    assert cpu["slurm_extra"] == "--ntasks-per-node=1" and cpu["gpu"] == 0


def test_memory_grows_with_each_out_of_memory_kill_in_the_jobs_slurm_logs(tmp_path, config):
    assert resources.slurm_job_logs("train_generator", ["anna"], None, tmp_path) is None
    logs = resources.slurm_job_logs("train_ablation", ["anna", "a/b"], "results/logs/slurm", tmp_path)
    assert logs == tmp_path / "results/logs/slurm/rule_train_ablation/anna_a_b"
    train = {**config["train"], "gpus": 2, "mem_mb": 3000}
    assert resources.train_mem_mb(train, None) == 6000
    logs.mkdir(parents=True)
    (logs / "1.log").write_text("slurmstepd: error: Detected 1 oom_kill event in StepId=1.batch. Some of the "
                                "step tasks have been OOM Killed.\n")
    assert resources.train_mem_mb(train, logs) == 12000


def test_model_paths_and_their_flags(config):
    ablations = {"a": {}, "b": {}}
    assert targets.subject_models("anna") == {"generator": "results/models/anna/generator.pt",
                                              "face": "results/models/anna/face.pt",
                                              "frame_by_frame": "results/models/anna/frame_by_frame/generator.pt"}
    assert targets.transfer_models(config, "anna") == {"generator": "results/models/anna/generator.pt",
                                                        "face": "results/models/anna/face.pt"}
    config["transfer"]["face"] = False
    assert list(targets.transfer_models(config, "anna")) == ["generator"]
    config["evaluate"]["rows"] = ["temporal", "temporal_face"]
    models = targets.evaluate_models(config, ablations, "anna")
    assert list(models) == ["generator", "face", "ablations"]
    assert models["ablations"] == ["results/models/anna/ablations/a/generator.pt",
                                   "results/models/anna/ablations/b/generator.pt"]
    assert flags.model_flags(models) == "--face results/models/anna/face.pt"
    assert flags.model_flags({"generator": "g.pt", "frame_by_frame": "f b.pt"}) == "--frame-by-frame 'f b.pt'"
    assert flags.ablation_flags(ablations, "anna") == ("--ablation a=results/models/anna/ablations/a/generator.pt "
                                                       "--ablation b=results/models/anna/ablations/b/generator.pt")
    assert flags.transfer_flags(["results/transfer/s1/anna.json"]) == "--transfer s1=results/transfer/s1/anna.json"
    assert flags.real_frame_flags(["results/frames/t 1"]) == "--real 'results/frames/t 1'"
    assert targets.subject_transfers([("s1", "anna"), ("s2", "bob")], "anna") == ["results/transfer/s1/anna.json"]


def test_evaluate_flags_carry_the_trainings_precision_and_compile(config):
    config["train"].update(precision="bf16", compile=True)
    config["evaluate"].update(rows=["temporal"], lpips_weights="my weights/alex.pth")
    assert flags.evaluate_flags(config) == ("--rows temporal --samples 4 --clip-batch 4 --device auto "
                                            "--precision bf16 --compile on --lpips-weights 'my weights/alex.pth'")
    config["train"]["compile"] = "auto"
    assert flags.compile_option(config) == "auto"
    config["train"]["compile"] = False
    assert flags.compile_option(config) == "off"


def test_loss_runs_have_the_frame_by_frame_run_only_when_its_row_is_configured(config):
    ablations = {"no plate": {}}
    runs = targets.loss_runs(config, ablations, "anna")
    assert runs == [("pose GAN", "results/models/anna"), ("face GAN", "results/models/anna/face"),
                    ("frame-by-frame ablation", "results/models/anna/frame_by_frame"),
                    ("ablation no plate", "results/models/anna/ablations/no plate")]
    assert flags.loss_run_flags(runs[:1]) == "--run 'pose GAN' results/models/anna"
    assert "frame_by_frame" in targets.loss_models(config, ablations, "anna")
    config["evaluate"]["rows"] = ["temporal", "temporal_face"]
    assert "frame-by-frame ablation" not in dict(targets.loss_runs(config, ablations, "anna"))
    models = targets.loss_models(config, ablations, "anna")
    assert list(models) == ["generator", "face", "ablations"]
    assert models["ablations"] == ["results/models/anna/ablations/no plate/generator.pt"]


def test_demo_videos_are_the_four_cameras_of_both_demos():
    videos = targets.demo_videos("resources/demo")
    assert len(videos) == 8 and videos[0] == "resources/demo/Demo_SinglePerson/cam01.mp4"
    assert videos[-1] == "resources/demo/Demo_MultiPerson/cam04.mp4"
