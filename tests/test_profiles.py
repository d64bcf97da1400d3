"""The execution profiles and conda environments agree with each other, the workflow and the pins."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "profiles"


def profile(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


def pins(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)==([^\s#;]+)", line)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_local_profile_lets_gpu_jobs_run_one_at_a_time():
    local = profile("default")
    assert "gpu=1" in local["resources"]
    assert "executor" not in local  # local runs only


def test_slurm_profile_names_what_users_edit_and_logs_to_results():
    slurm = profile("slurm")
    assert slurm["executor"] == "slurm"
    assert {"slurm_partition", "slurm_account"} <= set(slurm["default-resources"])
    assert slurm["slurm-logdir"] == "results/logs/slurm"
    assert slurm["retries"] >= 1
    assert slurm["slurm-keep-successful-logs"] is True  # docs/hpc.md sends users to these logs
    for rule in ("train_generator", "train_global", "train_face", "train_frame_by_frame", "train_ablation"):
        train = slurm["set-resources"][rule]
        # GPUs, nodes, CPUs and memory come from the config (train_resources in the rule); a profile
        # value would replace them, e.g. the memory that grows after an out-of-memory kill
        assert not {"gpu", "gres", "nodes", "mem_mb", "cpus_per_task", "slurm_extra"} & set(train), rule
        # below the 24 h limit common on GPU partitions; a job stopped at it resumes in the next
        assert train["runtime"] <= 1440, rule


def test_threads_are_the_cpus_a_job_gets():
    # The executor asks --cpus-per-task = threads unless cpus_per_task is set, and Snakemake hands
    # threads to the job as OMP_NUM_THREADS: so no cpus_per_task, threads per rule instead.
    for name in ("slurm", "slurm-test"):
        prof = profile(name)
        assert "cpus_per_task" not in prof["default-resources"], name
        assert not [r for r, res in prof["set-resources"].items() if "cpus_per_task" in res], name
        assert {"transfer", "evaluate", "detect"} <= set(prof["set-threads"]), name
        assert max(prof["set-threads"].values()) <= prof["cores"], name


def test_test_profile_mirrors_the_cluster_profile():
    slurm, test = profile("slurm"), profile("slurm-test")
    assert test["groups"] == slurm["groups"]
    assert test["group-components"] == slurm["group-components"]
    assert set(test["set-resources"]) == set(slurm["set-resources"])
    assert set(test["set-threads"]) == set(slurm["set-threads"])
    # without accounting: squeue for status, no account
    assert test["slurm-status-command"] == "squeue" and test["slurm-no-account"] is True
    assert "slurm_account" not in test["default-resources"]


def test_grouped_and_configured_rules_exist_in_the_workflow(tmp_path):
    sheet = tmp_path / "videos.tsv"
    sheet.write_text("name\tpath\trole\tsubject\nv\tv.mp4\ttarget\ts\n")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["videos"] = str(sheet)
    rules: set[str] = set()
    for chunk_frames in (0, 500):  # chunked detection has rules of its own (detect_chunk, gather_keypoints)
        config["detect"]["chunk_frames"] = chunk_frames
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        done = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"),
                               "--configfile", "config.yaml", "--list-rules"],
                              cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        rules |= set(done.stdout.split())
    assert {"detect", "detect_chunk", "gather_keypoints"} <= rules
    slurm = profile("slurm")
    assert set(slurm["groups"]) <= rules
    assert set(slurm["set-resources"]) <= rules


def test_conda_envs_pin_what_requirements_txt_pins():
    wanted = pins((REPO / "requirements.txt").read_text().splitlines())
    wanted.update(pins((REPO / "requirements-slurm.txt").read_text().splitlines()))
    for env_file in sorted((REPO / "envs").glob("*.yaml")):
        env = yaml.safe_load(env_file.read_text())
        assert "conda-forge" in env["channels"], env_file.name
        pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
        got = pins(pip_section)
        assert got, env_file.name
        for name, version in got.items():
            assert wanted.get(name) == version, f"{env_file.name}: {name}=={version}, requirements: {wanted.get(name)}"


def test_every_gpu_rule_gets_gpu_resources_on_the_cluster():
    # A rule that asks for a GPU must name the GPU partition in the cluster profile, or SLURM
    # would put it on the default (CPU) partition.
    # Training rules take their GPUs from the config (train_resources), the others from the profile.
    gpu_rules, train_rules = set(), set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for rule, body in re.findall(r"^(?:rule|use rule \w+ as) (\w+)(?: with)?:\n((?:    .*\n|\n)*)",
                                     smk.read_text(), re.M):
            if re.search(r"^\s+gpu=", body, re.M):
                gpu_rules.add(rule)
            if re.search(r"^\s+\*\*train_resources\(", body, re.M):
                train_rules.add(rule)
    assert {"transfer", "evaluate"} <= gpu_rules
    assert train_rules == {"train_generator", "train_global", "train_face", "train_frame_by_frame", "train_ablation"}
    cluster = profile("slurm")["set-resources"]
    for rule in gpu_rules | train_rules:
        assert rule in cluster and cluster[rule]["slurm_partition"] != profile("slurm")["default-resources"][
            "slurm_partition"], rule
    for rule in gpu_rules:
        assert cluster[rule]["gpu"] >= 1, rule


def test_python_version_comes_from_pyproject():
    # pyproject.toml's requires-python is the one place: the Makefile reads it, the conda envs build it.
    import tomllib

    minimum = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert minimum.startswith(">=")
    version = minimum[2:]
    makefile = (REPO / "Makefile").read_text()
    assert "PYTHON_MIN := $(shell sed -n 's/^requires-python" in makefile and "(3, 1" not in makefile
    for env_file in sorted((REPO / "envs").glob("*.yaml")):
        deps = yaml.safe_load(env_file.read_text())["dependencies"]
        assert f"python={version}" in deps, env_file.name
