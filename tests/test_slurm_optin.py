"""The real-SLURM tests are opt-in: a plain test run never installs or starts system services."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import slurm_cluster

REPO = Path(__file__).resolve().parents[1]


def test_a_plain_run_skips_the_real_slurm_tests_and_says_how_to_opt_in():
    env = {k: v for k, v in os.environ.items() if k != "EDN_SLURM_TESTS"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           str(REPO / "tests" / "test_slurm.py")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " skipped" in done.stdout and " passed" not in done.stdout and "failed" not in done.stdout
    assert "make test-slurm" in done.stdout


def test_installing_slurm_needs_the_opt_in(monkeypatch):
    monkeypatch.delenv("EDN_SLURM_TESTS", raising=False)
    monkeypatch.setattr(slurm_cluster, "missing_binaries", lambda: ["slurmd"])
    ran = []
    monkeypatch.setattr(slurm_cluster.subprocess, "run", lambda *a, **k: ran.append(a))
    with pytest.raises(slurm_cluster.SlurmUnavailable, match="opt-in"):
        slurm_cluster.install_packages()
    assert ran == []


def test_make_test_slurm_is_the_opt_in():
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile[makefile.index("\ntest-slurm:"):].split("\n\n")[0]
    assert "EDN_SLURM_TESTS=1" in recipe and "-m slurm" in recipe
    plain = makefile[makefile.index("\ntest:"):].split("\n\n")[0]
    assert "EDN_SLURM_TESTS" not in plain
