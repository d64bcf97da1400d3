"""Pose: the keypoint contract and everything done to keypoints (detection, QC, smoothing, statistics,
normalization, retargeting, stick figures, the synthetic QC suite). May import ``footage`` and ``provenance``."""
