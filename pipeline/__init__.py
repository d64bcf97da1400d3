"""Everybody Dance Now (Chan et al., 2019) as a reproducible pipeline.

The subpackages follow the data through the method, and imports run one way only,
footage <- pose <- gan <- evaluation (each may import those before it, never one after):

- ``footage``: videos in and out (frames, encoding, probing, soundtracks, the demo videos);
- ``pose``: keypoints, from detection to normalized stick figures;
- ``gan``: the networks, their training and generation (transfer);
- ``evaluation``: the paper's metrics, tables and the report's figures.

At the top: ``provenance`` (what made an artifact; imported by all), ``cli`` (``edn``, assembled
from each subpackage's ``commands``; ``arguments`` holds the value types they share), and the
commands about the machine and the cluster rather than the method (``doctor``, ``prefetch``,
``cluster``). ``plan`` is the workflow's side: what the Snakefile computes when it plans its jobs
(each stage's code inputs from what its command imports, the video sheet and the start-of-run
checks, the training flags). Every stage is a plain function with an ``edn <stage>`` command;
heavy libraries (torch, mediapipe, cv2) are imported inside the stages that need them.
"""

__version__ = "0.1.0"
