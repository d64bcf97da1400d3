"""Footage: videos in and out (frame extraction, H.264 encoding, ffmpeg and probing, soundtracks, trimming,
read-ahead and consecutive-frame differences, frame images under any file name, the demo videos). May import the
top level's provenance and arguments."""
