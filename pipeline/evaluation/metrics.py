"""Image and pose metrics of the paper's evaluation (Sec. 5), plus temporal stability.

SSIM follows Wang et al. (2004): 11x11 Gaussian window, sigma 1.5, on luminance in [0, 255].
LPIPS uses the pretrained AlexNet backbone (Zhang et al., 2018) and only that: when its
weights are not on this machine the metric is reported unavailable, never computed with a
randomly initialised network.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from pipeline.footage.streams import consecutive_differences
from pipeline.pose.keypoints import PARTS, present

log = logging.getLogger(__name__)

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's IMAGENET1K_V1 AlexNet
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _luminance(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3:  # BGR as cv2 reads it; ITU-R BT.601 weights
        image = image[..., 0] * 0.114 + image[..., 1] * 0.587 + image[..., 2] * 0.299
    return image


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two images (uint8 BGR or grey, same shape)."""
    from scipy.ndimage import gaussian_filter

    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ {a.shape} vs {b.shape}")
    x, y = _luminance(a), _luminance(b)

    def blur(z: np.ndarray) -> np.ndarray:
        return gaussian_filter(z, sigma=1.5, truncate=3.5, mode="reflect")  # 11x11 support

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    num = (2 * mx * my + _C1) * (2 * sxy + _C2)
    den = (mx * mx + my * my + _C1) * (sxx + syy + _C2)
    return float(np.mean(num / den))


def _chroma(image: np.ndarray) -> np.ndarray:
    """Cr and Cb (ITU-R BT.601, 0-255 scale, no offset) of a BGR image: (2, H, W) float64."""
    image = np.asarray(image, dtype=np.float64)
    y = _luminance(image)
    return np.stack([0.713 * (image[..., 2] - y), 0.564 * (image[..., 0] - y)])


def chroma_highband_energy(image: np.ndarray) -> float:
    """Colour noise of a BGR image (crop): the mean squared 3x3 Laplacian of its Cr and Cb planes.

    The Laplacian passes the highest spatial frequencies (its gain is 0 at DC and 8 at 0.5 cycles per
    pixel, over 1 above ~0.17), where real footage has almost no colour: cameras and JPEG keep chroma at
    half resolution or less, so per-pixel colour grain of a generator stands out against it while edges of
    the person's clothes add little. Luma is left out: texture and shading live there.
    """
    from scipy.ndimage import laplace

    chroma = _chroma(image)
    return float(np.mean([np.mean(laplace(c, mode="reflect") ** 2) for c in chroma]))


def crop(image: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray | None:
    """``image[y0:y1, x0:x1]`` for a box (x0, y0, x1, y1) clipped to the image; None if empty."""
    if box is None:
        return None
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 8 or y1 - y0 < 8:  # too small for an 11x11 SSIM window to mean anything
        return None
    return image[y0:y1, x0:x1]


def keypoint_box(joints: np.ndarray, margin: float = 0.1) -> tuple[int, int, int, int] | None:
    """Bounding box of the present joints of a (n, 3) array, grown by ``margin`` of its size."""
    ok = present(joints)
    if ok.sum() < 2:
        return None
    (x0, y0), (x1, y1) = joints[ok, :2].min(axis=0), joints[ok, :2].max(axis=0)
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    return int(x0 - mx), int(y0 - my), int(np.ceil(x1 + mx)), int(np.ceil(y1 + my))


def _joint_groups() -> dict[str, Any]:
    """Each part, both hands together (the paper's "hands") and every joint ("overall")."""
    groups: dict[str, Any] = dict(PARTS)
    groups["hands"] = np.r_[PARTS["left_hand"], PARTS["right_hand"]]
    groups["overall"] = slice(None)
    return groups


def pose_distance(real: np.ndarray, generated: np.ndarray) -> dict[str, float]:
    """Mean L2 (pixels) between keypoints found in both, per part, both hands and overall.

    ``real`` and ``generated`` are (frames, 137, 3). A part with no joint found in both
    gives NaN.
    """
    both = (real[..., 2] > 0) & (generated[..., 2] > 0)
    dist = np.linalg.norm(real[..., :2] - generated[..., :2], axis=-1)
    out = {}
    for name, part in _joint_groups().items():
        mask = both[:, part]
        out[name] = float(dist[:, part][mask].mean()) if mask.any() else float("nan")
    return out


def missed_detections(real: np.ndarray, generated: np.ndarray) -> dict[str, float]:
    """Mean count per image of joints found on the real frame but not on the generated one."""
    missed = (real[..., 2] > 0) & ~(generated[..., 2] > 0)
    return {name: float(missed[:, part].sum(axis=1).mean()) for name, part in _joint_groups().items()}


def temporal_instability(frames: Iterable[np.ndarray]) -> float:
    """Mean absolute difference (0-255 scale) between consecutive frames; NaN below two."""
    diffs = consecutive_differences(frames)
    return float(np.mean(diffs)) if diffs else float("nan")


def alexnet_weights(configured: str | Path | None = None) -> Path | None:
    """Where the pretrained AlexNet weights are: a configured file, else the torch hub cache."""
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: configured AlexNet weights (LPIPS backbone) not found")
        return path
    import torch

    cached = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE
    return cached if cached.is_file() else None


class LPIPS:
    """LPIPS (AlexNet, v0.1 linear layers shipped in the ``lpips`` wheel) on BGR uint8 crops.

    Build with :meth:`load`, which returns None, after logging why, when the pretrained
    backbone is absent. A call returns the distance as a 0-d tensor on the metric's device, not yet
    synchronised; :meth:`floats` brings many to the host at once.
    """

    def __init__(self, model: Any, device: str) -> None:
        self.model, self.device = model, device

    @classmethod
    def load(cls, weights: str | Path | None = None, device: str = "cpu") -> "LPIPS | None":
        found = alexnet_weights(weights)
        if found is None:
            import torch

            log.warning("LPIPS unavailable: pretrained AlexNet weights not found at %s. Get them on a "
                        "machine with internet: python -c \"import torchvision; torchvision.models."
                        "alexnet(weights='IMAGENET1K_V1')\" and copy the file there, or set "
                        "evaluate.lpips_weights in the config.",
                        Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE)
            return None
        import lpips
        import torch

        # Build LPIPS with an uninitialised backbone (nothing downloaded), then copy the
        # pretrained AlexNet features in: lpips keeps torchvision's layer indices in its slices.
        model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
        from pipeline.gan.checkpoint import load_tensor_file

        state = load_tensor_file(found, "AlexNet weight (LPIPS backbone)")
        features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        params = dict(model.net.named_parameters())
        for name, param in params.items():
            key = name.split(".", 1)[1]  # "slice1.0.weight" -> "0.weight"
            if key not in features or features[key].shape != param.shape:
                raise ValueError(f"{found}: not torchvision AlexNet weights (no matching 'features.{key}')")
            with torch.no_grad():
                param.copy_(features[key])
        return cls(model.eval().to(device), device)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> Any:
        """LPIPS of two BGR uint8 crops of one shape: a 0-d tensor on the device (no synchronisation)."""
        import torch

        # Both crops in one uint8 copy to the device, converted there (RGB, [-1, 1]).
        pair = torch.from_numpy(np.stack([a, b])).to(self.device, non_blocking=True)
        pair = pair.flip(-1).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        # The crop size changes almost every frame: cuDNN autotuning (which the generators' one frame size
        # gets) would tune again for each new size, costing more than it saves.
        benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = False
        try:
            with torch.no_grad():
                return self.model(pair[:1], pair[1:]).reshape(())
        finally:
            torch.backends.cudnn.benchmark = benchmark

    @staticmethod
    def floats(values: list[Any]) -> list[float]:
        """Distances as floats: the tensors among ``values`` in one copy to the host, floats (NaN) as they are."""
        import torch

        tensors = [v for v in values if isinstance(v, torch.Tensor)]
        host = iter(torch.stack(tensors).float().cpu().tolist() if tensors else [])
        return [next(host) if isinstance(v, torch.Tensor) else float(v) for v in values]
