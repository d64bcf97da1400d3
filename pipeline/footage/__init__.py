"""Footage: videos in and out (frame extraction, H.264 encoding, ffmpeg and probing, soundtracks, trimming,
read-ahead and frame-stream differences, the demo videos). Imports only the top-level ``pipeline.provenance``
(and ``pipeline.arguments``, in ``commands``)."""
