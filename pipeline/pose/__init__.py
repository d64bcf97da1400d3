"""Pose: the keypoint contract and all done to keypoints (detection, QC and its synthetic suite, smoothing,
statistics, normalization, retargeting, stick figures). May import footage, the top level's provenance and arguments."""
