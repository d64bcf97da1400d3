"""What made an artifact, and writing artifacts so a crash never leaves half a file."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import logging
import os
import platform
import re
import shutil
import stat
import struct
import sys
import tempfile
from dataclasses import dataclass
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
    return dict(_package_versions())


@functools.lru_cache(maxsize=1)
def _package_versions() -> dict[str, str]:
    # read once per process: each metadata lookup parses a METADATA file (~50 ms per record in all)
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


# What a record says about the run that made it rather than about what it made: two runs of the same
# stage on the same inputs and parameters differ only here.
RUN_DETAILS = ("created", "command", "host", "slurm_job_id")


def what_was_made(record: dict[str, Any]) -> dict[str, Any]:
    """A metadata record with its provenance's run details (time, command line, host, job) left out: equal
    for two runs that made the same thing."""
    made = dict(record)
    if isinstance(made.get("provenance"), dict):
        made["provenance"] = {k: v for k, v in made["provenance"].items() if k not in RUN_DETAILS}
    return made


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
    except Exception as exc:
        raise_if_disk_full(exc, path)
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


# Below this many free bytes a failed write is taken for a full disk: some writers do not say so
# (torch.save's zip writer reports "unexpected pos"); a write that failed for want of space leaves
# the file system at its last block.
_FULL_DISK_BYTES = 1 << 20


def raise_if_disk_full(exc: BaseException, path: Path) -> None:
    """Raise an OSError (ENOSPC) naming ``path`` when ``exc``, raised while writing it, came of a full disk.

    Called before the temporary is removed, while it still holds the space it took.
    """
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        full = True
    elif "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc):
        full = True
    elif isinstance(exc, (OSError, RuntimeError)):
        try:
            full = shutil.disk_usage(path.parent).free < _FULL_DISK_BYTES
        except OSError:
            full = False
    else:
        full = False
    if full:
        error = OSError(f"{path}: no space left on device while writing it; free some space and rerun "
                        "(what was there before is kept)")
        error.errno = errno.ENOSPC
        raise error from exc


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
        if source in resolved.parents:
            raise ValueError(f"{path}: output folder lies inside the input {source}; give a folder outside it")
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir() or path.is_symlink():
        raise ValueError(f"{path}: output exists and is not a folder; remove it or give a new folder")
    entries = sorted(path.iterdir())
    if not entries:
        return
    try:
        recorded = json.loads((path / marker).read_text())["provenance"]["stage"]
    except (OSError, ValueError, KeyError, TypeError):
        recorded = None
    # A folder stage writes plain files only: a folder or a link under an owned name is foreign.
    foreign = [e.name for e in entries
               if not owned.fullmatch(e.name) or e.is_symlink() or not e.is_file()]
    entries = [e.name for e in entries]
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
    except Exception as exc:
        raise_if_disk_full(exc, path)
        raise
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


# ------------------------------------------------------------------ the output rule of every stage
#
# One rule for every path a stage writes, checked by ``edn`` before the stage starts (see each
# subpackage's commands.py, whose stage_paths lists its stages' inputs and outputs): an output
# may not be, contain, or lie inside an input; a file output must carry the extension of what the
# stage writes; an existing file is replaced only when its provenance names the stage (``--force``
# overrides that one check). Folder stages' ownership of their folders is :func:`check_output_dir`.

_KINDS = {".parquet": "Parquet", ".json": "JSON", ".pt": "model", ".png": "PNG image", ".mp4": "MP4 video"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_KEY = "edn"  # PNG tEXt keyword holding the provenance JSON of a figure
MP4_COMMENT = "edn-stage="  # MP4 comment tag naming the stage that encoded the video


@dataclass(frozen=True)
class FileOutput:
    """A file a stage writes: its path, the extension it must have, the stages whose files it may
    replace (default: the stage itself)."""

    path: Path
    suffix: str
    replaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class FolderOutput:
    """A folder a stage writes: wholly (``entries`` empty; :func:`atomic_dir` checks ownership) or
    only the named ``entries`` inside it (a trailing ``/`` marks a sub-folder), vouched for by the
    ``marker`` JSON whose provenance names the stage (a folder others may share, e.g. a run folder)."""

    path: Path
    entries: tuple[str, ...] = ()
    marker: str = "meta.json"
    replaces: tuple[str, ...] = ()


def recorded_stage(path: str | Path) -> str | None:
    """The ``edn`` stage an existing file's provenance names; None when it has none or is unreadable.

    Parquet: the ``edn`` schema metadata; JSON: its ``provenance``; a model or checkpoint: its
    ``provenance`` or ``stage``; PNG: the ``edn`` text chunk; MP4: the comment tag.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            with path.open("rb") as f:  # a file object: pyarrow reads a name as a URI
                raw = (pq.read_schema(f).metadata or {}).get(b"edn")
            record = json.loads(raw) if raw else None
        elif suffix == ".json":
            record = json.loads(path.read_text())
        elif suffix == ".pt":
            record = _torch_record(path)
        elif suffix == ".png":
            record = json.loads(_png_text(path).get(PNG_KEY, "null"))
        elif suffix == ".mp4":
            return _mp4_stage(path)
        else:
            return None
    except Exception:  # any unreadable file simply has no edn provenance
        return None
    if not isinstance(record, dict):
        return None
    stage = (record.get("provenance") or {}).get("stage") if isinstance(record.get("provenance"), dict) else None
    stage = stage or record.get("stage")
    return stage if isinstance(stage, str) else None


def _torch_record(path: Path) -> dict[str, Any]:
    import torch

    try:  # memory-mapped: the weights are not read, only the small record
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) format cannot be mapped
        state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: state[k] for k in ("provenance", "stage") if k in state} if isinstance(state, dict) else {}


def _png_text(path: Path) -> dict[str, str]:
    """The tEXt chunks before the image data of a PNG file."""
    texts: dict[str, str] = {}
    with path.open("rb") as f:
        if f.read(8) != _PNG_SIGNATURE:
            return texts
        while True:
            head = f.read(8)
            if len(head) < 8:
                return texts
            length, kind = int.from_bytes(head[:4], "big"), head[4:]
            if kind == b"IDAT" or length > 1 << 24:
                return texts
            body = f.read(length)
            f.read(4)  # CRC
            if kind == b"tEXt" and b"\0" in body:
                key, _, value = body.partition(b"\0")
                texts[key.decode("latin-1")] = value.decode("latin-1")


def _mp4_boxes(f: Any, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the ISO-BMFF boxes between two offsets of an open file."""
    offset = start
    while offset + 8 <= end:
        f.seek(offset)
        size, kind = struct.unpack(">I4s", f.read(8))
        header = 8
        if size == 1:  # a 64-bit size follows the type
            size, header = struct.unpack(">Q", f.read(8))[0], 16
        elif size == 0:  # to the end of the enclosing box
            size = end - offset
        if size < header or offset + size > end:
            return
        yield kind, offset + header, offset + size
        offset += size


def _mp4_stage(path: Path) -> str | None:
    """The stage in an MP4's comment tag (moov/udta/meta/ilst/(c)cmt, as ffmpeg's ``-metadata comment=``
    writes it), read from the box structure: no ffmpeg needed, nothing decoded."""
    with open(path, "rb") as f:
        span = (0, f.seek(0, os.SEEK_END))
        # meta is a full box: version and flags before its children
        for kind, skip in ((b"moov", 0), (b"udta", 0), (b"meta", 4), (b"ilst", 0), (b"\xa9cmt", 0)):
            box = next(((s + skip, e) for k, s, e in _mp4_boxes(f, *span) if k == kind), None)
            if box is None:
                return None
            span = box
        data = next(((s, e) for k, s, e in _mp4_boxes(f, *span) if k == b"data"), None)
        if data is None or data[1] - data[0] < 8:
            return None
        f.seek(data[0] + 8)  # type indicator and locale, then the text
        text = f.read(data[1] - data[0] - 8).decode("utf-8", errors="replace")
    return text[len(MP4_COMMENT):] if text.startswith(MP4_COMMENT) else None


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_outputs(stage: str, inputs: tuple[str | Path | None, ...],
                  outputs: tuple[FileOutput | FolderOutput, ...], force: bool = False) -> None:
    """Refuse, before any work, every output path that would destroy a file the stage did not write.

    Raises ValueError naming the path and what to do. ``force`` lets a file output replace an
    existing file of another kind; it never lets an output replace an input.
    """
    sources = [(Path(p), Path(p).resolve(), _inode(Path(p))) for p in inputs if p is not None]
    seen: dict[Path, Path] = {}
    for out in outputs:
        written = [out.path] if isinstance(out, FileOutput) else [out.path / e.rstrip("/") for e in out.entries]
        for path in [out.path] + written:
            resolved, inode = path.resolve(), _inode(path)
            # A folder written only by its named entries may hold other files, inputs among them
            # (the workflow keeps the global phase's run inside the local phase's run folder).
            shared = path == out.path and isinstance(out, FolderOutput) and bool(out.entries)
            for source, where, source_inode in sources:
                if resolved == where or (inode is not None and inode == source_inode):
                    raise ValueError(f"{path}: is the input {source}; refusing to overwrite an input, give another "
                                     "output path (the output comes last)")
                if resolved in where.parents and not shared:
                    raise ValueError(f"{path}: output would hold the input {source}; give another output path")
                if where in resolved.parents:
                    raise ValueError(f"{path}: output lies inside the input folder {source}; give a path outside it")
        for path in written or [out.path]:
            if path.resolve() in seen:
                raise ValueError(f"{path}: given twice as an output (also as {seen[path.resolve()]}); give each "
                                 "output its own path")
            seen[path.resolve()] = path
    for out in outputs:
        if isinstance(out, FileOutput):
            _check_file_output(stage, out, force)
        else:
            _check_folder_output(stage, out, force)


# The markers of the stages that own whole folders (extract, render: meta.json; evaluate).
_FOLDER_MARKERS = ("meta.json", "evaluation.json")
_FOLDER_STAGES = ("extract", "render", "evaluate")


def _folder_owner(folder: Path) -> str | None:
    """The folder stage that owns ``folder`` wholly (its marker names it), or None."""
    for marker in _FOLDER_MARKERS:
        if (folder / marker).is_file():
            stage = recorded_stage(folder / marker)
            if stage in _FOLDER_STAGES:
                return stage
    return None


def _check_not_in_owned_folder(stage: str, path: Path, folder: Path | None) -> None:
    """Refuse an output inside a folder that a folder stage owns wholly.

    ``folder`` (the output's own folder, or a file output's parent) may be owned by ``stage``
    itself; any folder above it may hold only what its owner writes, plain files, so an output
    nested deeper is refused whoever owns it (links resolved: a link into an owned folder counts).
    """
    if folder is not None:
        owner = _folder_owner(folder)
        if owner is not None and owner != stage:
            raise ValueError(f"{path}: {folder} is the output folder of `edn {owner}`, which may hold only what "
                             "that stage writes; give a path outside it")
    below = (folder or path).resolve()
    for ancestor in below.parents:
        owner = _folder_owner(ancestor)
        if owner is not None:
            raise ValueError(f"{path}: lies inside {ancestor}, the output folder of `edn {owner}`, which holds only "
                             "the files that stage writes; give a path outside it")


_SPECIAL_FILES = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                  (stat.S_ISSOCK, "a socket"))


def _check_not_special(stage: str, path: Path) -> None:
    """Refuse a FIFO, device or socket (or a link to one) as an output: reading what it holds could block for
    ever, and replacing it is never what was meant."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    for test, kind in _SPECIAL_FILES:
        if test(mode):
            raise ValueError(f"{path}: is {kind}, not a plain file; `edn {stage}` writes plain files and folders "
                             "only, give another path")


def _check_parents(path: Path) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{path}: {parent} is a file, not a folder; give another output path")
            return


def _check_file_output(stage: str, out: FileOutput, force: bool) -> None:
    path, kind = out.path, _KINDS.get(out.suffix, out.suffix)
    _check_not_special(stage, path)
    _check_parents(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; `edn {stage}` writes a {kind} file ({out.suffix}) here, "
                         "give a file path")
    if path.suffix.lower() != out.suffix:
        slip = (" and exists: did you forget the output? It comes last" if path.exists() else "")
        raise ValueError(f"{path}: `edn {stage}` writes a {kind} file, the output must end in {out.suffix}{slip}")
    _check_not_in_owned_folder(stage, path, path.parent)
    if not (path.exists() or path.is_symlink()):
        return
    recorded = recorded_stage(path)
    if recorded in (out.replaces or (stage,)):
        return
    made = f"was written by `edn {recorded}`" if recorded else "carries no edn provenance"
    if force:
        logging.getLogger("edn").warning("%s: replacing it although it %s (--force)", path, made)
        return
    raise ValueError(f"{path}: exists and {made}, not by `edn {stage}`; refusing to overwrite it: give another "
                     "path, or add --force to replace it")


def _check_folder_output(stage: str, out: FolderOutput, force: bool) -> None:
    path = out.path
    _check_not_special(stage, path)
    _check_parents(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise ValueError(f"{path}: exists and is not a folder; `edn {stage}` writes a folder here, "
                         "give a new folder")
    # a whole folder's own ownership is atomic_dir's to check; what lies above it is checked here
    _check_not_in_owned_folder(stage, path, path if out.entries and path.is_dir() else None)
    if not out.entries or not path.is_dir():
        return
    present = []
    for entry in out.entries:
        target = path / entry.rstrip("/")
        _check_not_special(stage, target)
        if not (target.exists() or target.is_symlink()):
            continue
        if entry.endswith("/") and target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
            continue  # an empty folder holds nothing to lose (Snakemake makes its outputs' folders first)
        if target.is_symlink() or target.is_dir() != entry.endswith("/"):
            raise ValueError(f"{target}: `edn {stage}` keeps a {'folder' if entry.endswith('/') else 'file'} "
                             "here and this is not one; move it away or give another folder")
        present.append(target.name)
    if not present:
        return
    marker = path / out.marker
    recorded = recorded_stage(marker) if marker.is_file() and not marker.is_symlink() else None
    if recorded in (out.replaces or (stage,)):
        return
    why = f"its {out.marker} names `edn {recorded}`" if recorded else f"no {out.marker} of `edn {stage}`"
    if force:
        logging.getLogger("edn").warning("%s: replacing %s although %s (--force)", path, ", ".join(present), why)
        return
    raise ValueError(f"{path}: holds {', '.join(present)} ({why}); refusing to overwrite them: give another folder, "
                     "or add --force to replace them")


# ------------------------------------------------------------------ one writer per output
#
# Every output path of a command is locked (``flock`` on ``.NAME.lock`` beside it) from before the stage
# starts until it ends: a second command writing the same file or folder meanwhile is refused, naming the
# holder. The kernel releases the lock when its holder dies, however it dies, so a killed writer leaves no
# obstacle; the lock file lies beside the output, not in it, so no folder gains an entry it does not own.

def lock_path(path: Path) -> Path:
    """The lock file of an output path: ``.NAME.lock`` in the output's folder."""
    return path.parent / f".{path.name}.lock"


@contextlib.contextmanager
def writer_lock(path: str | Path, stage: str) -> Iterator[None]:
    """Hold the one-writer lock of ``path`` while the block runs; RuntimeError naming the path and the
    holder's process when a live process holds it. The lock file is removed on release."""
    path = Path(path).parent.resolve() / Path(path).name
    lock = lock_path(path)
    made = [folder for folder in (lock.parent, *lock.parent.parents) if not folder.exists()]
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666 & ~_UMASK)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", errors="replace").strip() or "a starting process"
            os.close(fd)
            raise RuntimeError(f"{path}: being written by {holder} (lock {lock}); wait until it ends, or stop it "
                               "and run again (a killed writer's lock is released with it)") from None
        try:  # the previous holder may have removed the file between our open and flock: lock the new one
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} (`edn {stage}`)\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()  # while still held: a waiting opener re-checks the inode and retries
        os.close(fd)
        for folder in made:  # folders made for the lock alone, when the command wrote nothing into them
            with contextlib.suppress(OSError):
                folder.rmdir()


@contextlib.contextmanager
def output_locks(stage: str, outputs: tuple[FileOutput | FolderOutput, ...]) -> Iterator[None]:
    """:func:`writer_lock` on every output of a command (see :func:`check_outputs`) for the block's duration."""
    with contextlib.ExitStack() as stack:
        for out in outputs:
            stack.enter_context(writer_lock(out.path, stage))
        yield
