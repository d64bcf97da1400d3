"""What made an artifact, and writing artifacts so a crash never leaves half a file."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import pipeline

_UMASK = os.umask(0)
os.umask(_UMASK)
_TRACKED_PACKAGES = ("numpy", "pandas", "pyarrow", "scipy", "opencv-contrib-python", "opencv-python",
                     "opencv-python-headless", "mediapipe", "torch", "torchvision", "ffmpeg-python")


def package_versions() -> dict[str, str]:
    """Versions of the packages whose behaviour shapes our outputs (those installed)."""
    versions = {"python": platform.python_version(), "edn": pipeline.__version__}
    for name in _TRACKED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def provenance(stage: str, params: dict[str, Any]) -> dict[str, Any]:
    """The record every artifact carries: stage, its parameters, versions, time, command."""
    record = {
        "stage": stage,
        "params": params,
        "versions": package_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "host": platform.node(),
    }
    if os.environ.get("SLURM_JOB_ID"):  # made inside a batch job: which one
        record["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    return record


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path, ".tmp" + path.suffix)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts get the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temps(path: Path, suffix: str) -> None:
    """Delete temporaries that an earlier, killed write of ``path`` left beside it.

    Only names of the exact form :func:`atomic_path` / :func:`atomic_dir` create for this
    ``path`` (``.NAME.<8 random characters>SUFFIX``) are touched. Two processes writing the
    same output at once are not supported (Snakemake locks its working directory).
    """
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}{re.escape(suffix)}")
    with contextlib.suppress(FileNotFoundError):
        for entry in path.parent.iterdir():
            if pattern.fullmatch(entry.name):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()


def check_output_dir(path: Path, stage: str, owned: re.Pattern[str], inputs: tuple[Path, ...] = (),
                     marker: str = "meta.json") -> None:
    """Refuse to replace a folder that ``stage`` does not own; errors name the folder and why.

    A folder is ours when it is absent or empty, or when its ``marker`` JSON records ``stage``
    in its provenance and every entry's name matches ``owned``. The working directory, its
    ancestors and any folder holding an input are never ours.
    """
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise ValueError(f"{path}: output folder is the working directory or above it; give a new folder")
    for source in inputs:
        source = Path(source).resolve()
        if resolved == source or resolved in source.parents:
            raise ValueError(f"{path}: output folder holds the input {source}; give a new folder")
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir() or path.is_symlink():
        raise ValueError(f"{path}: output exists and is not a folder; remove it or give a new folder")
    entries = sorted(e.name for e in path.iterdir())
    if not entries:
        return
    try:
        recorded = json.loads((path / marker).read_text())["provenance"]["stage"]
    except (OSError, ValueError, KeyError, TypeError):
        recorded = None
    foreign = [name for name in entries if not owned.fullmatch(name)]
    if recorded != stage or foreign:
        shown = foreign or entries
        listed = ", ".join(shown[:5]) + (f" and {len(shown) - 5} more" if len(shown) > 5 else "")
        why = f"{marker} of `edn {stage}` missing" if recorded != stage else "files this stage did not write"
        raise ValueError(f"{path}: output folder holds {listed} ({why}); refusing to replace it, "
                         "move them away or give a new folder")


@contextlib.contextmanager
def atomic_dir(path: str | Path, stage: str, owned: str, inputs: tuple[str | Path, ...] = (),
               marker: str = "meta.json") -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` only on success.

    ``owned`` is a regular expression every name in a previous output must match (see
    :func:`check_output_dir`, checked before any work and again before replacing), so files
    the stage did not write are never deleted.
    """
    path = Path(path)
    pattern = re.compile(owned)
    inputs = tuple(Path(p) for p in inputs)
    check_output_dir(path, stage, pattern, inputs, marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path, ".tmp")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp.chmod(0o777 & ~_UMASK)
    try:
        yield tmp
        check_output_dir(path, stage, pattern, inputs, marker)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (sorted keys, so identical content gives identical bytes)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
