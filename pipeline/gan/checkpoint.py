"""Checkpoints that load with ``torch.load(weights_only=True)``: only tensors and plain containers.

A resume checkpoint holds models, optimizers, schedulers, step, epoch, the data-order state
and every random generator (python, numpy, torch CPU, CUDA) of every rank, so a restarted
run repeats the uninterrupted run's next steps exactly. Files are written atomically.

Every model and checkpoint file carries ``sha256``, a hash of all its other contents (each
tensor's dtype, shape and bytes, and every record, in a canonical order: :func:`content_sha256`),
checked on every load: a file damaged after it was written (a flipped byte inside a tensor loads
without complaint from torch) is refused with its path (:class:`DamagedFileError`). A file
written without one (by an older edn) is loaded only when its zip CRCs hold, with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from pipeline.provenance import atomic_path

CHECKPOINT_VERSION = 1
CHECKSUM_KEY = "sha256"  # the entry of a model or checkpoint file holding :func:`content_sha256`

log = logging.getLogger(__name__)


class DamagedFileError(ValueError):
    """A model or checkpoint file whose contents no longer match the checksum written with them."""


def content_sha256(state: dict[str, Any]) -> str:
    """sha256 of everything in a file's dict but its ``sha256`` entry: tensors by dtype, shape and
    bytes, containers and plain values by type and value, dict keys in sorted order (so the hash
    does not depend on how the file was pickled, only on what it holds)."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in state.items() if k != CHECKSUM_KEY})
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}:".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}:".encode())
        for key in sorted(value, key=lambda k: (type(k).__name__, repr(k))):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}:".encode())
        for item in value:
            _feed(digest, item)
    else:  # str, int, float, bool, None: repr is exact (floats round-trip)
        text = repr(value)
        digest.update(f"{type(value).__name__}{len(text)}:{text}".encode())


def sealed(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with its :func:`content_sha256` under ``sha256``, as every model and checkpoint is written."""
    body = {k: v for k, v in state.items() if k != CHECKSUM_KEY}
    return {**body, CHECKSUM_KEY: content_sha256(body)}


def _zip_damage(path: Path) -> str | None:
    """The first member of a zip-format torch file whose CRC fails, or None (also for a non-zip file)."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        return archive.testzip()


def verify_contents(path: Path, state: dict[str, Any], what: str) -> None:
    """Refuse a model or checkpoint file whose contents do not match its ``sha256``; a file without one
    (written by an older edn) passes with a warning when its zip CRCs hold."""
    stored = state.get(CHECKSUM_KEY)
    if stored is None:
        bad = _zip_damage(path)
        if bad is not None:
            raise DamagedFileError(f"{path}: damaged {what} file: the zip CRC of {bad} fails; "
                                   "delete it and make it again")
        log.warning("%s: %s file written without a content checksum (by an older edn): its zip CRCs hold, but "
                    "damage inside it cannot be ruled out; make it again to have it checked", path, what)
        return
    if not isinstance(stored, str) or content_sha256(state) != stored:
        raise DamagedFileError(f"{path}: damaged {what} file: its contents do not match the sha256 written with "
                               "them (bytes changed after it was written); delete it and make it again")


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
        torch.save(sealed({"version": CHECKPOINT_VERSION, **state}), tmp)


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


# What each kind of .pt file is and which command writes it, for errors about a file of the wrong kind.
MADE_BY = {"generator": "edn train", "face generator": "edn train-face",
           "training checkpoint": "edn train / edn train-face (checkpoint.pt of a run folder)"}
# Models larger than this are refused before they are built (4 GiB of float32 weights).
MAX_MODEL_PARAMETERS = 1_000_000_000


def file_kind(state: dict[str, Any]) -> str | None:
    """Which kind of ``edn`` .pt file a loaded dict is (a key of :data:`MADE_BY`), None when unknown.

    A checkpoint holds the models with their optimizers; a model file its ``provenance`` (stage
    train or train-face) and ``config``, whose ``box_size`` marks a face generator and ``kind``
    (global/local) a pose generator.
    """
    if "models" in state and "optimizers" in state:
        return "training checkpoint"
    record = state.get("provenance")
    stage = record.get("stage") if isinstance(record, dict) else None
    config = state.get("config") if isinstance(state.get("config"), dict) else {}
    if stage == "train-face" or "box_size" in config:
        return "face generator"
    if stage == "train" or "kind" in config:
        return "generator"
    return None


def _check_kind(path: Path, state: dict[str, Any], what: str) -> None:
    found = file_kind(state)
    if found is not None and found != what:
        raise ValueError(f"{path}: is a {found} file (made by {MADE_BY[found]}), not a {what} file "
                         f"(made by {MADE_BY.get(what, what)}); give the right file")


def check_config(path: Path, config: Any, schema: dict[str, tuple[Any, ...]], what: str) -> dict[str, Any]:
    """``config`` checked against ``schema``: key -> (required, allowed values) or (required, type, lo, hi).

    Errors name the file, the key and what was found, so a damaged or foreign record fails
    before anything is built from it.
    """
    if not isinstance(config, dict):
        raise ValueError(f"{path}: {what} 'config' is not a record ({type(config).__name__})")
    for key, rule in schema.items():
        required, *allowed = rule
        if key not in config:
            if required:
                raise ValueError(f"{path}: {what} config lacks '{key}'")
            continue
        value = config[key]
        if len(allowed) == 1:
            if value not in allowed[0]:
                raise ValueError(f"{path}: {what} config '{key}' is {value!r}, expected one of {sorted(allowed[0])}")
            continue
        kind, lo, hi = allowed
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            raise ValueError(f"{path}: {what} config '{key}' must be {kind.__name__}, found {value!r}")
        if kind is not bool and not lo <= value <= hi:
            raise ValueError(f"{path}: {what} config '{key}' is {value}, outside {lo}..{hi}")
    return config


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; errors name the file, a damaged one
    (:class:`DamagedFileError`) says to delete it."""
    path = Path(path)
    # Memory-mapped: the ranks of a node resuming at once share one copy in the page cache
    # instead of each holding the whole file (2.3 GB at paper size) in its own memory.
    state = load_tensor_file(path, "checkpoint", mmap=True)
    try:
        verify_contents(path, state, "training checkpoint")
    except DamagedFileError as exc:  # never the start of a resumed run, and never silently started over
        raise DamagedFileError(f"{exc}; a run cannot resume from it: delete {path} to start the run over") from exc
    _check_kind(path, state, "training checkpoint")
    if state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: not an edn checkpoint of version {CHECKPOINT_VERSION}")
    return state


def save_model(path: str | Path, model: torch.nn.Module, config: dict[str, Any], **extra: Any) -> None:
    """Inference file: ``state_dict`` on the CPU plus the architecture ``config`` that rebuilds it."""
    state_dict = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(sealed({"config": dict(config), "state_dict": state_dict, **extra}), tmp)


def load_model(path: str | Path, build: Callable[[dict[str, Any]], torch.nn.Module], what: str, made_by: str,
               device: str | torch.device = "cpu", extras: dict[str, Any] | None = None,
               schema: dict[str, tuple[Any, ...]] | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a model written by :func:`save_model`: (model in eval mode on ``device``, its config).

    ``what`` names the file kind (a key of :data:`MADE_BY`) and ``made_by`` the command that
    writes it, for the errors. The file's contents are checked against its ``sha256``
    (:func:`verify_contents`); before any weight is allocated the file's kind is checked, its
    config against ``schema`` (:func:`check_config`), and the architecture, built on the meta
    device, against :data:`MAX_MODEL_PARAMETERS` and the stored weights' names and shapes.
    ``extras``, when given, receives the file's other entries (step, provenance, ...), so callers
    that record them need not read the file a second time.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file not found (run `{made_by}` first)")
    state = load_tensor_file(path, what)
    verify_contents(path, state, what)
    _check_kind(path, state, what)
    if "config" not in state or "state_dict" not in state:
        raise ValueError(f"{path}: not a {what} file (expected 'config' and 'state_dict')")
    config = dict(check_config(path, state["config"], schema or {}, what))
    weights = state["state_dict"]
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise ValueError(f"{path}: {what} 'state_dict' is not a set of named tensors")
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated
            expected = {k: tuple(v.shape) for k, v in build(config).state_dict().items()}
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: {what} config does not describe a network ({exc})") from exc
    n_parameters = sum(math.prod(shape) for shape in expected.values())
    if n_parameters > MAX_MODEL_PARAMETERS:
        raise ValueError(f"{path}: {what} config describes {n_parameters:,} weights, more than the "
                         f"{MAX_MODEL_PARAMETERS:,} a model may have; the file is damaged or not one of ours")
    found = {k: tuple(v.shape) for k, v in weights.items()}
    if found != expected:
        wrong = sorted(set(found) ^ set(expected)) or [k for k in expected if found[k] != expected[k]]
        raise ValueError(f"{path}: weights do not fit the stored {what} config ({len(wrong)} tensors differ, "
                         f"e.g. {wrong[0]}: {found.get(wrong[0])} stored, {expected.get(wrong[0])} expected)")
    model = build(config)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit the stored architecture ({exc})") from exc
    if extras is not None:
        extras.update({k: v for k, v in state.items() if k not in ("config", "state_dict", CHECKSUM_KEY)})
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
