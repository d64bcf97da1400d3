"""Footage: videos in and out (frame extraction, H.264 encoding, ffmpeg and probing, soundtracks, trimming,
read-ahead and consecutive-frame differences, the demo videos). May import the top level's provenance and arguments."""
