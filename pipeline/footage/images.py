"""Frame images read and written through Python's file functions, so that any file name works.

OpenCV's ``imread``/``imwrite`` take the name as UTF-8 text: a name holding bytes that are not UTF-8
(kept by Python as surrogate escapes) crashes the process. Reading the bytes here and decoding them
in memory takes every name the file system does, at the same speed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def read_image(path: str | Path, flags: int | None = None) -> np.ndarray | None:
    """``cv2.imread(path, flags)`` for any file name (BGR, or as ``flags`` say); None when it cannot be read."""
    import cv2

    try:
        data = np.fromfile(Path(path), np.uint8)
    except (OSError, ValueError):
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR if flags is None else flags) if data.size else None


def write_image(path: str | Path, image: np.ndarray, params: Sequence[int] = ()) -> bool:
    """``cv2.imwrite(path, image, params)`` for any file name: the format is the name's extension."""
    import cv2

    ok, encoded = cv2.imencode(Path(path).suffix, image, list(params))
    if not ok:
        return False
    Path(path).write_bytes(encoded.tobytes())
    return True
