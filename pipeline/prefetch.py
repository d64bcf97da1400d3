"""``make prefetch``: the pretrained weights the workflow loads, into the torch hub cache, once.

    python -m pipeline.prefetch        # TORCH_HOME=/shared/torch to put them on shared storage

Training's perceptual loss (VGG19) and evaluation's LPIPS (AlexNet) never download: they read
``$TORCH_HOME/hub/checkpoints/<file>`` (torch's cache; ``~/.cache/torch`` without TORCH_HOME) or a
configured file. This puts the files there on a machine with internet, e.g. a cluster's login
node, so that compute nodes without internet find them: run Snakemake with the same TORCH_HOME
exported (SLURM jobs inherit the environment). Each file is checked against the sha256 prefix in
its name, as torch does; a file already there is checked, not fetched again.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from pathlib import Path
from typing import Callable

from pipeline.evaluation.metrics import ALEXNET_FILE
from pipeline.gan.models.losses import VGG19_FILE, default_vgg_weights_path

log = logging.getLogger(__name__)

# torchvision's IMAGENET1K_V1 weights; the part after the last "-" of a name is its sha256 prefix.
WEIGHTS = {
    VGG19_FILE: "https://download.pytorch.org/models/vgg19-dcbbb0d1.pth",
    ALEXNET_FILE: "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
}


def cache_dir() -> Path:
    """Where training and evaluation look for the weights: torch's hub cache (honours TORCH_HOME), the
    folder of the perceptual loss's default VGG19 path (evaluation's AlexNet lookup uses the same)."""
    return default_vgg_weights_path().parent


def hash_prefix(name: str) -> str:
    return Path(name).stem.rsplit("-", 1)[-1]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, dest: Path, prefix: str) -> None:
    import torch

    # torch writes to a temporary file beside dest and renames it only after the hash matched
    torch.hub.download_url_to_file(url, str(dest), hash_prefix=prefix, progress=False)


def prefetch_weights(download: Callable[[str, Path, str], None] | None = None) -> list[Path]:
    """Every file of :data:`WEIGHTS` in :func:`cache_dir`, fetched (with ``download``, default torch's)
    when absent; returns their paths.

    Raises ValueError naming a file already there whose sha256 does not match its name.
    """
    download = download or _download
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, url in WEIGHTS.items():
        path, prefix = folder / name, hash_prefix(name)
        if path.is_file():
            if not sha256(path).startswith(prefix):
                raise ValueError(f"{path}: sha256 does not start with {prefix} (a partial or other file); "
                                 "delete it and run again")
            log.info("%s: already there", path)
        else:
            log.info("downloading %s -> %s", url, path)
            download(url, path, prefix)
            if not path.is_file():
                raise RuntimeError(f"{url}: the download did not write {path}")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.prefetch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        paths = prefetch_weights()
    except Exception as exc:  # no internet, a proxy, a bad file: say which, not a traceback
        print(f"prefetch: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    print(f"Jobs find these when TORCH_HOME={cache_dir().parents[1]} is set where Snakemake runs "
          "(it is torch's default when that is ~/.cache/torch).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
