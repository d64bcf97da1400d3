"""Footage: videos in and out (extraction, H.264, ffmpeg and probing, soundtracks, trimming, read-ahead,
frame images under any name, the demo videos). May import the top level's provenance and arguments."""
