"""Checkpoints that load with ``torch.load(weights_only=True)``: only tensors and plain containers.

A resume checkpoint holds models, optimizers, schedulers, step, epoch, the data-order state
and every random generator (python, numpy, torch CPU, CUDA) of every rank, so a restarted
run repeats the uninterrupted run's next steps exactly. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from pipeline.provenance import atomic_path

CHECKPOINT_VERSION = 1


def rng_state() -> dict[str, Any]:
    """Every RNG state of this process as tensors / lists / ints."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus a format version) atomically: a crash leaves the previous file intact."""
    with atomic_path(path) as tmp:
        torch.save({"version": CHECKPOINT_VERSION, **state}, tmp)


def load_tensor_file(path: str | Path, what: str, mmap: bool = False) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a dict file; a broken file or a non-dict is an error naming it.

    ``mmap``: tensors stay in the file's pages until used (shared by processes reading the same file).
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # torch raises pickle, zip and runtime errors for broken files
        raise ValueError(f"{path}: unreadable {what} file ({exc})") from exc
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict ({what} expected)")
    return state


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; errors name the file."""
    path = Path(path)
    # Memory-mapped: the ranks of a node resuming at once share one copy in the page cache
    # instead of each holding the whole file (2.3 GB at paper size) in its own memory.
    state = load_tensor_file(path, "checkpoint", mmap=True)
    if state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: not an edn checkpoint of version {CHECKPOINT_VERSION}")
    return state


def save_model(path: str | Path, model: torch.nn.Module, config: dict[str, Any], **extra: Any) -> None:
    """Inference file: ``state_dict`` on the CPU plus the architecture ``config`` that rebuilds it."""
    state_dict = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"config": dict(config), "state_dict": state_dict, **extra}, tmp)


def load_model(path: str | Path, build: Callable[[dict[str, Any]], torch.nn.Module], what: str, made_by: str,
               device: str | torch.device = "cpu", extras: dict[str, Any] | None = None
               ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a model written by :func:`save_model`: (model in eval mode on ``device``, its config).

    ``what`` names the file kind and ``made_by`` the command that writes it, for the errors.
    ``extras``, when given, receives the file's other entries (step, provenance, ...), so callers
    that record them need not read the file a second time.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file not found (run `{made_by}` first)")
    state = load_tensor_file(path, what)
    if "config" not in state or "state_dict" not in state:
        raise ValueError(f"{path}: not a {what} file (expected 'config' and 'state_dict')")
    config = dict(state["config"])
    model = build(config)
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit the stored architecture ({exc})") from exc
    if extras is not None:
        extras.update({k: v for k, v in state.items() if k not in ("config", "state_dict")})
    return model.to(device).eval(), config


def parameter_checksum(model: torch.nn.Module) -> float:
    """Sum of all parameters in float64: equal across DDP ranks when they are in sync."""
    with torch.no_grad():
        return float(sum(p.detach().double().sum().item() for p in model.parameters()))


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """Hash of named tensors' values: unlike a file hash, unchanged by re-saving with new metadata."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
