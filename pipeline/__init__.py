"""Everybody Dance Now (Chan et al., 2018) as a reproducible pipeline.

Every stage is a plain function in this package with an ``edn <stage>`` command.
Heavy libraries (torch, mediapipe, cv2) are imported inside the stages that need them.
"""

__version__ = "0.1.0"
