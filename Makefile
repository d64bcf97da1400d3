# Two commands for a new user: `make demo` and `make test`. Both set up .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CORES ?= all

.PHONY: doctor setup demo test test-fast bench bench-train bench-data bench-transfer bench-scale gpu-check lint report clean-results

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: $(STAMP)

# The main job on the demo footage (fetched by the workflow itself), then the report.
demo: setup
	$(VENV)/bin/snakemake --workflow-profile profiles/default --cores $(CORES)
	@$(MAKE) --no-print-directory report
	@echo "Transfer videos (and side by side):"
	@ls -1 results/transfer/*/*.mp4
	@echo "Evaluation tables: $$(ls results/evaluation/*/tables.md | tr '\n' ' ')"
	@echo "Report (open in a browser): results/report.html"

# Snakemake's HTML report of what the workflow made (figures, tables, videos with captions).
report: setup
	$(VENV)/bin/snakemake --workflow-profile profiles/default --report results/report.html

test: setup
	$(VENV)/bin/pytest -q

# Unit tests only: no workflow runs, no SLURM.
test-fast: setup
	$(VENV)/bin/pytest -q -m "not slow and not slurm"

bench: setup
	$(PY) scripts/bench_pose.py

bench-train: setup
	$(PY) scripts/bench_train.py

# Samples/s of one data worker at 512x256 and 1024x512, beside what a GPU step needs (gpu-check's rows).
bench-data: setup
	$(PY) scripts/bench_data.py

# edn transfer at 1024x512 with a stand-in generator of fixed latency: host work per frame not overlapped.
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
